"""Camera rays from pixel coordinates, and NeRF's NDC warp for forward-facing scenes.

Cameras follow NeRF's convention: a 3×4 camera-to-world matrix ``[right, up, back, origin]``,
the camera looking along −z.  Rays are built from *continuous* pixel coordinates ``(x, y)``
with plain torch ops, so the rendered colour can be differentiated with respect to the pixel
that made the ray (the derivative supervision of inverse rendering).
"""

from __future__ import annotations

from typing import Tuple

import torch


def pixel_rays(pixels: torch.Tensor, c2w: torch.Tensor, height: int, width: int, focal: float
               ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Origins and directions of the rays through pixel coordinates ``(x, y)`` (NeRF's ``get_rays``).

    Shape:
        - pixels: ``(N, 2)`` as ``(x, y)`` with x along the width
        - c2w: ``(3, 4)`` or ``(N, 3, 4)``
        - output: origins ``(N, 3)``, directions ``(N, 3)`` (not normalised: z = −1 in camera space)
    """
    x, y = pixels[:, 0], pixels[:, 1]
    cam = torch.stack([(x - width * 0.5) / focal, -(y - height * 0.5) / focal, -torch.ones_like(x)], dim=-1)
    rot = c2w[..., :3, :3]
    if rot.ndim == 2:
        directions = cam @ rot.T
        origins = c2w[:3, 3].expand_as(directions)
    else:
        directions = torch.einsum("nij,nj->ni", rot, cam)
        origins = c2w[:, :3, 3]
    return origins, directions


def ndc_rays(height: int, width: int, focal: float, near: float, origins: torch.Tensor, directions: torch.Tensor
             ) -> Tuple[torch.Tensor, torch.Tensor]:
    """NeRF's normalised-device-coordinate warp of forward-facing rays (Mildenhall et al. 2020, App. C).

    Rays are first shifted to the near plane ``z = −near``; then, with ``o' = o + t d``,
    ``o_ndc = (−f/(W/2) · o'x/o'z, −f/(H/2) · o'y/o'z, 1 + 2 near/o'z)`` and
    ``d_ndc = (−f/(W/2) (dx/dz − o'x/o'z), −f/(H/2) (dy/dz − o'y/o'z), −2 near/o'z)``.

    Shape:
        - origins, directions: ``(N, 3)``; output the same
    """
    t = -(near + origins[..., 2]) / directions[..., 2]
    o = origins + t[..., None] * directions
    ox, oy, oz = o[..., 0], o[..., 1], o[..., 2]
    dx, dy, dz = directions[..., 0], directions[..., 1], directions[..., 2]
    sx, sy = -1.0 / (width / (2.0 * focal)), -1.0 / (height / (2.0 * focal))
    o_ndc = torch.stack([sx * ox / oz, sy * oy / oz, 1.0 + 2.0 * near / oz], dim=-1)
    d_ndc = torch.stack([sx * (dx / dz - ox / oz), sy * (dy / dz - oy / oz), -2.0 * near / oz], dim=-1)
    return o_ndc, d_ndc
