"""``docs/reference.md``, written from the code: every command's options (from click) and every spec setting with
its type, default and allowed values (from the pydantic schema and the registries).

    python -m runners.cli.reference > docs/reference.md

``tests/test_docs.py`` fails when the file is not what this writes, so the reference cannot drift from the code.
"""

from __future__ import annotations

import json
import typing
from typing import Any, Iterator, List, Optional, Type

import click
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

HEADER = """# Reference

Every command-line option and every spec setting, with its default and the values it takes. Written from the
code by `python -m runners.cli.reference > docs/reference.md` (a test fails when this file is out of date): do
not edit it by hand. What the settings mean in practice: [specs.md](specs.md).
"""


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


# -- commands ---------------------------------------------------------------------------------------------------

def _option_default(param: click.Option, ctx: click.Context) -> str:
    default = None if param.multiple else param.get_default(ctx, call=False)
    if default is None or callable(default):
        return "—"
    if param.is_flag:
        return "on" if default else "off"
    return f"`{default}`"


def _option_values(param: click.Parameter) -> str:
    kind = param.type
    if isinstance(kind, click.Choice):
        return ", ".join(f"`{c}`" for c in kind.choices)
    if getattr(param, "is_flag", False):
        return "flag"
    if getattr(param, "multiple", False):
        return f"{kind.name}, repeatable"
    return kind.name


def commands_section(cli: click.Group) -> List[str]:
    lines = ["## Commands", ""]
    ctx = click.Context(cli, info_name="sobolev-sweep")
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        args = " ".join(p.human_readable_name for p in command.params if isinstance(p, click.Argument))
        lines += [f"### `sobolev-sweep {name}{' ' + args if args else ''}`", "",
                  _cell(command.help or command.short_help or ""), ""]
        options = [p for p in command.params if isinstance(p, click.Option)]
        if not options:
            continue
        lines += ["| option | values | default | what it does |", "|---|---|---|---|"]
        sub = click.Context(command, info_name=name, parent=ctx)
        for p in options:
            names = ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])
            lines.append(f"| {names} | {_option_values(p)} | {_option_default(p, sub)} | {_cell(p.help or '')} |")
        lines.append("")
    return lines


# -- spec settings ----------------------------------------------------------------------------------------------

def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in typing.get_args(annotation))
    if origin is typing.Union:
        inner = " or ".join(_type_name(a) for a in args)
        return f"{inner} or null" if len(args) < len(typing.get_args(annotation)) else inner
    if origin in (list, List):
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is tuple:
        return "[" + ", ".join(_type_name(a) for a in args) + "]"
    if origin is dict:
        return f"map of {_type_name(args[0])} → {_type_name(args[1])}" if len(args) == 2 else "map"
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return "section"
        return {"int": "integer", "float": "number", "str": "text", "bool": "true/false"}.get(annotation.__name__,
                                                                                            annotation.__name__)
    return str(annotation).replace("typing.", "")


def _bounds(field: FieldInfo) -> str:
    words = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<", "min_length": "at least", "max_length": "at most"}
    out = []
    for item in field.metadata:
        for attribute, word in words.items():
            value = getattr(item, attribute, None)
            if value is not None:
                out.append(f"{word} {value}" + (" items" if "length" in attribute else ""))
        pattern = getattr(item, "pattern", None)
        if pattern:
            out.append(f"matches `{pattern}`")
    return ", ".join(out)


def _unwrapped(annotation: Any) -> Any:
    """The origin of an annotation, through ``Optional``."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union:
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _unwrapped(inner[0]) if len(inner) == 1 else origin
    return origin


def _values(field: FieldInfo) -> str:
    bounds = _bounds(field)
    return _type_name(field.annotation) + (f" ({bounds})" if bounds else "")


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return "(section)"
    return f"`{json.dumps(value, default=str)}`"


def _model(annotation: Any) -> Optional[Type[BaseModel]]:
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def settings_rows(model: Type[BaseModel], prefix: str, allowed: dict) -> Iterator[str]:
    """One row per setting of ``model`` (its sections' settings after it, their keys dotted)."""
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        nested = _model(field.annotation)
        values = allowed.get(key) or _values(field)
        if nested is not None and not allowed.get(key):
            keyed = _unwrapped(field.annotation) is dict  # a map of sections: one per key the user names
            yield f"| `{key}` | {'map of name → section' if keyed else 'section'} | {_default(field)} | " \
                  f"{_cell(field.description or '')} |"
            yield from settings_rows(nested, key + (".<name>." if keyed else "."), allowed)
            continue
        yield f"| `{key}` | {values} | {_default(field)} | {_cell(field.description or '')} |"


def settings_section() -> List[str]:
    from runners.spec.schema import GRID_SET_FIELDS, SweepSpec
    from sobolev.activations import ACTIVATIONS
    from sobolev.encodings import ENCODINGS
    from sobolev.losses import SUPERVISIONS
    from sobolev.precision import PRECISIONS
    from sobolev.tasks import TASKS

    models = ", ".join(f"`{a}`" for a in ACTIVATIONS.names())
    encodings = ", ".join(f"`_{e}`" for e in ENCODINGS.names())
    allowed = {
        "task": ", ".join(f"`{t}`" for t in TASKS.names()),
        "grid.activations": f"list of {models}, each with an optional encoding suffix {encodings}",
        "grid.supervision": "list of " + ", ".join(f"`{s}`" for s in SUPERVISIONS.names()),
        "model.activation": f"{models}, with an optional encoding suffix {encodings}",
        "precision": ", ".join(f"`{p}`" for p in PRECISIONS.names()),
    }
    lines = ["## Spec settings", "",
             "A spec is YAML (`sweeps/*.yaml`); `--set key.path=value` overrides any of these. Sections and their "
             "keys, then each task's `trial:` settings.", "",
             "| key | values | default | what it is |", "|---|---|---|---|"]
    common = [n for n in SweepSpec.model_fields if n != "trial"]
    for name in common:
        field = SweepSpec.model_fields[name]
        nested = _model(field.annotation)
        if nested is None or allowed.get(name):
            values = allowed.get(name) or _values(field)
            lines.append(f"| `{name}` | {values} | {_default(field)} | {_cell(field.description or '')} |")
        else:
            about = _cell(field.description or nested.__doc__ or "")
            lines.append(f"| `{name}` | section | {_default(field)} | {about} |")
            lines += list(settings_rows(nested, name + ".", allowed))
    for task_name in TASKS.names():
        task = TASKS.get(task_name)
        config = task.config_class
        grid_set = {config.data_field, *GRID_SET_FIELDS}
        lines += ["", f"### `trial:` of `task: {task_name}`", "",
                  _cell(config.__doc__ or ""), "",
                  f"Set by the grid, not under `trial:`: {', '.join(f'`{f}`' for f in sorted(grid_set))}.", "",
                  "| key | values | default | what it is |", "|---|---|---|---|"]
        trial_allowed = {f"trial.{k}": v for k, v in allowed.items()}
        lines += list(settings_rows(config, "trial.", trial_allowed))
    return lines


def reference() -> str:
    from runners.cli.commands import cli

    return "\n".join([HEADER, *commands_section(cli), *settings_section()]) + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(reference(), end="")
