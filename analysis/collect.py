"""Read a sweep's child runs from MLflow into a tidy frame: one row per trial.

Columns: the grid axes (``dataset``, ``activation``, ``supervision``, ``factor`` or ``ratio``,
``fraction``, ``seed`` and any extra axis), the final metrics, ``status``, ``trial_key``,
``run_id``, ``parent_run_id`` and ``config`` (the typed config, read back from the run's params).
Trials the sweep planned that have no run at all appear with status ``MISSING``, so nothing is
silently dropped.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pandas as pd

from runners.tracking import PARENT, TAG_FAILURE, TAG_KEY, TAG_KIND, TAG_SHAPE, Tracker, resolve_tracking_uri
from runners.tracking import store_exists
from sobolev.errors import ConfigError
from sobolev.sampling import Sampling
from sobolev.tasks import TASKS, Task

AXES = ["dataset", "activation", "supervision", "factor", "ratio", "seed"]
STATUS_ORDER = ["FINISHED", "FAILED", "KILLED", "RUNNING", "SCHEDULED", "MISSING"]


@dataclass
class SweepResults:
    """The trials of one sweep as a frame, plus what they are."""

    name: str
    task: Task
    frame: pd.DataFrame
    experiment_id: str
    tracking_uri: str
    parent_run_ids: List[str] = field(default_factory=list)
    searches: List[Dict] = field(default_factory=list)
    """A tuned comparison: each arm's search result as the sweep recorded it (``runners.tuning``)."""

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
    again with them.
    """
    spec_trials = None
    name = target
    if _spec_target(target):
        from runners.plan import plan_sweep
        from runners.spec import load_spec

        spec = load_spec(target, overrides)
        name = spec.name
        if overrides:
            spec_trials = [t.summary() for t in plan_sweep(spec, target).trials]
    uri = resolve_tracking_uri(tracking_uri)
    if not store_exists(uri):
        raise ConfigError(f"no MLflow store at {uri} (run the sweep first, or pass --tracking-uri)")
    tracker = Tracker(uri)
    exp = tracker.get_experiment(name)
    if exp is None:
        raise ConfigError(f"experiment {name!r} does not exist in {uri}")
    if TAG_SHAPE not in exp.tags:
        raise ConfigError(f"experiment {name!r} in {uri} was not made by sobolev-sweep")
    task = TASKS.get(json.loads(exp.tags[TAG_SHAPE])["task"])
    runs = tracker.search(exp.experiment_id)
    parents = sorted((r for r in runs if r.data.tags.get(TAG_KIND) == "sweep" and PARENT not in r.data.tags),
                     key=lambda r: r.info.start_time)
    parent_ids = [r.info.run_id for r in parents]
    trials = [r for r in runs if r.data.tags.get(TAG_KIND) == "trial"]
    if parent == "latest":
        if not parent_ids:
            raise ConfigError(f"experiment {name!r} has no sweep run")
        trials = [r for r in trials if r.data.tags.get(PARENT) == parent_ids[-1]]
    elif parent != "all":
        if parent not in parent_ids:
            raise ConfigError(f"--parent {parent!r} is not a sweep run of {name!r}; known: {', '.join(parent_ids)}")
        trials = [r for r in trials if r.data.tags.get(PARENT) == parent]
    only_planned = spec_trials is not None  # a spec planned again: exactly its trials
    if spec_trials is None and parent_ids:
        if parent == "all":  # every invocation's plan: trials none of them ran are MISSING
            plans = [p for p in (tracker.planned_trials(i) for i in parent_ids) if p is not None]
            spec_trials = list({t["key"]: t for plan in plans for t in plan}.values()) if plans else None
        else:  # one invocation: exactly what it planned
            spec_trials = tracker.planned_trials(parent_ids[-1] if parent == "latest" else parent)
            only_planned = spec_trials is not None
    rows = []
    for r in sorted(trials, key=lambda r: r.info.start_time):
        p = r.data.params
        row = {
            "trial_key": r.data.tags.get(TAG_KEY),
            "run_id": r.info.run_id,
            "parent_run_id": r.data.tags.get(PARENT),
            "status": r.info.status,
            "start_time": r.info.start_time,
            "failure": r.data.tags.get(TAG_FAILURE, ""),
            "artifact_uri": r.info.artifact_uri,
            "config": _config(task, p),
        }
        for key, value in p.items():
            if key.startswith("axis."):
                row[key[5:]] = _number(value)
        row.update(r.data.metrics)
        rows.append(row)
    frame = pd.DataFrame(rows)
    if not frame.empty:
        # newest run per trial key, preferring a FINISHED one (a --rerun or a resumed sweep)
        frame["_done"] = frame["status"] == "FINISHED"
        frame = frame.sort_values(["_done", "start_time"]).groupby("trial_key", as_index=False).tail(1)
        frame = frame.drop(columns="_done")
    if spec_trials is not None:
        seen = set(frame["trial_key"]) if not frame.empty else set()
        missing = [{"trial_key": t["key"], "status": "MISSING", **t["axes"]}
                   for t in spec_trials if t["key"] not in seen]
        if not frame.empty and only_planned:
            frame = frame[frame["trial_key"].isin({t["key"] for t in spec_trials})]
        frame = pd.concat([frame, pd.DataFrame(missing)], ignore_index=True) if missing else frame
    if frame.empty:
        raise ConfigError(f"experiment {name!r} in {uri} has no trial runs")
    for axis in AXES:
        if axis not in frame:
            frame[axis] = None
    samplings = [_sampling(f, r) for f, r in zip(frame["factor"], frame["ratio"])]
    frame["fraction"] = [task.sampled_fraction(s) for s in samplings]
    frame["sampling"] = [s.label().replace("=", " ") for s in samplings]
    frame = frame.sort_values(["dataset", "activation", "supervision", "fraction", "seed"], ignore_index=True)
    return SweepResults(name, task, frame, exp.experiment_id, uri, parent_ids, _searches(parents, trials))


def _searches(parents: List, trials: List) -> List[Dict]:
    """The search results the parent runs of the reported trials recorded (newest first wins per arm)."""
    from runners.tuning import SEARCH_TAG

    used = {r.data.tags.get(PARENT) for r in trials}
    found: Dict[str, Dict] = {}
    for run in reversed(parents):
        if run.info.run_id not in used and used:
            continue
        for tag, text in run.data.tags.items():
            if tag.startswith(SEARCH_TAG):
                result = json.loads(text)
                found.setdefault(result["label"], result)
    return list(found.values())


def _config(task: Task, params: Dict[str, str]):
    """The run's config read back from its params (None for a run whose params do not form one)."""
    try:
        return task.config_class.from_params(params)
    except ConfigError:
        return None


def _sampling(factor, ratio) -> Sampling:
    if ratio is not None and not pd.isna(ratio):
        return Sampling(ratio=float(ratio))
    return Sampling(factor=int(factor))
