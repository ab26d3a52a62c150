"""The coordinate MLP of the paper and the names under which sweeps ask for it.

A model name is an activation, optionally followed by ``_<encoding>``: ``relu``, ``sine``,
``relu_pe`` (the paper's ``relu_pos``), and any new combination once its activation or
encoding is registered.  The network reads *raw* coordinates (pixel or sample indices) and
normalises them itself, so ``autograd`` derivatives are "per pixel", as the finite-difference
targets are (docs/protocol.md, "Common to every task").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Dict, List, Optional, Sequence, Tuple

import torch
from pydantic import AfterValidator, Field, model_validator
from torch import nn

from sobolev.activations import ACTIVATIONS
from sobolev.config import Integer, Number, Settings
from sobolev.encodings import ENCODINGS, Encoding
from sobolev.errors import ConfigError
from sobolev.precision import FP32, MatmulPrecision, exact_products


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


def check_model_name(name: str) -> str:
    """A field validator: ``name`` if :func:`parse_model_name` accepts it."""
    parse_model_name(name)
    return name


class MLPConfig(Settings):
    """The coordinate MLP; defaults are the paper's (docs/protocol.md, "Common to every task").

    An activation or encoding may want other defaults than the config's (WIRE: ω0 = 20, width 181;
    Gauss: s0 = 30; Fourier features: σ = 10, 256 features): a field left unset takes the network's
    own value (``Activation.defaults``, ``Encoding.defaults``).  Knobs a network does not read are
    ignored by it.
    """

    setting_noun: ClassVar[str] = "model setting"
    added_fields = frozenset({"s0", "detach_scale", "ff_sigma", "ff_features"})

    activation: Annotated[str, AfterValidator(check_model_name)] = "sine"
    """Model name: an activation (relu, sine, finer, gauss, wire) with an optional ``_<encoding>``
    suffix (pe: Nyquist positional encoding, ff: random Fourier features): relu, relu_pe, sine,
    finer, gauss, wire, relu_ff, …"""
    hidden_features: Integer = Field(256, ge=1)
    """Width of every hidden layer (wire: 181, a complex layer holding two numbers per weight)."""
    hidden_layers: Integer = Field(3, ge=0)
    """Number of hidden-to-hidden layers between the first and the output layer."""
    w0: Number = Field(30.0, gt=0)
    """Frequency factor ω0: sine ``sin(w0 · z)``, finer ``sin(w0 · (|z|+1) · z)``, wire ``exp(i · w0 · z …)``
    (wire: 20)."""
    s0: Optional[Number] = Field(None, gt=0)
    """Scale: gauss ``exp(-(s0 · z)²)`` (30), wire's Gaussian window ``|s0 · z|²`` (10)."""
    detach_scale: bool = False
    """finer: detach the scale ``|z| + 1`` from the gradient as FINER's code does (value-only training)."""
    ff_sigma: Optional[Number] = Field(None, gt=0)
    """Fourier features (``_ff``): std σ of the random frequencies B (10)."""
    ff_features: Optional[Integer] = Field(None, ge=1)
    """Fourier features (``_ff``): number of random frequencies, the encoding has twice as many (256)."""

    def __init__(self, activation: Optional[str] = None, **settings: Any) -> None:
        """``MLPConfig("relu_pe", hidden_layers=4)``: the model name may come first."""
        super().__init__(**settings, **({"activation": activation} if activation is not None else {}))

    @model_validator(mode="after")
    def _network_defaults(self) -> "MLPConfig":
        """The chosen activation's and encoding's own defaults for the fields the config leaves unset (they
        stay unset: a changed activation takes its own defaults, and trial keys see only what was set)."""
        act, enc = parse_model_name(self.activation)
        defaults = {**ACTIVATIONS.get(act).defaults, **(ENCODINGS.get(enc).defaults if enc else {})}
        for name, value in defaults.items():
            if name not in self.model_fields_set:
                object.__setattr__(self, name, value)
        return self

    @property
    def complex_layers(self) -> bool:
        """Its layers after the first are complex (wire)."""
        return ACTIVATIONS.get(parse_model_name(self.activation)[0]).complex_layers

    def reads(self, name: str) -> bool:
        """Whether the network this config builds reads field ``name`` (a knob of another network does not)."""
        if name not in self.knobs():
            return True
        act, enc = parse_model_name(self.activation)
        return name in ACTIVATIONS.get(act).knobs or (enc is not None and name in ENCODINGS.get(enc).knobs)

    def knobs(self) -> Dict[str, Any]:
        """Every knob an activation or encoding may read, by name."""
        return {name: getattr(self, name) for name in ("w0", "s0", "detach_scale", "ff_sigma", "ff_features")}

    def build(
        self,
        in_features: int,
        out_features: int,
        coordinates: Optional[AffineCoordinates],
        samples_per_axis: float,
    ) -> "CoordinateMLP":
        """The network for a signal; ``samples_per_axis`` sizes a Nyquist positional encoding.

        The coordinate map sends the signal onto ``[-R, R]`` per axis (R = 1 for images, 100 for
        audio); an encoding that needs [0, 1] (Fourier features) is told R.
        """
        act_name, enc_name = parse_model_name(self.activation)
        encoding = None
        if enc_name:
            enc_cls = ENCODINGS.get(enc_name)
            radius = float(-coordinates.shift.min()) if coordinates is not None else 1.0
            encoding = enc_cls.build(in_features, samples_per_axis, radius,
                                     **{k: v for k, v in self.knobs().items() if k in enc_cls.knobs})
        return CoordinateMLP(
            in_features,
            out_features,
            hidden_features=self.hidden_features,
            hidden_layers=self.hidden_layers,
            activation=act_name,
            coordinates=coordinates,
            encoding=encoding,
            **self.knobs(),
        )


Affine = Tuple[torch.Tensor, torch.Tensor]


@dataclass
class MLPTensors:
    """The tensors of one :class:`CoordinateMLP`, or of K of them stacked along a leading axis.

    The functional form lets one piece of code run a single network or a pack of K networks
    of the same architecture (``sobolev.trainers.packed``) as batched matrix products.

    Shape (one network / K stacked):
        - linears, output: weight ``(out, in)`` / ``(K, out, in)``, bias ``(out,)`` / ``(K, out)``
        - scale, shift: ``(D,)`` / ``(K, D)``, the raw → network coordinate map
    """

    linears: List[Affine]
    output: Affine
    scale: torch.Tensor
    shift: torch.Tensor
    encoding: Tuple[torch.Tensor, ...] = ()
    """The encoding's own tensors (Fourier features' B ``(F, D)`` / ``(K, F, D)``); none for the others."""


def affine(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, precision: MatmulPrecision = FP32,
           first: bool = False) -> torch.Tensor:
    """``h W^T + b`` for one network (``F.linear``) or K stacked ones (``baddbmm``), its product taken in
    ``precision`` (``sobolev.precision``) unless it is the ``first`` layer's, which stays fp32.

    Shape:
        - h: ``(N, in)`` / ``(K, N, in)``
        - output: ``(N, out)`` / ``(K, N, out)``
    """
    if first and not precision.first_layer:
        with exact_products():
            return FP32.affine(h, weight, bias)
    return precision.affine(h, weight, bias)


def tangent_product(t: torch.Tensor, weight: torch.Tensor, precision: MatmulPrecision = FP32,
                    first: bool = False) -> torch.Tensor:
    """``t W^T`` for the input tangents ``t`` (forward-mode Jacobian), in the layer's precision (:func:`affine`)."""
    if first and not precision.first_layer:
        with exact_products():
            return t @ weight.mT
    return precision.matmul(t, weight.mT)


def stack_tensors(models: Sequence["CoordinateMLP"]) -> MLPTensors:
    """K networks' tensors stacked (``torch.stack`` keeps every network's own parameters as leaves,
    so gradients flow back to each network and each keeps its own optimiser)."""
    each = [m.tensors() for m in models]

    def stack(pairs: Sequence[Affine]) -> Affine:
        return torch.stack([w for w, _ in pairs]), torch.stack([b for _, b in pairs])

    return MLPTensors(
        linears=[stack([t.linears[i] for t in each]) for i in range(len(each[0].linears))],
        output=stack([t.output for t in each]),
        scale=torch.stack([t.scale for t in each]),
        shift=torch.stack([t.shift for t in each]),
        encoding=tuple(torch.stack(ts) for ts in zip(*(t.encoding for t in each))),
    )


class CoordinateMLP(nn.Module):
    """``Linear(in,256)+act, hidden_layers × [Linear(256,256)+act], Linear(256,out)``.

    A complex activation (WIRE) makes every layer after the first complex; the output is then the
    real part of the output layer.

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
        coordinates: Optional[AffineCoordinates] = None,
        encoding: Optional[Encoding] = None,
        **knobs: Any,
    ) -> None:
        """``knobs``: the activation's settings (``w0``, ``s0``, ``detach_scale``); those it does not
        read are ignored."""
        super().__init__()
        self.coordinates = coordinates if coordinates is not None else nn.Identity()
        self.encoding = encoding if encoding is not None else nn.Identity()
        act_cls = ACTIVATIONS.get(activation)
        first_in = getattr(encoding, "out_features", in_features)
        widths = [first_in] + [hidden_features] * (hidden_layers + 1)
        dtype = torch.cfloat if act_cls.complex_layers else None
        self.linears = nn.ModuleList(nn.Linear(a, b, dtype=dtype if i else None)
                                     for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])))
        self.activations = nn.ModuleList(act_cls(**{k: v for k, v in knobs.items() if k in act_cls.knobs})
                                         for _ in self.linears)
        self.output = nn.Linear(hidden_features, out_features, dtype=dtype)
        # The authors' init: each activation initialises the layer in front of it; the output
        # layer takes the init of the last activation.
        for i, (linear, act) in enumerate(zip(self.linears, self.activations)):
            act.init_linear(linear, first=(i == 0))
        self.activations[-1].init_linear(self.output, first=False)
        self.precision = FP32
        """The precision of the products after the first layer (``sobolev.precision``; the trainer sets it)."""

    @property
    def flush_denormals(self) -> bool:
        """Its activations underflow into denormal floats (slow on a CPU unless flushed to zero)."""
        return any(act.flush_denormals for act in self.activations)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        h = self.encoding(self.coordinates(coords))
        for i, (linear, act) in enumerate(zip(self.linears, self.activations)):
            h = act(affine(h, linear.weight, linear.bias, self.precision, first=i == 0))
        out = affine(h, self.output.weight, self.output.bias, self.precision)
        return out.real if out.is_complex() else out

    def double(self) -> "CoordinateMLP":
        """float64 (complex128 for complex layers): for exact comparisons in tests."""
        return self._apply(lambda t: t.to(torch.complex128) if t.is_complex()
                           else t.double() if t.is_floating_point() else t)

    def tensors(self) -> MLPTensors:
        """This network's parameters (and coordinate map, and encoding tensors) in functional form."""
        if isinstance(self.coordinates, AffineCoordinates):
            scale, shift = self.coordinates.scale, self.coordinates.shift
        else:
            d = self.linears[0].in_features if isinstance(self.encoding, nn.Identity) else self.encoding.in_features
            scale = torch.ones(d, device=self.output.weight.device)
            shift = torch.zeros(d, device=self.output.weight.device)
        encoding = self.encoding.tensors() if isinstance(self.encoding, Encoding) else ()
        return MLPTensors([(lin.weight, lin.bias) for lin in self.linears], (self.output.weight, self.output.bias),
                          scale, shift, encoding)

    def forward_with(self, tensors: MLPTensors, coords: torch.Tensor) -> torch.Tensor:
        """The forward pass with ``tensors`` in place of this network's own (e.g. K stacked networks).

        Shape:
            - coords: ``(N, D)`` / ``(K, N, D)``
            - output: ``(N, C)`` / ``(K, N, C)``
        """
        h = coords * tensors.scale.unsqueeze(-2) + tensors.shift.unsqueeze(-2)
        if isinstance(self.encoding, Encoding):
            h = self.encoding.encode(h, *tensors.encoding)
        for i, ((w, b), act) in enumerate(zip(tensors.linears, self.activations)):
            h = act(affine(h, w, b, self.precision, first=i == 0))
        out = affine(h, *tensors.output, self.precision)
        return out.real if out.is_complex() else out
