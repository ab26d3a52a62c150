"""Terminal output shared by the commands: one rich console, one-line errors, progress bars."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from sobolev.errors import SobolevError, last_line


def _width() -> int | None:
    """Wide enough for trial tables when output goes to a file or a pipe."""
    return None if sys.stderr.isatty() else max(shutil.get_terminal_size((140, 24)).columns, 140)


console = Console(stderr=True, highlight=False, width=_width())
"""Progress, logs and errors (stderr)."""
out = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
"""Results: plans, summaries, tables (stdout)."""


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


class InternalError(SobolevError):
    """A failure of the tool itself, not of the input: one line that says where the traceback was written, exit
    code 1."""

    exit_code = 1


def internal_error(command: str, exc: BaseException, log: Path) -> InternalError:
    """``exc`` (a bug) as an :class:`InternalError`: the traceback written to ``log`` (or, if that cannot be
    written, only named), the message one line."""
    import traceback

    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("".join(traceback.format_exception(exc)))
        where = f"the traceback is in {log}"
    except OSError:
        where = "the traceback could not be written"
    return InternalError(f"{command} failed: {type(exc).__name__}: {last_line(exc, 300)} ({where}; please report it)")
