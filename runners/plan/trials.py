"""From a typed spec to its trials: expand the grid, resolve datasets, key every trial; packs of trials.

Algorithm (``resolve_datasets``, then ``expand_grid``):
  1. Resolve every dataset-axis entry through the task (built-in name, file, folder), with its
     content digest: once per sweep.
  2. For each combination of the axes (datasets × activations × supervision × sampling × seeds
     × extra), kept by ``include`` / dropped by ``exclude``: the trial's typed config is the
     spec's ``trial`` with the axis values applied (:meth:`~sobolev.config.Settings.with_changes`,
     validated once, here).
  3. Open the trial's data once per dataset × sampling × extra values (``Task.inspect``), which
     checks that the config fits the data, and count its training points; first bound what the network and
     the data would take of this machine's memory (``runners.plan.bounds``).
  4. Key it: ``trial_key`` hashes the task, the config's identity and the data's digest.
Every failure is a :class:`~sobolev.errors.ConfigError` with its key path.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from runners.plan.bounds import check_data, check_network
from runners.spec.schema import SweepSpec
from runners.store.records import TrialRecord
from sobolev.errors import ConfigError
from sobolev.flops import steps_for_budget
from sobolev.losses import SUPERVISIONS
from sobolev.tasks import Dataset, SignalInfo, Task
from sobolev.trainers.config import RegressionConfig

TunedValues = Dict[str, Dict[str, Any]]
"""A tuned comparison's outcome as the planner applies it: arm label → its best values (dotted trial fields)."""


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
    arm: Optional[str] = None
    """A tuned comparison's evaluation trial: the arm whose tuned values it trains with (``sine/val_der``)."""
    dataset: Optional[Dataset] = None
    """The data it fits (name, source, content digest): its run's MLflow dataset input."""
    shape: Tuple[int, ...] = ()
    """The data's sampled grid, ``(H, W)`` or ``(N,)`` (with ``channels``: the dataset input's shape)."""
    step_flops: Optional[int] = None
    """FLOPs of one training step, where the planner counted them (a budget given in FLOPs)."""

    def description(self) -> str:
        """One line for its run's page: what network learns what from which data."""
        sampling = ", ".join(f"{k} {self.axes[k]}" for k in ("factor", "ratio") if k in self.axes)
        network = self.axes.get("activation") or getattr(getattr(self.config, "model", None), "activation", "a")
        return (f"{network} network trained on the "
                f"{SUPERVISIONS.get(self.config.supervision).trained_on} of {self.axes.get('dataset', '?')} "
                f"({', '.join(filter(None, [sampling, f'seed {self.config.seed}']))})")

    def record(self) -> TrialRecord:
        """What a sweep records of it in its plan (``plan.json`` of the parent run): key, name and axes."""
        return TrialRecord(self.key, self.name, dict(self.axes))


def trial_key(task: str, identity: Dict[str, Any], data_digest: str) -> str:
    """Stable hash of everything that determines a trial's result.

    A promise to users' stores: the same trial has had the same key since the first version.
    """
    blob = json.dumps({"task": task, "config": identity, "data": data_digest}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def resolve_datasets(spec: SweepSpec) -> List[Dataset]:
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


class StepBudgets:
    """The steps of trials whose budget is given in FLOPs (``budget_flops``): one count of a step per network,
    supervision, derivative path and data shape (what a step's FLOPs depend on), on a trainer of the first such
    trial (``sobolev.flops.steps_for_budget``)."""

    def __init__(self) -> None:
        self.counted: Dict[str, int] = {}

    def count(self, config: RegressionConfig, shape: Tuple[int, ...], channels: int) -> int:
        """FLOPs of one step of ``config`` on data of ``shape`` × ``channels``."""
        key = json.dumps({"config": type(config).__name__, "model": config.model.identity(),
                          "supervision": config.supervision, "impl": config.derivative_impl, "factor": config.factor,
                          "ratio": config.ratio, "shape": list(shape), "channels": channels,
                          "device": config.device, "precision": config.precision}, sort_keys=True, default=str)
        if key not in self.counted:
            self.counted[key] = config.model_copy(update={"steps": 1, "budget_flops": None}).setup().measure_flops()
        return self.counted[key]

    def resolve(self, config: RegressionConfig, info: SignalInfo) -> Tuple[RegressionConfig, Optional[int]]:
        """``config`` with its steps for its budget, and its FLOPs per step (None without a budget)."""
        if config.budget_flops is None:
            return config, None
        flops = self.count(config, tuple(info.shape), info.channels)
        return steps_for_budget(config, flops), flops


def _matches(axes: Dict[str, Any], entry: Dict[str, Any]) -> bool:
    return all(axes.get(k) == v for k, v in entry.items())


def expand_grid(spec: SweepSpec, datasets: List[Dataset], tuned: Optional[TunedValues] = None,
                budgets: Optional[StepBudgets] = None) -> Tuple[List[PlannedTrial], int]:
    """Steps 2–4 over the resolved ``datasets`` (step 1): the grid's trials (with ``tuned``: each with its arm's
    tuned values) and how many combinations include/exclude dropped.

    What every trial of a grid point shares is built once: the config of a grid point is validated once, with
    its data opened and its identity taken, and each seed's trial is that config with its seed (the seeds were
    validated with the grid; no check of a config depends on its seed), keyed by its identity with the seed."""
    budgets = budgets or StepBudgets()
    task = spec.task_def
    per = spec.search.per if spec.search is not None else []
    g = spec.grid
    sampling = [("factor", f) for f in g.sampling.factors] + [("ratio", r) for r in g.sampling.ratios]
    extra_keys = list(g.extra)
    opened: Dict[Tuple, SignalInfo] = {}
    points: Dict[Tuple, Tuple[RegressionConfig, Dict[str, Any], SignalInfo, Optional[int], int]] = {}
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
        arm = "/".join(str(axes[p]) for p in per)
        point = (dataset.name, act, sup, skind, sval, *map(repr, extra))
        if point not in points:
            sampled = {"factor": sval, "ratio": None} if skind == "factor" else {"ratio": sval}
            changes = {task.config_class.data_field: dataset.source, "supervision": sup, "seed": seed,
                       "model.activation": act, **sampled, **dict(zip(extra_keys, extra)),
                       **(tuned[arm] if tuned is not None else {})}
            try:
                config = spec.trial.with_changes(changes)  # 2.
                # activation, supervision and seed never change the data; extra axes and tuned values may
                data_key = (dataset.name, skind, sval, *map(repr, extra),
                            repr(sorted((tuned or {}).get(arm, {}).items())))
                if data_key not in opened:  # bounded before anything is allocated (runners.plan.bounds)
                    check_network(config)
                    planned = task.planned_samples(config)
                    if planned is not None:
                        check_data(planned[0], 3, planned[1])
                    opened[data_key] = task.inspect(config)  # 3.
                info = opened[data_key]
                config, step_flops = budgets.resolve(config, info)  # a budget in FLOPs: its steps
            except ConfigError as exc:
                raise ConfigError(f"{exc.message} (trial {label})", path=("trial", *exc.path)) from None
            points[point] = (config, config.identity(), info, step_flops, task.training_points(config, info))
        base, identity, info, step_flops, training_points = points[point]
        config = base if base.seed == seed else base.model_copy(update={"seed": seed})
        trials.append(PlannedTrial(
            key=trial_key(task.name, {**identity, "seed": seed}, dataset.digest),  # 4.
            name=label, task=task, axes=axes, config=config, points=training_points,
            samples=info.samples, channels=info.channels, dataset=dataset, shape=tuple(info.shape),
            arm=arm if tuned is not None else None, step_flops=step_flops,
        ))
    if not trials:
        raise ConfigError("include/exclude leave no trial to run")
    keys = [t.key for t in trials]
    if len(set(keys)) != len(keys):
        raise ConfigError("two grid points give the same trial (a repeated value on an axis?)", path=("grid",))
    return trials, dropped


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
            "precision": c.precision,
        }, sort_keys=True, default=str)
        groups.setdefault(key, []).append(t)
    packs: List[List[PlannedTrial]] = []
    for group in groups.values():
        k = size if group[0].task.packable else 1
        packs += [group[i : i + k] for i in range(0, len(group), k)]
    return packs
