"""Autograd vs forward-mode derivative path: steps/s for val and val_der, gray and colour, two sizes.

Timed in one process and one run, interleaved (round-robin over the variants, several rounds),
medians reported with the ratio forward / autograd; optionally the held-out PSNR after a fixed
number of steps for both paths.  Not a test: numbers depend on the machine.

    python benchmarks/bench_derivatives.py                 # CPU: 64² and 128², factor 4
    python benchmarks/bench_derivatives.py --device cuda --sizes 256 --psnr-steps 2000
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from rich.console import Console
from rich.table import Table

from sobolev.models import MLPConfig
from sobolev.trainers import ImageRegressionConfig


def trainer(size: int, gray: bool, sup: str, impl: str, device: str):
    cfg = ImageRegressionConfig(image="astronaut", size=size, factor=4, grayscale=gray, supervision=sup,
                                steps=10**9, model=MLPConfig("sine"), derivative_impl=impl, device=device)
    return cfg.setup()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps-per-round", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--psnr-steps", type=int, default=300, help="0 skips the PSNR check")
    args = parser.parse_args()
    console = Console()
    variants = [(s, g, sup, impl) for s in args.sizes for g in (True, False) for sup in ("val", "val_der")
                for impl in ("autograd", "forward")]
    trainers = {v: trainer(*v, args.device) for v in variants}
    times = {v: [] for v in variants}
    peak = {v: 0 for v in variants}
    for t in trainers.values():  # warm-up (allocator, kernels)
        for _ in range(3):
            t.training_step()
    for _ in range(args.rounds):
        for v, t in trainers.items():
            if args.device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            sync(args.device)
            start = time.perf_counter()
            for _ in range(args.steps_per_round):
                t.training_step()
            sync(args.device)
            times[v].append((time.perf_counter() - start) / args.steps_per_round)
            if args.device.startswith("cuda"):
                peak[v] = max(peak[v], torch.cuda.max_memory_allocated())
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    table = Table(title=f"derivative path, sine MLP 5×256, factor 4 — {name}, torch {torch.__version__}")
    for col in ("image", "supervision", "autograd steps/s", "forward steps/s", "ratio", "peak MB (autograd/fwd)"):
        table.add_column(col, justify="right")
    for s in args.sizes:
        for g in (True, False):
            for sup in ("val", "val_der"):
                a = 1 / statistics.median(times[(s, g, sup, "autograd")])
                f = 1 / statistics.median(times[(s, g, sup, "forward")])
                mem = (f"{peak[(s, g, sup, 'autograd')] / 2**20:.0f}/{peak[(s, g, sup, 'forward')] / 2**20:.0f}"
                       if args.device.startswith("cuda") else "n/a (CPU)")
                table.add_row(f"{s}² {'gray' if g else 'colour'}", sup, f"{a:.1f}", f"{f:.1f}", f"{f / a:.2f}×", mem)
    console.print(table)
    if args.psnr_steps:
        size = max(args.sizes)
        out = {}
        for impl in ("autograd", "forward"):
            cfg = ImageRegressionConfig(image="astronaut", size=size, factor=4, supervision="val_der",
                                        steps=args.psnr_steps, model=MLPConfig("sine"), derivative_impl=impl,
                                        device=args.device)
            out[impl] = cfg.setup().fit().metrics["test_psnr"]
        console.print(f"held-out PSNR after {args.psnr_steps} val_der steps, colour {size}²: autograd "
                      f"{out['autograd']:.3f} dB, forward {out['forward']:.3f} dB "
                      f"(difference {out['forward'] - out['autograd']:+.3f} dB)")


if __name__ == "__main__":
    main()
