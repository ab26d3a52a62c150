"""The seven networks: steps/s of val, and of val_der on both derivative paths; denormal flushing.

Networks: relu, relu_pe, relu_ff, sine, finer, gauss, wire (each with its authors' knobs and
width).  For each: training steps/s of ``val`` and of ``val_der`` with the ``autograd`` and the
``forward`` derivative path, interleaved in one process (``timing.py``).  Then Gauss and WIRE
with denormal floats flushed to zero (what the trainer does on a CPU) against IEEE denormals:
``exp(-(s·z)²)`` underflows into denormal floats, which some CPUs multiply 10–50× slower.  Not a
test: numbers depend on the machine.

    python benchmarks/bench_activations.py                  # CPU: 64², factor 4
    python benchmarks/bench_activations.py --device cuda --size 256
"""

from __future__ import annotations

import argparse
from typing import Callable, Dict, Tuple

import torch
from rich.console import Console
from rich.table import Table
from timing import device_name, interleaved_medians, warm_up

from sobolev.models import MLPConfig
from sobolev.trainers import ImageRegressionConfig

NETWORKS = ("relu", "relu_pe", "relu_ff", "sine", "finer", "gauss", "wire")
VARIANTS = (("val", "forward"), ("val_der", "autograd"), ("val_der", "forward"))


def trainer(network: str, supervision: str, path: str, size: int, device: str):
    return ImageRegressionConfig(image="astronaut", size=size, factor=4, supervision=supervision, steps=10**9,
                                 model=MLPConfig(network), device=device, derivative_impl=path).setup()


def step_with_flush(network: str, supervision: str, path: str, size: int, device: str,
                    flush: bool) -> Callable[[], object]:
    """A training step with the denormal mode set first (the mode is process-wide; variants interleave)."""
    t = trainer(network, supervision, path, size, device)

    def step():
        torch.set_flush_denormal(flush)
        return t.training_step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds-per-round", type=float, default=1.0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS))
    args = parser.parse_args()
    console = Console(width=None if Console().is_terminal else 160)
    cpu = not args.device.startswith("cuda")

    fns: Dict[Tuple, Callable[[], object]] = {}
    for net in args.networks:
        flush = trainer(net, "val", "forward", 16, "cpu").model.flush_denormals
        for sup, path in VARIANTS:
            fns[(net, sup, path)], _ = warm_up(lambda: step_with_flush(net, sup, path, args.size, args.device, flush),
                                               args.device)
    denormal_nets = [n for n in args.networks if n in ("gauss", "wire")] if cpu else []
    for net in denormal_nets:
        fns[(net, "val_der", "forward", "denormals")], _ = warm_up(
            lambda: step_with_flush(net, "val_der", "forward", args.size, args.device, False), args.device)
    rate = {k: 1 / s for k, s in interleaved_medians(fns, args.device, args.rounds, args.seconds_per_round).items()}

    table = Table(title=f"steps/s, {args.size}² colour, factor 4, each network's defaults — "
                        f"{device_name(args.device)}, torch {torch.__version__}")
    for col in ("network", "val", "val_der autograd", "val_der forward", "forward / autograd"):
        table.add_column(col, justify="right")
    for net in args.networks:
        r = [rate[(net, sup, path)] for sup, path in VARIANTS]
        table.add_row(net, *[f"{x:.1f}" for x in r], f"{r[2] / r[1]:.2f}×")
    console.print(table)
    for net in denormal_nets:
        flushed, ieee = rate[(net, "val_der", "forward")], rate[(net, "val_der", "forward", "denormals")]
        console.print(f"{net} val_der forward: {flushed:.1f} steps/s with denormals flushed to zero (as trained), "
                      f"{ieee:.1f} with IEEE denormals: {flushed / ieee:.2f}×")


if __name__ == "__main__":
    main()
