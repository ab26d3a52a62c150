"""The network's derivative with respect to its raw input coordinate.

Two implementations with the same result:

``autograd``  the straightforward formulation of the paper's code: one
              ``torch.autograd.grad(..., create_graph=True)`` per output channel, so that a loss
              on the derivative can itself be back-propagated (Sobolev training).
``forward``   analytic forward-mode tangents for the coordinate MLP's known layers (affine
              coordinates, positional encoding, linear, sine/ReLU): the D input tangents are
              pushed through the network beside the values (``dh' = act'(z) ⊙ (W dh)``), and
              autograd only differentiates that plain computation once.  It needs no graph at
              evaluation time and does D tangent passes instead of C reverse passes.
``auto`` picks ``forward`` for a :class:`~sobolev.models.CoordinateMLP` with at least as many
outputs as inputs (colour images: 3 ≥ 2), ``autograd`` otherwise.
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


DERIVATIVE_IMPLS = ["auto", "autograd", "forward"]


def mlp_value_and_jacobian(model, coords: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Forward-mode values and input Jacobian of a :class:`~sobolev.models.CoordinateMLP`.

    Differentiable with respect to the parameters (plain torch ops), and valid under
    ``torch.no_grad()``.

    Shape:
        - coords: ``(N, D)``
        - values: ``(N, C)``
        - jacobian: ``(N, C, D)``
    """
    from sobolev.encodings import PositionalEncoding
    from sobolev.models import AffineCoordinates

    n, d = coords.shape
    scale = model.coordinates.scale if isinstance(model.coordinates, AffineCoordinates) else coords.new_ones(d)
    h = model.coordinates(coords)
    eye = torch.diag(scale.to(coords.dtype))  # ∂(normalised x)/∂(raw x): (D, D)
    enc = model.encoding
    if isinstance(enc, PositionalEncoding):
        freqs = (2.0 ** torch.arange(enc.num_frequencies, dtype=h.dtype, device=h.device)) * enc.base
        angles = h[:, None, :] * freqs[None, :, None]  # (N, L, D)
        sin, cos = torch.sin(angles), torch.cos(angles)
        h = torch.cat((h, torch.stack((sin, cos), dim=-1).reshape(n, -1)), dim=1)
        # tangent of input dimension k: [e_k·s_k, (cos a_{ij}, −sin a_{ij}) · f_i · s_k · [j = k]]
        tangents = []
        for k in range(d):
            onehot = eye[k]  # (D,)
            dsin = cos * freqs[None, :, None] * onehot[None, None, :]
            dcos = -sin * freqs[None, :, None] * onehot[None, None, :]
            pe = torch.stack((dsin, dcos), dim=-1).reshape(n, -1)
            tangents.append(torch.cat((onehot.expand(n, d), pe), dim=1))
        t = torch.stack(tangents)  # (D, N, F)
    else:
        t = eye[:, None, :]  # (D, 1, D): the same for every point, so the first layer is a broadcast
    for linear, act in zip(model.linears, model.activations):
        z = torch.nn.functional.linear(h, linear.weight, linear.bias)
        tz = t @ linear.weight.T  # (D, N, W): ∂z/∂x_k = W ∂h/∂x_k
        h, dh = act.value_and_derivative(z)
        t = dh[None] * tz  # ∂h'/∂x_k = act'(z) ⊙ ∂z/∂x_k
    values = model.output(h)
    jacobian = (t @ model.output.weight.T).permute(1, 2, 0)  # (N, C, D)
    return values, jacobian


def choose_impl(impl: str, model, out_features: int, in_features: int) -> str:
    """``auto`` → ``forward`` for a CoordinateMLP with C ≥ D outputs, else ``autograd``."""
    from sobolev.models import CoordinateMLP

    if impl not in DERIVATIVE_IMPLS:
        raise ValueError(f"unknown derivative_impl {impl!r}; known: {', '.join(DERIVATIVE_IMPLS)}")
    if impl == "auto":
        return "forward" if isinstance(model, CoordinateMLP) and out_features >= in_features else "autograd"
    if impl == "forward" and not isinstance(model, CoordinateMLP):
        raise ValueError("derivative_impl 'forward' needs a CoordinateMLP")
    return impl
