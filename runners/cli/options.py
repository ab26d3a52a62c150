"""Command-line options generated from a typed config (``sobolev-sweep train <task>``).

Every field of the task's config is an option: its name (``--lambda-der``; a nested field is
``--model.hidden-features`` and also answers to ``--hidden-features`` when no other field has
that name), its type, its help text (the field's docstring) and the default it shows all come
from the config class.  An option left out is not passed at all, so each default lives in
exactly one place: the config.
"""

from __future__ import annotations

import typing
from typing import Any, Callable, Dict, List, Literal, Mapping, Tuple, Type

import click
from pydantic.fields import FieldInfo

from sobolev.config import Settings, set_path, unwrap_annotation
from sobolev.errors import ConfigError
from sobolev.flops import check_budget_given_once


def option_name(path: str) -> str:
    """``model.hidden_features`` → ``--model.hidden-features``."""
    return "--" + path.replace("_", "-")


def _param(path: str) -> str:
    return path.replace(".", "__")


def _leaves(cls: Type[Settings], default: Settings, prefix: str = "") -> List[Tuple[str, FieldInfo, Any]]:
    """(dotted path, field, default value) of every leaf field, nested settings included."""
    out = []
    for name, info in cls.model_fields.items():
        value = getattr(default, name)
        if isinstance(value, Settings):
            out += _leaves(type(value), value, f"{prefix}{name}.")
        else:
            out.append((f"{prefix}{name}", info, value))
    return out


def _click_type(annotation: Any):
    annotation = unwrap_annotation(annotation)
    if typing.get_origin(annotation) is Literal:
        return click.Choice([str(v) for v in typing.get_args(annotation)])
    return {int: click.INT, float: click.FLOAT}.get(annotation, click.STRING)


def _help(info: FieldInfo) -> str:
    return " ".join((info.description or "").replace("``", "").split())


class ConfigOption(click.Option):
    """An option whose default is the config's: not passed when left out, shown as ``[default: …]``."""

    def __init__(self, *args: Any, config_default: str, **kwargs: Any) -> None:
        super().__init__(*args, default=None, **kwargs)
        self.config_default = config_default

    def get_help_extra(self, ctx: click.Context):
        return {**super().get_help_extra(ctx), "default": self.config_default}


def config_options(config_class: Type[Settings]) -> Callable:
    """A decorator adding one option per field of ``config_class`` (defaults None: "not given")."""
    leaves = _leaves(config_class, config_class())
    counts: Dict[str, int] = {}
    for path, _, _ in leaves:
        counts[path.rsplit(".", 1)[-1]] = counts.get(path.rsplit(".", 1)[-1], 0) + 1

    def decorate(fn: Callable) -> Callable:
        for path, info, default in reversed(leaves):
            leaf = path.rsplit(".", 1)[-1]
            names = [option_name(path)] + ([option_name(leaf)] if "." in path and counts[leaf] == 1 else [])
            shown = "none" if default is None else str(default).lower() if isinstance(default, bool) else str(default)
            if unwrap_annotation(info.annotation) is bool:
                names = [f"{n}/--no-{n[2:]}" for n in names]
                kind: Dict[str, Any] = {}
            else:
                kind = {"type": _click_type(info.annotation)}
            fn = click.option(*names, _param(path), cls=ConfigOption, config_default=shown, help=_help(info),
                              **kind)(fn)
        return fn

    return decorate


def config_from_options(config_class: Type[Settings], values: Mapping[str, Any]) -> Settings:
    """The config of the options given (``values``: click's keyword arguments of the config options).

    A bad value is a :class:`ConfigError` naming its option: ``--factor: factor must be in 1..8, got 0``.
    """
    data: Dict[str, Any] = {}
    for param, value in values.items():
        if value is not None:
            set_path(data, param.replace("__", "."), value)
    try:
        check_budget_given_once(data)
        return config_class.parse(data)
    except ConfigError as exc:
        path = ".".join(str(p) for p in exc.path)
        raise ConfigError(exc.message, source=option_name(path) if path else None) from None


def config_params(config_class: Type[Settings]) -> List[str]:
    """The click parameter names of :func:`config_options`."""
    return [_param(path) for path in config_class.field_paths()]
