"""The command line's view of a running sweep (``runners.engine.progress.View``), with rich.

On a terminal: a live panel (trials done / running / pending / failed, the best and latest held-out PSNR,
elapsed time and ETA; a search: per arm, configurations ended and the best objective).  Off a terminal: one
line per trial or configuration that ends.
"""

from __future__ import annotations

import contextlib
import math
import time
from functools import singledispatch
from typing import Iterator, Optional

from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from runners.cli.console import console, out
from runners.engine.progress import Progress, Refresh, SearchProgress, SweepProgress


def fmt_seconds(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


@singledispatch
def render(progress: Progress):  # pragma: no cover - every progress kind is registered below
    raise TypeError(type(progress).__name__)


@singledispatch
def line(progress: Progress) -> str:  # pragma: no cover
    raise TypeError(type(progress).__name__)


@render.register
def _(progress: SweepProgress):
    head = Table.grid(padding=(0, 2))
    for _ in range(6):
        head.add_column()
    head.add_row(
        f"[green]done {progress.done}[/]",
        f"[cyan]running {progress.count('running')}[/]",
        f"pending {progress.total - len(progress.state)}",
        f"[red]failed {progress.count('failed')}[/]",
        f"retries {progress.retries}",
        f"skipped (already in MLflow) {progress.skipped}",
    )
    best = f"{progress.best:.2f} dB ({progress.best_name})" if progress.best is not None else "—"
    latest = f"{progress.latest:.2f} dB" if progress.latest is not None else "—"
    stats = Table.grid(padding=(0, 2))
    stats.add_row(f"held-out PSNR best {best}", f"latest {latest}")
    stats.add_row(f"elapsed {fmt_seconds(progress.elapsed)}", f"ETA {fmt_seconds(progress.eta())}")
    running = [progress.names.get(t, t) for t, s in progress.state.items() if s == "running"][:4]
    lines = [head, stats] + ([f"[dim]running: {', '.join(running)}[/]"] if running else [])
    return Panel(Group(*lines), title=f"sweep: {progress.done}/{progress.total} trials", expand=False)


@line.register
def _(progress: SweepProgress) -> str:
    best = f"{progress.best:.2f}" if progress.best is not None else "-"
    ended = progress.done + progress.count("failed")
    return (f"[{ended}/{progress.total}] done {progress.done}, running {progress.count('running')}, "
            f"failed {progress.count('failed')}, best PSNR {best} dB, elapsed {fmt_seconds(progress.elapsed)}, "
            f"ETA {fmt_seconds(progress.eta())}")


@render.register
def _(progress: SearchProgress):
    table = Table(title=f"tuning: {progress.samples} configurations per arm, held-out {progress.metric} on the "
                        f"tuning data — elapsed {fmt_seconds(progress.elapsed)}")
    for col in ("arm", "configurations", "stopped early", "failed", "best so far"):
        table.add_column(col, justify="right")
    for label, arm in progress.arms.items():
        ended = arm["done"] + arm["stopped"] + arm["failed"]
        best = f"{arm['best']:.3f}" if arm["best"] is not None else "—"
        mark = "▶ " if label == progress.current and ended < progress.samples else ""
        table.add_row(mark + label, f"{ended}/{progress.samples}", str(arm["stopped"]), str(arm["failed"]), best)
    return table


@line.register
def _(progress: SearchProgress) -> str:
    arm = progress.arms[progress.current]
    best = f"{arm['best']:.3f}" if arm["best"] is not None else "-"
    return (f"tuning {progress.current}: {arm['done'] + arm['stopped'] + arm['failed']}/{progress.samples} "
            f"configurations ({arm['stopped']} stopped early, {arm['failed']} failed), best {progress.metric} "
            f"{best}, elapsed {fmt_seconds(progress.elapsed)}")


class TerminalView:
    """A live panel on a terminal (``live``), else a line per ended trial; notes on stdout."""

    def __init__(self, live: Optional[bool] = None) -> None:
        self.live = console.is_terminal if live is None else live

    def note(self, text: str) -> None:
        out.print(text, soft_wrap=True)

    @contextlib.contextmanager
    def watching(self, progress: Progress) -> Iterator[Refresh]:
        if not self.live:
            yield lambda event=False: console.print(line(progress)) if event else None
            return
        last = [0.0]
        with Live(render(progress), console=console, refresh_per_second=2) as panel:
            def refresh(event: bool = False) -> None:
                now = time.monotonic()
                if event or now - last[0] > 0.25:  # Tune's results arrive faster than anyone reads
                    last[0] = now
                    panel.update(render(progress))

            yield refresh
