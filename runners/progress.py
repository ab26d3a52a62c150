"""Live view of a running sweep (rich): trials done / running / pending / failed, the best
and latest held-out PSNR, elapsed time and ETA; one line per finished trial off a terminal."""

from __future__ import annotations

import math
import time
from typing import Any, Dict, Optional

from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from runners.console import console


def _fmt_seconds(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class SweepProgress:
    """State of the planned trials (by key) as Tune reports them; rendered by :func:`fit_with_progress`."""

    def __init__(self, names: Dict[str, str], estimate_seconds: float, skipped: int = 0) -> None:
        self.names = dict(names)
        """trial key → name of every trial this invocation runs."""
        self.total = len(self.names)
        self.skipped = skipped
        self.estimate = estimate_seconds
        self.start = time.time()
        self.state: Dict[str, str] = {}
        self.best: Optional[float] = None
        self.best_name = ""
        self.latest: Optional[float] = None
        self.retries = 0

    def count(self, state: str) -> int:
        return sum(1 for s in self.state.values() if s == state)

    @property
    def done(self) -> int:
        return self.count("done")

    def eta(self) -> float:
        elapsed = time.time() - self.start
        finished = self.done + self.count("failed")
        if finished == 0:
            return max(self.estimate - elapsed, 0.0)
        return elapsed / finished * (self.total - finished)

    def observe(self, name: str, result: Dict) -> None:
        psnr = result.get("test_psnr")
        if isinstance(psnr, (int, float)) and math.isfinite(psnr):
            self.latest = float(psnr)
            if self.best is None or psnr > self.best:
                self.best, self.best_name = float(psnr), name

    def render(self):
        elapsed = time.time() - self.start
        head = Table.grid(padding=(0, 2))
        for _ in range(6):
            head.add_column()
        head.add_row(
            f"[green]done {self.done}[/]",
            f"[cyan]running {self.count('running')}[/]",
            f"pending {self.total - len(self.state)}",
            f"[red]failed {self.count('failed')}[/]",
            f"retries {self.retries}",
            f"skipped (already in MLflow) {self.skipped}",
        )
        best = f"{self.best:.2f} dB ({self.best_name})" if self.best is not None else "—"
        latest = f"{self.latest:.2f} dB" if self.latest is not None else "—"
        stats = Table.grid(padding=(0, 2))
        stats.add_row(f"held-out PSNR best {best}", f"latest {latest}")
        stats.add_row(f"elapsed {_fmt_seconds(elapsed)}", f"ETA {_fmt_seconds(self.eta())}")
        running = [self.names.get(t, t) for t, s in self.state.items() if s == "running"][:4]
        lines = [head, stats] + ([f"[dim]running: {', '.join(running)}[/]"] if running else [])
        return Panel(Group(*lines), title=f"sweep: {self.done}/{self.total} trials", expand=False)

    def line(self) -> str:
        best = f"{self.best:.2f}" if self.best is not None else "-"
        return (
            f"[{self.done + self.count('failed')}/{self.total}] done {self.done}, running {self.count('running')}, "
            f"failed {self.count('failed')}, best PSNR {best} dB, elapsed {_fmt_seconds(time.time() - self.start)}, "
            f"ETA {_fmt_seconds(self.eta())}"
        )


class EventSink:
    """Where the Tune callbacks (``runners.tune_events``) send events: set by the driver around ``tuner.fit()``.

    Tune pickles its RunConfig (callbacks included) into the experiment state, so the callback
    itself holds no live objects; a restored experiment finds the driver's sink here.
    """

    progress: Optional[SweepProgress] = None
    live: Optional[Live] = None

    @classmethod
    def refresh(cls, event: bool = False) -> None:
        if cls.live is not None:
            cls.live.update(cls.progress.render())
        elif event and cls.progress is not None:
            console.print(cls.progress.line())


class SearchProgress:
    """Phase 1 of a tuned comparison: per arm, configurations done / stopped early / failed, and the best
    objective so far (rendered like :class:`SweepProgress`)."""

    def __init__(self, steps: Dict[str, int], samples: int, metric: str) -> None:
        self.samples, self.metric, self.steps = samples, metric, dict(steps)
        """``steps``: arm label → the steps a configuration of that arm trains."""
        self.arms: Dict[str, Dict[str, Any]] = {
            label: {"done": 0, "stopped": 0, "failed": 0, "best": None} for label in steps}
        self.current = next(iter(steps), "")
        self.start = time.time()

    def observe(self, objective: Optional[float]) -> None:
        arm = self.arms[self.current]
        if objective is not None and math.isfinite(objective) and (arm["best"] is None or objective > arm["best"]):
            arm["best"] = float(objective)

    def end(self, outcome: str) -> None:
        """A configuration of the current arm ended: ``done``, ``stopped`` (by ASHA) or ``failed``."""
        self.arms[self.current][outcome] += 1

    def render(self):
        table = Table(title=f"tuning: {self.samples} configurations per arm, held-out {self.metric} on the tuning "
                            f"data — elapsed {_fmt_seconds(time.time() - self.start)}")
        for col in ("arm", "configurations", "stopped early", "failed", "best so far"):
            table.add_column(col, justify="right")
        for label, arm in self.arms.items():
            ended = arm["done"] + arm["stopped"] + arm["failed"]
            best = f"{arm['best']:.3f}" if arm["best"] is not None else "—"
            mark = "▶ " if label == self.current and ended < self.samples else ""
            table.add_row(mark + label, f"{ended}/{self.samples}", str(arm["stopped"]), str(arm["failed"]), best)
        return table

    def line(self) -> str:
        arm = self.arms[self.current]
        best = f"{arm['best']:.3f}" if arm["best"] is not None else "-"
        return (f"tuning {self.current}: {arm['done'] + arm['stopped'] + arm['failed']}/{self.samples} configurations "
                f"({arm['stopped']} stopped early, {arm['failed']} failed), best {self.metric} {best}, elapsed "
                f"{_fmt_seconds(time.time() - self.start)}")


def fit_with_progress(tuner, progress, live_view: bool) -> bool:
    """``tuner.fit()`` under the live view; False when interrupted with Ctrl-C."""
    EventSink.progress = progress
    EventSink.live = Live(progress.render(), console=console, refresh_per_second=2) if live_view else None
    try:
        if EventSink.live is not None:
            with EventSink.live:
                tuner.fit()
        else:
            tuner.fit()
        return True
    except KeyboardInterrupt:
        return False
    finally:
        EventSink.progress = EventSink.live = None
