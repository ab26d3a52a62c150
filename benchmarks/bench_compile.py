"""When does ``torch.compile`` pay for itself?  The break-even number of steps of a trial.

For each variant: the first compiled step with an empty inductor cache (what a fresh machine pays;
``TORCHINDUCTOR_CACHE_DIR`` is pointed at a new folder), then eager and compiled steps/s timed
interleaved (``timing.py``).  Break-even = (first compiled step − one eager step) / (eager − compiled
seconds per step): a trial of more steps than that finishes sooner compiled.  ``compile: auto``
(``sobolev/trainers/config.py: COMPILE_AUTO_MIN_STEPS``) is set from these numbers.  Not a test.

    python benchmarks/bench_compile.py                         # CPU: 64², 128², 256² colour, val and val_der
    python benchmarks/bench_compile.py --device cuda --sizes 256 512
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Dict, List, Tuple

import torch
from rich.console import Console
from rich.table import Table
from timing import device_name, interleaved_medians, sync

from sobolev.models import MLPConfig
from sobolev.trainers import ImageRegressionConfig

Variant = Tuple[int, str]  # size, supervision


def config(size: int, sup: str, compiled: bool, device: str) -> ImageRegressionConfig:
    return ImageRegressionConfig(image="astronaut", size=size, factor=4, supervision=sup, steps=10**9,
                                 model=MLPConfig("sine"), device=device, derivative_impl="forward",
                                 compile=compiled)


def first_step_seconds(trainer, device: str) -> float:
    sync(device)
    start = time.perf_counter()
    trainer.training_step()
    sync(device)
    return time.perf_counter() - start


def measure(sizes: List[int], supervisions: List[str], device: str, rounds: int, seconds: float):
    first: Dict[Variant, float] = {}
    fns = {}
    for size in sizes:
        for sup in supervisions:
            with tempfile.TemporaryDirectory() as cache:
                os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache  # a cold cache: what a fresh machine pays
                torch._dynamo.reset()
                compiled = config(size, sup, True, device).setup()
                first[(size, sup)] = first_step_seconds(compiled, device)
                for _ in range(3):
                    compiled.training_step()
            eager = config(size, sup, False, device).setup()
            for _ in range(3):
                eager.training_step()
            fns[(size, sup, "eager")] = eager.training_step
            fns[(size, sup, "compiled")] = compiled.training_step
    per_step = interleaved_medians(fns, device, rounds, seconds)
    return first, per_step


def table(first, per_step, sizes, supervisions, device: str) -> Table:
    t = Table(title=f"torch.compile break-even, sine MLP 5×256, factor 4 — {device_name(device)}, "
                    f"torch {torch.__version__}")
    for col in ("image", "supervision", "first compiled step s", "eager ms/step", "compiled ms/step",
                "saved ms/step", "break-even steps"):
        t.add_column(col, justify="right")
    for size in sizes:
        for sup in supervisions:
            eager, compiled = per_step[(size, sup, "eager")], per_step[(size, sup, "compiled")]
            saved = eager - compiled
            cost = first[(size, sup)] - eager
            even = f"{cost / saved:,.0f}" if saved > 0 else "never"
            t.add_row(f"{size}² colour", sup, f"{first[(size, sup)]:.1f}", f"{eager * 1e3:.1f}",
                      f"{compiled * 1e3:.1f}", f"{saved * 1e3:.2f}", even)
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--supervisions", nargs="+", default=["val", "val_der"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds-per-round", type=float, default=1.0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    first, per_step = measure(args.sizes, args.supervisions, args.device, args.rounds, args.seconds_per_round)
    console = Console(width=None if Console().is_terminal else 160)
    console.print(table(first, per_step, args.sizes, args.supervisions, args.device))


if __name__ == "__main__":
    main()
