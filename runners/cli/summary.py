"""The summary a sweep prints when it ends: one row per trial, or mean ± std per arm when there are many."""

from __future__ import annotations

import math

from rich.table import Table

from analysis.spread import STD_NAME, sample_std

from runners.cli.console import out
from runners.engine.outcome import SweepOutcome, TrialRow
from runners.store.layout import ui_page


def _fmt(value, digits: int = 2) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _trial_table(outcome: SweepOutcome) -> Table:
    table = Table(title=f"sweep {outcome.spec.name!r}: {outcome.count('FINISHED')} finished, "
                        f"{outcome.count('FAILED')} failed, {outcome.count('INTERRUPTED')} interrupted, "
                        f"{outcome.count('PENDING')} not started, {outcome.skipped} skipped")
    for col in ("trial", "status", "test PSNR", "test SSIM", "train s", "failure"):
        table.add_column(col)
    for r in sorted(outcome.rows, key=lambda r: (r.status != "FAILED", r.name)):
        color = {"FINISHED": "green", "FAILED": "red"}.get(r.status, "yellow")
        table.add_row(r.name, f"[{color}]{r.status}[/]", _fmt(r.test_psnr), _fmt(r.test_ssim, 3),
                      _fmt(r.train_seconds, 1), r.failure[:80])
    return table


def _grouped_table(outcome: SweepOutcome) -> Table:
    """Many trials: mean ± sample std of held-out PSNR per model × supervision × sampling level."""
    import pandas as pd

    frame = pd.DataFrame([_flat(r) for r in outcome.rows])
    sampling = "axis.factor" if "axis.factor" in frame else "axis.ratio"
    if "axis.factor" in frame and "axis.ratio" in frame:
        frame["sampling"] = frame["axis.factor"].map(lambda f: f"f{f:g}" if pd.notna(f) else None).fillna(
            frame["axis.ratio"].map(lambda r: f"r{r:g}" if pd.notna(r) else None))
        sampling = "sampling"
    keys = ["axis.activation", "axis.supervision", sampling]
    table = Table(title=f"sweep {outcome.spec.name!r}: {outcome.count('FINISHED')} finished, "
                        f"{outcome.count('FAILED')} failed, {outcome.count('INTERRUPTED')} interrupted, "
                        f"{outcome.count('PENDING')} not started, {outcome.skipped} skipped — "
                        f"held-out PSNR, mean ± {STD_NAME} over datasets and seeds")
    for col in ("model", "supervision", sampling.removeprefix("axis."), "finished", "test PSNR", "test SSIM"):
        table.add_column(col, justify="right")
    for key, group in frame.groupby(keys, sort=True):
        done = group[group["status"] == "FINISHED"]
        psnr = done["test_psnr"].astype(float)
        ssim = done["test_ssim"].astype(float)
        table.add_row(*[str(k) for k in key], f"{len(done)}/{len(group)}",
                      f"{psnr.mean():.2f} ± {_fmt(sample_std(psnr))}" if len(done) else "—",
                      f"{ssim.mean():.3f}" if len(done) else "—")
    return table


def _flat(row: TrialRow) -> dict:
    return {**{f"axis.{k}": v for k, v in row.axes.items()}, "trial": row.name, "status": row.status,
            "test_psnr": row.test_psnr, "test_ssim": row.test_ssim}


def search_table(outcome: SweepOutcome) -> Table:
    """A tuned comparison: per arm, its tuned values, best objective and the budget it got."""
    first = next(iter(outcome.searches.values()))
    budgets = "/".join(str(b) for b in sorted({r.configurations for r in outcome.searches.values()}))
    table = Table(title=f"search: every arm tuned with {budgets} configurations (best held-out {first.metric}, "
                        "mean over the tuning data)")
    for col in ("arm", "tuned values", f"best {first.metric}", "completed", "stopped early", "failed",
                "steps trained"):
        table.add_column(col)
    for result in outcome.searches.values():
        values = ", ".join(f"{k}={_value(v)}" for k, v in result.values.items()) or result.note or "—"
        table.add_row(result.label, values, _fmt(result.objective, 3), str(result.completed),
                      str(result.stopped), str(result.failed), str(result.steps_trained))
    return table


def _value(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def print_summary(outcome: SweepOutcome, spec_path: str) -> None:
    if outcome.searches:
        out.print(search_table(outcome))
    if outcome.rows:
        out.print(_trial_table(outcome) if len(outcome.rows) <= 24 else _grouped_table(outcome))
        failed = [r for r in outcome.rows if r.status == "FAILED"]
        if len(outcome.rows) > 24 and failed:
            out.print(f"[red]{len(failed)} failed:[/] " + "; ".join(f"{r.name}: {r.failure}" for r in failed[:10]))
    if outcome.wall_seconds:
        share = outcome.train_seconds / outcome.wall_seconds if outcome.wall_seconds else float("nan")
        search = outcome.phases.get("search")
        out.print(f"{outcome.planned - outcome.skipped} trials in {outcome.wall_seconds:.1f} s wall time"
                  + (f" ({search:.1f} s of it the search)" if search else "")
                  + f"; training time summed over trials {outcome.train_seconds:.1f} s ({share:.2f}× the wall time)",
                  soft_wrap=True)
    est = outcome.estimate
    if est is not None and outcome.count("FINISHED") and est.train_seconds > 0 and est.wall_seconds > 0:
        # an invocation that had nothing left to train (a resume after the sweep ended) has an empty estimate
        out.print(f"the estimate against what happened: training {est.train_seconds:.1f} s estimated, "
                  f"{outcome.train_seconds:.1f} s measured (×{outcome.train_seconds / est.train_seconds:.2f}); "
                  f"wall time {est.wall_seconds:.1f} s estimated, {outcome.wall_seconds:.1f} s measured "
                  f"(×{outcome.wall_seconds / est.wall_seconds:.2f})", soft_wrap=True)
    if not outcome.complete:
        out.print(f"[yellow]interrupted[/]: resume with  sobolev-sweep resume {spec_path}", soft_wrap=True)
    if outcome.tracking_uri.startswith("http"):
        out.print(f"open {ui_page(outcome.tracking_uri, outcome.experiment_id)} in a browser", soft_wrap=True)
    else:
        out.print("open the MLflow UI with:\n"
                  f"  sobolev-sweep ui --tracking-uri {outcome.tracking_uri}\n"
                  f"  then {ui_page('http://127.0.0.1:5000', outcome.experiment_id)}", soft_wrap=True)
