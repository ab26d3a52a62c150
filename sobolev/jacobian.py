"""The network's derivative with respect to its raw input coordinate.

Two implementations with the same result:

``autograd``  the straightforward formulation of the paper's code: one
              ``torch.autograd.grad(..., create_graph=True)`` per output channel, so that a loss
              on the derivative can itself be back-propagated (Sobolev training).
``forward``   analytic forward-mode tangents for the coordinate MLP's known layers (affine
              coordinates, encodings, linear, every registered activation — complex ones too): the
              D input tangents are pushed through the network beside the values
              (``dh' = act'(z) ⊙ (W dh)``), and
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

    Each output depends only on its own input point (and network, for K stacked networks), so
    the gradient of the channel sum over points is the per-point Jacobian row.

    Shape:
        - coords: ``(*, N, D)``
        - values: ``(*, N, C)``
        - jacobian: ``(*, N, C, D)``
    """
    coords = coords.detach().requires_grad_(True)
    with torch.enable_grad():
        values = fn(coords)
        channels = values.shape[-1]
        rows = [
            torch.autograd.grad(
                values[..., c].sum(), coords, create_graph=create_graph, retain_graph=create_graph or c < channels - 1
            )[0]
            for c in range(channels)
        ]
    jacobian = torch.stack(rows, dim=-2)
    if not create_graph:
        values, jacobian = values.detach(), jacobian.detach()
    return values, jacobian


DERIVATIVE_IMPLS = ["auto", "autograd", "forward"]


def mlp_value_and_jacobian(model, coords: torch.Tensor, tensors=None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Forward-mode values and input Jacobian of a :class:`~sobolev.models.CoordinateMLP`.

    ``tensors`` (:class:`~sobolev.models.MLPTensors`) replaces the model's own parameters, e.g.
    by K stacked networks of the same architecture, which adds a leading K axis everywhere.
    Differentiable with respect to the parameters (plain torch ops), and valid under
    ``torch.no_grad()``.  Complex layers (WIRE) carry complex tangents; the output's real part
    is the network's.

    Shape:
        - coords: ``(N, D)`` / ``(K, N, D)``
        - values: ``(N, C)`` / ``(K, N, C)``
        - jacobian: ``(N, C, D)`` / ``(K, N, C, D)``
    """
    from sobolev.encodings import Encoding
    from sobolev.models import affine, tangent_product

    tensors = model.tensors() if tensors is None else tensors
    scale = tensors.scale.to(coords.dtype)
    # 1. normalised coordinates; their tangent along raw x_k is scale_k · e_k: (D, *, 1, D), one per point
    h = coords * scale.unsqueeze(-2) + tensors.shift.unsqueeze(-2)
    t = torch.diag_embed(scale).movedim(-2, 0).unsqueeze(-2)
    # 2. the encoding pushes the tangents through itself (``Encoding.value_and_tangent``)
    if isinstance(model.encoding, Encoding):
        h, t = model.encoding.value_and_tangent(h, t, *tensors.encoding)
    # 3. every layer: z = W h + b, ∂z/∂x_k = W ∂h/∂x_k; then the activation's own tangent rule
    #    (``act'(z) ⊙ ∂z/∂x_k`` for a real element-wise one)
    #    (the layers after the first in the network's precision, ``sobolev.precision``)
    precision = model.precision
    for i, ((weight, bias), act) in enumerate(zip(tensors.linears, model.activations)):
        h, t = act.value_and_tangent(affine(h, weight, bias, precision, first=i == 0),
                                     tangent_product(t, weight, precision, first=i == 0))
    # 4. linear output layer (its real part, for complex layers)
    values = affine(h, *tensors.output, precision)
    jacobian = tangent_product(t, tensors.output[0], precision).movedim(0, -1)  # (*, N, C, D)
    if values.is_complex():
        values, jacobian = values.real, jacobian.real
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
