"""Volume rendering along rays (NeRF, Mildenhall et al. 2020, Eq. 3), no fine network.

Algorithm per ray:
  1. Depths ``z`` between near and far: 128 evenly spaced bins, one stratified sample per bin
     in training (fixed before differentiating, so they do not depend on the pixel).
  2. Points ``o + z d``; the network gives ``(rgb, σ)``: ``sigmoid`` on rgb, ``relu(σ + noise)``.
  3. ``α_i = 1 − exp(−σ_i δ_i)`` with ``δ_i = (z_{i+1} − z_i) ‖d‖``; weights
     ``w_i = α_i Π_{j<i}(1 − α_j)``; colour ``Σ w_i rgb_i``, depth ``Σ w_i z_i``.
"""

from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import nn


def sample_depths(n_rays: int, n_samples: int, near: float = 0.0, far: float = 1.0, stratified: bool = True,
                  device: Optional[torch.device] = None) -> torch.Tensor:
    """Step 1. Shape: ``(n_rays, n_samples)``."""
    t = torch.linspace(0.0, 1.0, n_samples, device=device)
    z = (near * (1.0 - t) + far * t).expand(n_rays, n_samples)
    if stratified:
        mids = 0.5 * (z[:, 1:] + z[:, :-1])
        upper = torch.cat([mids, z[:, -1:]], dim=-1)
        lower = torch.cat([z[:, :1], mids], dim=-1)
        z = lower + (upper - lower) * torch.rand(z.shape, device=device)
    return z


def render_rays(model: nn.Module, origins: torch.Tensor, directions: torch.Tensor, depths: torch.Tensor,
                sigma_noise: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
    """Steps 2–3.

    Shape:
        - origins, directions: ``(N, 3)``; depths: ``(N, S)``; sigma_noise: ``(N, S)`` or None
        - output: ``rgb (N, 3)``, ``depth (N,)``, ``acc (N,)``
    """
    n, s = depths.shape
    points = origins[:, None, :] + directions[:, None, :] * depths[..., None]
    raw = model(points.reshape(-1, 3)).reshape(n, s, -1)
    rgb = torch.sigmoid(raw[..., :3])
    sigma = raw[..., 3] if sigma_noise is None else raw[..., 3] + sigma_noise
    deltas = torch.cat([depths[:, 1:] - depths[:, :-1], torch.full_like(depths[:, :1], 1e10)], dim=-1)
    deltas = deltas * torch.linalg.norm(directions, dim=-1, keepdim=True)
    alpha = 1.0 - torch.exp(-torch.relu(sigma) * deltas)
    transmittance = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha + 1e-10], dim=-1), dim=-1)
    weights = alpha * transmittance[:, :-1]
    return {
        "rgb": (weights[..., None] * rgb).sum(dim=1),
        "depth": (weights * depths).sum(dim=1),
        "acc": weights.sum(dim=1),
    }
