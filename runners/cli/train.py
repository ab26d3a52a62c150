"""One trial, locally, from the command line: the debugging tool (``sobolev-sweep train``).

Takes the task config built from the options, trains with a progress bar, optionally resumes from
and writes a checkpoint, then writes ``--json`` and the pictures of ``--out``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, Optional

from rich.table import Table

from runners.cli.console import console, training_progress
from runners.plan.bounds import check_data, check_network
from sobolev.errors import ConfigError
from sobolev.flops import steps_for_budget
from sobolev.tasks import task_of
from sobolev.trainers import Progress, TrialResult, load_checkpoint, save_checkpoint


def _fmt(value: float) -> str:
    return "nan" if not math.isfinite(value) else f"{value:.4g}"


def run_trial(
    config: Any,
    *,
    json_path: Optional[Path] = None,
    out_dir: Optional[Path] = None,
    checkpoint: Optional[Path] = None,
    checkpoint_every: int = 1000,
    show_progress: bool = True,
) -> TrialResult:
    """Train one trial (resuming from ``checkpoint`` if it exists) and write its outputs."""
    check_network(config)  # what this machine cannot hold is refused before it is allocated
    planned = task_of(config).planned_samples(config)
    if planned is not None:
        check_data(planned[0], 3, planned[1])
    config = steps_for_budget(config)  # a budget in FLOPs: its steps, counted on this trial
    trainer = config.setup()
    if checkpoint is not None and Path(checkpoint).exists():
        try:
            trainer.load_state_dict(load_checkpoint(checkpoint))
        except ConfigError as exc:  # another trial's checkpoint: name the file
            raise exc.in_source(str(checkpoint)) from None
        console.print(f"resumed from {checkpoint} at step {trainer.step}")
    bar = training_progress()
    label = f"{config.supervision} · {config.model.activation}"
    task_id = bar.add_task(label, total=config.steps, completed=trainer.step, loss="…", rate="…")

    def on_progress(progress: Progress) -> None:
        rate = progress.step / progress.train_seconds if progress.train_seconds > 0 else float("nan")
        bar.update(task_id, completed=progress.step, loss=_fmt(progress.metrics["loss"]), rate=f"{rate:.1f}")
        if checkpoint is not None and (progress.final or progress.step % checkpoint_every == 0):
            save_checkpoint(progress.state_dict(), checkpoint)

    if show_progress:
        with bar:
            result = trainer.fit(on_progress)
    else:
        result = trainer.fit(on_progress)
    summary = result.summary()
    if json_path is not None:
        json_path = Path(json_path)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps({**summary, "history": result.history}, indent=2, allow_nan=True) + "\n")
    written = []
    if out_dir is not None:  # the task's pictures, and the loss curve (a sweep's runs have it in MLflow instead)
        from sobolev.visualize import save_loss_curve

        written = [*task_of(config).save_artifacts(result, Path(out_dir)),
                   save_loss_curve(result, Path(out_dir) / "loss.png")]
    console.print(summary_table(summary))
    for path in [json_path, *written]:
        if path is not None:
            console.print(f"wrote {path}")
    return result


def summary_table(summary: Dict[str, Any]) -> Table:
    table = Table(title=f"{summary['task']} trial", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    return table
