"""Typed settings: the one schema of a trial, validated once (pydantic).

A trial's settings are a frozen pydantic model (:class:`Settings`).  Its fields, their types,
defaults and docstrings are the only description of the settings: the sweep spec's ``trial:``
section is typed by it, ``sobolev-sweep train`` generates its options from it, MLflow params
are written from it (:meth:`Settings.to_params`) and read back into it
(:meth:`Settings.from_params`).  Built once — from YAML, options or params — it travels to the
trainer unchanged.

Every validation failure is a :class:`~sobolev.errors.ConfigError` that carries the key path
of the bad value (:func:`config_error`), with the allowed keys and a "did you mean" for an
unknown one.
"""

from __future__ import annotations

import difflib
import typing
from typing import (Annotated, Any, Callable, ClassVar, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple, Type,
                    TypeVar)

from pydantic import (AfterValidator, AllowInfNan, BaseModel, BeforeValidator, ConfigDict, ValidationError,
                      model_validator)

from sobolev.errors import ConfigError

S = TypeVar("S", bound="Settings")


def _not_a_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    return value


Integer = Annotated[int, BeforeValidator(_not_a_bool)]
"""An ``int`` that refuses ``true``/``false`` (pydantic's lax mode would read them as 1/0)."""
Number = Annotated[float, BeforeValidator(_not_a_bool), AllowInfNan(False)]
"""A finite ``float``: refuses ``true``/``false``, ``.inf``, ``-.inf`` and ``.nan`` (a learning rate of infinity
diverges at its second step; no setting means anything there)."""


def seed_in(bits: int) -> Callable[[int], int]:
    """A check that a seed is in ``0..2**bits - 1``: :class:`ConfigError` naming the range otherwise."""
    limit = 2**bits - 1

    def check(seed: int) -> int:
        if not 0 <= seed <= limit:
            raise ConfigError(f"must be in 0..{limit} (2**{bits} - 1), got {seed}")
        return seed

    return check


Seed = Annotated[Integer, AfterValidator(seed_in(63))]
"""A trial seed: what ``torch.manual_seed`` and a ``torch.Generator`` take (NumPy gets it modulo 2**32)."""


class Settings(BaseModel):
    """Base of every typed config: strict keys, frozen, field docstrings as descriptions.

    A partial mapping for a nested settings field overrides that field's *default* key by key
    (``model: {activation: sine}`` keeps the task's own model width and depth).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    setting_noun: ClassVar[str] = "key"
    """What an unknown key is called in errors (``unknown image trial setting 'stpes'``)."""
    outside_key: ClassVar[FrozenSet[str]] = frozenset()
    """Fields that do not enter :meth:`identity` (they only relabel values set elsewhere)."""
    added_fields: ClassVar[FrozenSet[str]] = frozenset()
    """Fields added after trial keys were first written: they enter :meth:`identity` only when they
    differ from their default, so the trials of earlier versions keep their keys."""
    identity_aliases: ClassVar[Mapping[str, Mapping[Any, Any]]] = {}
    """field → {value: the value it hashes as}: a new default that replaced an old one enters :meth:`identity`
    as the old default, so the trials of earlier versions keep their keys."""

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise config_error(exc, type(self)) from None

    @classmethod
    def parse(cls: Type[S], data: Mapping[str, Any]) -> S:
        """Validate a mapping (YAML, options, params) into this config; :class:`ConfigError` on failure."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise config_error(exc, cls) from None

    @classmethod
    def layer_defaults(cls, data: Dict[str, Any]) -> Dict[str, Any]:
        """Hook: the given settings with any extra layer of defaults under them (a NeRF preset)."""
        return data

    @model_validator(mode="before")
    @classmethod
    def _partial_nested_settings(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = cls.layer_defaults(dict(data))
        for name, info in cls.model_fields.items():
            given = data.get(name)
            if isinstance(given, Mapping) and _settings_class(info.annotation) is not None and info.default_factory:
                default = info.default_factory()
                data[name] = {**default.model_dump(exclude_unset=True), **given}
        return data

    # -- dotted paths ---------------------------------------------------------------------
    @classmethod
    def field_paths(cls) -> List[str]:
        """Every leaf field as a dotted path (``model.w0``), in declaration order."""
        paths: List[str] = []
        for name, info in cls.model_fields.items():
            nested = _settings_class(info.annotation)
            paths += [f"{name}.{p}" for p in nested.field_paths()] if nested else [name]
        return paths

    def get(self, path: str) -> Any:
        """The value at a dotted path."""
        value: Any = self
        for part in path.split("."):
            value = getattr(value, part)
        return value

    def with_changes(self: S, changes: Mapping[str, Any]) -> S:
        """A validated copy with ``changes`` (dotted paths → values) applied over what was set."""
        data = self.model_dump(exclude_unset=True)
        for path, value in changes.items():
            set_path(data, path, value)
        return type(self).parse(data)

    def identity(self) -> Dict[str, Any]:
        """The values that determine the trial's result (what a trial key hashes): every field but
        :attr:`outside_key`, and :attr:`added_fields` only where they differ from their default."""
        dumped = self.model_dump()
        out: Dict[str, Any] = {}
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            if name in self.outside_key or (name in self.added_fields and value == info.default):
                continue
            if isinstance(value, Settings):
                out[name] = value.identity()
                continue
            aliases, plain = self.identity_aliases.get(name, {}), dumped[name]
            out[name] = aliases[plain] if isinstance(plain, typing.Hashable) and plain in aliases else plain
        return out

    # -- MLflow params ----------------------------------------------------------------------
    def to_params(self) -> Dict[str, str]:
        """Flat ``{"model.w0": "30.0", …}``: how a run records its config as MLflow params."""
        return {k: str(v) for k, v in flatten(self.model_dump()).items()}

    @classmethod
    def from_params(cls: Type[S], params: Mapping[str, str]) -> S:
        """The config a run's params record (keys this config does not have are ignored;
        ``"None"`` is None; numbers and booleans are parsed by the field types)."""
        known = set(cls.field_paths())
        data: Dict[str, Any] = {}
        for path, text in params.items():
            if path in known:
                set_path(data, path, None if text == "None" else text)
        return cls.parse(data)


def _settings_class(annotation: Any) -> Optional[Type[Settings]]:
    annotation = unwrap_annotation(annotation)
    return annotation if isinstance(annotation, type) and issubclass(annotation, Settings) else None


def unwrap_annotation(annotation: Any) -> Any:
    """``Optional[X]`` / ``Annotated[X, …]`` → ``X``."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin is typing.Union:
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def set_path(data: Dict[str, Any], path: str, value: Any) -> None:
    """``data["a"]["b"] = value`` for ``path = "a.b"``, creating mappings on the way."""
    keys = path.split(".")
    for key in keys[:-1]:
        child = data.get(key)
        data[key] = child = dict(child) if isinstance(child, Mapping) else {}
        data = child
    data[keys[-1]] = value


def nest(flat: Mapping[str, Any]) -> Dict[str, Any]:
    """``{"model.w0": 30}`` → ``{"model": {"w0": 30}}`` (the inverse of :func:`flatten`)."""
    out: Dict[str, Any] = {}
    for path, value in flat.items():
        set_path(out, path, value)
    return out


def flatten(data: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """``{"model": {"w0": 30}}`` → ``{"model.w0": 30}``."""
    out: Dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# -- errors -----------------------------------------------------------------------------------

def did_you_mean(key: Any, allowed: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(key), list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _model_at(root: Any, loc: Sequence[Any]) -> Tuple[Optional[Type[BaseModel]], str]:
    """The pydantic model that holds the key at ``loc`` and the noun of its unknown keys."""
    annotation, noun = root, "key"
    for part in loc:
        annotation = unwrap_annotation(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            noun = getattr(annotation, "setting_noun", noun)
            field = annotation.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None, noun
            annotation = field.annotation
            continue
        args = typing.get_args(annotation)
        origin = typing.get_origin(annotation)
        if origin in (list, List, tuple) and args:
            annotation = args[0]
        elif origin in (dict, Dict) and len(args) == 2:
            annotation = args[1]
        else:
            return None, noun
    annotation = unwrap_annotation(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, getattr(annotation, "setting_noun", noun)
    return None, noun


def config_error(exc: ValidationError, root: Any, skip: int = 0) -> ConfigError:
    """The first error of a pydantic validation as a :class:`ConfigError` with its key path.

    ``root`` is the validated model (to list the keys allowed where an unknown one was found);
    ``skip`` drops leading ``loc`` parts that are not keys (a union's tag).
    """
    err = exc.errors()[0]
    loc = [p for p in err["loc"][skip:]]
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, ConfigError):  # raised by one of our validators: its message, its extra path
        return ConfigError(cause.message, path=(*loc, *cause.path))
    if err["type"] == "extra_forbidden":
        model, noun = _model_at(root, loc[:-1])
        allowed = list(model.model_fields) if model is not None else []
        known = f"; known: {', '.join(allowed)}" if allowed else ""
        return ConfigError(f"unknown {noun}{did_you_mean(loc[-1], allowed)}{known}", path=loc)
    if err["type"] == "missing":
        return ConfigError("missing required key", path=loc)
    message = err["msg"].removeprefix("Value error, ")
    given = err.get("input")
    shown = "" if isinstance(given, (Mapping, list)) or err["type"] == "value_error" else f" (got {given!r})"
    return ConfigError(f"{message}{shown}", path=loc)
