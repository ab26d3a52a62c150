"""Tuned comparisons: the spec's ``search`` block and its arms.

A search tunes every *arm* — one combination of the ``per`` axes (``sine/val_der``) — with the
same budget (``samples`` configurations, the same scheduler) on tuning data that the evaluation
never sees, then evaluates each arm's best configuration on the grid as ordinary trials.

Algorithm (``plan_search``; the phases run in ``runners.tuning`` and ``runners.sweep``):
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
from typing import Annotated, Any, ClassVar, Dict, List, Literal, Optional, Sequence, Tuple

from pydantic import AfterValidator, Field, field_validator, model_validator

from runners.plan import PlannedTrial, trial_key
from sobolev.config import Integer, Number, Seed, Settings, nest, seed_in
from sobolev.errors import ConfigError
from sobolev.tasks import Dataset

PER_AXES = ("activation", "supervision")
"""Grid axes an arm may be defined by, besides the extra axes (datasets, sampling and seeds never)."""
AXIS_FIELDS = {"activation": "model.activation", "supervision": "supervision"}
"""The trial field a named grid axis sets (an extra axis sets the field it names)."""


class Distribution(Settings):
    """One search dimension: exactly one of ``uniform``, ``loguniform``, ``randint`` (both bounds
    included) or ``choice``."""

    uniform: Optional[Tuple[Number, Number]] = None
    loguniform: Optional[Tuple[Number, Number]] = None
    randint: Optional[Tuple[Integer, Integer]] = None
    choice: Optional[List[Any]] = Field(None, min_length=1)

    KINDS: ClassVar[Tuple[str, ...]] = ("uniform", "loguniform", "randint", "choice")

    @model_validator(mode="after")
    def _one_kind_with_sound_bounds(self) -> "Distribution":
        given = [k for k in self.KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ConfigError(f"give exactly one of {', '.join(self.KINDS)} (got {', '.join(given) or 'none'})")
        kind = given[0]
        if kind != "choice":
            low, high = getattr(self, kind)
            if not low < high:
                raise ConfigError(f"bounds must be increasing, got [{low}, {high}]", path=(kind,))
            if kind == "loguniform" and low <= 0:
                raise ConfigError(f"a log scale needs positive bounds, got [{low}, {high}]", path=(kind,))
        return self

    @property
    def kind(self) -> str:
        return next(k for k in self.KINDS if getattr(self, k) is not None)

    def candidates(self) -> List[Any]:
        """The values a trial may get at the extremes (to check them against the field's own bounds)."""
        return list(self.choice) if self.kind == "choice" else list(getattr(self, self.kind))

    def domain(self):
        """The Ray Tune search domain."""
        from ray import tune

        kind, value = self.kind, getattr(self, self.kind)
        if kind == "randint":
            return tune.randint(value[0], value[1] + 1)
        return tune.choice(value) if kind == "choice" else getattr(tune, kind)(*value)


class AshaSettings(Settings):
    """Asynchronous successive halving (``ray.tune.schedulers.ASHAScheduler``) on the tuning metric."""

    grace_steps: Integer = Field(100, ge=1)
    """Steps every configuration trains before it can be stopped."""
    reduction_factor: Number = Field(3.0, gt=1)
    """Keep 1 in this many configurations at each rung."""


class SchedulerSettings(Settings):
    asha: AshaSettings


class SearchSettings(Settings):
    """Tune every arm with the same budget on tuning data, then evaluate its best configuration on the grid."""

    space: Dict[str, Distribution] = Field(min_length=1)
    """Trial fields (dotted, ``model.w0``) → their distributions."""
    per: List[str] = Field(default_factory=lambda: list(PER_AXES), min_length=1)
    """The axes that define an arm: one independent search per combination of their values."""
    datasets: List[str] = Field(min_length=1)
    """Tuning data (built-in names, files): must not overlap ``grid.datasets``."""
    samples: Integer = Field(16, ge=1)
    """Configurations per arm: every arm gets exactly this budget."""
    algorithm: Literal["optuna", "random"] = "optuna"
    """optuna: Optuna's TPE sampler (``OptunaSearch``); random: random search."""
    scheduler: Optional[SchedulerSettings] = None
    """``{asha: {grace_steps, reduction_factor}}`` to stop poor configurations early, or none."""
    seeds: List[Seed] = Field(default_factory=lambda: [0], min_length=1)
    """Trial seeds of every tuning configuration (its objective is the mean over datasets × seeds)."""
    seed: Annotated[Integer, AfterValidator(seed_in(32))] = 0
    """Seed of the search algorithm (Optuna seeds NumPy's ``RandomState``: 32 bits)."""
    metric: Literal["test_psnr", "test_ssim"] = "test_psnr"
    """Held-out metric to maximise (on the tuning data)."""
    factor: Optional[Integer] = None
    """Sampling level of the tuning trials (default: the grid's one level)."""
    ratio: Optional[Number] = None
    """Or a random ratio as the tuning sampling level."""

    @field_validator("space", mode="before")
    @classmethod
    def _dotted(cls, space: Any) -> Any:
        """``{model: {w0: {uniform: …}}}`` (what ``--set search.space.model.w0=…`` makes) is ``{model.w0: …}``."""
        if not isinstance(space, dict):
            return space
        out: Dict[str, Any] = {}
        for key, value in space.items():
            nested = isinstance(value, dict) and value and not set(value) & set(Distribution.KINDS)
            out.update({f"{key}.{k}": v for k, v in cls._dotted(value).items()} if nested else {key: value})
        return out

    @field_validator("scheduler", mode="before")
    @classmethod
    def _none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and value.lower() == "none" else value


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

    @property
    def steps(self) -> int:
        """Steps a configuration of this arm trains (``steps`` may be an axis)."""
        return self.members[0].config.steps

    def param_space(self) -> Dict[str, Any]:
        """Tune's nested param space (``{"model": {"w0": tune.uniform(…)}}``)."""
        return nest({path: dist.domain() for path, dist in self.space.items()})


def axis_changes(axes: Dict[str, Any]) -> Dict[str, Any]:
    """The trial-field changes of grid-axis values (``activation`` sets ``model.activation``)."""
    return {AXIS_FIELDS.get(axis, axis): value for axis, value in axes.items()}


def tuning_sampling(spec) -> Dict[str, Any]:
    """The sampling-level changes of the tuning trials."""
    s, g = spec.search, spec.grid.sampling
    if s.factor is not None:
        return {"factor": s.factor, "ratio": None}
    if s.ratio is not None:
        return {"ratio": s.ratio}
    return {"factor": g.factors[0], "ratio": None} if g.factors else {"ratio": g.ratios[0]}


def plan_search(spec, grid_trials: Sequence[PlannedTrial], grid_datasets: Sequence[Dataset]) -> List[Arm]:
    """Steps 1–4: the arms of ``spec.search`` over the planned (untuned) grid trials."""
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
                except ConfigError as exc:
                    raise ConfigError(f"{exc.message} (tuning {dataset.name}, arm {label})",
                                      path=("search", *exc.path)) from None
                shapes.add((info.shape, info.channels))
                members.append(PlannedTrial(
                    key=trial_key(task.name, config.identity(), dataset.digest), name=f"{dataset.name}/{label}/s{seed}",
                    task=task, axes={"dataset": dataset.name, **axes, "seed": seed}, config=config,
                    points=task.training_points(config, info), samples=info.samples, channels=info.channels,
                    dataset=dataset, shape=tuple(info.shape)))
        if len(shapes) > 1:
            raise ConfigError("the tuning datasets of a configuration train as one batched network and must have "
                              f"one shape, got {sorted(shapes)}; set trial.size", path=("search", "datasets"))
        base = members[0].config
        space = {path: dist for path, dist in search.space.items() if base.applies(path)}  # 3.
        if not space:
            raise ConfigError(f"none of the searched fields ({', '.join(search.space)}) applies to arm {label}: its "
                              f"{search.samples} configurations would all be the same; add one that does (e.g. lr)",
                              path=("search", "space"))
        blob = json.dumps({"members": [m.key for m in members], "space": {k: v.model_dump() for k, v in space.items()},
                           "settings": search.model_dump(exclude={"space", "per", "datasets"})},
                          sort_keys=True, default=str)
        out.append(Arm(label, axes, space, tuple(members), hashlib.sha256(blob.encode()).hexdigest()[:16]))  # 4.
    return out
