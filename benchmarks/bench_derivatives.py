"""Autograd vs the fast derivative paths: steps/s for val and val_der, gray and colour, two sizes.

Paths: ``autograd`` (the paper's formulation), ``forward`` (analytic tangents, eager) and
``compiled`` (forward + ``torch.compile``; CUDA graphs on GPU).  Timed in one process and one
run, interleaved (``timing.py``) after a warm-up that also compiles, medians reported with the
ratios to autograd and peak memory; then the held-out PSNR after a fixed number of ``val_der``
steps for every path.  Not a test: numbers depend on the machine.

    python benchmarks/bench_derivatives.py                 # CPU: 64² and 128², factor 4
    python benchmarks/bench_derivatives.py --device cuda --sizes 256 --psnr-steps 2000
"""

from __future__ import annotations

import argparse
from typing import Dict, List, Sequence, Tuple

import torch
from rich.console import Console
from rich.table import Table
from timing import device_name, interleaved_medians, warm_up

from sobolev.models import MLPConfig
from sobolev.trainers import ImageRegressionConfig

PATHS = ("autograd", "forward", "compiled")
Variant = Tuple[int, bool, str, str]  # size, gray, supervision, path


def config(size: int, gray: bool, sup: str, path: str, device: str, steps: int) -> ImageRegressionConfig:
    return ImageRegressionConfig(image="astronaut", size=size, factor=4, grayscale=gray, supervision=sup,
                                 steps=steps, model=MLPConfig("sine"), device=device,
                                 derivative_impl="autograd" if path == "autograd" else "forward",
                                 compile=path == "compiled")


def measure(sizes: Sequence[int], paths: Sequence[str], device: str, grays=(True, False),
            supervisions=("val", "val_der"), rounds: int = 5, seconds: float = 1.0):
    """Steps/s and peak MB of every (size, gray, supervision, path)."""
    variants: List[Variant] = [(s, g, sup, p) for s in sizes for g in grays for sup in supervisions for p in paths]
    fns, peak = {}, {}
    for v in variants:
        fns[v], peak[v] = warm_up(lambda v=v: config(*v, device, 10**9).setup().training_step, device)
    seconds_per_step = interleaved_medians(fns, device, rounds, seconds)
    return {v: 1 / seconds_per_step[v] for v in variants}, peak


def held_out_psnr(size: int, paths: Sequence[str], device: str, steps: int) -> Dict[str, float]:
    return {p: config(size, False, "val_der", p, device, steps).setup().fit().metrics["test_psnr"] for p in paths}


def table(rates, peak, sizes, paths, device: str, grays=(True, False), supervisions=("val", "val_der")) -> Table:
    t = Table(title=f"derivative path, sine MLP 5×256, factor 4 — {device_name(device)}, torch {torch.__version__}")
    for col in ("image", "supervision", *[f"{p} steps/s" for p in paths], *[f"{p} / autograd" for p in paths[1:]],
                f"peak MB ({'/'.join(paths)})"):
        t.add_column(col, justify="right")
    for s in sizes:
        for g in grays:
            for sup in supervisions:
                rate = {p: rates[(s, g, sup, p)] for p in paths}
                t.add_row(f"{s}² {'gray' if g else 'colour'}", sup, *[f"{rate[p]:.1f}" for p in paths],
                          *[f"{rate[p] / rate['autograd']:.2f}×" for p in paths[1:]],
                          "/".join(f"{peak[(s, g, sup, p)]:.0f}" for p in paths))
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds-per-round", type=float, default=1.0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--psnr-steps", type=int, default=300, help="0 skips the PSNR check")
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled path (compiling takes minutes)")
    args = parser.parse_args()
    console = Console(width=None if Console().is_terminal else 160)
    paths = PATHS[:2] if args.no_compile else PATHS
    rates, peak = measure(args.sizes, paths, args.device, rounds=args.rounds, seconds=args.seconds_per_round)
    console.print(table(rates, peak, args.sizes, paths, args.device))
    if not args.device.startswith("cuda"):
        console.print("peak MB on CPU: the process's resident high-water mark after warming each variant up")
    if args.psnr_steps:
        size = max(args.sizes)
        psnr = held_out_psnr(size, paths, args.device, args.psnr_steps)
        console.print(f"held-out PSNR after {args.psnr_steps} val_der steps, colour {size}²: "
                      + ", ".join(f"{p} {v:.3f} dB ({v - psnr['autograd']:+.3f})" for p, v in psnr.items()))


if __name__ == "__main__":
    main()
