"""The GPU goals of the performance issue, checked in one short run (prepared for a lent device).

  1. ``val_der`` steps/s of the fast paths (forward, compiled) vs the autograd path at Set5 size
     (256², factor 4, colour): goal ≥ 5×; held-out PSNR after a fixed number of steps equal to
     the autograd path's within 0.1 dB.
  2. K = 16 packed trials: trial-steps/s ≥ 8× those of K = 1 (256², val_der and val).
  3. A packed trial equals the same trial run alone (held-out PSNR within 1e-3 dB).

Prints one PASS/MISS line per goal and exits 0 (the numbers are the result, not a test).  Runs
on a CPU too, for checking the script itself: ``--quick`` shrinks everything to seconds.

    python benchmarks/gpu_check.py                         # on the GPU machine (~3-5 min)
    python benchmarks/gpu_check.py --device cpu --quick    # the same code on a CPU, ~1 min
"""

from __future__ import annotations

import argparse
import platform
import time

import bench_derivatives
import bench_packing
import torch
from rich.console import Console
from timing import device_name

from sobolev.models import MLPConfig
from sobolev.trainers import ImageRegressionConfig, PackedTrainer


def verdict(ok: bool) -> str:
    return "[green]PASS[/]" if ok else "[red]MISS[/]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few steps (checking the script)")
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    console = Console(width=None if Console().is_terminal else 160)
    t0 = time.time()
    size, packs = (32, [1, 2, 4]) if args.quick else (256, [1, 4, 16])
    psnr_steps = 20 if args.quick else 2000
    rounds, seconds = (1, 0.2) if args.quick else (5, 1.0)
    paths = bench_derivatives.PATHS[:2] if args.no_compile else bench_derivatives.PATHS
    console.print(f"device: {device_name(args.device)}; torch {torch.__version__}; python {platform.python_version()}")

    # 1. fast derivative paths
    rates, peak = bench_derivatives.measure([size], paths, args.device, grays=(False,), rounds=rounds, seconds=seconds)
    console.print(bench_derivatives.table(rates, peak, [size], paths, args.device, grays=(False,)))
    psnr = bench_derivatives.held_out_psnr(size, paths, args.device, psnr_steps)
    for p in paths[1:]:
        ratio = rates[(size, False, "val_der", p)] / rates[(size, False, "val_der", "autograd")]
        same = abs(psnr[p] - psnr["autograd"]) < 0.1
        console.print(f"goal 1 ({p}): val_der {ratio:.2f}× autograd (goal ≥ 5×) {verdict(ratio >= 5)}; PSNR after "
                      f"{psnr_steps} steps {psnr[p]:.3f} vs {psnr['autograd']:.3f} dB {verdict(same)}")

    # 2. packed trials
    sups = ["val_der", "val"]
    rates, peak = bench_packing.measure([size], packs, sups, args.device, rounds=rounds, seconds=seconds)
    console.print(bench_packing.table(rates, peak, [size], packs, sups, args.device))
    for sup in sups:
        ratio = rates[(size, sup, max(packs))] / rates[(size, sup, 1)]
        console.print(f"goal 2 ({sup}): K={max(packs)} {ratio:.2f}× the trial-steps/s of K=1 (goal ≥ 8×) "
                      f"{verdict(ratio >= 8)}")

    # 3. packed == alone
    configs = [ImageRegressionConfig(image=img, size=size, factor=4, seed=i, steps=psnr_steps // 4,
                                     supervision="val_der", model=MLPConfig("sine"), device=args.device)
               for i, img in enumerate(("astronaut", "coffee"))]
    alone = [c.setup().fit().metrics["test_psnr"] for c in configs]
    packed = [r.metrics["test_psnr"] for r in PackedTrainer([c.setup() for c in configs]).fit()]
    diff = max(abs(a - b) for a, b in zip(alone, packed))
    console.print(f"goal 3: packed vs alone, largest held-out PSNR difference {diff:.2e} dB {verdict(diff < 1e-3)}")
    console.print(f"done in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
