"""Which samples of a signal the network is trained on; the rest are held out for testing.

Two schemes: the paper's regular grid ``signal[::factor, ::factor]`` (factor 1..8), and a
seeded random fraction ``ratio`` of all samples, for data-efficiency sweeps.  In both, the
held-out set is every sample not trained on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence, Tuple

from sobolev.errors import ConfigError

if TYPE_CHECKING:  # torch is imported where a mask is made: reading a sampling level (a report) needs no torch
    import torch

MAX_FACTOR = 8


@dataclass(frozen=True)
class Sampling:
    """A training set: the ``::factor`` grid, or, when ``ratio`` is set, a random fraction."""

    factor: int = 4
    """Keep every ``factor``-th sample along each axis (the paper: 4 for images, 5 for audio)."""
    ratio: Optional[float] = None
    """If set, train on this random fraction of all samples instead of the grid."""
    seed: int = 0
    """Seed of the random subset (unused on the grid)."""
    max_factor: int = MAX_FACTOR
    """Largest grid factor accepted."""

    def validate(self) -> None:
        if self.ratio is None:
            if isinstance(self.factor, bool) or not isinstance(self.factor, int):
                raise ConfigError(f"factor must be an integer in 1..{self.max_factor}, got {self.factor!r}")
            if not 1 <= self.factor <= self.max_factor:
                raise ConfigError(f"factor must be in 1..{self.max_factor}, got {self.factor}")
        elif not (isinstance(self.ratio, (int, float)) and 0.0 < self.ratio <= 1.0):
            raise ConfigError(f"ratio must be in (0, 1], got {self.ratio!r}")

    @property
    def is_grid(self) -> bool:
        return self.ratio is None

    def fraction(self, ndim: int) -> float:
        """Share of the samples trained on: ``1/factor^ndim`` on the grid, else ``ratio``."""
        return float(self.ratio) if self.ratio is not None else 1.0 / self.factor**ndim

    def label(self) -> str:
        return f"factor={self.factor}" if self.is_grid else f"ratio={self.ratio:g}"

    def equivalent_factor(self, ndim: int) -> int:
        """The grid factor with about the same density: ``factor`` itself, or ``ratio^(-1/ndim)``."""
        if self.is_grid:
            return self.factor
        return max(1, int(round(self.ratio ** (-1.0 / ndim))))

    def mask(self, shape: Sequence[int]) -> torch.Tensor:
        """Boolean tensor of ``shape``: True on the training samples.

        Shape:
            - output: ``shape``, e.g. ``(H, W)`` or ``(N,)``
        """
        import torch

        self.validate()
        shape = tuple(int(s) for s in shape)
        if self.is_grid:
            mask = torch.zeros(shape, dtype=torch.bool)
            mask[tuple(slice(None, None, self.factor) for _ in shape)] = True
            return mask
        total = math.prod(shape)
        count = max(1, int(round(self.ratio * total)))
        generator = torch.Generator().manual_seed(int(self.seed))
        chosen = torch.randperm(total, generator=generator)[:count]
        mask = torch.zeros(total, dtype=torch.bool)
        mask[chosen] = True
        return mask.reshape(shape)

    def grid_shape(self, shape: Sequence[int]) -> Tuple[int, ...]:
        """Shape of the ``::factor`` training grid (grid sampling only)."""
        return tuple(math.ceil(int(s) / self.factor) for s in shape)

    def samples_per_axis(self, shape: Sequence[int]) -> float:
        """Training samples along the shortest axis, which sets the Nyquist positional encoding.

        docs/protocol.md: ``min(h, w)`` of the downsampled image (2-D) or the number of training
        samples (1-D).  A random fraction counts as a grid of the same density.
        """
        if self.is_grid:
            return float(min(self.grid_shape(shape)))
        return float(min(shape)) * self.ratio ** (1.0 / len(shape))
