"""From a typed spec to the list of trials: expand the grid, resolve datasets, key every trial.

Algorithm (``plan_sweep``):
  1. Resolve every dataset-axis entry through the task (built-in name, file, folder), with its
     content digest.
  2. For each combination of the axes (datasets × activations × supervision × sampling × seeds
     × extra), kept by ``include`` / dropped by ``exclude``: the trial's typed config is the
     spec's ``trial`` with the axis values applied (:meth:`~sobolev.config.Settings.with_changes`,
     validated once, here).
  3. Open the trial's data once per dataset × sampling × extra values (``Task.inspect``), which
     checks that the config fits the data, and count its training points.
  4. Key it: ``trial_key`` hashes the task, the config's identity and the data's digest.
Every failure is a :class:`~sobolev.errors.ConfigError` with its key path and the spec file.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from runners.tracking import TAG_ARM, TAG_PHASE
from sobolev.errors import ConfigError
from sobolev.losses import SUPERVISIONS
from sobolev.tasks import Dataset, SignalInfo, Task
from sobolev.trainers.config import RegressionConfig

if TYPE_CHECKING:  # runners.spec imports this module (through runners.search)
    from runners.spec import SweepSpec


@dataclass(frozen=True)
class PlannedTrial:
    """One trial of a sweep: its grid coordinates, typed config and stable key."""

    key: str
    """``trial_key``: hash of the task, the config's identity and the data's content."""
    name: str
    """Readable: ``astronaut/sine/val_der/f4/s0``."""
    task: Task
    axes: Dict[str, Any]
    """Grid coordinates: dataset, activation, supervision, factor or ratio, seed, extra axes."""
    config: RegressionConfig
    """The trial's typed config, built and validated once by the planner."""
    points: int = 0
    """Training points per step (for the cost estimate and packing)."""
    samples: int = 0
    """All samples of the signal (evaluation cost)."""
    channels: int = 0
    """Channels of the signal (packing)."""
    tags: Dict[str, str] = field(default_factory=dict)
    """MLflow tags of its run besides the key (a tuned comparison's phase and arm)."""
    dataset: Optional[Dataset] = None
    """The data it fits (name, source, content digest): its run's MLflow dataset input."""
    shape: Tuple[int, ...] = ()
    """The data's sampled grid, ``(H, W)`` or ``(N,)`` (with ``channels``: the dataset input's shape)."""

    def description(self) -> str:
        """One line for its run's page: what network learns what from which data."""
        sampling = ", ".join(f"{k} {self.axes[k]}" for k in ("factor", "ratio") if k in self.axes)
        network = self.axes.get("activation") or getattr(getattr(self.config, "model", None), "activation", "a")
        return (f"{network} network trained on the "
                f"{SUPERVISIONS.get(self.config.supervision).trained_on} of {self.axes.get('dataset', '?')} "
                f"({', '.join(filter(None, [sampling, f'seed {self.config.seed}']))})")

    def summary(self) -> Dict[str, Any]:
        """What a sweep records of its plan: key, name and axes (``plan.json`` of the parent run)."""
        return {"key": self.key, "name": self.name, "axes": self.axes}


@dataclass
class SweepPlan:
    spec: SweepSpec
    spec_path: str
    trials: List[PlannedTrial]
    dropped: int = 0
    """Combinations removed by include/exclude."""
    arms: List[Any] = field(default_factory=list)
    """The arms of ``spec.search`` (``runners.search.Arm``), planned over these (untuned) trials."""

    def every_trial(self) -> List[PlannedTrial]:
        """The trials and every arm's tuning members: everything the sweep may train."""
        return [*self.trials, *searched_members(self.arms)]


def searched_members(arms: List[Any]) -> List[PlannedTrial]:
    """The tuning members of ``arms`` (each trains on the tuning data × search seeds)."""
    return [m for arm in arms for m in arm.members]


def trial_key(task: str, identity: Dict[str, Any], data_digest: str) -> str:
    """Stable hash of everything that determines a trial's result.

    A promise to users' stores: the same trial has had the same key since the first version.
    """
    blob = json.dumps({"task": task, "config": identity, "data": data_digest}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _resolve_datasets(spec: SweepSpec) -> List[Dataset]:
    """Step 1: one :class:`Dataset` per image/clip/scene; folders expand; files become absolute."""
    out: List[Dataset] = []
    for i, entry in enumerate(spec.grid.datasets):
        try:
            out += spec.task_def.resolve_dataset(entry)
        except ConfigError as exc:
            raise exc.at("grid", "datasets", i) from None
    names = [d.name for d in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"two datasets are both called {dupes[0]!r}; rename one file", path=("grid", "datasets"))
    return out


def _matches(axes: Dict[str, Any], entry: Dict[str, Any]) -> bool:
    return all(axes.get(k) == v for k, v in entry.items())


def plan_sweep(spec: SweepSpec, spec_path: str, tuned: Optional[Dict[str, Dict[str, Any]]] = None) -> SweepPlan:
    """Expand the grid into typed, keyed trials (datasets opened here); errors name ``spec_path``.

    With a ``search``: without ``tuned``, the grid as specified and its arms (``SweepPlan.arms``);
    with ``tuned`` (arm label → the best values of its search), the evaluation trials: every grid
    trial with its arm's tuned values, keyed by its tuned config.
    """
    try:
        plan = _plan(spec, spec_path, tuned)
        if spec.search is not None and tuned is None:
            from runners.search import plan_search

            plan.arms = plan_search(spec, plan.trials, _resolve_datasets(spec))
        return plan
    except ConfigError as exc:
        raise exc.in_source(spec_path) from None


def _plan(spec: SweepSpec, spec_path: str, tuned: Optional[Dict[str, Dict[str, Any]]]) -> SweepPlan:
    task = spec.task_def
    per = spec.search.per if spec.search is not None else []
    datasets = _resolve_datasets(spec)  # 1.
    g = spec.grid
    sampling = [("factor", f) for f in g.sampling.factors] + [("ratio", r) for r in g.sampling.ratios]
    extra_keys = list(g.extra)
    opened: Dict[Tuple, SignalInfo] = {}
    trials: List[PlannedTrial] = []
    dropped = 0
    for dataset, act, sup, (skind, sval), seed, *extra in itertools.product(
        datasets, g.activations, g.supervision, sampling, g.seeds, *[g.extra[k] for k in extra_keys]
    ):
        axes = {"dataset": dataset.name, "activation": act, "supervision": sup, skind: sval, "seed": seed,
                **dict(zip(extra_keys, extra))}
        if (spec.include and not any(_matches(axes, e) for e in spec.include)) or any(
                _matches(axes, e) for e in spec.exclude):
            dropped += 1
            continue
        label = "/".join([dataset.name, act, sup, f"f{sval}" if skind == "factor" else f"r{sval:g}", f"s{seed}"]
                         + [f"{k}={v}" for k, v in zip(extra_keys, extra)])
        sampled = {"factor": sval, "ratio": None} if skind == "factor" else {"ratio": sval}
        changes = {task.config_class.data_field: dataset.source, "supervision": sup, "seed": seed,
                   "model.activation": act, **sampled, **dict(zip(extra_keys, extra))}
        arm = "/".join(str(axes[p]) for p in per)
        if tuned is not None:
            changes.update(tuned[arm])
        try:
            config = spec.trial.with_changes(changes)  # 2.
            # activation, supervision and seed never change the data; extra axes and tuned values may
            data_key = (dataset.name, skind, sval, *map(repr, extra), repr(sorted((tuned or {}).get(arm, {}).items())))
            if data_key not in opened:
                opened[data_key] = task.inspect(config)  # 3.
        except ConfigError as exc:
            raise ConfigError(f"{exc.message} (trial {label})", path=("trial", *exc.path)) from None
        info = opened[data_key]
        trials.append(PlannedTrial(
            key=trial_key(task.name, config.identity(), dataset.digest),  # 4.
            name=label, task=task, axes=axes, config=config, points=task.training_points(config, info),
            samples=info.samples, channels=info.channels, dataset=dataset, shape=tuple(info.shape),
            tags={TAG_PHASE: "evaluate", TAG_ARM: arm} if tuned is not None else {},
        ))
    if not trials:
        raise ConfigError("include/exclude leave no trial to run")
    keys = [t.key for t in trials]
    if len(set(keys)) != len(keys):
        raise ConfigError("two grid points give the same trial (a repeated value on an axis?)", path=("grid",))
    return SweepPlan(spec, spec_path, trials, dropped)


def pack_trials(trials: List[PlannedTrial], size: int) -> List[List[PlannedTrial]]:
    """Trials in packs of at most ``size`` that share a batched network: same task, model, point and
    sample count, channels, steps, derivative path, device and sampling, and all (or none) trained on
    derivatives.  A task whose trials cannot be packed gets packs of one.

    The trainable checks the exact shapes again (``sobolev.trainers.packed.split_into_packs``).
    """
    groups: Dict[str, List[PlannedTrial]] = {}
    for t in trials:
        c = t.config
        key = json.dumps({
            "task": t.task.name, "model": c.model.model_dump(), "points": t.points, "samples": t.samples,
            "channels": t.channels, "steps": c.steps, "impl": c.derivative_impl, "device": c.device,
            "derivatives": SUPERVISIONS.get(c.supervision).uses_derivatives, "factor": c.factor, "ratio": c.ratio,
        }, sort_keys=True, default=str)
        groups.setdefault(key, []).append(t)
    packs: List[List[PlannedTrial]] = []
    for group in groups.values():
        k = size if group[0].task.packable else 1
        packs += [group[i : i + k] for i in range(0, len(group), k)]
    return packs
