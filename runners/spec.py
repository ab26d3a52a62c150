"""Sweep specs: YAML (``yaml.safe_load``) validated with pydantic into typed objects.

A spec names a sweep, its task, the grid axes (datasets × activations × supervision ×
sampling × seeds, plus optional ``extra`` axes over any trial field), the fixed trial settings
(``trial``: a partial task config), resources per trial and run settings.  ``--set
key.path=value`` overrides any field before validation, Hydra-style.  Every error names the
file and the key path: ``sweeps/x.yaml: grid.activations[1]: unknown activation 'tanh'; …``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sobolev.errors import ConfigError
from sobolev.losses import SUPERVISIONS
from sobolev.models import parse_model_name
from sobolev.sampling import Sampling

AXIS_KEYS = ("dataset", "activation", "supervision", "factor", "ratio", "seed")


class SpecError(ConfigError):
    """A spec that cannot be used; the message names the file and the key path."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SamplingAxis(Strict):
    """Training sets to sweep: grid factors and/or random ratios."""

    factors: List[int] = Field(default_factory=list, description="Grid factors (::factor), 1..8.")
    ratios: List[float] = Field(default_factory=list, description="Random fractions of the samples, in (0, 1].")

    @model_validator(mode="after")
    def _not_empty(self) -> "SamplingAxis":
        if not self.factors and not self.ratios:
            raise ValueError("needs at least one of factors or ratios")
        for i, f in enumerate(self.factors):
            try:
                Sampling(factor=f, max_factor=64).validate()
            except ConfigError as exc:
                raise ValueError(f"factors[{i}]: {exc}") from None
        for i, r in enumerate(self.ratios):
            try:
                Sampling(ratio=r).validate()
            except ConfigError as exc:
                raise ValueError(f"ratios[{i}]: {exc}") from None
        return self


class Grid(Strict):
    """The axes whose product makes the trials."""

    datasets: List[str] = Field(min_length=1, description="Built-in names, files, or Set5-style folders.")
    activations: List[str] = Field(default_factory=lambda: ["sine"], min_length=1)
    supervision: List[str] = Field(default_factory=lambda: ["val", "val_der"], min_length=1)
    sampling: SamplingAxis
    seeds: List[int] = Field(default_factory=lambda: [0], min_length=1)
    extra: Dict[str, List[Any]] = Field(default_factory=dict, description="More axes: trial field → values.")

    @field_validator("activations")
    @classmethod
    def _activations(cls, names: List[str]) -> List[str]:
        for i, name in enumerate(names):
            try:
                parse_model_name(name)
            except ConfigError as exc:
                raise ValueError(f"[{i}]: {exc}") from None
        return names

    @field_validator("supervision")
    @classmethod
    def _supervision(cls, names: List[str]) -> List[str]:
        for i, name in enumerate(names):
            try:
                SUPERVISIONS.get(name)
            except ConfigError as exc:
                raise ValueError(f"[{i}]: {exc}") from None
        return names

    @field_validator("extra")
    @classmethod
    def _extra(cls, axes: Dict[str, List[Any]]) -> Dict[str, List[Any]]:
        for key, values in axes.items():
            if not values:
                raise ValueError(f"{key}: an axis needs at least one value")
        return axes


class Resources(Strict):
    """What one trial asks Ray for."""

    cpu: float = Field(1.0, gt=0, description="CPUs per trial.")
    gpu: float = Field(0.0, ge=0, description="GPUs per trial; a fraction packs trials onto one GPU.")


class RunSettings(Strict):
    """How the sweep engine runs the trials."""

    max_concurrent: Optional[int] = Field(None, ge=1, description="At most this many trials at once.")
    report_every: int = Field(50, ge=1, description="Report metrics to Tune and MLflow every N steps.")
    checkpoint_every: int = Field(200, ge=1, description="Checkpoint every N steps.")
    max_failures: int = Field(2, ge=0, description="Retries of a failing trial, from its last checkpoint.")
    pack: int = Field(
        1, ge=1, le=1024,
        description="Train up to K trials of one architecture and point count as one batched network (image, audio).",
    )
    fail_once_at_step: Optional[int] = Field(
        None, ge=1, description="Fault injection for tests: each trial raises once when it reaches this step."
    )


class SweepSpec(Strict):
    """A whole sweep."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Also the MLflow experiment name.")
    task: Literal["image", "audio", "nerf"]
    description: str = ""
    grid: Grid
    trial: Dict[str, Any] = Field(default_factory=dict, description="Fixed settings: a partial task config.")
    resources: Resources = Field(default_factory=Resources)
    run: RunSettings = Field(default_factory=RunSettings)
    include: List[Dict[str, Any]] = Field(default_factory=list, description="Keep only combinations matching one.")
    exclude: List[Dict[str, Any]] = Field(default_factory=list, description="Drop combinations matching one.")

    @model_validator(mode="after")
    def _filters_name_axes(self) -> "SweepSpec":
        allowed = list(AXIS_KEYS) + list(self.grid.extra)
        for section in ("include", "exclude"):
            for i, entry in enumerate(getattr(self, section)):
                for key in entry:
                    if key not in allowed:
                        raise ValueError(f"{section}[{i}]: unknown axis {key!r}{_did_you_mean(key, allowed)}; "
                                         f"known: {', '.join(allowed)}")
        return self


# -- task configs: which trial fields exist -----------------------------------------------

def task_config_class(task: str):
    from sobolev.trainers import AudioRegressionConfig, ImageRegressionConfig
    from sobolev.trainers.nerf import NerfConfig

    return {"image": ImageRegressionConfig, "audio": AudioRegressionConfig, "nerf": NerfConfig}[task]


GRID_FIELDS = {"image", "audio", "scene", "factor", "ratio", "supervision", "seed"}


def trial_field_paths(task: str) -> List[str]:
    """Every settable field of the task config as a dotted path (``model.w0``), grid fields excluded."""
    paths = []

    def walk(cls, prefix: str) -> None:
        for f in fields(cls):
            default = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
            if is_dataclass(default):
                walk(type(default), f"{prefix}{f.name}.")
            elif f"{prefix}{f.name}" not in GRID_FIELDS:
                paths.append(f"{prefix}{f.name}")

    walk(task_config_class(task), "")
    return [p for p in paths if p != "model.activation"] + (["preset"] if task == "nerf" else [])


# -- loading ---------------------------------------------------------------------------------

def _did_you_mean(key: str, allowed: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(key), list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _loc(parts: Sequence[Any]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _allowed_keys(model: type, loc: Sequence[Any]) -> List[str]:
    """The keys a pydantic model accepts at ``loc`` (for 'did you mean')."""
    cls = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = cls.model_fields.get(part)
        ann = getattr(field, "annotation", None)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            cls = ann
        else:
            return []
    return list(cls.model_fields)


def format_validation_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = list(err["loc"])
    if err["type"] == "extra_forbidden":
        key = loc[-1]
        allowed = _allowed_keys(SweepSpec, loc)
        return f"{_loc(loc)}: unknown key{_did_you_mean(key, allowed)}; known: {', '.join(allowed)}"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        return f"{_loc(loc)}: missing required key"
    # errors raised inside list validators carry their own "[i]: " prefix
    m = re.match(r"^(\[\d+\]|\w+\[\d+\]|\w+): (.*)$", msg)
    if m and err["type"] == "value_error":
        sub = m.group(1)
        path = _loc(loc) + (sub if sub.startswith("[") else f".{sub}") if loc else sub
        return f"{path}: {m.group(2)}"
    given = err.get("input")
    shown = "" if isinstance(given, (dict, list)) else f" (got {given!r})"
    return f"{_loc(loc)}: {msg}{shown}"


def apply_override(raw: Dict[str, Any], assignment: str) -> None:
    """``a.b.c=value`` (value parsed as YAML) into the raw spec dict."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected key.path=value")
    path, _, text = assignment.partition("=")
    keys = [k for k in path.strip().split(".") if k]
    if not keys:
        raise ConfigError(f"--set {assignment!r}: empty key path")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {assignment!r}: value is not valid YAML: {getattr(exc, 'problem', exc)}") from None
    node = raw
    for i, key in enumerate(keys[:-1]):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {assignment!r}: {'.'.join(keys[: i + 1])} is not a mapping")
        node = child
    node[keys[-1]] = value


def _check_trial_fields(spec: SweepSpec) -> None:
    allowed = trial_field_paths(spec.task)

    def flatten(d: Dict[str, Any], prefix: str = "") -> List[str]:
        out = []
        for k, v in d.items():
            if isinstance(v, dict):
                out += flatten(v, f"{prefix}{k}.")
            else:
                out.append(f"{prefix}{k}")
        return out

    for section, keys in (("trial", flatten(spec.trial)), ("grid.extra", list(spec.grid.extra))):
        for key in keys:
            if key in GRID_FIELDS or key == "model.activation":
                raise ConfigError(f"{section}.{key}: set by the grid axes, not here")
            if key not in allowed:
                raise ConfigError(
                    f"{section}.{key}: unknown {spec.task} trial setting{_did_you_mean(key, allowed)}; "
                    f"known: {', '.join(allowed)}"
                )


def load_spec(path: str | Path, overrides: Sequence[str] = ()) -> SweepSpec:
    """Read, override and validate a spec; every error is a :class:`SpecError` naming ``path``."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"{path}: cannot read spec: {exc.strerror or exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise SpecError(f"{path}: not valid YAML{line}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a spec is a YAML mapping with keys name, task, grid, …")
    try:
        for assignment in overrides:
            apply_override(raw, assignment)
        spec = SweepSpec.model_validate(raw)
        _check_trial_fields(spec)
        if spec.run.pack > 1 and spec.task == "nerf":
            raise ConfigError(f"run.pack: packing supports tasks image and audio, not nerf (got {spec.run.pack}); "
                              "set run.pack=1")
    except ValidationError as exc:
        raise SpecError(f"{path}: {format_validation_error(exc)}") from None
    except SpecError:
        raise
    except ConfigError as exc:
        raise SpecError(f"{path}: {exc}") from None
    return spec
