"""Supervision losses: values, derivatives, or both (docs/protocol.md, "Supervision").

``val``      MSE between network and target values.
``der``      derivatives only: mean over points of the *sum* over derivative components of the
             squared error (every channel × every coordinate axis is one component).
``val_der``  ``val_loss + λ · der_loss`` with λ = 1 in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional

import torch
from torch import nn

from sobolev.registry import Registry


def value_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over points and channels (per network of a pack: leading ``K`` axis).

    Shape:
        - pred, target: ``(N, C)`` / ``(K, N, C)``
        - output: ``()`` / ``(K,)``
    """
    sq = (pred - target) ** 2
    return torch.mean(sq) if sq.ndim == 2 else torch.mean(sq, dim=(-2, -1))


def derivative_loss(pred_jac: torch.Tensor, target_jac: torch.Tensor) -> torch.Tensor:
    """Mean over points of the summed squared error of all derivative components.

    Shape:
        - pred_jac, target_jac: ``(N, C, D)`` / ``(K, N, C, D)``
        - output: ``()`` / ``(K,)``
    """
    return torch.mean(torch.sum((pred_jac - target_jac) ** 2, dim=(-2, -1)), dim=-1)


@dataclass
class LossTerms:
    """The total loss and the parts that make it, for logging."""

    total: torch.Tensor
    value: Optional[torch.Tensor] = None
    derivative: Optional[torch.Tensor] = None

    def as_floats(self) -> Dict[str, float]:
        out = {"loss": float(self.total.detach())}
        if self.value is not None:
            out["val_loss"] = float(self.value.detach())
        if self.derivative is not None:
            out["der_loss"] = float(self.derivative.detach())
        return out


@dataclass(frozen=True)
class Supervision:
    """What a supervision trains on: whether it needs values and/or network derivatives, and whether λ
    weighs one term against the other."""

    name: str
    uses_values: bool
    uses_derivatives: bool
    combine: Callable[[Optional[torch.Tensor], Optional[torch.Tensor], float], torch.Tensor]
    weighted: bool = False
    """``lambda_der`` changes the loss (only when both terms are trained on)."""

    @property
    def trained_on(self) -> str:
        """``values``, ``derivatives`` or ``values and derivatives``."""
        return " and ".join(part for part, used in (("values", self.uses_values),
                                                    ("derivatives", self.uses_derivatives)) if used)


SUPERVISIONS: Registry[Supervision] = Registry("supervision")
SUPERVISIONS.register("val")(Supervision("val", True, False, lambda v, d, lam: v))
SUPERVISIONS.register("der")(Supervision("der", False, True, lambda v, d, lam: d))
SUPERVISIONS.register("val_der")(Supervision("val_der", True, True, lambda v, d, lam: v + lam * d, weighted=True))


def sobolev_loss(
    supervision: str,
    pred: torch.Tensor,
    target: torch.Tensor,
    pred_jac: Optional[torch.Tensor] = None,
    target_jac: Optional[torch.Tensor] = None,
    lambda_der: float = 1.0,
) -> LossTerms:
    """The loss of ``supervision`` (``val``, ``der`` or ``val_der``) and its parts.

    The value term is always computed (for logging); the derivative term whenever both
    Jacobians are given.

    Shape:
        - pred, target: ``(N, C)``
        - pred_jac, target_jac: ``(N, C, D)``
    """
    sup = SUPERVISIONS.get(supervision)
    val = value_loss(pred, target)
    der = None
    if pred_jac is not None and target_jac is not None:
        der = derivative_loss(pred_jac, target_jac)
    elif sup.uses_derivatives:
        raise ValueError(f"supervision {supervision!r} needs the network and target derivatives")
    return LossTerms(sup.combine(val, der, lambda_der), val, der)


class SobolevLoss(nn.Module):
    """Module over :func:`sobolev_loss` with a fixed supervision and λ."""

    def __init__(self, supervision: str = "val_der", lambda_der: float = 1.0) -> None:
        super().__init__()
        self.supervision = SUPERVISIONS.get(supervision).name
        self.lambda_der = float(lambda_der)

    def forward(self, pred, target, pred_jac=None, target_jac=None) -> LossTerms:
        return sobolev_loss(self.supervision, pred, target, pred_jac, target_jac, self.lambda_der)
