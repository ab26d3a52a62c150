"""Activations of the coordinate MLP, each with its authors' initialisation of its layers.

An activation is registered as an :class:`Activation` class.  Besides its forward pass it knows

- how its authors initialise the ``nn.Linear`` in front of it (the init only makes sense for one
  activation; docs/protocol.md, "Common to every task", and "Beyond the paper's networks"),
- its knobs (``knobs``: which :class:`~sobolev.models.MLPConfig` fields it reads) and their
  defaults when they differ from the config's (``defaults``: WIRE's ω0 is 20, not 30),
- its value and its derivative (``value_and_tangent``), so that the forward-mode Jacobian
  (``sobolev.jacobian``) can push input tangents through it,
- whether its layers are complex (WIRE) and whether it needs denormal floats flushed on a CPU.

Shape: every activation is element-wise, ``(*) -> (*)``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Dict, Tuple

import torch
from torch import nn

from sobolev.registry import Registry


class Activation(nn.Module):
    """An element-wise non-linearity that also initialises the linear layers of its network."""

    knobs: ClassVar[Tuple[str, ...]] = ()
    """The :class:`~sobolev.models.MLPConfig` fields this activation takes as keyword arguments."""
    defaults: ClassVar[Dict[str, Any]] = {}
    """Config values this activation wants when the config does not set them (``hidden_features``,
    knobs)."""
    complex_layers: ClassVar[bool] = False
    """Layers after the first (and the output layer) are complex (``torch.cfloat``)."""
    flush_denormals: ClassVar[bool] = False
    """Values underflow into denormal floats, which are 10–50× slower on a CPU: flush them to zero."""

    def init_linear(self, linear: nn.Linear, *, first: bool) -> None:
        """Initialise ``linear`` in place; ``first`` is the layer that reads the (encoded) input.
        Default: keep PyTorch's ``nn.Linear`` initialisation."""

    def value_and_derivative(self, z: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover
        """``act(z)`` and ``act'(z)`` element-wise, for a real ``z``."""
        raise NotImplementedError

    def value_and_tangent(self, z: torch.Tensor, tangent: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``act(z)`` and the directional derivative of ``act`` at ``z`` along ``tangent``.

        Shape:
            - z: ``(*, N, F)``
            - tangent: ``(D, *, N, F)`` or broadcastable to it (one tangent per input direction)
            - output: ``(*, N, F)``, ``(D, *, N, F)``
        """
        value, derivative = self.value_and_derivative(z)
        return value, derivative * tangent


ACTIVATIONS: Registry[type] = Registry("activation")


def siren_init(linear: nn.Linear, first: bool, w0: float) -> None:
    """SIREN's init (Sitzmann et al. 2020, Sec. 3.2): the first layer U(-1/n, 1/n), every later layer
    U(-√(6/n)/w0, √(6/n)/w0) with n = fan_in; biases keep PyTorch's default."""
    fan_in = linear.in_features
    bound = 1.0 / fan_in if first else math.sqrt(6.0 / fan_in) / w0
    with torch.no_grad():
        linear.weight.uniform_(-bound, bound)


@ACTIVATIONS.register("sine")
class Sine(Activation):
    """``sin(w0 · x)`` with SIREN's initialisation (every later layer, the output layer included)."""

    knobs = ("w0",)

    def __init__(self, w0: float = 30.0) -> None:
        super().__init__()
        self.w0 = float(w0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.w0 * x)

    def init_linear(self, linear: nn.Linear, *, first: bool) -> None:
        siren_init(linear, first, self.w0)

    def value_and_derivative(self, z: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        s = self.w0 * z
        return torch.sin(s), self.w0 * torch.cos(s)

    def extra_repr(self) -> str:
        return f"w0={self.w0}"


@ACTIVATIONS.register("relu")
class ReLU(Activation):
    """ReLU with Kaiming-normal weights (fan_in, ReLU gain) on every layer, output included."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)

    def init_linear(self, linear: nn.Linear, *, first: bool) -> None:
        nn.init.kaiming_normal_(linear.weight, a=0.0, nonlinearity="relu", mode="fan_in")

    def value_and_derivative(self, z: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return torch.relu(z), (z > 0).to(z.dtype)


@ACTIVATIONS.register("finer")
class Finer(Activation):
    """FINER (Liu et al. 2024): ``sin(w0 · (|z| + 1) · z)`` with SIREN's initialisation.

    Its derivative is ``w0 · (2|z| + 1) · cos(w0 · (|z| + 1) · z)``: the scale ``|z| + 1`` is part of
    the function, so under derivative supervision the network's derivative is the true one.  The
    authors' code detaches the scale from the gradient; ``detach_scale`` reproduces that (value-only
    training; refused together with derivative supervision), and its derivative is then
    ``w0 · (|z| + 1) · cos(…)``.
    """

    knobs = ("w0", "detach_scale")

    def __init__(self, w0: float = 30.0, detach_scale: bool = False) -> None:
        super().__init__()
        self.w0 = float(w0)
        self.detach_scale = bool(detach_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.abs() + 1.0
        return torch.sin(self.w0 * (scale.detach() if self.detach_scale else scale) * x)

    def init_linear(self, linear: nn.Linear, *, first: bool) -> None:
        siren_init(linear, first, self.w0)

    def value_and_derivative(self, z: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        scale = z.abs() + 1.0
        angle = self.w0 * scale * z
        slope = scale if self.detach_scale else 2.0 * z.abs() + 1.0
        return torch.sin(angle), self.w0 * slope * torch.cos(angle)

    def extra_repr(self) -> str:
        return f"w0={self.w0}, detach_scale={self.detach_scale}"


@ACTIVATIONS.register("gauss")
class Gauss(Activation):
    """Gaussian ``exp(-(s0 · z)²)`` (Ramasinghe & Lucey 2022), s0 = 30, PyTorch's default init."""

    knobs = ("s0",)
    defaults = {"s0": 30.0}
    flush_denormals = True

    def __init__(self, s0: float = 30.0) -> None:
        super().__init__()
        self.s0 = float(s0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(-((self.s0 * x) ** 2))

    def value_and_derivative(self, z: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        value = torch.exp(-((self.s0 * z) ** 2))
        return value, -2.0 * self.s0**2 * z * value

    def extra_repr(self) -> str:
        return f"s0={self.s0}"


@ACTIVATIONS.register("wire")
class ComplexGabor(Activation):
    """WIRE's complex Gabor wavelet (Saragadam et al. 2023): ``exp(i · w0 · z - |s0 · z|²)``.

    w0 = 20, s0 = 10; the first layer is real, every later layer and the output layer complex
    (``torch.cfloat``), the network's output is the real part of its output layer; hidden width
    ⌊256/√2⌋ = 181 so the parameter count matches a 256-wide real network; PyTorch's default init.
    """

    knobs = ("w0", "s0")
    defaults = {"w0": 20.0, "s0": 10.0, "hidden_features": 181}
    complex_layers = True
    flush_denormals = True

    def __init__(self, w0: float = 20.0, s0: float = 10.0) -> None:
        super().__init__()
        self.w0 = float(w0)
        self.s0 = float(s0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(1j * self.w0 * x - (self.s0 * x).abs().square())

    def value_and_tangent(self, z: torch.Tensor, tangent: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Not holomorphic (``|z|²``), so the tangent is the real 2 × 2 Jacobian applied to
        (Re t, Im t): ``f · (i · w0 · t - 2 s0² · Re(conj(z) · t))``; the same for a real ``z``."""
        value = self(z)
        radial = (z.conj() * tangent).real if z.is_complex() else z * tangent
        return value, value * (1j * self.w0 * tangent - 2.0 * self.s0**2 * radial)

    def extra_repr(self) -> str:
        return f"w0={self.w0}, s0={self.s0}"
