"""Packed trials: trial-steps/s of K = 1, 4, 16 trials trained as one batched network.

K = 1 is an ordinary (unpacked) trial; K > 1 is a :class:`~sobolev.trainers.PackedTrainer` over
K trials with different seeds and images of the same size.  Timed in one process and one run,
interleaved (``timing.py``) after a warm-up, medians reported as trial-steps/s (K × pack
steps/s) with the ratio to K = 1, and peak memory.  Not a test: numbers depend on the machine.

    python benchmarks/bench_packing.py                     # CPU: 48² (the data-efficiency sweep) and 128²
    python benchmarks/bench_packing.py --device cuda --sizes 256
"""

from __future__ import annotations

import argparse
from typing import Sequence

import torch
from rich.console import Console
from rich.table import Table
from timing import device_name, interleaved_medians, warm_up

from sobolev.models import MLPConfig
from sobolev.trainers import ImageRegressionConfig, PackedTrainer

IMAGES = ("astronaut", "coffee", "chelsea", "rocket")


def step_function(k: int, size: int, supervision: str, device: str, factor: int):
    trainers = [ImageRegressionConfig(image=IMAGES[i % len(IMAGES)], size=size, factor=factor, seed=i, steps=10**9,
                                      supervision=supervision, model=MLPConfig("sine"), device=device).setup()
                for i in range(k)]
    if k == 1:
        return trainers[0].training_step  # what an unpacked sweep trial runs
    pack, active = PackedTrainer(trainers), list(range(k))
    return lambda: pack.training_step(active)


def measure(sizes: Sequence[int], packs: Sequence[int], supervisions: Sequence[str], device: str, factor: int = 4,
            rounds: int = 5, seconds: float = 1.0):
    """Trial-steps/s and peak MB of every (size, supervision, K); built in order of growing K."""
    variants = [(s, sup, k) for s in sizes for sup in supervisions for k in sorted(packs)]
    fns, peak = {}, {}
    for v in variants:
        fns[v], peak[v] = warm_up(lambda v=v: step_function(v[2], v[0], v[1], device, factor), device)
    seconds_per_step = interleaved_medians(fns, device, rounds, seconds)
    return {v: v[2] / seconds_per_step[v] for v in variants}, peak


def table(rates, peak, sizes, packs, supervisions, device: str, factor: int = 4) -> Table:
    t = Table(title=f"packed trials, sine MLP 5×256, factor {factor} — {device_name(device)}, "
                    f"torch {torch.__version__}")
    for col in ("image", "supervision", "K", "pack steps/s", "trial-steps/s", "vs K=1", "peak MB"):
        t.add_column(col, justify="right")
    for size in sizes:
        for sup in supervisions:
            base = rates[(size, sup, min(packs))]
            for k in sorted(packs):
                rate = rates[(size, sup, k)]
                t.add_row(f"{size}² colour", sup, str(k), f"{rate / k:.1f}", f"{rate:.1f}", f"{rate / base:.2f}×",
                          f"{peak[(size, sup, k)]:.0f}")
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[48, 128])
    parser.add_argument("--packs", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--supervision", nargs="+", default=["val", "val_der"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds-per-round", type=float, default=1.0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    console = Console(width=None if Console().is_terminal else 160)
    rates, peak = measure(args.sizes, args.packs, args.supervision, args.device, args.factor, args.rounds,
                          args.seconds_per_round)
    console.print(table(rates, peak, args.sizes, args.packs, args.supervision, args.device, args.factor))
    if not args.device.startswith("cuda"):
        console.print("peak MB on CPU: the process's resident high-water mark after building and warming up each "
                      "variant (in order of growing K)")


if __name__ == "__main__":
    main()
