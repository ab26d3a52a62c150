"""Activations of the coordinate MLP, each with the paper's initialisation of its layers.

An activation is registered as a factory ``(w0: float) -> Activation``.  Besides its forward
pass, an :class:`Activation` knows how the paper initialises the ``nn.Linear`` in front of it
(docs/protocol.md, "Common to every task"), because the init only makes sense for one activation.
"""

from __future__ import annotations

import math
from typing import Callable, Tuple

import torch
from torch import nn

from sobolev.registry import Registry


class Activation(nn.Module):
    """An element-wise non-linearity that also initialises the linear layers of its network."""

    def init_linear(self, linear: nn.Linear, *, first: bool) -> None:  # pragma: no cover - abstract
        """Initialise ``linear`` in place; ``first`` is the layer that reads the (encoded) input."""
        raise NotImplementedError

    def value_and_derivative(self, z: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover
        """``act(z)`` and ``act'(z)`` element-wise, for forward-mode tangents (``sobolev.jacobian``)."""
        raise NotImplementedError


ACTIVATIONS: Registry[Callable[[float], Activation]] = Registry("activation")


class Sine(Activation):
    """``sin(w0 · x)`` with SIREN's initialisation (Sitzmann et al. 2020, Sec. 3.2).

    First layer: U(-1/fan_in, 1/fan_in).  Every later layer, the output layer included:
    U(-√(6/fan_in)/w0, √(6/fan_in)/w0).  Biases keep PyTorch's default.
    """

    def __init__(self, w0: float = 30.0) -> None:
        super().__init__()
        self.w0 = float(w0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.w0 * x)

    def init_linear(self, linear: nn.Linear, *, first: bool) -> None:
        fan_in = linear.in_features
        bound = 1.0 / fan_in if first else math.sqrt(6.0 / fan_in) / self.w0
        with torch.no_grad():
            linear.weight.uniform_(-bound, bound)

    def value_and_derivative(self, z: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        s = self.w0 * z
        return torch.sin(s), self.w0 * torch.cos(s)

    def extra_repr(self) -> str:
        return f"w0={self.w0}"


class ReLU(Activation):
    """ReLU with Kaiming-normal weights (fan_in, ReLU gain) on every layer, output included."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)

    def init_linear(self, linear: nn.Linear, *, first: bool) -> None:
        nn.init.kaiming_normal_(linear.weight, a=0.0, nonlinearity="relu", mode="fan_in")

    def value_and_derivative(self, z: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return torch.relu(z), (z > 0).to(z.dtype)


@ACTIVATIONS.register("sine")
def sine(w0: float) -> Activation:
    return Sine(w0)


@ACTIVATIONS.register("relu")
def relu(w0: float) -> Activation:  # w0 only matters to sine
    return ReLU()
