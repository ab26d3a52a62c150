"""Input encodings of the coordinate MLP.

An encoding is registered as an :class:`Encoding` class, built by :meth:`Encoding.build` from
the number of input dimensions, the number of training samples along one axis (which fixes a
Nyquist number of frequencies), the range ``[-R, R]`` the network's coordinates span, and its
knobs (:class:`~sobolev.models.MLPConfig` fields).  Each knows its value and its tangents
(``value_and_tangent``) for the forward-mode Jacobian, and keeps any random state as tensors
(``tensors``) so that K networks of a pack can each have their own.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Dict, Tuple

import torch
from torch import nn

from sobolev.errors import ConfigError
from sobolev.registry import Registry

ENCODINGS: Registry[type] = Registry("encoding")


def nyquist_num_frequencies(num_samples: float) -> int:
    """``L = floor(log2(samples / 4))``: the octaves below the Nyquist rate of the training grid.

    The Nyquist rate of ``samples`` points spread over [-1, 1] is ``samples / 4`` cycles per
    unit (SIREN's ``get_num_frequencies_nyquist``).  At least one frequency is kept, so grids
    smaller than 8 samples get ``L = 1`` where the formula would give 0 or less.
    """
    if num_samples < 1:
        raise ConfigError(f"positional encoding needs at least one sample per axis, got {num_samples}")
    return max(1, int(math.floor(math.log2(num_samples / 4.0))))


def positional_encoding(x: torch.Tensor, num_frequencies: int, base: float = math.pi) -> torch.Tensor:
    """NeRF positional encoding: ``[x, sin(2^0 b x_0), cos(2^0 b x_0), sin(2^0 b x_1), …]``.

    For each frequency ``i`` and each input dimension ``j`` the pair ``sin(2^i b x_j),
    cos(2^i b x_j)`` is appended after the input itself (interleaved per dimension, as in the
    paper's code).  ``b = π`` for the image/audio ``relu_pe`` models; TinyNeRF uses ``b = 1``.

    Shape:
        - x: ``(*, N, d)``
        - output: ``(*, N, d + 2 d L)``
    """
    if x.ndim < 2:
        raise ValueError(f"positional_encoding expects (N, d) coordinates, got shape {tuple(x.shape)}")
    angles = x.unsqueeze(-2) * frequencies(num_frequencies, base, x)[:, None]  # (*, N, L, d)
    pairs = torch.stack((torch.sin(angles), torch.cos(angles)), dim=-1)  # (*, N, L, d, 2)
    return torch.cat((x, pairs.flatten(-3)), dim=-1)


def frequencies(num_frequencies: int, base: float, like: torch.Tensor) -> torch.Tensor:
    """``2^i · b`` for ``i < L``, in ``like``'s dtype and device. Shape: ``(L,)``."""
    return (2.0 ** torch.arange(num_frequencies, dtype=like.dtype, device=like.device)) * base


class Encoding(nn.Module):
    """A map of the network's coordinates into features, with its forward-mode tangents."""

    knobs: ClassVar[Tuple[str, ...]] = ()
    """The :class:`~sobolev.models.MLPConfig` fields :meth:`build` takes as keyword arguments."""
    defaults: ClassVar[Dict[str, Any]] = {}
    """Config values this encoding wants when the config does not set them."""
    in_features: int
    out_features: int

    @classmethod
    def build(cls, in_features: int, samples_per_axis: float, coordinate_range: float, **knobs: Any) -> "Encoding":
        raise NotImplementedError  # pragma: no cover - abstract

    def tensors(self) -> Tuple[torch.Tensor, ...]:
        """Its random state (none for a deterministic encoding); stacked along K in a pack."""
        return ()

    def encode(self, x: torch.Tensor, *tensors: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Shape: ``(*, N, d) -> (*, N, out_features)``; ``tensors`` as :meth:`tensors`, or K stacked."""
        raise NotImplementedError

    def value_and_tangent(self, x: torch.Tensor, tangent: torch.Tensor,
                          *tensors: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover
        """The features and their tangents along the input tangents.

        Shape:
            - x: ``(*, N, d)``; tangent: ``(D, *, 1, d)`` (the same for every point)
            - output: ``(*, N, F)``, ``(D, *, N, F)``
        """
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x, *self.tensors())


class PositionalEncoding(Encoding):
    """NeRF's positional encoding (:func:`positional_encoding`) with a fixed number of frequencies."""

    def __init__(self, in_features: int, num_frequencies: int, base: float = math.pi) -> None:
        super().__init__()
        self.in_features = in_features
        self.num_frequencies = num_frequencies
        self.base = base
        self.out_features = in_features + 2 * in_features * num_frequencies

    def encode(self, x: torch.Tensor, *tensors: torch.Tensor) -> torch.Tensor:
        return positional_encoding(x, self.num_frequencies, self.base)

    def value_and_tangent(self, x, tangent, *tensors):
        """``[x, sin a, cos a]`` with ``a_ij = f_i x_j``: the tangent of ``x`` along ``t`` is
        ``[t, (cos a_ij, -sin a_ij) · f_i · t_j]``."""
        freqs = frequencies(self.num_frequencies, self.base, x)[:, None]  # (L, 1)
        angles = x.unsqueeze(-2) * freqs  # (*, N, L, d)
        sin, cos = torch.sin(angles), torch.cos(angles)
        value = torch.cat((x, torch.stack((sin, cos), dim=-1).flatten(-3)), dim=-1)
        t = tangent.unsqueeze(-2) * freqs  # (D, *, 1, L, d)
        pairs = torch.stack((cos * t, -sin * t), dim=-1).flatten(-3)  # (D, *, N, 2 L d)
        return value, torch.cat((tangent.expand(*pairs.shape[:-1], x.shape[-1]), pairs), dim=-1)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_frequencies={self.num_frequencies}"


@ENCODINGS.register("pe")
class NyquistPositionalEncoding(PositionalEncoding):
    """The paper's ``relu_pos``: NeRF encoding (base π) with the Nyquist number of frequencies."""

    @classmethod
    def build(cls, in_features, samples_per_axis, coordinate_range, **knobs):
        return cls(in_features, nyquist_num_frequencies(samples_per_axis))


@ENCODINGS.register("nerf")
class NerfPositionalEncoding(PositionalEncoding):
    """TinyNeRF's encoding of a 3-D point: 10 octaves ``sin/cos(2^i x)`` (no π), input kept."""

    @classmethod
    def build(cls, in_features, samples_per_axis, coordinate_range, **knobs):
        return cls(in_features, 10, base=1.0)


@ENCODINGS.register("ff")
class FourierFeatures(Encoding):
    """Gaussian random Fourier features (Tancik et al. 2020): ``γ(v) = [cos 2πBv, sin 2πBv]``.

    ``v`` is the coordinate mapped to [0, 1] (the network's ``[-R, R]`` shifted and scaled);
    ``B ∈ R^{F×d}`` is drawn from N(0, σ²) once, from the trial's seed (the generator is seeded
    before the network is built), and kept fixed: a buffer, saved in checkpoints.
    Shape: ``(*, N, d) -> (*, N, 2F)``.
    """

    knobs = ("ff_sigma", "ff_features")
    defaults = {"ff_sigma": 10.0, "ff_features": 256}

    def __init__(self, in_features: int, features: int, sigma: float, coordinate_range: float) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = 2 * features
        self.sigma = float(sigma)
        self.coordinate_range = float(coordinate_range)
        self.register_buffer("B", torch.randn(features, in_features) * self.sigma)

    @classmethod
    def build(cls, in_features, samples_per_axis, coordinate_range, *, ff_sigma: float = 10.0,
              ff_features: int = 256, **knobs):
        return cls(in_features, int(ff_features), float(ff_sigma), coordinate_range)

    def tensors(self) -> Tuple[torch.Tensor, ...]:
        return (self.B,)

    def _angles(self, x: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
        v = (x + self.coordinate_range) / (2.0 * self.coordinate_range)  # [-R, R] → [0, 1]
        return 2.0 * math.pi * (v @ B.mT)

    def encode(self, x: torch.Tensor, *tensors: torch.Tensor) -> torch.Tensor:
        angles = self._angles(x, tensors[0])
        return torch.cat((torch.cos(angles), torch.sin(angles)), dim=-1)

    def value_and_tangent(self, x, tangent, *tensors):
        """``∂a/∂x = (π / R) · Bᵀ``: the tangent of ``[cos a, sin a]`` is ``[-sin a, cos a] · (π / R) t Bᵀ``."""
        B = tensors[0]
        angles = self._angles(x, B)
        sin, cos = torch.sin(angles), torch.cos(angles)
        t = (math.pi / self.coordinate_range) * (tangent @ B.mT)  # (D, *, 1, F)
        return torch.cat((cos, sin), dim=-1), torch.cat((-sin * t, cos * t), dim=-1)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, features={self.out_features // 2}, sigma={self.sigma}"
