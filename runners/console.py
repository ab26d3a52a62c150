"""Terminal output shared by the commands: one rich console, one-line errors, progress bars."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True, highlight=False)


def fail(message: str, code: int = 2) -> "NoReturn":  # noqa: F821
    """Print ``sobolev-sweep: error: <message>`` on one line and exit (2 for bad input)."""
    print(f"sobolev-sweep: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def training_progress() -> Progress:
    """A bar for one trial: steps, loss, steps/s, elapsed and ETA."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[rate]} steps/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
