"""The precision of a trial's matrix products: fp32 (the paper's), tf32 or bf16 — and exact emulations of the last
two on any CPU.

Tensor cores multiply TF32 (10 explicit mantissa bits) or bfloat16 (7 explicit, 8 with the implicit one) operands
and accumulate in fp32; that is where reduced precision buys speed.  The recipe of a reduced-precision trial
(measured by ``benchmarks/bench_precision.py``, docs/performance.md):

- the **hidden and output layers'** products (values, and the forward-mode tangents ``t @ W^T``) take reduced
  operands, their results fp32;
- the **first layer** (and an encoding: the raw coordinates, whose precision sets a SIREN's phase ``ω0 · W x``),
  the activations, the loss, the metrics, the derivative targets, the parameters and Adam's state stay fp32.

``bf16`` casts the operands to ``torch.bfloat16`` (oneDNN on a CPU, with AVX-512-BF16/AMX where present; tensor
cores on CUDA) and the product back to fp32, so autograd's backward products take bf16 operands too.  ``tf32`` is
CUDA's TF32 mode (``torch.backends.cuda.matmul.allow_tf32``), turned on for the trial's process, the first
layer's products taken with it off.  The emulations (``tf32-emulated``, ``bf16-emulated``, for the benchmark) round
every operand of the same products — backward products included — to 10 or 7 explicit mantissa bits
(round-to-nearest-even) and multiply in fp32: what tensor cores compute, on any CPU.

A network carries its precision (``CoordinateMLP.precision``, a plain attribute that ``torch.compile`` guards on),
read by ``sobolev.models.affine`` and the forward-mode Jacobian; the trainer sets it from the trial's config.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Optional

import torch
import torch.nn.functional as F

from sobolev.errors import ConfigError
from sobolev.registry import Registry


def round_mantissa(x: torch.Tensor, bits: int) -> torch.Tensor:
    """``x`` (float32, or complex64 part by part) rounded to ``bits`` explicit mantissa bits, to nearest, ties to
    even — as a tensor core reads its operands.  Not differentiable (see :func:`rounded`)."""
    if x.is_complex():
        return torch.view_as_complex(round_mantissa(torch.view_as_real(x.resolve_conj()), bits))
    drop = 23 - bits
    if drop <= 0:
        return x
    i = x.contiguous().view(torch.int32)
    tie = (i >> drop) & 1
    i = ((i + tie + ((1 << (drop - 1)) - 1)) >> drop) << drop
    return i.view(torch.float32)


class _RoundedMatmul(torch.autograd.Function):
    """``a @ b`` with both operands rounded to ``bits``, accumulated in fp32; its backward products round their
    operands too (the incoming gradient included), and are themselves differentiable (double backward)."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, bits: int) -> torch.Tensor:
        ctx.save_for_backward(a, b)
        ctx.bits = bits
        return round_mantissa(a, bits) @ round_mantissa(b, bits)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        a, b = ctx.saved_tensors
        grad_a = rounded_matmul(grad, b.mT.conj(), ctx.bits) if ctx.needs_input_grad[0] else None
        grad_b = rounded_matmul(a.mT.conj(), grad, ctx.bits) if ctx.needs_input_grad[1] else None
        return _sum_to(grad_a, a), _sum_to(grad_b, b), None


def _sum_to(grad: Optional[torch.Tensor], like: torch.Tensor) -> Optional[torch.Tensor]:
    """A broadcast operand's gradient summed back to its shape (``(D, K, N, F) @ (K, F, G)``)."""
    if grad is None or grad.shape == like.shape:
        return grad
    extra = grad.ndim - like.ndim
    grad = grad.sum(dim=tuple(range(extra))) if extra > 0 else grad
    dims = tuple(i for i, (g, s) in enumerate(zip(grad.shape, like.shape)) if s == 1 and g != 1)
    return grad.sum(dim=dims, keepdim=True) if dims else grad


def rounded_matmul(a: torch.Tensor, b: torch.Tensor, bits: int) -> torch.Tensor:
    return _RoundedMatmul.apply(a, b, bits)


@dataclass(frozen=True)
class MatmulPrecision:
    """How the products of the layers after the first are taken: in fp32 (this class), or another way (the
    subclasses).  ``first_layer``: the first layer's products too (the benchmark's question; trials keep them
    fp32)."""

    first_layer: bool = False

    def matmul(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ b

    def affine(self, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``h W^T + b`` (one network, or K stacked: ``(K, out, in)`` weights); the bias added in fp32."""
        if weight.ndim == 2:
            return F.linear(h, weight, bias)
        return torch.baddbmm(bias.unsqueeze(-2), h, weight.mT)

    def prepare(self, device: torch.device) -> None:
        """What the trial's process needs for this precision (a mode of the hardware)."""

    def check(self, device: str, complex_layers: bool) -> None:
        """A :class:`ConfigError` where this precision cannot run the trial."""


@dataclass(frozen=True)
class TensorFloat32(MatmulPrecision):
    """CUDA's TF32 mode: the products are written as fp32, the hardware rounds their operands."""

    def prepare(self, device: torch.device) -> None:
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

    def check(self, device: str, complex_layers: bool) -> None:
        if not str(device).startswith("cuda"):
            raise ConfigError(f"tf32 is a mode of CUDA's tensor cores; on a CPU (device {device!r}): fp32 or bf16")


@dataclass(frozen=True)
class _ProductThenBias(MatmulPrecision):
    def affine(self, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        out = self.matmul(h, weight.mT)
        return out + (bias if weight.ndim == 2 else bias.unsqueeze(-2))


@dataclass(frozen=True)
class CastTo(_ProductThenBias):
    """Operands cast to a narrower float type, the product cast back to fp32 (autograd's backward products take
    the narrow type too)."""

    dtype: torch.dtype = torch.bfloat16

    def matmul(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a.to(self.dtype) @ b.to(self.dtype)).to(a.dtype)

    def check(self, device: str, complex_layers: bool) -> None:
        if complex_layers:
            name = str(self.dtype).removeprefix("torch.")
            raise ConfigError(f"{name} has no complex type and this network's layers are complex (wire); "
                              "allowed: fp32" + (", tf32" if str(device).startswith("cuda") else ""))


@dataclass(frozen=True)
class Rounded(_ProductThenBias):
    """An emulation: operands rounded to ``bits`` explicit mantissa bits, multiplied in fp32 (any device; complex
    operands part by part)."""

    bits: int = 23

    def matmul(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return rounded_matmul(a, b, self.bits)


PRECISIONS: Registry[MatmulPrecision] = Registry("precision")
"""The trial setting ``precision``."""
PRECISIONS.register("fp32")(MatmulPrecision())
PRECISIONS.register("tf32")(TensorFloat32())
PRECISIONS.register("bf16")(CastTo(dtype=torch.bfloat16))
EMULATIONS: Registry[MatmulPrecision] = Registry("emulated precision")
"""Tensor cores emulated on any device, for ``benchmarks/bench_precision.py``."""
EMULATIONS.register("tf32-emulated")(Rounded(bits=10))
EMULATIONS.register("bf16-emulated")(Rounded(bits=7))
FP32 = PRECISIONS.get("fp32")


@contextlib.contextmanager
def exact_products() -> Iterator[None]:
    """The first layer's products in full fp32 (TF32 off for them on CUDA)."""
    if torch.cuda.is_available() and torch.backends.cuda.matmul.allow_tf32:
        torch.backends.cuda.matmul.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32 = True
    else:
        yield
