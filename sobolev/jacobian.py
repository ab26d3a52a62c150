"""The network's derivative with respect to its raw input coordinate.

This is the straightforward formulation of the paper's code: one
``torch.autograd.grad(..., create_graph=True)`` per output channel, so that a loss on the
derivative can itself be back-propagated (Sobolev training).
"""

from __future__ import annotations

from typing import Callable, Tuple

import torch


def value_and_input_jacobian(
    fn: Callable[[torch.Tensor], torch.Tensor], coords: torch.Tensor, *, create_graph: bool = True
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``fn(coords)`` and ``∂fn_c/∂coords_d`` at every point.

    Each output depends only on its own input point, so the gradient of the channel sum over
    points is the per-point Jacobian row.

    Shape:
        - coords: ``(N, D)``
        - values: ``(N, C)``
        - jacobian: ``(N, C, D)``
    """
    coords = coords.detach().requires_grad_(True)
    with torch.enable_grad():
        values = fn(coords)
        channels = values.shape[1]
        rows = [
            torch.autograd.grad(
                values[:, c].sum(), coords, create_graph=create_graph, retain_graph=create_graph or c < channels - 1
            )[0]
            for c in range(channels)
        ]
    jacobian = torch.stack(rows, dim=1)
    if not create_graph:
        values, jacobian = values.detach(), jacobian.detach()
    return values, jacobian
