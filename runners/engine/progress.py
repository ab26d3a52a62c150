"""What the driver knows of a running Tune experiment, and how it tells its caller.

``SweepProgress`` (the trials of an invocation) and ``SearchProgress`` (one arm's search after another) are the
state Tune's events update (``runners.engine.tune_events``).  The engine never prints: it hands the state to
the caller's :class:`View` (the command line's is ``runners.cli.live``), which shows it as it likes.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any, Callable, ContextManager, Dict, Iterator, Optional, Protocol, Union

Refresh = Callable[[bool], None]
"""Shows the progress again; True when a trial (or configuration) just ended."""


class SweepProgress:
    """State of the planned trials (by key) as Tune reports them."""

    def __init__(self, names: Dict[str, str], estimate_seconds: float, skipped: int = 0) -> None:
        self.names = dict(names)
        """trial key → name of every trial this invocation runs."""
        self.total = len(self.names)
        self.skipped = skipped
        self.estimate = estimate_seconds
        self.start = time.time()
        self.state: Dict[str, str] = {}
        """trial key → ``running``, ``done`` or ``failed`` (absent: pending)."""
        self.best: Optional[float] = None
        self.best_name = ""
        self.latest: Optional[float] = None
        self.retries = 0

    def count(self, state: str) -> int:
        return sum(1 for s in self.state.values() if s == state)

    @property
    def done(self) -> int:
        return self.count("done")

    @property
    def elapsed(self) -> float:
        return time.time() - self.start

    def eta(self) -> float:
        finished = self.done + self.count("failed")
        if finished == 0:
            return max(self.estimate - self.elapsed, 0.0)
        return self.elapsed / finished * (self.total - finished)

    def observe(self, name: str, result: Dict[str, Any]) -> None:
        psnr = result.get("test_psnr")
        if isinstance(psnr, (int, float)) and math.isfinite(psnr):
            self.latest = float(psnr)
            if self.best is None or psnr > self.best:
                self.best, self.best_name = float(psnr), name


class SearchProgress:
    """Phase 1 of a tuned comparison: per arm, configurations done / stopped early / failed, and the best
    objective so far."""

    def __init__(self, steps: Dict[str, int], samples: int, metric: str) -> None:
        self.samples, self.metric, self.steps = samples, metric, dict(steps)
        """``steps``: arm label → the steps a configuration of that arm trains."""
        self.arms: Dict[str, Dict[str, Any]] = {
            label: {"done": 0, "stopped": 0, "failed": 0, "best": None} for label in steps}
        self.current = next(iter(steps), "")
        self.start = time.time()

    @property
    def elapsed(self) -> float:
        return time.time() - self.start

    def observe(self, objective: Optional[float]) -> None:
        arm = self.arms[self.current]
        if objective is not None and math.isfinite(objective) and (arm["best"] is None or objective > arm["best"]):
            arm["best"] = float(objective)

    def end(self, outcome: str) -> None:
        """A configuration of the current arm ended: ``done``, ``stopped`` (by ASHA) or ``failed``."""
        self.arms[self.current][outcome] += 1


Progress = Union[SweepProgress, SearchProgress]


class View(Protocol):
    """How the engine tells its caller what happens (the command line's live view, a test's silence)."""

    def note(self, text: str) -> None:
        """A line for the user: an earlier invocation reconciled, nothing left to run, …"""

    def watching(self, progress: Progress) -> ContextManager[Refresh]:
        """While Tune runs: a function Tune's events call to show ``progress`` again."""


class QuietView:
    """A :class:`View` that shows nothing (library use)."""

    def note(self, text: str) -> None:
        pass

    @contextlib.contextmanager
    def watching(self, progress: Progress) -> Iterator[Refresh]:
        yield lambda event=False: None


class EventSink:
    """Where the Tune callbacks (``runners.engine.tune_events``) send events: set by the driver around
    ``tuner.fit()``.

    Tune pickles its RunConfig (callbacks included) into the experiment state, so the callback itself holds no
    live objects; a restored experiment finds the driver's sink here.
    """

    progress: Optional[Progress] = None
    refresh: Optional[Refresh] = None

    @classmethod
    def changed(cls, event: bool = False) -> None:
        if cls.refresh is not None:
            cls.refresh(event)


def fit_with_progress(tuner, progress: Progress, view: View) -> bool:
    """``tuner.fit()`` shown by ``view``; False when interrupted with Ctrl-C."""
    EventSink.progress = progress
    try:
        with view.watching(progress) as refresh:
            EventSink.refresh = refresh
            tuner.fit()
        return True
    except KeyboardInterrupt:
        return False
    finally:
        EventSink.progress = EventSink.refresh = None
