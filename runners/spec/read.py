"""A spec file's text and its YAML, with ``--set`` overrides applied (Hydra-style), before validation: torch-free,
so a report of a spec learns its name without loading the task configs.

Every error is a :class:`~sobolev.errors.ConfigError` naming the file and the key path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Sequence

from runners.spec.safe_yaml import load_yaml
from sobolev.errors import ConfigError

MAX_SPEC_BYTES = 1 << 20
"""The largest spec file read (1 MiB): a spec is a page of YAML, not data."""


def apply_override(raw: Dict[str, Any], assignment: str) -> None:
    """``a.b.c=value`` (value parsed as YAML) into the raw spec dict."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected key.path=value")
    path, _, text = assignment.partition("=")
    keys = [k for k in path.strip().split(".") if k]
    if not keys:
        raise ConfigError(f"--set {assignment!r}: empty key path")
    try:
        value = load_yaml(text) if text.strip() else None
    except ConfigError as exc:
        raise ConfigError(f"--set {assignment!r}: value: {exc.message}") from None
    node = raw
    for i, key in enumerate(keys[:-1]):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {assignment!r}: {'.'.join(keys[: i + 1])} is not a mapping")
        node = child
    node[keys[-1]] = value


def read_spec_text(path: str | Path) -> str:
    """The spec file as text: UTF-8, at most :data:`MAX_SPEC_BYTES` (a bigger file is refused before it is
    read); :class:`ConfigError` naming ``path`` otherwise."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > MAX_SPEC_BYTES:
                raise _too_big(path, f"{size} bytes")
            data = fh.read(MAX_SPEC_BYTES + 1)  # a pipe or device tells no size: read one byte past the limit
    except OSError as exc:
        raise ConfigError(f"cannot read spec: {exc.strerror or exc}", source=str(path)) from None
    if len(data) > MAX_SPEC_BYTES:
        raise _too_big(path, f"more than {MAX_SPEC_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text: byte 0x{data[exc.start]:02x} at byte offset {exc.start} ({exc.reason})",
                          source=str(path)) from None


def _too_big(path: str | Path, size: str) -> ConfigError:
    return ConfigError(f"spec is {size}, over the limit of {MAX_SPEC_BYTES} bytes (1 MiB)", source=str(path))


def raw_spec(text: str, source: str, overrides: Sequence[str] = ()) -> Dict[str, Any]:
    """YAML text (+ ``--set`` overrides) → the spec as a mapping, not validated; errors name ``source``."""
    try:
        raw = load_yaml(text)
    except ConfigError as exc:
        raise exc.in_source(source) from None
    if not isinstance(raw, dict):
        raise ConfigError("a spec is a YAML mapping with keys name, task, grid, …", source=source)
    try:
        for assignment in overrides:
            apply_override(raw, assignment)
    except ConfigError as exc:
        raise exc.in_source(source) from None
    return raw
