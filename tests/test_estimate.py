"""The cost estimate (``runners/estimate.py``): it orders trials as their work does, and after a real sweep it was
within a stated factor of the measured training time (``test_sweep_e2e.py``)."""

from pathlib import Path

import pytest

from runners.plan.estimate import ORCHESTRATION_SECONDS, SweepEstimate, calibrate, estimate_seconds, work_ratio
from runners.plan.planner import plan_sweep
from runners.spec.load import load_spec

SMOKE = Path(__file__).resolve().parents[1] / "sweeps" / "smoke.yaml"


def _trials(*overrides):
    spec = load_spec(str(SMOKE), ["trial.size=32", "trial.steps=100", *overrides])
    return {(t.axes["dataset"], t.axes["supervision"]): t for t in plan_sweep(spec, str(SMOKE)).trials}


def test_calibration_is_positive_and_repeatable_in_shape():
    fixed, per_point = calibrate()
    assert fixed >= 0 and per_point > 0
    assert calibrate() == (fixed, per_point)  # measured once per process


def test_derivative_supervision_costs_more_than_values_at_the_same_size():
    trials = _trials()
    val, val_der = trials[("astronaut", "val")], trials[("astronaut", "val_der")]
    assert work_ratio(val_der) == (3.0, 3.0)  # values and two input tangents: 1 + d for an image (d = 2)
    assert estimate_seconds(val_der) > 2 * estimate_seconds(val)


def test_a_wider_deeper_longer_trial_costs_more():
    small = _trials()[("astronaut", "val")]
    wide = _trials("trial.model.hidden_features=512")[("astronaut", "val")]
    longer = [estimate_seconds(_trials(f"trial.steps={n}")[("astronaut", "val")]) for n in (100, 400, 700)]
    assert estimate_seconds(wide) > estimate_seconds(small)
    assert longer[2] - longer[1] == pytest.approx(longer[1] - longer[0])  # linear in the steps ...
    assert longer[1] / longer[0] < 4  # ... plus the evaluation, once
    both = SweepEstimate.of([small, wide], concurrent=2)
    assert both.train_seconds == estimate_seconds(small) + estimate_seconds(wide)
    assert both.wall_seconds == pytest.approx((both.train_seconds + 2 * ORCHESTRATION_SECONDS) / 2)  # 2 slots
