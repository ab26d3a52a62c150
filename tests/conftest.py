import os
import tempfile

import pytest
import torch

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# built-in scenes are rendered once into this cache; keep the tests' copy out of the user's home
os.environ.setdefault("SOBOLEV_CACHE", tempfile.mkdtemp(prefix="sobolev-cache-"))
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def png_image(tmp_path):
    """A small colour PNG file (a gradient with a disc) and its uint8 array."""
    import numpy as np
    from PIL import Image

    h, w = 24, 32
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), ((xx - 16) ** 2 + (yy - 12) ** 2 < 49) * 255], -1)
    arr = arr.astype(np.uint8)
    path = tmp_path / "pic.png"
    Image.fromarray(arr).save(path)
    return path, arr
