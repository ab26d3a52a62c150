"""The resume state of a sweep: ``<storage>/<sweep>/latest.json``, written atomically by ``run`` and read by
``resume``.

Its ``format`` says which Tune state of the invocation ``resume`` can restore: Tune pickles the trainable's
callbacks into its experiment state by their module path, so a state written by an earlier version (another
layout of the package) is not restored; ``resume`` then continues the unfinished trials from their
checkpoints in a new Tune experiment, and says so.

==========  ==========================================================================================
format      what changed
==========  ==========================================================================================
2           member keys as Tune configs, typed trials through ``tune.with_parameters``
3           Tune callbacks in ``runners.tune_events``
4           the package in rooms: callbacks in ``runners.engine.tune_events``, trainables in ``runners.worker``
==========  ==========================================================================================
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import List, Literal, Sequence

from sobolev.errors import ConfigError

STATE_FILE = "latest.json"
STATE_FORMAT = 4
Phase = Literal["search", "evaluate"]


class NothingToResume(ConfigError):
    """No invocation of the sweep recorded a state to resume (none ran, or its driver died before writing it)."""


@dataclass(frozen=True)
class SweepState:
    """Where an invocation stands, enough for ``resume`` to continue it."""

    experiment_path: str
    """Tune's experiment folder of the invocation (``<storage>/<sweep>/<invocation>``)."""
    parent_run_id: str
    experiment_id: str
    tracking_uri: str
    spec_path: str
    overrides: List[str]
    phase: Phase
    """``search``: a tuned comparison still tuning its arms; ``evaluate``: training ``trial_keys``."""
    trial_keys: List[str]
    started: float
    format: int = STATE_FORMAT

    @property
    def restorable(self) -> bool:
        """Whether this version can restore the invocation's Tune state (one it wrote)."""
        return self.format == STATE_FORMAT

    def evaluating(self, keys: Sequence[str]) -> "SweepState":
        """The state once the evaluation trials are known."""
        return replace(self, phase="evaluate", trial_keys=list(keys))

    def write(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.replace(tmp, root / STATE_FILE)

    @classmethod
    def read(cls, root: Path, spec_path: str) -> "SweepState":
        """The state of the sweep whose storage is ``root``; a one-line error naming the spec if there is none."""
        try:
            data = json.loads((root / STATE_FILE).read_text())
        except FileNotFoundError:
            raise NothingToResume(f"nothing to resume: no sweep state in {root}", source=spec_path) from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the sweep state {root / STATE_FILE}: {exc}", source=spec_path) from None
        fields = cls.__dataclass_fields__
        try:
            return cls(**{k: v for k, v in data.items() if k in fields})
        except TypeError as exc:
            raise ConfigError(f"the sweep state {root / STATE_FILE} is incomplete ({exc})", source=spec_path) from None

