"""The cost estimate of ``plan`` and ``run``: seconds of training per trial on this machine.

A trial's step costs ``ratio · (a + b · points)`` seconds:
  1. ``a`` (fixed per step: Python, kernel launches, Adam) and ``b`` (per training point) are measured
     once per process on the reference network (3 × 256, 2-D input, values only) at two point counts;
     each is the median of repeated timings, so one slow moment of a noisy machine does not set it.
  2. ``ratio`` comes from the operation count, not from timing: derivative supervision carries the
     input tangents through every layer (forward mode, ``sobolev/jacobian.py``), ``1 + d`` times the
     work of the values alone for a ``d``-dimensional input; a network of width ``w`` and ``L`` hidden
     layers does ``(w / 256)² · (L + 1) / 4`` times the reference's multiply-adds per point (the fixed
     part grows with the layer count only).
  3. Plus the final evaluation: the whole signal once with its derivatives.
``run`` prints the estimate of what it launched against what happened (:class:`SweepEstimate`) and logs
both to the parent run (``time/estimated_*``).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from runners.plan.bounds import (DATA_COPIES, EVAL_CHUNK, FLOAT, RUN_SHARE, SAVED_PER_UNIT, gigabytes, machine_memory,
                                  network_parameters)
from runners.plan.trials import PlannedTrial
from sobolev.errors import ConfigError
from sobolev.losses import SUPERVISIONS

REFERENCE_WIDTH, REFERENCE_LAYERS = 256, 3
CALIBRATION_POINTS = (64, 2048)
REPEATS = 5
_calibration: Optional[Tuple[float, float]] = None


def _step_seconds(points: int, steps: int = 3) -> float:
    import torch

    from sobolev.models import CoordinateMLP

    torch.manual_seed(0)
    model = CoordinateMLP(2, 3, hidden_features=REFERENCE_WIDTH, hidden_layers=REFERENCE_LAYERS)
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


def calibrate() -> Tuple[float, float]:
    """Step 1: ``(a, b)``, seconds per step and per training point per step of the reference network."""
    global _calibration
    if _calibration is None:
        small, large = CALIBRATION_POINTS
        t_small = statistics.median(_step_seconds(small) for _ in range(REPEATS))
        t_large = statistics.median(_step_seconds(large) for _ in range(REPEATS))
        per_point = max(t_large - t_small, 0.0) / (large - small)
        _calibration = (max(t_small - per_point * small, 0.0), per_point)
    return _calibration


def work_ratio(trial: PlannedTrial) -> Tuple[float, float]:
    """Step 2: the trial's fixed and per-point work per step relative to the reference network's."""
    cfg = trial.config
    tangents = 1 + trial.task.dimensions if SUPERVISIONS.get(cfg.supervision).uses_derivatives else 1
    depth = (cfg.model.hidden_layers + 1) / (REFERENCE_LAYERS + 1)
    width = (cfg.model.hidden_features / REFERENCE_WIDTH) ** 2
    return tangents * depth, tangents * depth * width


def estimate_seconds(trial: PlannedTrial) -> float:
    """Training time of one trial at full speed on this machine (steps 1–3)."""
    fixed, per_point = calibrate()
    ratio_fixed, ratio_point = work_ratio(trial)
    train = (ratio_fixed * fixed + ratio_point * per_point * trial.points) * trial.config.steps
    evaluation = ratio_point * per_point * trial.samples * (1 + trial.task.dimensions)
    return train + evaluation


ORCHESTRATION_SECONDS = 1.5
"""Per trial, outside training (worker, data, MLflow, pictures): the allowance of the wall-time estimate."""


@dataclass(frozen=True)
class SweepEstimate:
    """What ``run`` expected of the trials it launched, set against the outcome at the end."""

    train_seconds: float
    """Training summed over the trials."""
    wall_seconds: float
    """Wall time: training over the concurrent slots plus the orchestration allowance."""

    @classmethod
    def of(cls, trials: List[PlannedTrial], concurrent: int) -> "SweepEstimate":
        train = sum(estimate_seconds(t) for t in trials)
        return cls(train, (train + ORCHESTRATION_SECONDS * len(trials)) / concurrent)


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
