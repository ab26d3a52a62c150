"""Derivative targets: normalised first-order finite differences of the signal (kornia).

The paper approximates image derivatives with ``kornia.filters.spatial_gradient(mode,
order=1, normalized=True)`` on the full-resolution image (docs/protocol.md, "Image regression").
Normalised kernels give "per pixel" units: ``diff`` is ``(f[x+1] - f[x-1]) / 2``, ``sobel``
the same smoothed over the three neighbouring rows.  Borders replicate the edge pixel.
"""

from __future__ import annotations

from typing import List

import kornia
import torch
from torch import nn

from sobolev.errors import ConfigError

OPERATORS: List[str] = ["diff", "sobel"]


def check_operator(operator: str) -> str:
    if operator not in OPERATORS:
        raise ConfigError(f"unknown operator {operator!r}; known: {', '.join(OPERATORS)}")
    return operator


def finite_difference_gradient(signal: torch.Tensor, operator: str = "sobel") -> torch.Tensor:
    """``∂signal/∂x`` and ``∂signal/∂y`` per channel, in per-pixel units.

    Shape:
        - signal: ``(C, H, W)``; a 1-D signal is ``(C, 1, N)`` and only its x-derivative matters
        - output: ``(C, 2, H, W)`` with ``[:, 0]`` = d/dx (along W) and ``[:, 1]`` = d/dy (along H)
    """
    check_operator(operator)
    if signal.ndim != 3:
        raise ValueError(f"expected a (C, H, W) signal, got shape {tuple(signal.shape)}")
    return kornia.filters.spatial_gradient(signal[None], mode=operator, order=1, normalized=True)[0]


def time_derivative(signal: torch.Tensor, operator: str = "diff") -> torch.Tensor:
    """``d signal/dt`` of a 1-D signal in per-sample units.

    Shape:
        - signal: ``(C, N)``
        - output: ``(C, 1, N)`` (one derivative component per channel)
    """
    if signal.ndim != 2:
        raise ValueError(f"expected a (C, N) signal, got shape {tuple(signal.shape)}")
    return finite_difference_gradient(signal[:, None, :], operator)[:, :1, 0, :]


class FiniteDifferenceGradient(nn.Module):
    """Module over :func:`finite_difference_gradient` with a fixed operator."""

    def __init__(self, operator: str = "sobel") -> None:
        super().__init__()
        self.operator = check_operator(operator)

    def forward(self, signal: torch.Tensor) -> torch.Tensor:
        return finite_difference_gradient(signal, self.operator)
