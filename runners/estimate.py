"""The cost estimate of ``plan`` and ``run``: seconds of training per trial on this machine.

A rough linear model: seconds per training point per step, measured once per supervision and
width on a short real run, scaled by depth, points and steps, plus the final evaluation.
"""

from __future__ import annotations

import time
from typing import Dict, Tuple

from runners.plan import PlannedTrial

_CALIBRATION: Dict[Tuple[str, int], float] = {}


def calibrate(supervision: str, hidden: int = 256, layers: int = 3, in_features: int = 2, out_features: int = 3) -> float:
    """Seconds per training point per step on this machine, measured on a short real run."""
    import torch

    from sobolev.jacobian import value_and_input_jacobian
    from sobolev.losses import SUPERVISIONS
    from sobolev.models import CoordinateMLP

    key = (supervision, hidden)
    if key in _CALIBRATION:
        return _CALIBRATION[key]
    torch.manual_seed(0)
    model = CoordinateMLP(in_features, out_features, hidden_features=hidden, hidden_layers=layers)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(256, in_features)  # small: the estimate is rough, and calibrating delays the sweep
    der = SUPERVISIONS.get(supervision).uses_derivatives

    def step() -> None:
        opt.zero_grad()
        if der:
            v, j = value_and_input_jacobian(model, x)
            loss = v.square().mean() + j.square().mean()
        else:
            loss = model(x).square().mean()
        loss.backward()
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(3):
        step()
    _CALIBRATION[key] = (time.perf_counter() - t0) / 3 / len(x)
    return _CALIBRATION[key]


def estimate_seconds(trial: PlannedTrial) -> float:
    """Training time of one trial at full speed on this machine (a rough linear model)."""
    cfg = trial.config
    per_point = calibrate(cfg.supervision, cfg.model.hidden_features)
    scale = (cfg.model.hidden_layers + 1) / 4
    train = per_point * scale * max(trial.points, 64) * cfg.steps
    evals = per_point * scale * trial.samples * 3  # final prediction + Jacobian
    return train + evals
