"""The cost estimate of ``plan`` and ``run``: seconds on this machine, for any network, size and sweep.

A trial costs ``steps × step + evaluations + overhead`` seconds:
  1. A step costs ``c0 · layers + c1 · parameters + c2 · multiply-adds``: a fixed cost per layer (Python, kernel
     launches), a cost per parameter (its gradient, Adam's update: whatever the points) and a cost per
     multiply-add of the layers' products over the training points (three per point and weight: the forward
     pass and two in the backward; derivative supervision carries ``1 + d`` tangents through every layer for a
     ``d``-dimensional input).  ``c0``, ``c1`` and ``c2`` are measured on this machine by timing three
     reference networks (a narrow one on few points, a wide one on few points, the wide one on many: each term
     in turn, one torch thread), medians of repeated timings, and cached per CPU and torch version
     (``$SOBOLEV_CACHE``, default ``~/.cache/sobolev-sweep``), so only the first ``plan`` on a machine pays
     for them.
  2. An evaluation is a forward pass over the whole signal (periodic ones without derivatives, the final one
     with them).
  3. The overhead of a trial outside training and evaluation — its worker, data, MLflow run, pictures, Tune's
     scheduling — is what this store's earlier sweeps measured (their wall time × concurrent trials − training,
     per trial: ``Tracker.measured_overhead``), or :data:`DEFAULT_OVERHEAD_SECONDS` in a fresh store; a sweep
     adds :data:`STARTUP_SECONDS` (Ray, imports).
``run`` prints the estimate of what it launched against what happened (:class:`SweepEstimate`) and logs both to
the parent run (``time/estimated_*``).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from runners.plan.bounds import (DATA_COPIES, EVAL_CHUNK, FLOAT, RUN_SHARE, SAVED_PER_UNIT, gigabytes, machine_memory,
                                  network_parameters)
from runners.plan.trials import PlannedTrial
from sobolev.errors import ConfigError
from sobolev.losses import SUPERVISIONS

DEFAULT_OVERHEAD_SECONDS = 0.4
"""Per trial per concurrent slot, outside training and evaluation, where the store has measured nothing yet (a
tiny trial's on a 2-core AMD EPYC, benchmarks/bench_scale.py, docs/performance.md)."""
STARTUP_SECONDS = 15.0
"""A sweep's fixed start and end: imports, the local Ray, the store, Tune's shutdown."""
REFERENCES = ((16, 64), (256, 64), (256, 4096))
"""(width, points) of the three reference networks (3 hidden layers, 2-D input, 3 outputs, values only)."""
REPEATS = 5
CALIBRATION_FORMAT = 2
CALIBRATION_THREADS = 1
"""Torch threads of the reference timings: a trial's (``resources.cpu: 1``, the default); a trial given more CPUs
is estimated as if it had one (the safe side).  Timed with the machine's every core, the steps came out 1.5×
faster than trials running side by side achieve (2-core AMD EPYC, equal_compute.yaml)."""
_calibration: Optional[Tuple[float, float, float]] = None


def layer_sizes(in_features: int, width: int, hidden_layers: int, out_features: int,
                encoded: Optional[int] = None) -> List[Tuple[int, int]]:
    """(in, out) of every linear layer of a coordinate MLP (``encoded``: the encoding's width, if any)."""
    first = encoded if encoded else in_features
    return [(first, width)] + [(width, width)] * hidden_layers + [(width, out_features)]


def _step_seconds(width: int, points: int, steps: int = 3) -> float:
    import torch

    from sobolev.models import CoordinateMLP

    torch.manual_seed(0)
    model = CoordinateMLP(2, 3, hidden_features=width, hidden_layers=3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(points, 2)

    def step() -> None:
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


def _calibration_file() -> Path:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    key = hashlib.sha256(json.dumps([CALIBRATION_FORMAT, cpu, torch.__version__, CALIBRATION_THREADS])
                         .encode()).hexdigest()[:16]
    cache = Path(os.environ.get("SOBOLEV_CACHE", Path.home() / ".cache" / "sobolev-sweep"))
    return cache / f"calibration-{key}.json"


def calibrate() -> Tuple[float, float, float]:
    """Step 1: ``(c0, c1, c2)``: seconds per layer, per parameter and per multiply-add of a step on this machine
    (measured once, then read from the cache)."""
    global _calibration
    if _calibration is not None:
        return _calibration
    path = _calibration_file()
    try:
        _calibration = tuple(json.loads(path.read_text())["coefficients"])
        return _calibration
    except (OSError, ValueError, KeyError):
        pass
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(CALIBRATION_THREADS)
    try:
        times = [statistics.median(_step_seconds(w, n) for _ in range(REPEATS)) for w, n in REFERENCES]
    finally:
        torch.set_num_threads(threads)
    (w0, n0), (w1, _), (_, n2) = REFERENCES
    layers = len(layer_sizes(2, w0, 3, 3))
    params = [sum(i * o + o for i, o in layer_sizes(2, w, 3, 3)) for w in (w0, w1)]
    work = sum(i * o for i, o in layer_sizes(2, w1, 3, 3)) * 3
    c2 = max(times[2] - times[1], 0.0) / (work * (n2 - n0))
    c1 = max(times[1] - times[0] - c2 * 3 * n0 * (sum(i * o for i, o in layer_sizes(2, w1, 3, 3))
                                                - sum(i * o for i, o in layer_sizes(2, w0, 3, 3))), 0.0) / (
        params[1] - params[0])
    c0 = max(times[0] - c1 * params[0] - c2 * 3 * n0 * sum(i * o for i, o in layer_sizes(2, w0, 3, 3)), 0.0) / layers
    _calibration = (c0, c1, c2)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_text(json.dumps({"coefficients": _calibration, "references": REFERENCES, "seconds": times}))
        os.replace(tmp, path)
    except OSError:  # a read-only cache: measured again next time
        pass
    return _calibration


def _shape(trial: PlannedTrial) -> Tuple[List[Tuple[int, int]], int]:
    """The trial network's layer sizes and its input tangents per point."""
    cfg = trial.config
    m = cfg.model
    encoded = 2 * int(m.ff_features) if m.ff_features else None
    sizes = layer_sizes(trial.task.dimensions, int(m.hidden_features), int(m.hidden_layers),
                        max(trial.channels, 1), encoded)
    tangents = 1 + trial.task.dimensions if SUPERVISIONS.get(cfg.supervision).uses_derivatives else 1
    return sizes, tangents


def step_seconds(trial: PlannedTrial) -> float:
    """Step 1 for one trial."""
    c0, c1, c2 = calibrate()
    sizes, tangents = _shape(trial)
    params = sum(i * o + o for i, o in sizes)
    work = sum(i * o for i, o in sizes) * 3 * tangents * trial.points
    return c0 * len(sizes) * tangents + c1 * params + c2 * work


def estimate_seconds(trial: PlannedTrial) -> float:
    """Training and evaluation of one trial at full speed on this machine (steps 1–2)."""
    c0, c1, c2 = calibrate()
    sizes, tangents = _shape(trial)
    cfg = trial.config
    per_point = sum(i * o for i, o in sizes)
    periodic = cfg.steps // cfg.eval_every - (cfg.steps % cfg.eval_every == 0) if cfg.eval_every else 0
    evaluation = c2 * per_point * trial.samples * (periodic + 1 + trial.task.dimensions)
    return step_seconds(trial) * cfg.steps + evaluation


def wall_seconds(train: float, trials: int, concurrent: int, overhead: float) -> float:
    """A sweep's wall time: ``train`` seconds of training over the concurrent slots, each of ``trials`` trials'
    ``overhead`` (seconds per trial per slot), and the sweep's start-up; 0 for a sweep with nothing to do."""
    if not train and not trials:
        return 0.0
    return (train + overhead * trials) / concurrent + STARTUP_SECONDS


@dataclass(frozen=True)
class SweepEstimate:
    """What ``run`` expected of the trials it launched, set against the outcome at the end."""

    train_seconds: float
    """Training and evaluation summed over the trials."""
    wall_seconds: float
    """Wall time: training over the concurrent slots, each trial's overhead, and the sweep's start-up."""

    @classmethod
    def of(cls, trials: List[PlannedTrial], concurrent: int,
           overhead: float = DEFAULT_OVERHEAD_SECONDS) -> "SweepEstimate":
        """``overhead``: seconds per trial per slot outside training (measured by the store, or the default)."""
        train = sum(estimate_seconds(t) for t in trials)
        return cls(train, wall_seconds(train, len(trials), concurrent, overhead))


def asha_steps(samples: int, grace: int, eta: float, max_t: int) -> float:
    """Steps ASHA trains ``samples`` configurations for, in expectation: ``samples / eta^k`` of them reach
    rung ``k`` at ``grace · eta^k`` steps, and the survivors of the last rung go on to ``max_t``."""
    rungs = [grace * eta**k for k in range(64) if grace * eta**k < max_t] + [max_t]
    total, reached = 0.0, 0.0
    for k, milestone in enumerate(rungs):
        total += samples / eta**k * (milestone - reached)
        reached = milestone
    return total


def training_bytes(trial: PlannedTrial) -> int:
    """Bound 3 for one trial: its network and optimiser, its data, and what one training step and one evaluation
    chunk keep (every hidden unit of every point, once per input tangent of the derivative supervision)."""
    cfg = trial.config
    width, depth = int(cfg.model.hidden_features), int(cfg.model.hidden_layers) + 1
    tangents = 1 + (trial.task.dimensions if SUPERVISIONS.get(cfg.supervision).uses_derivatives else 0)
    per_point = width * depth * tangents * SAVED_PER_UNIT * FLOAT
    points = trial.points + min(trial.samples, EVAL_CHUNK)
    data = trial.samples * max(trial.channels, 1) * FLOAT * DATA_COPIES
    return network_parameters(cfg) * FLOAT * 4 + data + points * per_point


@dataclass(frozen=True)
class TrainingBound:
    """Bound 3 for the trials of an invocation on this machine."""

    concurrent: int
    memory: int

    @classmethod
    def here(cls, concurrent: int) -> "TrainingBound":
        return cls(concurrent, machine_memory())

    def check(self, trials: Sequence[PlannedTrial], source: str) -> None:
        budget = self.memory * RUN_SHARE / max(1, self.concurrent)
        for t in trials:
            needed = training_bytes(t)
            if needed > budget:
                raise ConfigError(
                    f"trial {t.name} needs ~{gigabytes(needed)} to train ({t.points} points × width "
                    f"{t.config.model.hidden_features} × {t.config.model.hidden_layers + 1} layers"
                    f"{', with derivatives' if SUPERVISIONS.get(t.config.supervision).uses_derivatives else ''}), "
                    f"over {gigabytes(budget)} ({RUN_SHARE:.0%} of this machine's memory shared by {self.concurrent} "
                    "trial(s) at once); allowed: fewer points (a larger factor, trial.size) or a narrower network, "
                    "or fewer at once (run.max_concurrent)", path=("trial",), source=source)
