"""Orchestration overhead of a sweep, end to end: the share of wall time spent outside training.

Runs ``sobolev-sweep run SPEC`` (default: the CPU smoke sweep) in a fresh directory with a fresh
sqlite store, times the whole command, then reads the timings every trial logged to MLflow
(training, evaluation, setup, artifacts + MLflow) and the driver's phases (prepare, Ray start,
Tune) from the parent run, and prints where the wall time went.  Not a test.

    python benchmarks/bench_sweep_overhead.py                       # sweeps/smoke.yaml
    python benchmarks/bench_sweep_overhead.py --pack 4 -- --set trial.steps=1000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlflow.tracking import MlflowClient
from rich.console import Console
from rich.table import Table

from runners.store.layout import TIME_PREFIX

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", default=str(ROOT / "sweeps" / "smoke.yaml"))
    parser.add_argument("--pack", type=int, default=1)
    argv, extra = sys.argv[1:], []
    if "--" in argv:  # everything after -- goes to `sobolev-sweep run`
        argv, extra = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    args = parser.parse_args(argv)
    console = Console(width=None if Console().is_terminal else 160)
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "RAY_USAGE_STATS_ENABLED": "0"}
    with tempfile.TemporaryDirectory() as d:
        uri = f"sqlite:///{d}/mlflow.db"
        cmd = [sys.executable, "-m", "runners.cli", "run", str(Path(args.spec).resolve()), "--no-live",
               "--tracking-uri", uri, "--storage", f"{d}/tune", "--pack", str(args.pack), *extra]
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=d, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            console.print(proc.stdout[-3000:], proc.stderr[-3000:])
            raise SystemExit(f"the sweep failed (exit {proc.returncode})")
        said = " ".join(proc.stdout.split())
        mark = "the estimate against"
        estimate = said[said.index(mark):].split(" open ")[0] if mark in said else ""
        start = time.perf_counter()  # the report of this sweep, as a user runs it after
        report = subprocess.run([sys.executable, "-m", "runners.cli", "report", str(Path(args.spec).resolve()),
                                 "--out", f"{d}/report", "--tracking-uri", uri, "--no-mlflow", *extra],
                                cwd=d, env=env, capture_output=True, text=True)
        report_seconds = time.perf_counter() - start
        if report.returncode != 0:
            console.print(report.stdout[-2000:], report.stderr[-2000:])
        client = MlflowClient(uri)
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=10000)
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    kids = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    pm = {k.removeprefix(TIME_PREFIX): v for k, v in parent.data.metrics.items()}

    def total(key: str) -> float:
        return sum(r.data.metrics.get(TIME_PREFIX + key, 0.0) for r in kids)

    slots = max(1, min(len(kids), int(os.cpu_count() or 1)))
    train = total("train_seconds") / slots
    rows = [
        ("whole command (imports, plan, Ray, trials, summary)", wall),
        ("  driver: prepare (plan, calibrate, MLflow checks)", pm.get("prepare_seconds", 0.0)),
        ("  driver: start Ray", pm.get("ray_start_seconds", 0.0)),
        ("  driver: parent run, Tuner, cost estimate", pm.get("launch_seconds", 0.0)),
        ("  driver: Tune (all trials)", pm.get("tune_seconds", 0.0)),
        (f"    in trials, per slot ({slots}): training", train),
        ("    in trials, per slot: evaluation (held-out metrics, final prediction)", total("eval_seconds") / slots),
        ("    in trials, per slot: setup (data, targets, model)", total("setup_seconds") / slots),
        ("    in trials, per slot: artifacts + final MLflow logging", total("finish_seconds") / slots),
        ("    in trials, per slot: reports, checkpoints, metric batches", total("report_seconds") / slots),
    ]
    accounted = sum(total(k) for k in ("train_seconds", "eval_seconds", "setup_seconds", "finish_seconds",
                                        "report_seconds")) / slots
    rows.append(("    rest of the Tune phase (trial scheduling, worker start, MLflow run opening, idle)",
                 pm.get("tune_seconds", 0.0) - accounted))
    rows.append(("  driver: trial states from MLflow, summary", pm.get("collect_seconds", 0.0)))
    rows.append(("  outside the sweep: Python imports, Ray shutdown, exit", wall - pm.get("wall_seconds", wall)))
    table = Table(title=f"sweep overhead: {Path(args.spec).name}, {len(kids)} trials, pack {args.pack}, "
                        f"{slots} concurrent")
    table.add_column("phase")
    table.add_column("seconds", justify="right")
    table.add_column("share of the command", justify="right")
    for name, seconds in rows:
        table.add_row(name, f"{seconds:.1f}", f"{seconds / wall:.0%}")
    console.print(table)
    tune = pm.get("tune_seconds", wall)
    console.print(f"outside training: {1 - train / wall:.0%} of the whole command, {1 - train / tune:.0%} of the "
                  f"Tune phase (goal ≤ 10 %)")
    console.print(f"report of the {len(kids)} runs: {report_seconds:.1f} s (exit {report.returncode})")
    if estimate:
        console.print(estimate, soft_wrap=True)


if __name__ == "__main__":
    main()
