"""LLFF forward-facing scenes (``<scene>/images*/`` + ``poses_bounds.npy``), as NeRF loads them.

Algorithm (NeRF's ``load_llff_data``, docs/protocol.md "Inverse rendering"):
  1. ``poses_bounds.npy``: N × 17 = a 3 × 5 ``[R | t | hwf]`` per view (LLFF's [down, right,
     back] rotation columns) and the near/far bounds.  Views pair with the image files in
     *sorted* order.
  2. Images: ``images_<downsample>/`` when present, else ``images/`` resized; ``hwf`` scaled.
  3. Rotation columns to NeRF's [right, up, back].
  4. Rescale so the nearest bound is ``1 / bd_factor`` (0.75): translations and bounds × ``sc``.
  5. Recentre: express every pose relative to the average pose (``recenter_poses``).
  6. Every ``llffhold``-th view (8) is a test view.
Bad layouts fail with a one-line :class:`~sobolev.errors.ConfigError` naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List

import numpy as np
import torch
from PIL import Image

from sobolev.data.images import open_image
from sobolev.errors import ConfigError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")


@dataclass
class LLFFScene:
    """A loaded scene, poses in the recentred, rescaled NeRF frame.

    Shape:
        - images: ``(N, H, W, 3)`` float32 in [0, 1]
        - poses: ``(N, 3, 4)`` camera-to-world ``[right, up, back, origin]``
        - bounds: ``(N, 2)`` near, far (rescaled)
    """

    name: str
    images: np.ndarray
    poses: np.ndarray
    bounds: np.ndarray
    height: int
    width: int
    focal: float
    test_views: List[int]
    train_views: List[int]
    scale: float
    """``sc`` of step 4."""
    recenter: np.ndarray
    """The 4 × 4 average pose of step 5: ``loaded = inv(recenter) @ (scaled world pose)``."""
    render_poses: np.ndarray
    """``(K, 3, 4)`` a spiral fly-through around the average pose."""

    def world_to_scene(self, points: np.ndarray) -> np.ndarray:
        """Map original world points into the loader's frame (steps 4–5)."""
        homogeneous = np.concatenate([points * self.scale, np.ones((len(points), 1))], axis=1)
        return (np.linalg.inv(self.recenter) @ homogeneous.T).T[:, :3]


def _normalize(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def view_matrix(z: np.ndarray, up: np.ndarray, position: np.ndarray) -> np.ndarray:
    z = _normalize(z)
    x = _normalize(np.cross(up, z))
    y = np.cross(z, x)
    return np.stack([x, y, z, position], axis=1)


def average_pose(poses: np.ndarray) -> np.ndarray:
    """NeRF's ``poses_avg``: mean centre, summed back and up axes. Shape ``(N, 3, 4) -> (3, 4)``."""
    return view_matrix(poses[:, :3, 2].sum(0), poses[:, :3, 1].sum(0), poses[:, :3, 3].mean(0))


def recenter_poses(poses: np.ndarray):
    """Poses relative to their average pose; returns ``(recentred (N, 3, 4), average (4, 4))``."""
    bottom = np.array([[0.0, 0.0, 0.0, 1.0]])
    avg = np.concatenate([average_pose(poses), bottom], axis=0)
    full = np.concatenate([poses[:, :3, :4], np.tile(bottom[None], (len(poses), 1, 1))], axis=1)
    return (np.linalg.inv(avg) @ full)[:, :3, :4], avg


def spiral_path(poses: np.ndarray, bounds: np.ndarray, frames: int = 24) -> np.ndarray:
    """A forward-facing spiral through the camera region (NeRF's ``render_path_spiral``)."""
    c2w = average_pose(poses)
    up = _normalize(poses[:, :3, 1].sum(0))
    close, far = bounds.min() * 0.9, bounds.max() * 5.0
    focus = 1.0 / ((1 - 0.75) / close + 0.75 / far)
    radii = np.percentile(np.abs(poses[:, :3, 3]), 90, axis=0)
    out = []
    for theta in np.linspace(0.0, 2 * np.pi, frames + 1)[:-1]:
        centre = c2w[:, :3] @ (np.array([np.cos(theta), -np.sin(theta), -np.sin(0.5 * theta)]) * radii) + c2w[:, 3]
        z = _normalize(centre - (c2w[:, :3] @ np.array([0, 0, -focus]) + c2w[:, 3]))
        out.append(view_matrix(z, up, centre))
    return np.stack(out)


def _image_files(folder: Path) -> List[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in IMAGE_SUFFIXES)


def load_llff(root: Path, downsample: int = 4, bd_factor: float = 0.75, llffhold: int = 8) -> LLFFScene:
    """Load an LLFF scene folder (steps 1–6)."""
    root = Path(root)
    pose_file = root / "poses_bounds.npy"
    if not root.is_dir():
        raise ConfigError(f"scene {str(root)!r} is not a folder")
    if not pose_file.is_file():
        raise ConfigError(f"scene {str(root)!r} has no poses_bounds.npy (LLFF layout: images/ + poses_bounds.npy)")
    try:
        raw = np.load(pose_file)
    except Exception as exc:  # numpy raises ValueError/OSError/pickle errors on bad files
        raise ConfigError(f"cannot read {pose_file}: {exc}") from None
    if raw.ndim != 2 or raw.shape[1] != 17:
        raise ConfigError(f"{pose_file}: expected N × 17 (3×5 pose + near, far per view), got shape {raw.shape}")
    if not np.all(np.isfinite(raw)):
        raise ConfigError(f"{pose_file}: holds NaN or infinite values")
    bounds = raw[:, 15:17].astype(np.float64)
    if np.any(bounds[:, 0] >= bounds[:, 1]) or np.any(bounds[:, 0] <= 0):
        bad = int(np.argmax((bounds[:, 0] >= bounds[:, 1]) | (bounds[:, 0] <= 0)))
        raise ConfigError(f"{pose_file}: view {bad} has near {bounds[bad, 0]:g} >= far {bounds[bad, 1]:g} or near <= 0")
    poses = raw[:, :15].reshape(-1, 3, 5).astype(np.float64)

    # 2. images
    folder = root / f"images_{downsample}"
    resize = not folder.is_dir()
    if resize:
        folder = root / "images"
    if not folder.is_dir():
        raise ConfigError(f"scene {str(root)!r} has neither images_{downsample}/ nor images/")
    files = _image_files(folder)
    if len(files) != len(poses):
        raise ConfigError(f"{pose_file}: {len(poses)} poses but {len(files)} images in {folder}")
    full_h, full_w = poses[0, 0, 4], poses[0, 1, 4]
    target = (int(round(full_w / downsample)), int(round(full_h / downsample)))
    images = []
    for f in files:
        im = open_image(f).convert("RGB")
        if resize and im.size != target:
            im = im.resize(target, Image.LANCZOS)
        images.append(np.asarray(im, dtype=np.float32) / 255.0)
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise ConfigError(f"images in {folder} have different sizes: {sorted(shapes)[:3]}")
    height, width = images[0].shape[:2]
    focal = float(poses[0, 2, 4]) * width / full_w

    # 3. [down, right, back] -> [right, up, back]
    poses = np.concatenate([poses[:, :, 1:2], -poses[:, :, 0:1], poses[:, :, 2:4]], axis=2)
    # 4. rescale
    sc = 1.0 / (bounds.min() * bd_factor)
    poses[:, :, 3] *= sc
    bounds = bounds * sc
    # 5. recentre
    poses, avg = recenter_poses(poses)
    # 6. split
    views = list(range(len(poses)))
    test = views[::llffhold] if llffhold > 0 else []
    train = [v for v in views if v not in test]
    return LLFFScene(root.name, np.stack(images), poses.astype(np.float32), bounds.astype(np.float32), height, width,
                     focal, test, train, sc, avg, spiral_path(poses, bounds).astype(np.float32))


def scene_images_tensor(scene: LLFFScene) -> torch.Tensor:
    """``(N, 3, H, W)`` float32 in [0, 1]."""
    return torch.from_numpy(scene.images).permute(0, 3, 1, 2).contiguous()
