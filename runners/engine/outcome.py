"""What an invocation of ``run`` or ``resume`` ends with: every trial's state as MLflow has it, the time spent,
the searches of a tuned comparison, and the exit code."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from runners.plan.estimate import SweepEstimate
from runners.spec.schema import SweepSpec
from runners.store.records import SearchResult

FINISHED, FAILED, INTERRUPTED, PENDING = "FINISHED", "FAILED", "INTERRUPTED", "PENDING"


@dataclass(frozen=True)
class TrialRow:
    """One trial of the invocation as the summary shows it."""

    name: str
    axes: Dict[str, Any]
    status: str
    test_psnr: Optional[float]
    test_ssim: Optional[float]
    train_seconds: Optional[float]
    failure: str


@dataclass
class SweepOutcome:
    spec: SweepSpec
    planned: int
    skipped: int
    statuses: Dict[str, str] = field(default_factory=dict)
    """trial_key → FINISHED / FAILED / INTERRUPTED / PENDING."""
    wall_seconds: float = 0.0
    train_seconds: float = 0.0
    parent_run_id: Optional[str] = None
    experiment_id: Optional[str] = None
    tracking_uri: str = ""
    rows: List[TrialRow] = field(default_factory=list)
    phases: Dict[str, float] = field(default_factory=dict)
    """Wall seconds of the driver's phases: prepare (plan, checks), ray_start, launch (parent run, Tuner,
    estimate), search (a tuned comparison's phase 1), tune (the trials), collect (states from MLflow)."""
    searches: Dict[str, SearchResult] = field(default_factory=dict)
    """A tuned comparison: arm key → its search's result."""
    interrupted: bool = False
    """Interrupted outside the trials' own states (while tuning, starting, closing): ``resume`` continues it."""
    estimate: Optional[SweepEstimate] = None
    """The estimate of the trials this invocation launched."""
    signal: Optional[int] = None
    """The signal (SIGTERM, SIGHUP) that interrupted the invocation; None for Ctrl-C or none."""

    def count(self, status: str) -> int:
        return sum(1 for s in self.statuses.values() if s == status)

    @property
    def complete(self) -> bool:
        return not self.interrupted and all(s in (FINISHED, FAILED) for s in self.statuses.values())

    @property
    def exit_code(self) -> int:
        """0: every trial finished; 1: some failed; interrupted (``resume`` continues it): 130 for Ctrl-C, 128 + the
        signal's number for SIGTERM (143) or SIGHUP (129)."""
        if not self.complete:
            return 128 + (self.signal or 2)
        return 1 if self.count(FAILED) else 0
