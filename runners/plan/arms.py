"""The arms of a tuned comparison (the spec's ``search`` block, ``runners.spec.search``).

Algorithm (``plan_search``; the phases run in ``runners.engine.search_phase`` and ``runners.engine.sweep``):
  1. The arms are the distinct ``per``-axis values of the planned grid (include/exclude applied).
  2. Each arm's members: its configuration on every tuning dataset × search seed, at the tuning
     sampling level, built from the spec's ``trial`` like a grid trial; they train as one
     batched network per configuration, so they must share a shape.
  3. Each arm searches only the fields that apply to it (λ only for ``val_der``, a knob only for
     the network that reads it: ``RegressionConfig.applies``).
  4. The arm's search key hashes its members, its space and the search settings: a finished
     search of the same key is reused, not repeated.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from runners.plan.trials import PlannedTrial, StepBudgets, trial_key
from runners.spec.schema import SweepSpec
from runners.spec.search import AXIS_FIELDS, Distribution
from sobolev.errors import ConfigError
from sobolev.tasks import Dataset


@dataclass(frozen=True)
class Arm:
    """One arm of a search: its grid axes, what it searches, and the members of each configuration."""

    label: str
    """``sine/val_der``: the ``per``-axis values joined."""
    axes: Dict[str, Any]
    """``{"activation": "sine", "supervision": "val_der"}``."""
    space: Dict[str, Distribution]
    """The searched fields that apply to this arm."""
    members: Tuple[PlannedTrial, ...]
    """Its base configuration on every tuning dataset × search seed (the sampled values are applied where
    each configuration runs)."""
    key: str
    """Hash of the members, the space and the search settings: a finished search of this key is reused."""

    step_flops: Optional[int] = None
    """FLOPs of one step of a configuration (its members' mean), counted for a search budgeted in FLOPs."""

    @property
    def steps(self) -> int:
        """Steps a configuration of this arm trains (``steps`` may be an axis)."""
        return self.members[0].config.steps

    def configuration(self, sampled: Dict[str, Any]) -> List[Any]:
        """The members' configs with a configuration's sampled values (dotted fields) applied, validated."""
        return [m.config.with_changes(sampled) for m in self.members]

    def typed_values(self, text: Dict[str, str]) -> Dict[str, Any]:
        """Sampled values read back as text (MLflow params), typed by the trial fields they set."""
        typed = self.members[0].config.with_changes(text)
        return {path: typed.get(path) for path in text}


def axis_changes(axes: Dict[str, Any]) -> Dict[str, Any]:
    """The trial-field changes of grid-axis values (``activation`` sets ``model.activation``)."""
    return {AXIS_FIELDS.get(axis, axis): value for axis, value in axes.items()}


def tuning_sampling(spec: SweepSpec) -> Dict[str, Any]:
    """The sampling-level changes of the tuning trials."""
    s, g = spec.search, spec.grid.sampling
    if s.factor is not None:
        return {"factor": s.factor, "ratio": None}
    if s.ratio is not None:
        return {"ratio": s.ratio}
    return {"factor": g.factors[0], "ratio": None} if g.factors else {"ratio": g.ratios[0]}


def plan_search(spec: SweepSpec, grid_trials: Sequence[PlannedTrial], grid_datasets: Sequence[Dataset],
                budgets: Optional[StepBudgets] = None) -> List[Arm]:
    """Steps 1–4: the arms of ``spec.search`` over the planned (untuned) grid trials."""
    budgets = budgets or StepBudgets()
    search, task = spec.search, spec.task_def
    tuning: List[Dataset] = []
    for i, entry in enumerate(search.datasets):
        try:
            resolved = task.resolve_dataset(entry)
        except ConfigError as exc:
            raise exc.at("search", "datasets", i) from None
        for d in resolved:
            clash = next((g for g in grid_datasets if g.digest == d.digest or g.source == d.source), None)
            if clash is not None:
                raise ConfigError(f"{d.name!r} is also an evaluation dataset (grid.datasets: {clash.name}); tune on "
                                  "data the evaluation never sees", path=("search", "datasets", i))
        tuning += resolved
    arms: Dict[Tuple, Dict[str, Any]] = {}
    for t in grid_trials:  # 1.
        arms.setdefault(tuple(t.axes[p] for p in search.per), {p: t.axes[p] for p in search.per})
    out = []
    for values, axes in arms.items():
        label = "/".join(str(v) for v in values)
        members, shapes = [], set()
        for dataset in tuning:  # 2.
            for seed in search.seeds:
                changes = {task.config_class.data_field: dataset.source, "seed": seed, **tuning_sampling(spec),
                           **axis_changes(axes)}
                try:
                    config = spec.trial.with_changes(changes)
                    info = task.inspect(config)
                    config, step_flops = budgets.resolve(config, info)
                except ConfigError as exc:
                    raise ConfigError(f"{exc.message} (tuning {dataset.name}, arm {label})",
                                      path=("search", *exc.path)) from None
                shapes.add((info.shape, info.channels))
                members.append(PlannedTrial(
                    key=trial_key(task.name, config.identity(), dataset.digest), name=f"{dataset.name}/{label}/s{seed}",
                    task=task, axes={"dataset": dataset.name, **axes, "seed": seed}, config=config,
                    points=task.training_points(config, info), samples=info.samples, channels=info.channels,
                    dataset=dataset, shape=tuple(info.shape), step_flops=step_flops))
        if len(shapes) > 1:
            raise ConfigError("the tuning datasets of a configuration train as one batched network and must have "
                              f"one shape, got {sorted(shapes)}; set trial.size", path=("search", "datasets"))
        base = members[0].config
        space = {path: dist for path, dist in search.space.items() if base.applies(path)}  # 3.
        if not space:
            raise ConfigError(f"none of the searched fields ({', '.join(search.space)}) applies to arm {label}: its "
                              f"{search.samples} configurations would all be the same; add one that does (e.g. lr)",
                              path=("search", "space"))
        unset = {"budget_flops"} if search.budget_flops is None else set()  # added since: hashes as absent
        blob = json.dumps({"members": [m.key for m in members], "space": {k: v.model_dump() for k, v in space.items()},
                           "settings": search.model_dump(exclude={"space", "per", "datasets", *unset})},
                          sort_keys=True, default=str)
        step_flops = None
        if search.budget_flops is not None:  # a configuration's step: its members' mean, counted once per shape
            counts = [budgets.count(m.config, m.shape, m.channels) for m in members]
            step_flops = int(round(sum(counts) / len(counts)))
        out.append(Arm(label, axes, space, tuple(members), hashlib.sha256(blob.encode()).hexdigest()[:16],  # 4.
                       step_flops))
    return out
