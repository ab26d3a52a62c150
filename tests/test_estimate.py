"""The cost estimate (``runners/plan/estimate.py``): it orders trials as their work does, and after a real sweep it
was within a stated factor of the measured training time (``test_sweep_e2e.py``)."""

import os
from pathlib import Path

import pytest

from runners.plan.estimate import STARTUP_SECONDS, SweepEstimate, calibrate, estimate_seconds, step_seconds
from runners.plan.planner import plan_sweep
from runners.spec.load import load_spec

SMOKE = Path(__file__).resolve().parents[1] / "sweeps" / "smoke.yaml"


def _trials(*overrides):
    spec = load_spec(str(SMOKE), ["trial.size=32", "trial.steps=100", *overrides])
    return {(t.axes["dataset"], t.axes["supervision"]): t for t in plan_sweep(spec, str(SMOKE)).trials}


def test_calibration_is_positive_measured_once_and_cached_for_this_machine():
    c0, c1, c2 = calibrate()
    assert c0 >= 0 and c1 >= 0 and c2 > 0
    assert calibrate() == (c0, c1, c2)
    assert list(Path(os.environ["SOBOLEV_CACHE"]).glob("calibration-*.json"))  # the next process reads it


def test_derivative_supervision_costs_more_than_values_at_the_same_size():
    trials = _trials()
    val, val_der = trials[("astronaut", "val")], trials[("astronaut", "val_der")]
    assert step_seconds(val_der) > 2 * step_seconds(val)  # values and two input tangents: 1 + d for an image
    assert estimate_seconds(val_der) > 2 * estimate_seconds(val)


def test_a_wider_deeper_longer_trial_costs_more_and_a_narrow_one_still_costs_its_steps():
    small = _trials()[("astronaut", "val")]
    wide = _trials("trial.model.hidden_features=512")[("astronaut", "val")]
    deep = _trials("trial.model.hidden_layers=6")[("astronaut", "val")]
    narrow = _trials("trial.model.hidden_features=16")[("astronaut", "val")]
    longer = [estimate_seconds(_trials(f"trial.steps={n}")[("astronaut", "val")]) for n in (100, 400, 700)]
    assert estimate_seconds(wide) > estimate_seconds(small) and estimate_seconds(deep) > estimate_seconds(small)
    # a 16-wide network does 1/256 of the products per point, but a step still costs its launches and updates
    assert 0 < step_seconds(narrow) < step_seconds(small) and step_seconds(narrow) > step_seconds(small) / 256
    assert longer[2] - longer[1] == pytest.approx(longer[1] - longer[0])  # linear in the steps ...
    assert longer[1] / longer[0] < 4  # ... plus the evaluations
    both = SweepEstimate.of([small, wide], concurrent=2, overhead=0.5)
    assert both.train_seconds == estimate_seconds(small) + estimate_seconds(wide)
    assert both.wall_seconds == pytest.approx(both.train_seconds / 2 + 0.5 * 2 / 2 + STARTUP_SECONDS)  # 2 slots
