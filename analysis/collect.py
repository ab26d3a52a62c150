"""Read a sweep's child runs from MLflow into a tidy frame: one row per trial.

Columns: the grid axes (``dataset``, ``activation``, ``supervision``, ``factor`` or ``ratio``,
``fraction``, ``seed`` and any extra axis), the final metrics, ``status``, ``trial_key``,
``run_id``, ``parent_run_id``, ``params`` (the run's params: its config as text) and ``curve``
(its held-out metrics at every evaluation against the compute spent, ``EvaluationCurve``).
Trials the sweep planned that have no run at all appear with status ``MISSING``, so nothing is
silently dropped.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

import pandas as pd

from runners.spec.read import raw_spec, read_spec_text
from runners.store.layout import (AXIS, KIND_SWEEP, KIND_TRIAL, PARENT, TAG_EVALUATIONS, TAG_FAILURE, TAG_KEY, TAG_KIND,
                                  TAG_SHAPE, TAG_TASK)
from runners.store.records import EvaluationCurve, PlanRecord, SearchResult, TaskInfo, TrialRecord, merged_trials
from runners.store.reading import StoredExperiment, StoredRun, read_experiment, read_plan, read_runs
from runners.store.tracker import Tracker, searches_in
from runners.store.uri import resolve_tracking_uri, store_exists
from sobolev.errors import ConfigError
from sobolev.sampling import Sampling
from sobolev.tasks import TASKS

if TYPE_CHECKING:  # planning loads the task configs (torch): only a spec planned again with --set needs it
    from runners.plan.planner import SweepPlan

AXES = ["dataset", "activation", "supervision", "factor", "ratio", "seed"]
UNKNOWN = "unknown"
"""The sampling level of a run that recorded no settings (killed before it logged them) and that no recorded plan
names."""
STATUS_ORDER = ["FINISHED", "FAILED", "KILLED", "RUNNING", "SCHEDULED", "MISSING"]


@dataclass
class SweepResults:
    """The trials of one sweep as a frame, plus what they are."""

    name: str
    task: TaskInfo
    frame: pd.DataFrame
    experiment_id: str
    tracking_uri: str
    parent_run_ids: List[str] = field(default_factory=list)
    searches: List[SearchResult] = field(default_factory=list)
    """A tuned comparison: each arm's search result as the sweep recorded it."""
    artifact_uris: Dict[str, str] = field(default_factory=dict)
    """Parent run id → its artifact URI (where ``report`` logs its files)."""

    @property
    def finished(self) -> pd.DataFrame:
        return self.frame[self.frame["status"] == "FINISHED"]

    def status_counts(self) -> Dict[str, int]:
        counts = self.frame["status"].value_counts().to_dict()
        return {s: int(counts[s]) for s in STATUS_ORDER + sorted(set(counts) - set(STATUS_ORDER)) if s in counts}

    @property
    def latest_parent(self) -> Optional[str]:
        return self.parent_run_ids[-1] if self.parent_run_ids else None


def _number(text):
    if text is None or text == "None" or (isinstance(text, float) and math.isnan(text)):
        return None
    try:
        value = float(text)
    except (TypeError, ValueError):
        return text
    return int(value) if value.is_integer() else value


def _spec_target(target: str) -> bool:
    return target.endswith((".yaml", ".yml")) or Path(target).is_file()


def collect(target: str, tracking_uri: Optional[str] = None, parent: str = "all",
            overrides: Sequence[str] = ()) -> SweepResults:
    """The trials of a spec (path to YAML) or an experiment (name), newest run per trial key.

    ``parent``: ``all`` child runs of the experiment, the ``latest`` invocation only, or a run id.
    The planned trials (those without any run appear as ``MISSING``) are the ones the sweep actually
    ran: the plans its parent runs recorded (every invocation's, for ``all``; the rows are then every
    trial run, planned or not) — or, when ``overrides`` are given with a spec, exactly the spec planned
    again with them (a tuned comparison: with the tuned values its searches recorded).
    """
    spec_text = read_spec_text(target) if _spec_target(target) else None
    name = str(raw_spec(spec_text, target, overrides).get("name", "")) if spec_text is not None else target
    uri = resolve_tracking_uri(tracking_uri)
    exp, task = _experiment(name, uri)
    runs = read_runs(uri, exp.experiment_id)
    parents = sorted((r for r in runs if r.tags.get(TAG_KIND) == KIND_SWEEP and PARENT not in r.tags),
                     key=lambda r: r.start_time)
    parent_ids = [r.run_id for r in parents]
    trials = _trial_runs(runs, parent, parent_ids, name)
    if spec_text is not None and overrides:  # the spec planned again: exactly its trials (this loads the task)
        from runners.plan.planner import plan_sweep
        from runners.spec.load import parse_spec_text

        plan = plan_sweep(parse_spec_text(spec_text, target, overrides), target)
        planned, only_planned = _replanned(plan, Tracker(uri), exp.experiment_id), True
    else:
        planned, only_planned = _recorded_plan(uri, parent, parents)
    frame = _with_missing(_frame(trials), planned, only_planned)
    if frame.empty:
        raise ConfigError(f"experiment {name!r} in {uri} has no trial runs")
    for axis in AXES:
        if axis not in frame:
            frame[axis] = None
    frame = _with_planned_axes(frame, planned)
    samplings = [_sampling(f, r) for f, r in zip(frame["factor"], frame["ratio"])]
    frame["fraction"] = [task.sampled_fraction(s) if s is not None else math.nan for s in samplings]
    frame["sampling"] = [s.label().replace("=", " ") if s is not None else UNKNOWN for s in samplings]
    frame = frame.sort_values(["dataset", "activation", "supervision", "fraction", "seed"], ignore_index=True)
    return SweepResults(name, task, frame, exp.experiment_id, uri, parent_ids, _searches(parents, trials),
                        {r.run_id: r.artifact_uri for r in parents})


def _experiment(name: str, uri: str) -> Tuple[StoredExperiment, TaskInfo]:
    """The store's experiment of the sweep ``name`` and its task (recorded with it; an experiment of an earlier
    version: from the task registry, which loads the trainers); one-line errors if there is none."""
    if not store_exists(uri):
        raise ConfigError(f"no MLflow store at {uri} (run the sweep first, or pass --tracking-uri)")
    exp = read_experiment(uri, name)
    if exp is None:
        raise ConfigError(f"experiment {name!r} does not exist in {uri}")
    if TAG_SHAPE not in exp.tags:
        raise ConfigError(f"experiment {name!r} in {uri} was not made by sobolev-sweep")
    if TAG_TASK in exp.tags:
        return exp, TaskInfo.from_json(exp.tags[TAG_TASK])
    return exp, TaskInfo.of(TASKS.get(json.loads(exp.tags[TAG_SHAPE])["task"]))


def _trial_runs(runs: List[StoredRun], parent: str, parent_ids: List[str], name: str) -> List[StoredRun]:
    """The trial runs of ``parent`` (``all``, ``latest`` or a parent run id)."""
    trials = [r for r in runs if r.tags.get(TAG_KIND) == KIND_TRIAL]
    if parent == "all":
        return trials
    if parent == "latest":
        if not parent_ids:
            raise ConfigError(f"experiment {name!r} has no sweep run")
        parent = parent_ids[-1]
    elif parent not in parent_ids:
        raise ConfigError(f"--parent {parent!r} is not a sweep run of {name!r}; known: {', '.join(parent_ids)}")
    return [r for r in trials if r.tags.get(PARENT) == parent]


def _replanned(plan: SweepPlan, tracker: Tracker, exp_id: str) -> List[TrialRecord]:
    """The trials of a spec planned again; a tuned comparison's with the tuned values its searches recorded (the
    untuned grid while some arm has no finished search: nothing of it was evaluated)."""
    if plan.arms:
        recorded = tracker.recorded_searches(exp_id, [a.key for a in plan.arms])
        if len(recorded) == len(plan.arms):
            from runners.plan.planner import plan_sweep, tuned_values

            plan = plan_sweep(plan.spec, plan.spec_path, tuned_values(plan.arms, recorded), plan.datasets)
    return [t.record() for t in plan.trials]


def _recorded_plan(uri: str, parent: str, parents: List[StoredRun]) -> Tuple[Optional[List[TrialRecord]], bool]:
    """The trials the invocations recorded that they planned, and whether to keep only those: every
    invocation's for ``all`` (trials none of them ran are MISSING), one invocation's exactly otherwise."""
    if not parents:
        return None, False
    if parent == "all":
        plans: List[PlanRecord] = [p for p in (read_plan(uri, r) for r in parents) if p is not None]
        return (merged_trials(plans) if plans else None), False
    run = parents[-1] if parent == "latest" else next(r for r in parents if r.run_id == parent)
    record = read_plan(uri, run)
    return (list(record.trials) if record is not None else None), record is not None


def _frame(trials: List[StoredRun]) -> pd.DataFrame:
    """One row per trial key: its newest run, preferring a FINISHED one (a --rerun or a resumed sweep)."""
    rows = []
    for r in sorted(trials, key=lambda r: r.start_time):
        p = r.params
        row = {
            "trial_key": r.tags.get(TAG_KEY),
            "run_id": r.run_id,
            "parent_run_id": r.tags.get(PARENT),
            "status": r.status,
            "start_time": r.start_time,
            "failure": r.tags.get(TAG_FAILURE, ""),
            "artifact_uri": r.artifact_uri,
            "params": p,
            "curve": _curve(r.tags.get(TAG_EVALUATIONS)),
        }
        for key, value in p.items():
            if key.startswith(AXIS):
                row[key[len(AXIS):]] = _number(value)
        row.update(r.metrics)
        rows.append(row)
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame["_done"] = frame["status"] == "FINISHED"
        frame = frame.sort_values(["_done", "start_time"]).groupby("trial_key", as_index=False).tail(1)
        frame = frame.drop(columns="_done")
    return frame


def _with_missing(frame: pd.DataFrame, planned: Optional[List[TrialRecord]], only_planned: bool) -> pd.DataFrame:
    """Planned trials without a run as rows of status ``MISSING``; with ``only_planned``, no other rows."""
    if planned is None:
        return frame
    seen = set(frame["trial_key"]) if not frame.empty else set()
    missing = [{"trial_key": t.key, "status": "MISSING", **t.axes} for t in planned if t.key not in seen]
    if not frame.empty and only_planned:
        frame = frame[frame["trial_key"].isin({t.key for t in planned})]
    return pd.concat([frame, pd.DataFrame(missing)], ignore_index=True) if missing else frame


def _with_planned_axes(frame: pd.DataFrame, planned: Optional[List[TrialRecord]]) -> pd.DataFrame:
    """A run killed before it logged its params has no axes of its own: its planned trial's (by its key)."""
    if planned is None or frame.empty:
        return frame
    axes = {t.key: t.axes for t in planned}
    bare = frame["dataset"].isna() & frame["trial_key"].isin(set(axes))
    if not bare.any():
        return frame
    frame = frame.copy()
    for axis in AXES:
        frame[axis] = frame[axis].astype(object)
        frame.loc[bare, axis] = [axes[k].get(axis) for k in frame.loc[bare, "trial_key"]]
    return frame.infer_objects()


def _searches(parents: List[StoredRun], trials: List[StoredRun]) -> List[SearchResult]:
    """The search results the parent runs of the reported trials recorded (newest first wins per arm)."""
    used = {r.tags.get(PARENT) for r in trials}
    found: Dict[str, SearchResult] = {}
    for run in reversed(parents):
        if run.run_id not in used and used:
            continue
        for result in searches_in(run.tags):
            found.setdefault(result.label, result)
    return list(found.values())


def _curve(text: Optional[str]) -> Optional[EvaluationCurve]:
    """A run's evaluations against compute (None for runs of versions before it was recorded)."""
    try:
        return EvaluationCurve.from_json(text) if text else None
    except (ValueError, KeyError, ConfigError):
        return None


def _sampling(factor, ratio) -> Optional[Sampling]:
    """A row's sampling level; None for a run that recorded neither (see :func:`_with_planned_axes`)."""
    if ratio is not None and not pd.isna(ratio):
        return Sampling(ratio=float(ratio))
    if factor is not None and not pd.isna(factor):
        return Sampling(factor=int(factor))
    return None
