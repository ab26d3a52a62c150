"""Reading a spec into the typed spec (``runners.spec.schema``): the file, its YAML and the ``--set`` overrides
(``runners.spec.read``), then validation.

Every error is a :class:`~sobolev.errors.ConfigError` naming the file and the key path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from runners.spec.read import raw_spec, read_spec_text
from runners.spec.schema import SweepSpec, parse_spec
from sobolev.errors import ConfigError


def parse_spec_text(text: str, source: str, overrides: Sequence[str] = ()) -> SweepSpec:
    """YAML text (+ ``--set`` overrides) → the typed spec; errors name ``source`` and the key path."""
    raw = raw_spec(text, source, overrides)
    try:
        return parse_spec(raw)
    except ConfigError as exc:
        raise exc.in_source(source) from None


def load_spec(path: str | Path, overrides: Sequence[str] = ()) -> SweepSpec:
    """Read, override and validate a spec file; every error is a :class:`ConfigError` naming ``path``."""
    return parse_spec_text(read_spec_text(path), str(path), overrides)
