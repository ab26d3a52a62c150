"""The coordinate MLP of the paper and the names under which sweeps ask for it.

A model name is an activation, optionally followed by ``_<encoding>``: ``relu``, ``sine``,
``relu_pe`` (the paper's ``relu_pos``), and any new combination once its activation or
encoding is registered.  The network reads *raw* coordinates (pixel or sample indices) and
normalises them itself, so ``autograd`` derivatives are "per pixel", as the finite-difference
targets are (PROTOCOL.md, "Common to every task").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn

from sobolev.activations import ACTIVATIONS
from sobolev.encodings import ENCODINGS
from sobolev.errors import ConfigError


def known_models() -> List[str]:
    """Every model name that :func:`parse_model_name` accepts."""
    names = []
    for act in ACTIVATIONS.names():
        names.append(act)
        names.extend(f"{act}_{enc}" for enc in ENCODINGS.names())
    return sorted(names)


def parse_model_name(name: str) -> Tuple[str, Optional[str]]:
    """Split ``relu_pe`` into ``("relu", "pe")``; unknown names list the known ones."""
    act, _, enc = name.partition("_")
    if act not in ACTIVATIONS or (enc and enc not in ENCODINGS):
        raise ConfigError(f"unknown activation {name!r}; known: {', '.join(known_models())}")
    return act, (enc or None)


class AffineCoordinates(nn.Module):
    """``x ↦ x · scale + shift`` per input dimension: raw index → the network's coordinate range."""

    def __init__(self, scale: Sequence[float], shift: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("scale", torch.tensor(list(scale), dtype=torch.float32))
        self.register_buffer("shift", torch.tensor(list(shift), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


@dataclass
class MLPConfig:
    """The coordinate MLP; defaults are the paper's (PROTOCOL.md)."""

    activation: str = "sine"
    """Model name: activation with an optional ``_<encoding>`` suffix (``relu``, ``relu_pe``, ``sine``)."""
    hidden_features: int = 256
    """Width of every hidden layer."""
    hidden_layers: int = 3
    """Number of 256→256 hidden layers between the first and the output layer."""
    w0: float = 30.0
    """Frequency factor of sine layers, ``sin(w0 · x)``."""

    def validate(self) -> None:
        parse_model_name(self.activation)
        if self.hidden_features < 1:
            raise ConfigError(f"hidden_features must be >= 1, got {self.hidden_features}")
        if self.hidden_layers < 0:
            raise ConfigError(f"hidden_layers must be >= 0, got {self.hidden_layers}")
        if not self.w0 > 0:
            raise ConfigError(f"w0 must be > 0, got {self.w0}")

    def build(
        self,
        in_features: int,
        out_features: int,
        coordinates: AffineCoordinates,
        samples_per_axis: float,
    ) -> "CoordinateMLP":
        """The network for a signal; ``samples_per_axis`` sizes a Nyquist positional encoding."""
        self.validate()
        act_name, enc_name = parse_model_name(self.activation)
        encoding = ENCODINGS.get(enc_name)(in_features, samples_per_axis) if enc_name else None
        return CoordinateMLP(
            in_features,
            out_features,
            hidden_features=self.hidden_features,
            hidden_layers=self.hidden_layers,
            activation=act_name,
            w0=self.w0,
            coordinates=coordinates,
            encoding=encoding,
        )


class CoordinateMLP(nn.Module):
    """``Linear(in,256)+act, hidden_layers × [Linear(256,256)+act], Linear(256,out)``.

    Shape:
        - input: ``(N, in_features)`` raw coordinates
        - output: ``(N, out_features)``
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        hidden_features: int = 256,
        hidden_layers: int = 3,
        activation: str = "sine",
        w0: float = 30.0,
        coordinates: Optional[AffineCoordinates] = None,
        encoding: Optional[nn.Module] = None,
    ) -> None:
        super().__init__()
        self.coordinates = coordinates if coordinates is not None else nn.Identity()
        self.encoding = encoding if encoding is not None else nn.Identity()
        first_in = getattr(encoding, "out_features", in_features)
        widths = [first_in] + [hidden_features] * (hidden_layers + 1)
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.activations = nn.ModuleList(ACTIVATIONS.get(activation)(w0) for _ in self.linears)
        self.output = nn.Linear(hidden_features, out_features)
        # The paper's init: each activation initialises the layer in front of it; the output
        # layer takes the init of the last activation.
        for i, (linear, act) in enumerate(zip(self.linears, self.activations)):
            act.init_linear(linear, first=(i == 0))
        self.activations[-1].init_linear(self.output, first=False)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        h = self.encoding(self.coordinates(coords))
        for linear, act in zip(self.linears, self.activations):
            h = act(linear(h))
        return self.output(h)
