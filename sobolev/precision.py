"""The precision of a trial's matrix products: fp32 (the paper's), tf32 or bf16 — and exact emulations of the last
two on any CPU.

Tensor cores multiply TF32 (10 explicit mantissa bits) or bfloat16 (7 explicit, 8 with the implicit one) operands
and accumulate in fp32; that is where reduced precision buys speed.  The recipe of a reduced-precision trial
(chosen by ``benchmarks/bench_precision.py``, docs/performance.md):

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

The precision of the current thread's products is a context (:func:`matmul_precision`), read by
``sobolev.models.affine`` and the forward-mode Jacobian; the trainer enters it around each step and evaluation.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import Iterator, List, Optional

import torch
import torch.nn.functional as F

from sobolev.errors import ConfigError

PRECISIONS: List[str] = ["fp32", "tf32", "bf16"]
"""The trial setting ``precision``."""
EMULATED = {"tf32-emulated": 10, "bf16-emulated": 7}
"""Emulations for the fidelity benchmark: explicit mantissa bits kept."""


def round_mantissa(x: torch.Tensor, bits: int) -> torch.Tensor:
    """``x`` (float32, or complex64 part by part) rounded to ``bits`` explicit mantissa bits, to nearest, ties to
    even — as a tensor core reads its operands.  Not differentiable (see :func:`rounded`)."""
    if x.is_complex():
        return torch.view_as_complex(round_mantissa(torch.view_as_real(x), bits))
    drop = 23 - bits
    if drop <= 0:
        return x
    i = x.contiguous().view(torch.int32)
    tie = (i >> drop) & 1
    i = ((i + tie + ((1 << (drop - 1)) - 1)) >> drop) << drop
    return i.view(torch.float32)


def rounded(x: torch.Tensor, bits: int) -> torch.Tensor:
    """:func:`round_mantissa` with a straight-through gradient (differentiable to any order)."""
    return x + (round_mantissa(x.detach(), bits) - x).detach()


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
        bits = ctx.bits
        grad_a = rounded_matmul(grad, b.mT.conj(), bits) if ctx.needs_input_grad[0] else None
        grad_b = rounded_matmul(a.mT.conj(), grad, bits) if ctx.needs_input_grad[1] else None
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
    """How the products of the layers after the first are taken (module docstring)."""

    name: str = "fp32"

    @property
    def exact(self) -> bool:
        return self.name in ("fp32", "tf32")  # TF32 is the hardware's own mode: the products are written as fp32

    def matmul(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.exact:
            return a @ b
        if self.name in EMULATED:
            return rounded_matmul(a, b, EMULATED[self.name])
        return (a.to(torch.bfloat16) @ b.to(torch.bfloat16)).to(a.dtype)

    def affine(self, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``h W^T + b``; the bias added in fp32 (tensor cores' epilogue)."""
        if self.exact:
            if weight.ndim == 2:
                return F.linear(h, weight, bias)
            return torch.baddbmm(bias.unsqueeze(-2), h, weight.mT)
        out = self.matmul(h, weight.mT)
        return out + (bias if weight.ndim == 2 else bias.unsqueeze(-2))


FP32 = MatmulPrecision()
_current: contextvars.ContextVar[MatmulPrecision] = contextvars.ContextVar("matmul_precision", default=FP32)


def current() -> MatmulPrecision:
    """The precision of the products of the layers after the first, in this thread."""
    return _current.get()


@contextlib.contextmanager
def matmul_precision(precision: MatmulPrecision) -> Iterator[None]:
    token = _current.set(precision)
    try:
        yield
    finally:
        _current.reset(token)


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


def check_precision(name: str, device: str, complex_layers: bool = False) -> str:
    """A precision this trial can run: ``tf32`` needs CUDA; bfloat16 has no complex type (WIRE)."""
    if name not in PRECISIONS:
        raise ConfigError(f"unknown precision {name!r}; known: {', '.join(PRECISIONS)}")
    if name == "tf32" and not str(device).startswith("cuda"):
        raise ConfigError("tf32 is a mode of CUDA's tensor cores; on a CPU: fp32 or bf16 (device is "
                          f"{device!r})")
    if name == "bf16" and complex_layers:
        raise ConfigError("bf16 has no complex type and this network's layers are complex (wire); allowed: fp32"
                          + (", tf32" if str(device).startswith("cuda") else ""))
    return name
