"""Sweeps of a hundred to ten thousand trivial trials: plan, run, dedup and report, each phase's seconds and its
cost per trial, so the growth with the sweep is visible.

Three sweeps of tiny trials (24², 4 steps, a 16-wide network: each trains in milliseconds, so what is measured is
the tool, not the training):

====== ================================================================================== ============
size   grid                                                                               trials
====== ================================================================================== ============
100    2 images × relu, sine × val, val_der × factors 2, 4 × 6 seeds                      96
1000   the same × 63 seeds                                                                1 008
10000  5 images × relu, relu_pe, sine, finer × val, val_der × factors 2, 4, 8 × 100 seeds  12 000
====== ================================================================================== ============

For each: ``plan`` (the command, end to end), ``run`` (a fresh store), ``run`` again (everything FINISHED: the
dedup), ``report``.  The 10 000-trial sweep is planned only, unless ``--full``.  Run it on a quiet machine: the
per-trial overhead of ``run`` is what the sweep engine spends around each trial (per slot: the wall time times
the concurrent trials, over the trials).  Not a test.

    python benchmarks/bench_scale.py                 # 100 and 1000 run, 10 000 planned (~6 minutes on 2 cores)
    python benchmarks/bench_scale.py --sizes 100     # one size
    python benchmarks/bench_scale.py --full          # 10 000 run too
    python benchmarks/bench_scale.py --sizes 100 --tracking sqlite server postgres --slots 8
                                                     # what each MLflow backend holds (trials logged a second)

``--tracking``: ``sqlite`` (a file, the default), ``server`` (``mlflow server`` on that SQLite file, 1 worker, the
small recipe), ``postgres`` (``mlflow server`` with 4 workers on a PostgreSQL started for the run: the cluster
recipe, docs/how-a-sweep-runs.md).  ``--slots N``: N trials at once (each given CPUs/N).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, List

import yaml
from rich.console import Console
from rich.table import Table

GRIDS = {
    100: dict(datasets=["astronaut", "coffee"], activations=["relu", "sine"], factors=[2, 4], seeds=6),
    1000: dict(datasets=["astronaut", "coffee"], activations=["relu", "sine"], factors=[2, 4], seeds=63),
    10000: dict(datasets=["astronaut", "chelsea", "coffee", "rocket", "hubble"],
                activations=["relu", "relu_pe", "sine", "finer"], factors=[2, 4, 8], seeds=100),
}


def write_spec(folder: Path, size: int, slots: int) -> Path:
    grid = GRIDS[size]
    spec = {
        "name": f"scale{size}", "task": "image",
        "grid": {"datasets": grid["datasets"], "activations": grid["activations"], "supervision": ["val", "val_der"],
                 "sampling": {"factors": grid["factors"]}, "seeds": list(range(grid["seeds"]))},
        "trial": {"size": 24, "steps": 4, "model": {"hidden_features": 16}},
        "resources": {"cpu": (os.cpu_count() or 1) / slots},
        "run": {"report_every": 4, "checkpoint_every": 4, "max_concurrent": slots},
    }
    path = folder / f"scale{size}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


ESTIMATES: List[str] = []
"""What each ``run`` printed of its estimate against what happened."""


def timed(args: List[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "runners.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "RAY_USAGE_STATS_ENABLED": "0"})
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    seconds = time.perf_counter() - t0
    said = " ".join(proc.stdout.split())
    if "the estimate against what happened" in said:
        ESTIMATES.append(f"{args[1]}: " + said[said.index("the estimate against what happened"):].split(" open ")[0])
    return seconds


def trials_of(size: int) -> int:
    g = GRIDS[size]
    return len(g["datasets"]) * len(g["activations"]) * 2 * len(g["factors"]) * g["seeds"]


@contextlib.contextmanager
def tracking(kind: str, folder: Path) -> Iterator[List[str]]:
    """The ``--tracking-uri`` arguments of a backend, its servers running for the block."""
    if kind == "sqlite":
        yield []
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test suite's real servers
    from tests.sweep_helpers import MlflowServer, PostgresServer

    postgres = PostgresServer().start() if kind == "postgres" else None
    server = None
    try:
        server = MlflowServer(folder, backend=postgres.uri if postgres else "", workers=4 if postgres else 1).start()
        yield ["--tracking-uri", server.uri]
    finally:
        if server is not None:
            server.stop()
        if postgres is not None:
            postgres.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=sorted(GRIDS), choices=sorted(GRIDS))
    parser.add_argument("--full", action="store_true", help="Run the 10 000-trial sweep too (an hour or more).")
    parser.add_argument("--tracking", nargs="+", default=["sqlite"], choices=["sqlite", "server", "postgres"])
    parser.add_argument("--slots", type=int, default=os.cpu_count() or 1, help="Trials at once.")
    args = parser.parse_args()
    slots = args.slots
    console = Console(width=None if Console().is_terminal else 160)
    rows: Dict[tuple, Dict[str, float]] = {}
    for size in args.sizes:
        for kind in args.tracking:
            with tempfile.TemporaryDirectory(prefix=f"scale{size}-") as tmp, tracking(kind, Path(tmp)) as uri:
                folder = Path(tmp)
                spec = str(write_spec(folder, size, slots))
                row = {"plan": timed(["plan", spec, *uri], folder)}
                if size < 10000 or args.full:
                    row["run"] = timed(["run", spec, "--no-live", *uri], folder)
                    row["dedup"] = timed(["run", spec, "--no-live", *uri], folder)
                    row["report"] = timed(["report", f"scale{size}", "--out", str(folder / "report"), "--no-mlflow",
                                           *uri], folder)
                rows[(size, kind)] = row
                console.print(f"{trials_of(size)} trials, {kind}: " + ", ".join(f"{k} {v:.1f} s"
                                                                                for k, v in row.items()))
    table = Table(title=f"sweeps of trivial trials (24², 4 steps, width 16), {slots} at once on {os.cpu_count()} "
                        "CPU(s): seconds, and milliseconds per trial (run: per trial per slot)")
    for col in ("trials", "store", "plan s", "plan ms/trial", "run s", "run ms/trial/slot", "trials/s logged",
                "dedup s", "report s"):
        table.add_column(col, justify="right")
    for (size, kind), row in rows.items():
        n = trials_of(size)
        cells = [f"{n}", kind, f"{row['plan']:.1f}", f"{row['plan'] / n * 1e3:.2f}"]
        if "run" in row:
            cells += [f"{row['run']:.1f}", f"{row['run'] * slots / n * 1e3:.0f}", f"{n / row['run']:.1f}",
                      f"{row['dedup']:.1f}", f"{row['report']:.1f}"]
        else:
            cells += ["—"] * 5
        table.add_row(*cells)
    console.print(table)
    for line in ESTIMATES:
        console.print(line, soft_wrap=True)


if __name__ == "__main__":
    main()
