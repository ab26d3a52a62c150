"""Checkpoints of sweep trials: one file ``<trial key>.pt`` per member in each Tune checkpoint.

A member is restored from the checkpoint with the most steps among Tune's own (a retry within
an invocation, a restored experiment) and the latest file an earlier invocation left under the
sweep's storage (:func:`latest_checkpoints`): a driver killed before Tune saved its experiment
state, or a plain ``run`` after a crash, still continues each interrupted trial where it stopped.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

CHECKPOINT_GLOB = "*/*/checkpoint_*/*.pt"
"""Under ``<storage>/<sweep>``: ``<invocation>/<Tune trial folder>/checkpoint_NNNNNN/<trial key>.pt``."""


def latest_checkpoints(root: Path, keys: Sequence[str]) -> Dict[str, str]:
    """trial key → the newest checkpoint file of that trial under ``root`` (any invocation), for ``keys``."""
    wanted, found = set(keys), {}
    for path in root.glob(CHECKPOINT_GLOB):
        if path.stem in wanted:
            try:
                mtime = path.stat().st_mtime
            except OSError:  # removed by Tune meanwhile (num_to_keep)
                continue
            if path.stem not in found or mtime > found[path.stem][0]:
                found[path.stem] = (mtime, str(path))
    return {key: path for key, (_, path) in found.items()}


def _step_state(path: Path) -> Optional[Dict[str, Any]]:
    from sobolev.errors import ConfigError
    from sobolev.trainers import load_checkpoint

    try:
        return load_checkpoint(path) if path.exists() else None
    except ConfigError:  # a file cut short by a kill: the other candidate, or none
        return None


def restore_members(checkpoint, members: Sequence[Tuple[str, Any]], earlier: Optional[Dict[str, str]] = None
                    ) -> List[str]:
    """Each ``(key, trainer)`` restored from whichever has more steps: its file ``<key>.pt`` in Tune's
    ``checkpoint`` or ``earlier[key]``; returns the keys restored."""
    earlier = earlier or {}
    restored = []
    with (checkpoint.as_directory() if checkpoint is not None else tempfile.TemporaryDirectory()) as d:
        for key, trainer in members:
            candidates = [_step_state(Path(d) / f"{key}.pt"),
                          _step_state(Path(earlier[key])) if key in earlier else None]
            states = [s for s in candidates if s is not None]
            if states:
                trainer.load_state_dict(max(states, key=lambda s: s.get("step", 0)))
                restored.append(key)
    return restored


def report_with_checkpoint(result: Dict[str, Any], members: Sequence[Tuple[str, Any]]) -> None:
    """``tune.report`` with a checkpoint of one file per ``(key, trainer)`` (model, optimiser, step)."""
    from ray import tune

    from sobolev.trainers import save_checkpoint

    with tempfile.TemporaryDirectory() as d:
        for key, trainer in members:
            save_checkpoint(trainer.state_dict(), Path(d) / f"{key}.pt")
        tune.report(result, checkpoint=tune.Checkpoint.from_directory(d))
