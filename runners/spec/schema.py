"""The typed sweep spec (pydantic); the YAML it is read from is ``runners.spec.load``'s.

A spec names a sweep, its task, the grid axes (datasets × activations × supervision ×
sampling × seeds, plus optional ``extra`` axes over any trial field), the fixed trial settings,
resources per trial and run settings.  The ``trial:`` section *is* the task's config
(:class:`~sobolev.trainers.config.RegressionConfig` of the task named by ``task:``): the spec is
a discriminated union over the registered tasks, so an unknown or mistyped trial key is caught
by the same validation, with the same "did you mean", as every other key.  ``--set
key.path=value`` overrides any field before validation, Hydra-style.  Every error is a
:class:`~sobolev.errors.ConfigError` with the file and the key path:
``sweeps/x.yaml: grid.activations[1]: unknown activation 'tanh'; known: …``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, ClassVar, Dict, List, Literal, Mapping, Optional, Tuple, Type, Union

from pydantic import Field, TypeAdapter, ValidationError, create_model, field_validator, model_validator

from runners.spec.search import PER_AXES, SearchSettings
from sobolev.config import Integer, Number, Seed, Settings, config_error, did_you_mean
from sobolev.errors import ConfigError
from sobolev.flops import check_budget_given_once
from sobolev.losses import SUPERVISIONS
from sobolev.models import check_model_name
from sobolev.sampling import Sampling
from sobolev.tasks import TASKS, Task
from sobolev.trainers.config import RegressionConfig

AXIS_KEYS = ("dataset", "activation", "supervision", "factor", "ratio", "seed")
GRID_SET_FIELDS = ("factor", "ratio", "supervision", "seed", "model.activation")
"""Trial fields the grid axes set (besides the task's data field): not settable under ``trial:``."""



def _check_supervision(name: str) -> str:
    return SUPERVISIONS.get(name).name


class SamplingAxis(Settings):
    """Training sets to sweep: grid factors and/or random ratios."""

    factors: List[Integer] = Field(default_factory=list)
    """Grid factors (``::factor``), 1..the task's largest."""
    ratios: List[Number] = Field(default_factory=list)
    """Random fractions of the samples, in (0, 1]."""

    @field_validator("ratios")
    @classmethod
    def _ratios(cls, ratios: List[float]) -> List[float]:
        return _each(ratios, lambda ratio: Sampling(ratio=ratio).validate())

    @model_validator(mode="after")
    def _not_empty(self) -> "SamplingAxis":
        if not self.factors and not self.ratios:
            raise ConfigError("needs at least one of factors or ratios")
        return self


class Grid(Settings):
    """The axes whose product makes the trials."""

    datasets: List[str] = Field(min_length=1)
    """Built-in names, files, or folders (Set5-style image folders, LLFF scenes)."""
    activations: List[str] = Field(default_factory=lambda: ["sine"], min_length=1)
    """Model names: an activation with an optional ``_<encoding>`` (relu, relu_pe, sine, finer, gauss, wire,
    relu_ff, …)."""
    supervision: List[str] = Field(default_factory=lambda: ["val", "val_der"], min_length=1)
    """``val``, ``der``, ``val_der``."""
    sampling: SamplingAxis
    """Grid factors and/or random ratios."""
    seeds: List[Seed] = Field(default_factory=lambda: [0], min_length=1)
    """One trial per seed."""
    extra: Dict[str, List[Any]] = Field(default_factory=dict)
    """More axes: a trial field (dotted, ``model.w0``) → its values."""

    @field_validator("activations")
    @classmethod
    def _activations(cls, names: List[str]) -> List[str]:
        return _each(names, check_model_name)

    @field_validator("supervision")
    @classmethod
    def _supervision(cls, names: List[str]) -> List[str]:
        return _each(names, _check_supervision)

    @field_validator("extra")
    @classmethod
    def _extra(cls, axes: Dict[str, List[Any]]) -> Dict[str, List[Any]]:
        for key, values in axes.items():
            if not values:
                raise ConfigError("an axis needs at least one value", path=(key,))
        return axes


def _each(values: List[Any], check) -> List[Any]:
    for i, value in enumerate(values):
        try:
            check(value)
        except ConfigError as exc:
            raise exc.at(i) from None
    return values


class Resources(Settings):
    """What one trial asks Ray for."""

    cpu: Number = Field(1.0, gt=0)
    """CPUs per trial."""
    gpu: Number = Field(0.0, ge=0)
    """GPUs per trial; a fraction puts several trials onto one GPU."""


class RunSettings(Settings):
    """How the sweep engine runs the trials."""

    max_concurrent: Optional[Integer] = Field(None, ge=1)
    """At most this many trials at once."""
    report_every: Integer = Field(50, ge=1)
    """Report metrics to Tune and MLflow every N steps."""
    checkpoint_every: Integer = Field(200, ge=1)
    """Checkpoint every N steps."""
    max_failures: Integer = Field(2, ge=0)
    """Retries of a failing trial, from its last checkpoint."""
    pack: Integer = Field(1, ge=1, le=1024)
    """Train up to K trials of one architecture and point count as one batched network."""
    chain_seconds: Number = Field(20.0, ge=0)
    """Train trials estimated to take under 3 s one after the other in one Tune trial, about this many seconds
    of them at a time (``runners.plan.chains``); 0: every trial a Tune trial of its own."""


class SweepSpec(Settings):
    """A whole sweep.  The registered tasks each get a subclass whose ``task`` and ``trial`` are typed
    (:func:`spec_class`); a spec is validated as their discriminated union (:func:`parse_spec`)."""

    task_def: ClassVar[Task]
    """The task of this spec class (set by :func:`spec_class`)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    """Also the MLflow experiment name."""
    task: str
    """The task: image, audio, nerf (or any registered one)."""
    description: str = ""
    grid: Grid
    trial: RegressionConfig
    """Fixed settings of every trial: the task's config, less the fields the grid axes set."""
    resources: Resources = Field(default_factory=Resources)
    run: RunSettings = Field(default_factory=RunSettings)
    include: List[Dict[str, Any]] = Field(default_factory=list)
    """Keep only the combinations that match one of these (axis → value)."""
    exclude: List[Dict[str, Any]] = Field(default_factory=list)
    """Drop the combinations that match one of these."""
    search: Optional[SearchSettings] = None
    """Tune every arm with the same budget on tuning data first (``runners.spec.search``); none: the grid as it is."""

    @classmethod
    def grid_set_fields(cls) -> Tuple[str, ...]:
        """The trial fields set by the grid axes: the task's data field, sampling, supervision, seed, model."""
        return (cls.task_def.config_class.data_field, *GRID_SET_FIELDS)

    @field_validator("trial", mode="before")
    @classmethod
    def _trial_leaves_grid_fields_to_the_grid(cls, given: Any) -> Any:
        if isinstance(given, Mapping):
            for path in cls.grid_set_fields():
                head, _, rest = path.partition(".")
                node = given.get(head) if rest else given
                if isinstance(node, Mapping) and (rest or head) in node:
                    raise ConfigError("set by the grid axes, not here", path=tuple(path.split(".")))
        return given

    @model_validator(mode="after")
    def _consistent(self) -> "SweepSpec":
        task = self.task_def
        for i, factor in enumerate(self.grid.sampling.factors):
            self._check_sampling(("grid", "sampling", "factors", i), factor=factor)
        settable = [p for p in task.config_class.field_paths() if p not in self.grid_set_fields()]
        for key, values in self.grid.extra.items():
            where = ("grid", "extra", key)
            self._check_setting(key, where, settable, "set by the grid axes, not here")
            for i, value in enumerate(values):
                self._check_value(key, value, (*where, i))
        allowed = list(AXIS_KEYS) + list(self.grid.extra)
        for section in ("include", "exclude"):
            for i, entry in enumerate(getattr(self, section)):
                for key in entry:
                    if key not in allowed:
                        raise ConfigError(f"unknown axis {key!r}{did_you_mean(key, allowed)}; known: "
                                          f"{', '.join(allowed)}", path=(section, i))
        try:  # one training budget: steps or FLOPs (an axis counts as given)
            check_budget_given_once({*self.trial.model_fields_set, *self.grid.extra})
        except ConfigError as exc:
            raise exc.at("trial") from None
        if self.run.pack > 1 and not task.packable:
            raise ConfigError(f"packing supports tasks {' and '.join(packable_tasks())}, not {task.name} (got "
                              f"{self.run.pack}); set run.pack=1", path=("run", "pack"))
        if self.search is not None:
            self._check_search(settable)
        return self

    def _check_sampling(self, where: Tuple, factor: int = 4, ratio: Optional[float] = None) -> None:
        """A sampling level the task accepts (its largest factor)."""
        try:
            Sampling(factor=factor, ratio=ratio, max_factor=self.task_def.config_class.max_factor).validate()
        except ConfigError as exc:
            raise exc.at(*where) from None

    def _check_setting(self, key: str, where: Tuple, settable: List[str], grid_hint: str) -> None:
        """``key`` names a trial setting the grid does not set."""
        if key in self.grid_set_fields():
            raise ConfigError(grid_hint, path=where)
        if key not in settable:
            noun = self.task_def.config_class.setting_noun
            raise ConfigError(f"unknown {noun}{did_you_mean(key, settable)}; known: {', '.join(settable)}", path=where)

    def _check_value(self, key: str, value: Any, where: Tuple, prefix: str = "") -> None:
        """``value`` is a valid value of trial setting ``key`` (its type, bounds and cross-checks)."""
        try:
            self.trial.with_changes({key: value})
        except ConfigError as exc:
            raise ConfigError(prefix + exc.message, path=where) from None

    def _check_search(self, settable: List[str]) -> None:
        """The search block against the task, the grid and the trial settings (``runners.spec.search``)."""
        search, task = self.search, self.task_def
        if not task.packable:
            raise ConfigError(f"a search trains each configuration's tuning datasets as one batched network: tasks "
                              f"{' and '.join(packable_tasks())}, not {task.name}", path=("search",))
        for key, dist in search.space.items():
            where = ("search", "space", key)
            self._check_setting(key, where, settable, "set by the grid axes; tune it with search.per instead")
            for value in dist.candidates():
                self._check_value(key, value, where, f"{dist.kind} value {value!r}: ")
        allowed = [*PER_AXES, *self.grid.extra]
        for i, axis in enumerate(search.per):
            if axis not in allowed:
                raise ConfigError(f"unknown axis {axis!r}{did_you_mean(axis, allowed)}; known: {', '.join(allowed)}",
                                  path=("search", "per", i))
        varying = {"activation": self.grid.activations, "supervision": self.grid.supervision, **self.grid.extra}
        for axis, values in varying.items():
            if len(values) > 1 and axis not in search.per:
                raise ConfigError(f"the grid varies {axis} ({', '.join(map(str, values))}): add it to search.per "
                                  "(one search per value)", path=("search", "per"))
        levels = len(self.grid.sampling.factors) + len(self.grid.sampling.ratios)
        if search.factor is None and search.ratio is None and levels > 1:
            raise ConfigError(f"the grid has {levels} sampling levels: say which one tuning uses", path=("search",
                                                                                                          "factor"))
        if search.factor is not None:
            self._check_sampling(("search", "factor"), factor=search.factor)
        if search.ratio is not None:
            self._check_sampling(("search", "ratio"), ratio=search.ratio)
        if search.scheduler is not None:
            steps = [self.trial.steps, *self.grid.extra.get("steps", [])]
            grace = search.scheduler.asha.grace_steps
            if grace > min(steps):
                raise ConfigError(f"{grace} is more than the trial's {min(steps)} steps",
                                  path=("search", "scheduler", "asha", "grace_steps"))
            if not self.trial.eval_every:
                raise ConfigError("ASHA compares configurations on the held-out metric every eval_every steps: set "
                                  "trial.eval_every (e.g. a divisor of the grace steps)", path=("trial", "eval_every"))


def packable_tasks() -> List[str]:
    return [n for n in TASKS.in_order() if TASKS.get(n).packable]


@lru_cache(maxsize=None)
def spec_class(task: Task) -> Type[SweepSpec]:
    """The spec of one task: ``task: Literal[<name>]``, ``trial: <the task's config class>``."""
    cls = create_model(
        f"{type(task).__name__}SweepSpec",
        __base__=SweepSpec,
        task=(Literal[task.name], ...),
        trial=(task.config_class, Field(default_factory=task.config_class)),
    )
    cls.task_def = task
    return cls


def _spec_union() -> Tuple[TypeAdapter, Dict[str, Type[SweepSpec]]]:
    classes = {name: spec_class(TASKS.get(name)) for name in TASKS.in_order()}
    union = Annotated[Union[tuple(classes.values())], Field(discriminator="task")]  # type: ignore[misc]
    return TypeAdapter(union), classes


def parse_spec(raw: Mapping[str, Any]) -> SweepSpec:
    """Validate a raw spec mapping; a :class:`ConfigError` with the key path of the first bad value."""
    adapter, classes = _spec_union()
    try:
        return adapter.validate_python(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            if err["type"] == "union_tag_not_found":
                raise ConfigError("missing required key", path=("task",)) from None
            tags = [repr(n) for n in classes]
            allowed = f"{', '.join(tags[:-1])} or {tags[-1]}" if len(tags) > 1 else tags[0]
            raise ConfigError(f"Input should be {allowed} (got {err['ctx']['tag']!r})", path=("task",)) from None
        tag = err["loc"][0] if err["loc"] else None
        raise config_error(exc, classes.get(tag, SweepSpec), skip=1 if tag in classes else 0) from None
