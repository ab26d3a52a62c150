"""``sobolev-sweep``: the command line (click).

Bad input of any kind ends in one line on stderr, ``sobolev-sweep: error: …``, and exit code
2, never a traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Optional

import click

from runners.console import fail
from sobolev.errors import SobolevError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="sobolev-sweep")
def cli() -> None:
    """Sobolev training of implicit neural representations, one trial or whole sweeps."""


@cli.group(context_settings=CONTEXT)
def train() -> None:
    """Run one trial locally (the debugging tool): image or audio regression."""


def trial_options(defaults: dict) -> Callable:
    """Options shared by every task; ``defaults`` holds the task's paper settings."""

    def decorate(fn: Callable) -> Callable:
        options = [
            click.option("--factor", type=int, default=defaults["factor"], show_default=True,
                         help="Train on every FACTOR-th sample along each axis (the paper's grid)."),
            click.option("--ratio", type=float, default=None,
                         help="Train on a random fraction of the samples instead of the grid, in (0, 1]."),
            click.option("--activation", default=defaults["activation"], show_default=True,
                         help="Model: relu, relu_pe (ReLU + Nyquist positional encoding), sine."),
            click.option("--supervision", default="val_der", show_default=True, help="val, der or val_der."),
            click.option("--steps", type=int, default=defaults["steps"], show_default=True, help="Adam steps."),
            click.option("--seed", type=int, default=0, show_default=True, help="Seeds the init and a random subset."),
            click.option("--lr", type=float, default=defaults["lr"], show_default=True, help="Learning rate."),
            click.option("--lambda-der", type=float, default=1.0, show_default=True,
                         help="Weight of the derivative loss in val_der."),
            click.option("--operator", default=defaults["operator"], show_default=True,
                         help="Finite-difference operator of the targets: sobel or diff."),
            click.option("--derivative-source", default="full", show_default=True,
                         help="full: targets from the full signal (the paper); subsampled: training grid only."),
            click.option("--hidden-features", type=int, default=256, show_default=True),
            click.option("--hidden-layers", type=int, default=3, show_default=True),
            click.option("--w0", type=float, default=30.0, show_default=True, help="Sine frequency factor."),
            click.option("--log-every", type=int, default=0, help="Loss history interval (0: 1 % of the steps)."),
            click.option("--eval-every", type=int, default=0, help="Held-out metrics interval (0: at the end)."),
            click.option("--device", default="cpu", show_default=True, help="cpu or cuda."),
            click.option("--derivative-impl", default="auto", show_default=True,
                         help="Network derivative: autograd (the paper's code), forward (analytic tangents), auto."),
            click.option("--compile", is_flag=True,
                         help="torch.compile the loss (fused kernels, CUDA graphs on GPU); compiling takes 10-60 s."),
            click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
                         help="Write the final metrics, timings, config and loss history here."),
            click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
                         help="Write the pictures (prediction, |error|, gradient maps, loss curve) here."),
            click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path),
                         help="Resume from this file if it exists; save to it while training."),
            click.option("--checkpoint-every", type=int, default=1000, show_default=True),
            click.option("--quiet", is_flag=True, help="No progress bar."),
        ]
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


def _model(kw: dict):
    from sobolev.models import MLPConfig

    return MLPConfig(
        activation=kw.pop("activation"),
        hidden_features=kw.pop("hidden_features"),
        hidden_layers=kw.pop("hidden_layers"),
        w0=kw.pop("w0"),
    )


def _run(config, kw: dict) -> None:
    from runners.train import run_trial

    run_trial(
        config,
        json_path=kw["json_path"],
        out_dir=kw["out_dir"],
        checkpoint=kw["checkpoint"],
        checkpoint_every=kw["checkpoint_every"],
        show_progress=not kw["quiet"],
    )


_RUN_KEYS = ("json_path", "out_dir", "checkpoint", "checkpoint_every", "quiet")


def _train(config_class, kw: dict) -> None:
    """Split the options into run settings and the task config (the config is the factory)."""
    run = {k: kw.pop(k) for k in _RUN_KEYS}
    _run(config_class(model=_model(kw), **kw), run)


@train.command("image", context_settings=CONTEXT)
@click.option("--image", default="astronaut", show_default=True,
              help="Built-in image (astronaut, chelsea, coffee, rocket, hubble) or a PNG/JPEG file.")
@click.option("--size", type=int, default=None,
              help="Centre-crop to a square and resize to SIZE (default: 256 for built-ins, the file's own size).")
@click.option("--grayscale", is_flag=True, help="Fit luma only (the paper fits colour).")
@trial_options({"factor": 4, "activation": "sine", "steps": 50_000, "lr": 1e-4, "operator": "sobel"})
def train_image(**kw) -> None:
    """Image regression: fit an image from its ::FACTOR grid (Set5 protocol)."""
    from sobolev.trainers import ImageRegressionConfig

    _train(ImageRegressionConfig, kw)


@train.command("audio", context_settings=CONTEXT)
@click.option("--audio", default="music", show_default=True, help="Built-in clip (music, counting) or a WAV file.")
@click.option("--duration", type=float, default=None, help="Keep only the first DURATION seconds (CPU-friendly).")
@trial_options({"factor": 5, "activation": "sine", "steps": 8_000, "lr": 5e-5, "operator": "diff"})
def train_audio(**kw) -> None:
    """Audio regression: fit a waveform from every FACTOR-th sample (SIREN audio protocol)."""
    from sobolev.trainers import AudioRegressionConfig

    _train(AudioRegressionConfig, kw)


@train.command("nerf", context_settings=CONTEXT)
@click.option("--scene", default="synthetic", show_default=True,
              help="LLFF scene folder (images*/ + poses_bounds.npy) or the built-in 'synthetic' scene.")
@click.option("--preset", default="paper", show_default=True,
              help="paper: the paper's sizes; cpu: fewer samples/rays, a narrower net, smaller images.")
@click.option("--samples", type=int, default=None, help="Stratified samples per ray (paper: 128).")
@click.option("--rays", type=int, default=None, help="Random training rays per step (paper: 1024).")
@click.option("--downsample", type=int, default=None, help="LLFF image downsampling (paper: 4).")
@click.option("--llffhold", type=int, default=None, help="Every N-th view is a test view (paper: 8).")
@click.option("--scene-width", type=int, default=None, help="Width of the built-in scene's images (default 252).")
@click.option("--raw-noise", type=float, default=None, help="Std of the noise on sigma while training (paper: 1).")
@click.option("--lr-decay-steps", type=int, default=None, help="lr x 0.1^(step / N) (paper: 250000).")
@click.option("--flythrough-frames", type=int, default=None, help="Frames of the fly-through GIF.")
@trial_options({"factor": 4, "activation": "relu", "steps": 400_000, "lr": 5e-4, "operator": "sobel"})
@click.pass_context
def train_nerf(ctx, **kw) -> None:
    """Inverse rendering: TinyNeRF on an LLFF scene, rays from the ::FACTOR grid of the training views."""
    from click.core import ParameterSource
    from pydantic import TypeAdapter, ValidationError

    from sobolev.errors import ConfigError
    from sobolev.trainers.nerf import NerfConfig, apply_preset

    run = {k: kw.pop(k) for k in _RUN_KEYS}
    given = {k: v for k, v in kw.items()
             if v is not None and (ctx.get_parameter_source(k) != ParameterSource.DEFAULT or k in ("scene", "preset"))}
    model = {k: given.pop(k) for k in ("activation", "hidden_features", "hidden_layers", "w0") if k in given}
    settings = apply_preset({**given, "model": model})
    try:
        config = TypeAdapter(NerfConfig).validate_python(settings)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(f"--{str(err['loc'][-1]).replace('_', '-')}: {err['msg']} (got {err.get('input')!r})") from None
    _run(config, run)


def sweep_options(fn: Callable) -> Callable:
    """Options shared by ``run``, ``resume`` and ``plan``."""
    options = [
        click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
                     help="Override any spec field (YAML value), e.g. --set trial.steps=100. Repeatable."),
        click.option("--tracking-uri", default=None,
                     help="MLflow store: sqlite:///path.db (default sqlite:///mlflow.db here) or http://host:port."),
        click.option("--storage", default=None, help="Tune state and checkpoints (default ./.sobolev)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def ray_options(fn: Callable) -> Callable:
    options = [
        click.option("--address", default=None,
                     help="Join a running Ray cluster (HOST:PORT or auto) instead of starting a local Ray."),
        click.option("--max-concurrent", type=int, default=None, help="At most this many trials at once."),
        click.option("--live/--no-live", default=None, help="Live view (default: on a terminal)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _options(**kw):
    from runners.sweep import SweepOptions

    return SweepOptions(**kw)


@cli.command(context_settings=CONTEXT)
@click.argument("spec", type=click.Path(dir_okay=False))
@sweep_options
@ray_options
@click.option("--rerun", is_flag=True, help="Run trials even if MLflow already has them FINISHED.")
@click.option("--dry-run", is_flag=True, help="Only plan: print the trials and the cost (same as `plan`).")
@click.option("--resume", "resume_", is_flag=True, help="Continue the interrupted sweep (same as `resume`).")
@click.option("--pack", type=int, default=None, metavar="K",
              help="Train up to K compatible trials as one batched network (same as --set run.pack=K).")
def run(spec, overrides, tracking_uri, storage, address, max_concurrent, live, rerun, dry_run, resume_, pack) -> None:
    """Run a sweep on Ray Tune (a local Ray, or --address), every trial in MLflow."""
    from runners import sweep

    if pack is not None:
        overrides = (*overrides, f"run.pack={pack}")
    opts = _options(overrides=overrides, tracking_uri=tracking_uri, storage=storage, address=address,
                    max_concurrent=max_concurrent, rerun=rerun, live=live)
    if dry_run:
        sweep.show_plan(spec, opts)
        return
    outcome = (sweep.resume_sweep if resume_ else sweep.run_sweep)(spec, opts)
    sweep.print_summary(outcome, spec)
    raise SystemExit(outcome.exit_code)


@cli.command(context_settings=CONTEXT)
@click.argument("spec", type=click.Path(dir_okay=False))
@sweep_options
@ray_options
def resume(spec, overrides, tracking_uri, storage, address, max_concurrent, live) -> None:
    """Continue an interrupted sweep: finished trials stay, interrupted ones resume from checkpoints."""
    from runners import sweep

    opts = _options(overrides=overrides, tracking_uri=tracking_uri, storage=storage, address=address,
                    max_concurrent=max_concurrent, live=live)
    outcome = sweep.resume_sweep(spec, opts)
    sweep.print_summary(outcome, spec)
    raise SystemExit(outcome.exit_code)


@cli.command(context_settings=CONTEXT)
@click.argument("spec", type=click.Path(dir_okay=False))
@sweep_options
@click.option("--max-concurrent", type=int, default=None, help="Concurrency assumed by the estimate.")
@click.option("--pack", type=int, default=None, metavar="K", help="As in `run`: show the packs of up to K trials.")
def plan(spec, overrides, tracking_uri, storage, max_concurrent, pack) -> None:
    """Print a sweep's trials, which are already finished in MLflow, and an estimate of the cost."""
    from runners import sweep

    if pack is not None:
        overrides = (*overrides, f"run.pack={pack}")
    sweep.show_plan(spec, _options(overrides=overrides, tracking_uri=tracking_uri, storage=storage,
                                   max_concurrent=max_concurrent))


@cli.command(context_settings=CONTEXT)
@click.option("--tracking-uri", default=None, help="MLflow store (default sqlite:///mlflow.db here).")
@click.option("--port", type=int, default=5000, show_default=True)
def ui(tracking_uri, port) -> None:
    """Start the MLflow UI on the configured store, bound to 127.0.0.1."""
    import subprocess

    from runners.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith("http"):
        click.echo(f"the store is a server already: open {uri}")
        return
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port)]
    click.echo(" ".join(cmd[1:]).replace("-m mlflow", "mlflow"), err=True)
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    raise SystemExit(subprocess.call(cmd, env=env))


@cli.command(context_settings=CONTEXT)
@click.argument("target", metavar="SPEC_OR_EXPERIMENT")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("reports"), show_default=True)
@click.option("--metric", default="test_psnr,test_ssim", show_default=True, help="Comma-separated metrics.")
@click.option("--format", "formats", default="tex,csv,md,png,pdf", show_default=True, help="Comma-separated outputs.")
@click.option("--factor", type=int, default=None, help="Sampling level of the tables (default: factor 4 if swept).")
@click.option("--ratio", type=float, default=None, help="Sampling level of the tables, as a random ratio.")
@click.option("--dataset", default=None, help="Dataset of the picture grid (default: the first).")
@click.option("--parent", default="all", show_default=True, help="all runs, the latest invocation, or a parent run id.")
@click.option("--tracking-uri", default=None, help="MLflow store (default sqlite:///mlflow.db here).")
@click.option("--no-mlflow", is_flag=True, help="Do not log the report to the sweep's parent run.")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
              help="The --set overrides the sweep ran with (when SPEC_OR_EXPERIMENT is a spec).")
def report(target, out, metric, formats, factor, ratio, dataset, parent, tracking_uri, no_mlflow, overrides) -> None:
    """Paper-style LaTeX/CSV/Markdown tables, significance tests and curves of a sweep, from MLflow."""
    from analysis.report import ReportOptions, make_report
    from runners.console import out as stdout

    opts = ReportOptions(out=out, metrics=[m.strip() for m in metric.split(",") if m.strip()],
                         formats=[f.strip() for f in formats.split(",") if f.strip()], factor=factor, ratio=ratio,
                         dataset=dataset, parent=parent, tracking_uri=tracking_uri, log_to_mlflow=not no_mlflow,
                         overrides=overrides)
    result = make_report(target, opts)
    for note in result.notes:
        stdout.print(f"note: {note}", soft_wrap=True)
    for path in result.files:
        stdout.print(f"wrote {path}", soft_wrap=True)


def main(argv: Optional[list] = None) -> None:
    """Entry point: click in non-standalone mode so every error is one line, exit code 2."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        code = cli.main(args=argv, prog_name="sobolev-sweep", standalone_mode=False)
    except SobolevError as exc:
        fail(str(exc))
    except click.exceptions.NoArgsIsHelpError as exc:  # pragma: no cover - click >= 8.2
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        raise SystemExit(2)
    except click.ClickException as exc:
        fail(exc.format_message(), exc.exit_code if exc.exit_code else 2)
    except click.exceptions.Abort:
        fail("interrupted", 130)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
