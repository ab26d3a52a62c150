"""Input encodings of the coordinate MLP.

An encoding is registered as a factory ``(in_features, num_samples) -> nn.Module`` whose
module has an ``out_features`` attribute.  ``num_samples`` is the number of training samples
along one axis, which fixes the Nyquist number of frequencies.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from sobolev.errors import ConfigError
from sobolev.registry import Registry

ENCODINGS: Registry[Callable[[int, float], nn.Module]] = Registry("encoding")


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


class PositionalEncoding(nn.Module):
    """Thin module over :func:`positional_encoding` with a fixed number of frequencies."""

    def __init__(self, in_features: int, num_frequencies: int, base: float = math.pi) -> None:
        super().__init__()
        self.in_features = in_features
        self.num_frequencies = num_frequencies
        self.base = base
        self.out_features = in_features + 2 * in_features * num_frequencies

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return positional_encoding(x, self.num_frequencies, self.base)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_frequencies={self.num_frequencies}"


@ENCODINGS.register("pe")
def nyquist_positional_encoding(in_features: int, num_samples: float) -> nn.Module:
    """The paper's ``relu_pos``: NeRF encoding with the Nyquist number of frequencies."""
    return PositionalEncoding(in_features, nyquist_num_frequencies(num_samples))


@ENCODINGS.register("nerf")
def nerf_positional_encoding(in_features: int, num_samples: float) -> nn.Module:
    """TinyNeRF's encoding of a 3-D point: 10 octaves ``sin/cos(2^i x)`` (no π), input kept."""
    return PositionalEncoding(in_features, 10, base=1.0)
