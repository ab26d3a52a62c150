"""Trial keys are a promise to users' stores: pinned as computed before the one-schema refactor.

The numbers below were printed by the planner of sobolev-sweep 0.1.0 (commit 6355656, dict
configs) for the shipped specs.  A store written by that version dedups and resumes against this
one only if every image and audio key is unchanged.

NeRF keys changed once, on purpose: 0.1.0's sweep planner built a NeRF trial's network from a
partial ``model:`` mapping over the *generic* MLP defaults (4 layers, w0 = 30) instead of
TinyNeRF's (8 layers, w0 = 1 — what ``train nerf`` used), so its NeRF sweeps trained another
network than documented.  Those trials are different trials, so they must not dedup against the
correct ones; the last test shows that substituting the old network reproduces the old key.
"""

import hashlib
from pathlib import Path

import pytest

from runners.plan.planner import plan_sweep
from runners.plan.trials import trial_key
from runners.spec.load import load_spec

SWEEPS = Path(__file__).resolve().parents[1] / "sweeps"

PINNED = [
    # spec, overrides, trials, sha256 of the sorted keys (16 hex), some named keys
    ("smoke.yaml", [], 4, "d537bdab951db295",
     {"astronaut/sine/val/f4/s0": "0802ab6779585bbe", "astronaut/sine/val_der/f4/s0": "e0626e41c0eb558b",
      "coffee/sine/val_der/f4/s0": "1b5882598f454802"}),
    ("smoke.yaml", ["trial.steps=60"], 4, "f25d079f27b58da6",
     {"astronaut/sine/val/f4/s0": "8fa6f7d1a05452ca", "coffee/sine/val_der/f4/s0": "1719bb2590c9a094"}),
    ("smoke.yaml", ["trial.grayscale=true", "trial.derivative_source=subsampled", "trial.compile=true",
                    "trial.derivative_impl=forward", "trial.lambda_der=1", "trial.model.hidden_features=64"],
     4, "b3dd5b2d631f5fa6",
     {"astronaut/sine/val/f4/s0": "c76e478d6d589a19", "coffee/sine/val_der/f4/s0": "d067fa14c8fa139b"}),
    ("data_efficiency.yaml", [], 162, "e03f2e0e0f1580bd",
     {"astronaut/relu/val/f2/s0": "38f2f70272d2ce68", "astronaut/relu/val/f2/s1": "23d37c42aa849582",
      "coffee/sine/val_der/f8/s2": "916f0f7025200016"}),
    ("data_efficiency.yaml", ["grid.sampling.ratios=[0.1, 0.25]", "grid.sampling.factors=[]",
                              "grid.extra={lambda_der: [0.1, 1.0], model.w0: [20.0]}", "trial.size=32"],
     216, "ff4be483922e4d1d",
     {"astronaut/relu/val/r0.1/s0/lambda_der=0.1/model.w0=20.0": "97794dcb0242e233",
      "coffee/sine/val_der/r0.25/s2/lambda_der=1.0/model.w0=20.0": "48c78d0905d04b78"}),
    ("audio_regression.yaml", [], 4, "dacee4883580d813",
     {"music/sine/val/f5/s0": "c56233261360fab4", "counting/sine/val_der/f5/s0": "90bf2ed709809f77"}),
    ("audio_regression.yaml", ["grid.sampling.ratios=[0.5]", "trial.duration=0.5",
                               "grid.activations=[relu_pe, sine]"], 16, "7a3a128614464509",
     {"music/relu_pe/val/f5/s0": "ee9fa13fb5ffbf81", "counting/sine/val_der/r0.5/s0": "827a94a60a6fddd2"}),
]


@pytest.mark.parametrize("spec,overrides,count,digest,named", PINNED, ids=[f"{p[0]}{p[1]}" for p in PINNED])
def test_trial_keys_are_the_ones_earlier_versions_wrote(spec, overrides, count, digest, named):
    plan = plan_sweep(load_spec(SWEEPS / spec, overrides), spec)
    keys = sorted(t.key for t in plan.trials)
    assert len(keys) == count
    by_name = {t.name: t.key for t in plan.trials}
    for name, key in named.items():
        assert by_name[name] == key, name
    assert hashlib.sha256(",".join(keys).encode()).hexdigest()[:16] == digest


def test_nerf_keys_differ_from_0_1_0_only_by_the_network_it_built_by_mistake():
    plan = plan_sweep(load_spec(SWEEPS / "inverse_rendering_cpu.yaml"), "inverse_rendering_cpu.yaml")
    trial = next(t for t in plan.trials if t.name == "synthetic/relu/val/f4/s0")
    identity = trial.config.identity()
    assert identity["model"] == {"activation": "relu", "hidden_features": 64, "hidden_layers": 3, "w0": 1.0}
    assert trial.key == "abda826898db6348"
    identity["model"]["w0"] = 30.0  # 0.1.0's sweep planner: the generic MLP's w0
    assert trial_key("nerf", identity, "builtin:synthetic") == "564ea28dfa16044a"  # 0.1.0's key
    paper = plan_sweep(load_spec(SWEEPS / "inverse_rendering_cpu.yaml", ["trial.preset=paper"]), "x").trials[0]
    assert paper.config.model.hidden_layers == 7 and paper.config.samples == 128  # TinyNeRF, as `train nerf`
