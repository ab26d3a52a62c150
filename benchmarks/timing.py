"""Shared timing for the benchmarks: warm-up with peak memory, then interleaved medians.

Interleaving (round-robin over the variants, several rounds) spreads machine noise — other
processes, frequency scaling — evenly over the variants, so their ratios are fair.
"""

from __future__ import annotations

import resource
import statistics
import time
from typing import Callable, Dict, Hashable

import torch


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name()
    return f"CPU, {torch.get_num_threads()} threads"


def warm_up(build: Callable[[], Callable[[], object]], device: str, steps: int = 3):
    """Build a variant and run a few steps (allocator, kernels, compilation); returns (fn, peak MB).

    CUDA: the peak allocated memory of these steps.  CPU: the process's resident high-water mark,
    which is the variant's own peak when variants are built in order of growing size.
    """
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    fn = build()
    for _ in range(steps):
        fn()
    sync(device)
    if device.startswith("cuda"):
        return fn, torch.cuda.max_memory_allocated() / 2**20
    return fn, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def interleaved_medians(fns: Dict[Hashable, Callable[[], object]], device: str, rounds: int = 5,
                        seconds_per_round: float = 1.0) -> Dict[Hashable, float]:
    """Median seconds per call of every function, timed round-robin."""
    reps = {}
    for key, fn in fns.items():  # calls per round so that each variant runs ~seconds_per_round
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        reps[key] = max(1, int(seconds_per_round / max(time.perf_counter() - start, 1e-6)))
    times = {key: [] for key in fns}
    for _ in range(rounds):
        for key, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            for _ in range(reps[key]):
                fn()
            sync(device)
            times[key].append((time.perf_counter() - start) / reps[key])
    return {key: statistics.median(t) for key, t in times.items()}
