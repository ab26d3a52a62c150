"""The seven networks: steps/s of val, and of val_der on both derivative paths; denormals in every thread.

Networks: relu, relu_pe, relu_ff, sine, finer, gauss, wire (each with its authors' knobs and width).  For each:
training steps/s of ``val`` and of ``val_der`` with the ``autograd`` and the ``forward`` derivative path,
interleaved in one process (``timing.py``), as the trainer sets them up (denormals flushed in every thread,
``sobolev.numerics``).

Then the denormal modes, each in a fresh process (a thread's mode is inherited by the threads it creates, so
the modes cannot share one): Gauss, WIRE and sine ``val_der`` steps/s with IEEE denormals (``none``), with
``torch.set_flush_denormal(True)`` called after the OpenMP pool exists (``after-pool``: the main thread flushes,
the pool's threads do not — what the trainer did before), and before it (``before-pool``: what it does now);
with 2 threads and with 1.  ``exp(-(s·z)²)`` underflows into denormal floats, which some CPUs (Intel's) multiply
10–50× slower.  Not a test: numbers depend on the machine.

    python benchmarks/bench_activations.py                  # CPU: 64², factor 4
    python benchmarks/bench_activations.py --device cuda --size 256
    python benchmarks/bench_activations.py --skip-networks  # the denormal modes only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from typing import Callable, Dict, Tuple

import torch
from rich.console import Console
from rich.table import Table
from timing import device_name, interleaved_medians, warm_up

from sobolev.models import MLPConfig
from sobolev.trainers import ImageRegressionConfig

NETWORKS = ("relu", "relu_pe", "relu_ff", "sine", "finer", "gauss", "wire")
VARIANTS = (("val", "forward"), ("val_der", "autograd"), ("val_der", "forward"))
DENORMAL_NETWORKS = ("gauss", "wire", "sine")
MODES = ("none", "after-pool", "before-pool")


def trainer(network: str, supervision: str, path: str, size: int, device: str):
    return ImageRegressionConfig(image="astronaut", size=size, factor=4, supervision=supervision, steps=10**9,
                                 model=MLPConfig(network), device=device, derivative_impl=path).setup()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            return next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def denormal_mode_rates(mode: str, threads: int, size: int, rounds: int) -> Dict[str, float]:
    """In this (fresh) process: steps/s of each denormal network's val_der step in ``mode``."""
    import sobolev.trainers.base as base

    torch.set_num_threads(threads)
    base.flush_denormals = lambda: False  # the mode is set here, not by the trainer
    if mode == "before-pool":
        torch.set_flush_denormal(True)
    torch.ones(1 << 20).mul_(2.0)  # a parallel op: creates this thread's OpenMP pool
    if mode == "after-pool":
        torch.set_flush_denormal(True)
    fns = {net: warm_up(lambda net=net: trainer(net, "val_der", "forward", size, "cpu").training_step, "cpu")[0]
           for net in DENORMAL_NETWORKS}
    return {net: 1 / s for net, s in interleaved_medians(fns, "cpu", rounds, 1.0).items()}


def denormal_table(args, console: Console) -> None:
    table = Table(title=f"val_der steps/s by denormal mode, {args.size}² colour — {cpu_model()}, "
                        f"torch {torch.__version__}")
    for col in ("network", "threads", *MODES, "before / after"):
        table.add_column(col, justify="right")
    rates = {}
    for threads in (2, 1):
        for mode in MODES:
            proc = subprocess.run([sys.executable, __file__, "--mode", mode, "--threads", str(threads),
                                   "--size", str(args.size), "--rounds", str(args.rounds)],
                                  capture_output=True, text=True, check=True, env={**os.environ})
            rates[(threads, mode)] = json.loads(proc.stdout.strip().splitlines()[-1])
    for net in DENORMAL_NETWORKS:
        for threads in (2, 1):
            r = [rates[(threads, m)][net] for m in MODES]
            table.add_row(net, str(threads), *[f"{x:.1f}" for x in r], f"{r[2] / r[1]:.2f}×")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds-per-round", type=float, default=1.0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS))
    parser.add_argument("--skip-networks", action="store_true", help="Only the denormal modes.")
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:  # one denormal mode, in this fresh process
        print(json.dumps(denormal_mode_rates(args.mode, args.threads, args.size, args.rounds)))
        return
    console = Console(width=None if Console().is_terminal else 160)
    if not args.skip_networks:
        fns: Dict[Tuple, Callable[[], object]] = {}
        for net in args.networks:
            for sup, path in VARIANTS:
                fns[(net, sup, path)], _ = warm_up(
                    lambda net=net, sup=sup, path=path: trainer(net, sup, path, args.size, args.device).training_step,
                    args.device)
        rate = {k: 1 / s for k, s in interleaved_medians(fns, args.device, args.rounds,
                                                          args.seconds_per_round).items()}
        table = Table(title=f"steps/s, {args.size}² colour, factor 4, each network's defaults — "
                            f"{device_name(args.device)} ({cpu_model()}), torch {torch.__version__}")
        for col in ("network", "val", "val_der autograd", "val_der forward", "forward / autograd"):
            table.add_column(col, justify="right")
        for net in args.networks:
            r = [rate[(net, sup, path)] for sup, path in VARIANTS]
            table.add_row(net, *[f"{x:.1f}" for x in r], f"{r[2] / r[1]:.2f}×")
        console.print(table)
    if not args.device.startswith("cuda"):
        denormal_table(args, console)


if __name__ == "__main__":
    main()
