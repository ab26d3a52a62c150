"""Scene sources: an LLFF folder, or the built-in synthetic scene (generated once, cached)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from sobolev.errors import ConfigError
from sobolev.rendering.synthetic import make_scene

BUILTIN_SCENES = ("synthetic",)


def cache_dir() -> Path:
    return Path(os.environ.get("SOBOLEV_CACHE", Path.home() / ".cache" / "sobolev-sweep"))


def resolve_scene(spec: str, width: int = 252) -> Path:
    """The folder of a scene: ``synthetic`` is rendered on first use (``width`` px wide images_4)."""
    if spec in BUILTIN_SCENES:
        root = cache_dir() / "scenes" / f"{spec}-{width}"
        if not (root / "poses_bounds.npy").is_file():
            root.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}-"))
            make_scene(tmp, width=width, height=int(round(width * 0.75)))
            try:
                os.replace(tmp, root)  # atomic: concurrent trials never see half a scene
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)  # another process won the race
        return root
    path = Path(spec).expanduser()
    if not path.exists():
        raise ConfigError(f"scene {spec!r} not found: not an LLFF folder or a built-in scene "
                          f"({', '.join(BUILTIN_SCENES)})")
    return path.resolve()
