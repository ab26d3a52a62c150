"""``sobolev-sweep``: the command line (click).

Bad input of any kind ends in one line on stderr, ``sobolev-sweep: error: …``, and exit code
2, never a traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, List, Optional

import click

from runners.cli.console import fail, internal_error
from sobolev.errors import SobolevError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="sobolev-sweep")
def cli() -> None:
    """Sobolev training of implicit neural representations, one trial or whole sweeps."""


class TaskCommands(click.Group):
    """``train <task>``: one command per registered task, made when asked for (no torch at start-up)."""

    def list_commands(self, ctx: click.Context) -> List[str]:
        from sobolev.tasks import TASKS

        return TASKS.in_order()

    def get_command(self, ctx: click.Context, name: str) -> Optional[click.Command]:
        from sobolev.tasks import TASKS

        return train_command(TASKS.get(name)) if name in TASKS else None


@cli.group(cls=TaskCommands, context_settings=CONTEXT)
def train() -> None:
    """Run one trial locally (the debugging tool): any task, every setting an option."""


RUN_OPTIONS = [
    click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
                 help="Write the final metrics, timings, config and loss history here."),
    click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
                 help="Write the pictures (prediction, |error|, gradient maps, loss curve) here."),
    click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path),
                 help="Resume from this file if it exists; save to it while training."),
    click.option("--checkpoint-every", type=int, default=1000, show_default=True),
    click.option("--quiet", is_flag=True, help="No progress bar."),
]


def train_command(task) -> click.Command:
    """``train <task.name>``: the task's config fields as options (``runners.cli.options``), plus run options."""
    from runners.cli.options import config_from_options, config_options, config_params

    def command(json_path, out_dir, checkpoint, checkpoint_every, quiet, **settings) -> None:
        from runners.cli.train import run_trial

        config = config_from_options(task.config_class, {k: settings[k] for k in config_params(task.config_class)})
        run_trial(config, json_path=json_path, out_dir=out_dir, checkpoint=checkpoint,
                  checkpoint_every=checkpoint_every, show_progress=not quiet)

    for option in reversed(RUN_OPTIONS):
        command = option(command)
    command = config_options(task.config_class)(command)
    doc = " ".join((type(task).__doc__ or "").split())
    return click.command(task.name, context_settings=CONTEXT, help=doc)(command)


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
        click.option("--address", default=None, envvar="RAY_ADDRESS", show_envvar=True,
                     help="Join a running Ray cluster (HOST:PORT or auto) instead of starting a local Ray "
                          "(loopback only, token-authenticated)."),
        click.option("--max-concurrent", type=click.IntRange(min=1), default=None,
                     help="At most this many trials at once."),
        click.option("--live/--no-live", default=None, help="Live view (default: on a terminal)."),
        click.option("--wait", is_flag=True,
                     help="If another invocation of this sweep is running into the same store, wait for it to end "
                          "(default: refuse)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def refuse_together(*flags) -> None:
    """Flags that contradict each other: a usage error naming them (exit 2) rather than one silently winning."""
    given = [name for name, on in flags if on]
    if len(given) > 1:
        raise click.UsageError(f"{' and '.join(given)} cannot be used together")


def _options(**kw):
    from runners.engine.invocation import SweepOptions

    return SweepOptions(**kw)


def _finish(outcome, spec: str) -> None:
    from runners.cli.summary import print_summary

    print_summary(outcome, spec)
    raise SystemExit(outcome.exit_code)


@cli.command(context_settings=CONTEXT)
@click.argument("spec", type=click.Path(dir_okay=False))
@sweep_options
@ray_options
@click.option("--rerun", is_flag=True, help="Train trials again even if MLflow has them FINISHED or diverged.")
@click.option("--dry-run", is_flag=True, help="Only plan: print the trials and the cost (same as `plan`).")
@click.option("--resume", "resume_", is_flag=True, help="Continue the interrupted sweep (same as `resume`).")
@click.option("--pack", type=int, default=None, metavar="K",
              help="Train up to K compatible trials as one batched network (same as --set run.pack=K).")
@click.option("--yes", is_flag=True, help="Run a sweep estimated to take more than 24 h here, without asking.")
def run(spec, overrides, tracking_uri, storage, address, max_concurrent, live, wait, rerun, dry_run, resume_,
        pack, yes) -> None:
    """Run a sweep on Ray Tune (a local Ray, or --address), every trial in MLflow."""
    from runners.cli.live import TerminalView
    from runners.cli.plan_view import show_plan
    from runners.engine.sweep import resume_sweep, run_sweep

    refuse_together(("--dry-run", dry_run), ("--resume", resume_))
    refuse_together(("--rerun", rerun), ("--resume", resume_))
    refuse_together(("--pack", pack is not None), ("--resume", resume_))
    if pack is not None:
        overrides = (*overrides, f"run.pack={pack}")
    opts = _options(overrides=overrides, tracking_uri=tracking_uri, storage=storage, address=address,
                    max_concurrent=max_concurrent, rerun=rerun, live=live, wait=wait, yes=yes)
    if dry_run:
        show_plan(spec, opts)
        return
    _finish((resume_sweep if resume_ else run_sweep)(spec, opts, TerminalView(live)), spec)


@cli.command(context_settings=CONTEXT)
@click.argument("spec", type=click.Path(dir_okay=False))
@sweep_options
@ray_options
def resume(spec, overrides, tracking_uri, storage, address, max_concurrent, live, wait) -> None:
    """Continue an interrupted sweep: finished trials stay, interrupted ones resume from checkpoints."""
    from runners.cli.live import TerminalView
    from runners.engine.sweep import resume_sweep

    opts = _options(overrides=overrides, tracking_uri=tracking_uri, storage=storage, address=address,
                    max_concurrent=max_concurrent, live=live, wait=wait)
    _finish(resume_sweep(spec, opts, TerminalView(live)), spec)


@cli.command(context_settings=CONTEXT)
@click.argument("spec", type=click.Path(dir_okay=False))
@sweep_options
@click.option("--max-concurrent", type=click.IntRange(min=1), default=None, help="Concurrency assumed by the estimate.")
@click.option("--pack", type=int, default=None, metavar="K", help="As in `run`: show the packs of up to K trials.")
@click.option("--yes", is_flag=True, help="Plan a sweep estimated to take more than 24 h here.")
def plan(spec, overrides, tracking_uri, storage, max_concurrent, pack, yes) -> None:
    """Print a sweep's trials, which are already finished in MLflow, and an estimate of the cost."""
    from runners.cli.plan_view import show_plan

    if pack is not None:
        overrides = (*overrides, f"run.pack={pack}")
    show_plan(spec, _options(overrides=overrides, tracking_uri=tracking_uri, storage=storage,
                                   max_concurrent=max_concurrent, yes=yes))


@cli.command(context_settings=CONTEXT)
@click.option("--tracking-uri", default=None, help="MLflow store (default sqlite:///mlflow.db here).")
@click.option("--port", type=click.IntRange(1, 65535), default=5000, show_default=True)
def ui(tracking_uri, port) -> None:
    """Start the MLflow UI on the configured store, bound to 127.0.0.1 (Ctrl-C or SIGTERM stops it)."""
    from runners.cli.ui import serve_ui
    from runners.store.uri import check_reachable, is_server, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    if is_server(uri):
        click.echo(f"the store is a server already: open {uri}")
        return
    check_reachable(uri)
    raise SystemExit(serve_ui(uri, port))


@cli.command(context_settings=CONTEXT)
@click.argument("target", metavar="SPEC_OR_EXPERIMENT")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("reports"), show_default=True,
              help="Folder of the report's files (made if missing).")
@click.option("--metric", default=None,
              help="Comma-separated metrics (default: the task's held-out metrics: test_psnr,test_ssim for images "
                   "and NeRF, test_psnr for audio).")
@click.option("--format", "formats", default="tex,csv,md,png,pdf", show_default=True, help="Comma-separated outputs.")
@click.option("--factor", type=int, default=None, help="Sampling level of the tables (default: factor 4 if swept).")
@click.option("--ratio", type=float, default=None, help="Sampling level of the tables, as a random ratio.")
@click.option("--dataset", default=None, help="Dataset of the picture grid (default: the first).")
@click.option("--parent", default="all", show_default=True, help="all runs, the latest invocation, or a parent run id.")
@click.option("--tracking-uri", default=None, help="MLflow store (default sqlite:///mlflow.db here).")
@click.option("--no-mlflow", is_flag=True, help="Do not log the report to the sweep's parent run.")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
              help="Plan SPEC again with these overrides (default: the trials the sweep recorded that it ran).")
def report(target, out, metric, formats, factor, ratio, dataset, parent, tracking_uri, no_mlflow, overrides) -> None:
    """Paper-style LaTeX/CSV/Markdown tables, significance tests and curves of a sweep, from MLflow."""
    from analysis.report import ReportOptions, make_report
    from runners.cli.console import out as stdout

    opts = ReportOptions(out=out, metrics=[m.strip() for m in metric.split(",") if m.strip()] if metric else None,
                         formats=[f.strip() for f in formats.split(",") if f.strip()], factor=factor, ratio=ratio,
                         dataset=dataset, parent=parent, tracking_uri=tracking_uri, log_to_mlflow=not no_mlflow,
                         overrides=overrides)
    try:
        result = make_report(target, opts)
    except SobolevError:
        raise
    except Exception as exc:  # noqa: BLE001 - a bug of ours: one line for the user, the traceback in a file
        raise internal_error("report", exc, out / "report-error.log") from None
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
        fail(str(exc), exc.exit_code)
    except click.exceptions.NoArgsIsHelpError as exc:  # pragma: no cover - click >= 8.2
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        raise SystemExit(2) from None
    except click.ClickException as exc:
        fail(exc.format_message(), exc.exit_code if exc.exit_code else 2)
    except click.exceptions.Abort:
        fail("interrupted", 130)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
