"""Does Sobolev training survive TF32 and bfloat16?  The fidelity table, measured without a GPU.

Tensor cores multiply reduced-precision operands (TF32: 10 explicit mantissa bits; bfloat16: 7) and accumulate in
fp32.  ``sobolev.precision`` emulates exactly that on a CPU — every operand of the hidden and output layers'
products, backward products included, rounded to nearest-even, the products taken in fp32 — so the PSNR a
reduced-precision trial loses can be measured here for every network.  Real bfloat16 (operands cast to
``torch.bfloat16``, oneDNN on this CPU) runs beside the emulation as its check: the same rounding of the operands,
so their PSNRs should agree within the seeds' noise.

For each network × supervision × precision × seed: one trial on astronaut (factor 4), the held-out PSNR
difference to the same seed's fp32 trial; the table gives mean ± std over the seeds.  Also ``--first-layer``:
the emulation with the first layer rounded too (the recipe keeps it fp32; this measures why).

    python benchmarks/bench_precision.py                              # 48², 1000 steps, 3 seeds, 7 networks
    python benchmarks/bench_precision.py --size 256 --steps 300 --networks sine relu_pe --seeds 0
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from typing import Dict, List, Tuple

import torch
from rich.console import Console
from rich.table import Table

from sobolev.models import MLPConfig
from sobolev.precision import EMULATIONS
from sobolev.trainers import ImageRegressionConfig

NETWORKS = ("relu", "relu_pe", "relu_ff", "sine", "finer", "gauss", "wire")
PRECISIONS = ("tf32-emulated", "bf16-emulated", "bf16")


def held_out_psnr(network: str, supervision: str, precision: str, seed: int, size: int, steps: int,
                  first_layer: bool) -> Tuple[float, float]:
    """(held-out PSNR, seconds) of one trial; ``precision``: fp32, bf16 (the trial setting), or an emulation."""
    real = precision in ("fp32", "bf16")
    config = ImageRegressionConfig(image="astronaut", size=size, factor=4, steps=steps, seed=seed, lr=1e-4,
                                   supervision=supervision, model=MLPConfig(network),
                                   precision=precision if real else "fp32")
    trainer = config.setup()
    if not real:  # the emulation in place of the trial's own fp32 products
        trainer.model.precision = dataclasses.replace(EMULATIONS.get(precision), first_layer=first_layer)
    t0 = time.perf_counter()
    result = trainer.fit()
    return result.metrics["test_psnr"], time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS))
    parser.add_argument("--supervisions", nargs="+", default=["val", "val_der"])
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS))
    parser.add_argument("--first-layer", action="store_true", help="Round the first layer's products too.")
    args = parser.parse_args()
    console = Console(width=None if Console().is_terminal else 180)
    psnr: Dict[Tuple[str, str, str, int], float] = {}
    seconds: Dict[Tuple[str, str, str], List[float]] = {}
    for net in args.networks:
        for sup in args.supervisions:
            for precision in ("fp32", *args.precisions):
                if precision == "bf16" and (net == "wire" or args.first_layer):
                    continue  # bfloat16 has no complex type; the trial setting keeps the first layer fp32
                for seed in args.seeds:
                    value, secs = held_out_psnr(net, sup, precision, seed, args.size, args.steps, args.first_layer)
                    psnr[(net, sup, precision, seed)] = value
                    seconds.setdefault((net, sup, precision), []).append(secs)
                    console.print(f"{net} {sup} {precision} seed {seed}: {value:.3f} dB in {secs:.1f} s")
    table = Table(title=f"held-out PSNR difference to fp32 (dB, mean ± std over seeds {args.seeds}), astronaut "
                        f"{args.size}², factor 4, {args.steps} steps"
                        + (", first layer rounded too" if args.first_layer else ", first layer fp32")
                        + f" — torch {torch.__version__}")
    for col in ("network", "supervision", "fp32 PSNR", *args.precisions, *(f"ms/step {p}" for p in args.precisions)):
        table.add_column(col, justify="right")
    for net in args.networks:
        for sup in args.supervisions:
            base = [psnr[(net, sup, "fp32", s)] for s in args.seeds]
            cells = []
            for p in args.precisions:
                if (net, sup, p, args.seeds[0]) not in psnr:
                    cells.append("—")
                    continue
                diff = [psnr[(net, sup, p, s)] - psnr[(net, sup, "fp32", s)] for s in args.seeds]
                spread = statistics.stdev(diff) if len(diff) > 1 else 0.0
                cells.append(f"{statistics.mean(diff):+.3f} ± {spread:.3f}")
            speed = [f"{statistics.mean(seconds[(net, sup, p)]) / args.steps * 1e3:.1f} ms"
                     if (net, sup, p) in seconds else "—" for p in args.precisions]
            table.add_row(net, sup, f"{statistics.mean(base):.2f}", *cells, *speed)
    console.print(table)


if __name__ == "__main__":
    main()
