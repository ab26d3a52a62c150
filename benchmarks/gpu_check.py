"""The GPU goals of the performance issue, checked in one short run (prepared for a lent device).

  1. ``val_der`` steps/s of the fast paths (forward, compiled) vs the autograd path at Set5 size
     (256², factor 4, colour): goal ≥ 5×; held-out PSNR after a fixed number of steps equal to
     the autograd path's within 0.1 dB.
  2. K = 16 packed trials: trial-steps/s ≥ 8× those of K = 1 (256², val_der and val).
  3. A packed trial equals the same trial run alone (held-out PSNR within 1e-3 dB).
  4. The paper-scale data-efficiency study (``sweeps/data_efficiency.yaml`` at 256², 50 000 steps:
     3 images × relu / relu_pe / sine × val / val_der × factors 2, 4, 8 × 3 seeds = 162 trials) on this
     one device, extrapolated from a timed window of steps of each of its 18 packable groups: packed
     (K trials per pack) against one trial per process; goal: under 15 minutes packed.
  5. Precision (``trial.precision``): trial-steps/s of fp32, tf32 (CUDA only) and bf16 at 256², ``val_der``,
     K = 1 and K = 16, the held-out PSNR each reaches after a fixed number of steps, and the study of goal 4 per
     precision (goal 4's packed fp32 time scaled by each precision's K = 16 speed-up).

Prints one PASS/MISS line per goal and exits 0 (the numbers are the result, not a test).  Runs
on a CPU too, for checking the script itself: ``--quick`` shrinks everything to seconds.

    python benchmarks/gpu_check.py                         # on the GPU machine (~4-6 min; nobody has run it on one yet)
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
from rich.table import Table
from timing import device_name, interleaved_medians, warm_up

from sobolev.errors import ConfigError
from sobolev.models import MLPConfig
from sobolev.precision import FP32, PRECISIONS
from sobolev.trainers import ImageRegressionConfig, PackedTrainer


def verdict(ok: bool) -> str:
    return "[green]PASS[/]" if ok else "[red]MISS[/]"


STUDY_IMAGES = ("astronaut", "chelsea", "coffee")
STUDY_SEEDS = 3
STUDY_STEPS = 50_000
STUDY_GROUPS = [(a, sup, f) for a in ("relu", "relu_pe", "sine") for sup in ("val", "val_der") for f in (2, 4, 8)]
"""The study's packable groups: trials of one group share the network and the point count."""
STUDY_PER_GROUP = len(STUDY_IMAGES) * STUDY_SEEDS


def study_step(group, k: int, size: int, device: str, precision: str = "fp32"):
    """One training step of ``k`` trials of a study group (packed when k > 1)."""
    activation, supervision, factor = group
    trainers = [ImageRegressionConfig(image=STUDY_IMAGES[i % len(STUDY_IMAGES)], size=size, factor=factor,
                                      seed=i // len(STUDY_IMAGES), steps=10**9, supervision=supervision,
                                      model=MLPConfig(activation), device=device, precision=precision).setup()
                for i in range(k)]
    if k == 1:
        return trainers[0].training_step
    pack, active = PackedTrainer(trainers), list(range(k))
    return lambda: pack.training_step(active)


def extrapolate_study(size: int, k_max: int, device: str, rounds: int, seconds: float):
    """Seconds the study takes on ``device``: packed (packs of up to ``k_max``), and one trial per process; each
    group's step time is the median of interleaved timed windows (``timing.interleaved_medians``)."""
    k = min(k_max, STUDY_PER_GROUP)
    fns = {}
    for group in STUDY_GROUPS:
        for kk in sorted({1, k}):
            fns[(group, kk)], _ = warm_up(lambda g=group, kk=kk: study_step(g, kk, size, device), device)
    step_seconds = interleaved_medians(fns, device, rounds, seconds)
    packs_per_group = -(-STUDY_PER_GROUP // k)
    packed = sum(packs_per_group * STUDY_STEPS * step_seconds[(g, k)] for g in STUDY_GROUPS)
    solo = sum(STUDY_PER_GROUP * STUDY_STEPS * step_seconds[(g, 1)] for g in STUDY_GROUPS)
    return packed, solo


def _runs_on(precision: str, device: str) -> bool:
    try:
        PRECISIONS.get(precision).check(device, complex_layers=False)
    except ConfigError:
        return False
    return True


def precision_rows(size: int, k: int, device: str, rounds: int, seconds: float, psnr_steps: int):
    """Goal 5: per precision that runs on ``device``, trial-steps/s at K = 1 and K = ``k`` (sine, val_der, factor 4)
    and the held-out PSNR after ``psnr_steps`` steps of one trial."""
    group = ("sine", "val_der", 4)
    names = [p for p in sorted(PRECISIONS.names(), key=lambda p: PRECISIONS.get(p) is not FP32) if _runs_on(p, device)]
    fns = {}
    for name in names:
        for kk in sorted({1, k}):
            fns[(name, kk)], _ = warm_up(lambda n=name, kk=kk: study_step(group, kk, size, device, n), device)
    step_seconds = interleaved_medians(fns, device, rounds, seconds)
    rates = {key: key[1] / s for key, s in step_seconds.items()}
    psnr = {name: ImageRegressionConfig(image="astronaut", size=size, factor=4, seed=0, steps=psnr_steps,
                                        supervision="val_der", model=MLPConfig("sine"), device=device,
                                        precision=name).setup().fit().metrics["test_psnr"] for name in names}
    return names, rates, psnr


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
    # 4. the paper-scale study, extrapolated
    study_size, k_max = (32, 3) if args.quick else (256, 9)
    packed_s, solo_s = extrapolate_study(study_size, k_max, args.device, rounds, seconds)
    console.print(f"goal 4: the data-efficiency study at {STUDY_STEPS} steps, {len(STUDY_GROUPS) * STUDY_PER_GROUP} "
                  f"trials of {study_size}² on {device_name(args.device)}: packed (K={k_max}) "
                  f"{packed_s / 60:.1f} min, one trial per process {solo_s / 60:.1f} min (goal < 15 min packed) "
                  f"{verdict(packed_s < 15 * 60)}", soft_wrap=True)
    # 5. precision
    k = max(packs)
    names, rates, psnr = precision_rows(size, k, args.device, rounds, seconds, psnr_steps // 4)
    table = Table(title=f"precision: sine val_der {size}², factor 4, trial-steps/s; held-out PSNR after "
                        f"{psnr_steps // 4} steps; the study of goal 4 scaled by the K={k} speed-up")
    for col in ("precision", "K=1", f"K={k}", f"K={k} vs fp32", "PSNR dB", "vs fp32", "study, packed"):
        table.add_column(col, justify="right")
    ref = names[0]  # fp32, the paper's
    for name in names:
        speed = rates[(name, k)] / rates[(ref, k)]
        table.add_row(name, f"{rates[(name, 1)]:.1f}", f"{rates[(name, k)]:.1f}", f"{speed:.2f}×",
                      f"{psnr[name]:.3f}", f"{psnr[name] - psnr[ref]:+.3f}", f"{packed_s / speed / 60:.1f} min")
    console.print(table)
    best = min(names, key=lambda n: packed_s * rates[(ref, k)] / rates[(n, k)])
    best_min = packed_s * rates[(ref, k)] / rates[(best, k)] / 60
    console.print(f"goal 5: the study in {best_min:.1f} min with {best} ({psnr[best] - psnr[ref]:+.3f} dB against "
                  f"fp32 after {psnr_steps // 4} steps) {verdict(best_min < 15)}", soft_wrap=True)
    console.print(f"done in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
