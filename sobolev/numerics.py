"""Floating-point modes that decide a CPU's speed: denormal floats flushed to zero in every thread that computes.

Gauss's ``exp(-(s0·z)²)`` and WIRE's Gaussian window underflow into denormal (subnormal) floats, which many
x86 CPUs (Intel's among them) multiply 10–50× slower than normal ones unless the FTZ/DAZ bits of the thread's
MXCSR register flush them to zero.  ``torch.set_flush_denormal`` sets those bits for the *calling thread only*;
the OpenMP threads of torch's intra-op pool keep the mode they were created with, and a new thread inherits its
creator's.  So the mode is set once, in the thread that will compute, *before* its first parallel operation
(which creates its pool): :func:`flush_denormals` at the start of every trial (``RegressionTrainer``, before it
loads any data) and of every worker entry point (a Tune trial runs in a fresh thread of its actor).

Flushing changes a result only where a denormal occurs, so on a CPU it is always on: measured on an AMD EPYC
(torch 2.13), the seven networks × val, val_der × factors 2, 4 (chelsea, 48², 150 steps) give the same held-out
PSNR, SSIM and final loss to the last bit with and without it (docs/performance.md).  CUDA kernels flush by
their own rules.
"""

from __future__ import annotations

import torch


def flush_denormals() -> bool:
    """Set FTZ/DAZ in the calling thread (and so in every thread it creates from now on); False where the CPU
    has no such mode."""
    return bool(torch.set_flush_denormal(True))
