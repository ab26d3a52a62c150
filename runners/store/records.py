"""The typed records a sweep writes into its store and reads back (the driver, a later invocation, ``report``).

Each is a frozen dataclass with a format number and a JSON form.  A record written by an earlier version (no
``format`` key: format 1) is read as it is; one written by a newer version than this one is refused in one line
(:class:`~sobolev.errors.ConfigError`) rather than misread.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from sobolev.errors import ConfigError


def _format_of(data: Mapping[str, Any], what: str, current: int) -> int:
    fmt = int(data.get("format", 1))
    if fmt > current:
        raise ConfigError(f"{what} of format {fmt} was written by a newer sobolev-sweep (this one reads up to "
                          f"{current}); upgrade it")
    return fmt


@dataclass(frozen=True)
class SearchResult:
    """The outcome of one arm's search: its best configuration and the budget it got (a parent-run tag,
    ``sobolev.search.<key>``)."""

    FORMAT = 1

    label: str
    """``sine/val_der``."""
    axes: Dict[str, Any]
    key: str
    """The arm's search key (``runners.plan.arms.Arm.key``)."""
    metric: str
    """The held-out metric maximised (mean over the arm's tuning members)."""
    members: int
    values: Dict[str, Any]
    """The best configuration's sampled values (dotted trial fields → typed values); empty if none."""
    objective: float
    best_run: Optional[str]
    note: str
    """Why there is no best configuration (every one failed), or empty."""
    configurations: int
    completed: int
    """Configurations that trained every step."""
    stopped: int
    """Stopped early by ASHA."""
    failed: int
    diverged: int
    steps_trained: int
    flops_trained: float = 0.0
    """Training FLOPs the arm spent (its configurations' members' mean; recorded since budgets in FLOPs)."""

    def to_json(self) -> str:
        return json.dumps({"format": self.FORMAT, **asdict(self)})

    @classmethod
    def from_json(cls, text: str) -> "SearchResult":
        data = json.loads(text)
        _format_of(data, "a search result", cls.FORMAT)
        names = [f for f in cls.__dataclass_fields__]
        objective = data.get("objective")
        return cls(**{**{k: data[k] for k in names if k in data},
                      "objective": math.nan if objective is None else float(objective)})

    @property
    def tuned(self) -> bool:
        """Whether the arm has a best configuration (else it is evaluated with its untuned values)."""
        return self.best_run is not None


@dataclass(frozen=True)
class TrialRecord:
    """What a sweep records of one planned trial: its key, readable name and grid coordinates."""

    key: str
    name: str
    axes: Dict[str, Any]


@dataclass(frozen=True)
class PlanRecord:
    """What an invocation planned (``plan.json`` on its parent run): the ``--set`` overrides and every trial."""

    FORMAT = 1

    overrides: Tuple[str, ...]
    trials: Tuple[TrialRecord, ...] = field(default_factory=tuple)

    def to_json(self) -> str:
        return json.dumps({"format": self.FORMAT, "overrides": list(self.overrides),
                           "trials": [asdict(t) for t in self.trials]})

    @classmethod
    def from_json(cls, text: str) -> "PlanRecord":
        data = json.loads(text)
        _format_of(data, "a plan record", cls.FORMAT)
        return cls(tuple(data.get("overrides", ())),
                   tuple(TrialRecord(t["key"], t["name"], dict(t["axes"])) for t in data["trials"]))

    @classmethod
    def of(cls, overrides: Sequence[str], trials: Sequence[TrialRecord]) -> "PlanRecord":
        return cls(tuple(overrides), tuple(trials))


def merged_trials(plans: List[PlanRecord]) -> List[TrialRecord]:
    """The trials of several plans, one per key (the latest plan's record of a key wins)."""
    return list({t.key: t for plan in plans for t in plan.trials}.values())


@dataclass(frozen=True)
class EvaluationCurve:
    """A trial's held-out metrics at each evaluation, against the compute spent by then (a trial-run tag,
    ``sobolev.evaluations``): what ``report`` draws against FLOPs and seconds without one request per run."""

    FORMAT = 1
    MAX_ROWS = 64
    """Evaluations kept (evenly spaced, the last always)."""
    MAX_CHARS = 4800
    """The JSON's length at most (a tag the tracker stores whole: 5000 characters)."""

    columns: Tuple[str, ...]
    """``step``, ``train_flops``, ``train_seconds``, then the metrics."""
    rows: Tuple[Tuple[float, ...], ...]

    @classmethod
    def of(cls, records: Sequence[Mapping[str, float]], metrics: Sequence[str]) -> "EvaluationCurve":
        """From a trainer's history records (those with held-out metrics and the compute spent)."""
        columns = ("step", "train_flops", "train_seconds", *metrics)
        kept = [r for r in records if all(c in r for c in columns)]
        rows = cls.MAX_ROWS
        while True:
            if len(kept) > rows:
                every = len(kept) / rows
                kept = [kept[int(i * every)] for i in range(rows - 1)] + [kept[-1]]
            curve = cls(columns, tuple(tuple(float(f"{float(r[c]):.6g}") for c in columns) for r in kept))
            if len(curve.to_json()) <= cls.MAX_CHARS or rows <= 2:
                return curve
            rows //= 2

    def to_json(self) -> str:
        return json.dumps({"format": self.FORMAT, "columns": list(self.columns), "rows": [list(r) for r in self.rows]},
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "EvaluationCurve":
        data = json.loads(text)
        _format_of(data, "an evaluation curve", cls.FORMAT)
        return cls(tuple(data["columns"]), tuple(tuple(r) for r in data["rows"]))


@dataclass(frozen=True)
class TaskInfo:
    """What a report needs to know of a sweep's task without loading it (an experiment tag, ``sobolev.task``): a
    report reads a store without importing torch."""

    FORMAT = 1

    name: str
    dimensions: int
    """Axes of the sampled grid: a trial trains on ``1 / factor ** dimensions`` of the samples."""
    metrics: Tuple[str, ...]
    """Its held-out metrics (what a report tabulates by default)."""
    pictures: bool = False
    """A trial's prediction is one picture: a report draws a grid of them beside the ground truth."""

    @classmethod
    def of(cls, task) -> "TaskInfo":
        """Of a registered ``sobolev.tasks.Task``."""
        return cls(task.name, int(task.dimensions), tuple(task.metrics), bool(task.picture_grid))

    def sampled_fraction(self, sampling) -> float:
        """Share of the signal's samples a sampling level trains on (``Task.sampled_fraction``)."""
        return sampling.fraction(self.dimensions)

    def to_json(self) -> str:
        return json.dumps({"format": self.FORMAT, "name": self.name, "dimensions": self.dimensions,
                           "metrics": list(self.metrics), "pictures": self.pictures})

    @classmethod
    def from_json(cls, text: str) -> "TaskInfo":
        data = json.loads(text)
        _format_of(data, "a task record", cls.FORMAT)
        return cls(data["name"], int(data["dimensions"]), tuple(data["metrics"]), bool(data.get("pictures")))
