"""The ``search`` block of a spec: tune every arm with the same budget on tuning data first.

A search tunes every *arm* — one combination of the ``per`` axes (``sine/val_der``) — with the same budget
(``samples`` configurations, the same scheduler) on tuning data that the evaluation never sees, then evaluates
each arm's best configuration on the grid as ordinary trials.  This module is the block's schema only: the arms
are planned in ``runners.plan.arms``, searched by ``runners.engine.search_phase``.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Dict, List, Literal, Optional, Tuple

from pydantic import AfterValidator, Field, field_validator, model_validator

from sobolev.config import Integer, Number, Seed, Settings, seed_in
from sobolev.errors import ConfigError

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
    """Configurations per arm: every arm gets exactly this budget (with ``budget_flops``: at most this many)."""
    budget_flops: Optional[Number] = Field(None, gt=0)
    """Give every arm the same training FLOPs instead of the same number of configurations: an arm draws
    configurations until its budget is spent (a cheaper arm, ``val``, gets more of them), ASHA's rungs counted in
    FLOPs; ``samples`` then bounds the configurations."""
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


