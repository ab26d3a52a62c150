"""A built-in forward-facing scene, generated in seconds and written in the LLFF layout.

Three textured planes at different depths and a textured sphere (CC0 / public-domain
photographs from scikit-image), seen by a 5 × 4 grid of cameras that all look at the middle
of the scene, with clear parallax.  Every view is rendered by exact ray casting, so the ground
truth of every pixel (colour, depth, 3-D point) is known.  The files are those of a real LLFF
capture: ``images_4/NNN.png`` and ``poses_bounds.npy`` (N × 17, LLFF's [down, right, back]
rotation columns, ``[H, W, focal]`` of the full-resolution images, near/far bounds).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch
from PIL import Image

from sobolev.data.images import BUILTIN_IMAGES, center_crop_resize
from sobolev.rendering.rays import pixel_rays

DOWNSAMPLE = 4
"""The scene ships ``images_4`` like LLFF: poses hold the full-resolution (×4) height, width, focal."""


@dataclass(frozen=True)
class Plane:
    z: float
    x0: float
    x1: float
    y0: float
    y1: float
    texture: str


@dataclass(frozen=True)
class Sphere:
    center: Tuple[float, float, float]
    radius: float
    texture: str


PLANES = (
    Plane(-8.0, -5.0, 5.0, -4.0, 4.0, "coffee"),  # background filling every view
    Plane(-5.0, -1.7, 0.3, -0.5, 1.3, "chelsea"),
    Plane(-3.0, 0.15, 1.15, -0.95, 0.05, "astronaut"),
)
SPHERE = Sphere((-0.75, -0.55, -3.6), 0.5, "rocket")
LOOK_AT = (0.0, 0.0, -5.0)


def _texture(name: str, size: int = 256) -> np.ndarray:
    return center_crop_resize(BUILTIN_IMAGES.get(name)(), size).astype(np.float32) / 255.0


def _bilinear(tex: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Sample ``tex`` (H, W, 3) at u, v in [0, 1] (u along the width, v down the height)."""
    h, w = tex.shape[:2]
    x = np.clip(u, 0, 1) * (w - 1)
    y = np.clip(v, 0, 1) * (h - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    return ((tex[y0, x0] * (1 - fx) + tex[y0, x1] * fx) * (1 - fy)
            + (tex[y1, x0] * (1 - fx) + tex[y1, x1] * fx) * fy)


def look_at(position: np.ndarray, target=LOOK_AT) -> np.ndarray:
    """Camera-to-world ``[right, up, back, origin]`` (3 × 4) looking from ``position`` at ``target``."""
    back = position - np.asarray(target, dtype=np.float64)
    back /= np.linalg.norm(back)
    right = np.cross([0.0, 1.0, 0.0], back)
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    return np.stack([right, up, back, position], axis=1)


def camera_grid(cols: int = 5, rows: int = 4) -> List[np.ndarray]:
    xs = np.linspace(-0.45, 0.45, cols)
    ys = np.linspace(0.3, -0.3, rows)
    return [look_at(np.array([x, y, 0.0])) for y in ys for x in xs]


def cast(origins: np.ndarray, directions: np.ndarray, textures: Dict[str, np.ndarray]):
    """Exact ray casting: colour, ray parameter t of the nearest hit, and the hit points.

    Shape: origins, directions ``(N, 3)`` → colour ``(N, 3)``, t ``(N,)``, points ``(N, 3)``.
    """
    n = len(origins)
    best_t = np.full(n, np.inf)
    colour = np.zeros((n, 3), np.float32)
    for plane in PLANES:
        t = (plane.z - origins[:, 2]) / directions[:, 2]
        p = origins + t[:, None] * directions
        hit = (t > 0) & (p[:, 0] >= plane.x0) & (p[:, 0] <= plane.x1) & (p[:, 1] >= plane.y0) & (p[:, 1] <= plane.y1)
        closer = hit & (t < best_t)
        if closer.any():
            u = (p[closer, 0] - plane.x0) / (plane.x1 - plane.x0)
            v = (plane.y1 - p[closer, 1]) / (plane.y1 - plane.y0)
            colour[closer] = _bilinear(textures[plane.texture], u, v)
            best_t[closer] = t[closer]
    c = np.asarray(SPHERE.center)
    oc = origins - c
    a = np.sum(directions**2, axis=1)
    b = 2 * np.sum(oc * directions, axis=1)
    disc = b**2 - 4 * a * (np.sum(oc**2, axis=1) - SPHERE.radius**2)
    t = np.where(disc >= 0, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), np.inf)
    closer = (t > 0) & (t < best_t)
    if closer.any():
        q = (origins[closer] + t[closer, None] * directions[closer] - c) / SPHERE.radius
        u = 0.5 + np.arctan2(q[:, 0], q[:, 2]) / (2 * np.pi)
        v = np.arccos(np.clip(q[:, 1], -1, 1)) / np.pi
        colour[closer] = _bilinear(textures[SPHERE.texture], u, v)
        best_t[closer] = t[closer]
    return colour, best_t, origins + best_t[:, None] * directions


def render_view(c2w: np.ndarray, height: int, width: int, focal: float, textures) -> Tuple[np.ndarray, np.ndarray]:
    """Colour ``(H, W, 3)`` and camera depth along −z ``(H, W)`` of one view (NeRF's pixel rays)."""
    ys, xs = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    pix = torch.from_numpy(np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64))
    o, d = pixel_rays(pix, torch.from_numpy(c2w), height, width, focal)
    colour, t, _ = cast(o.numpy(), d.numpy(), textures)
    depth = t  # directions have unit length along the camera's −z axis, so t is the z-depth
    return colour.reshape(height, width, 3), depth.reshape(height, width)


def make_scene(root: Path, width: int = 252, height: int = 189, cols: int = 5, rows: int = 4) -> Path:
    """Render the scene into ``root`` (LLFF layout); returns ``root``.  Deterministic."""
    root = Path(root)
    (root / f"images_{DOWNSAMPLE}").mkdir(parents=True, exist_ok=True)
    focal = 1.1 * width
    textures = {name: _texture(name) for name in {p.texture for p in PLANES} | {SPHERE.texture}}
    rows_out = []
    truth = {"c2w": [], "near": [], "far": [], "height": height, "width": width, "focal": focal}
    for i, c2w in enumerate(camera_grid(cols, rows)):
        colour, depth = render_view(c2w, height, width, focal, textures)
        Image.fromarray((np.clip(colour, 0, 1) * 255 + 0.5).astype(np.uint8)).save(
            root / f"images_{DOWNSAMPLE}" / f"{i:03d}.png")
        near, far = float(depth.min()) * 0.9, float(depth.max()) * 1.1
        right, up, back, origin = c2w[:, 0], c2w[:, 1], c2w[:, 2], c2w[:, 3]
        hwf = np.array([height * DOWNSAMPLE, width * DOWNSAMPLE, focal * DOWNSAMPLE])
        llff = np.stack([-up, right, back, origin, hwf], axis=1)  # LLFF's [down, right, back] columns
        rows_out.append(np.concatenate([llff.ravel(), [near, far]]))
        truth["c2w"].append(c2w.tolist())
        truth["near"].append(near)
        truth["far"].append(far)
    np.save(root / "poses_bounds.npy", np.asarray(rows_out))
    (root / "scene.json").write_text(json.dumps(truth))
    return root
