"""Packed trials: K trials as one batched network give each trial's solo result."""

from pathlib import Path

import pytest
import torch

from runners.plan.planner import plan_sweep
from runners.plan.trials import pack_trials
from runners.spec.load import load_spec
from sobolev.errors import ConfigError, TrialDiverged
from sobolev.jacobian import mlp_value_and_jacobian, value_and_input_jacobian
from sobolev.models import AffineCoordinates, MLPConfig, stack_tensors
from sobolev.trainers import (
    AudioRegressionConfig,
    ImageRegressionConfig,
    PackedTrainer,
    TrialResult,
    check_packable,
)
from sobolev.trainers.nerf import NerfConfig
from sobolev.trainers.packed import split_into_packs

SPECS = Path(__file__).resolve().parents[1] / "sweeps"


def image(**kw):
    base = dict(image="astronaut", size=32, factor=4, steps=40, log_every=10, eval_every=20, model=MLPConfig("sine"))
    return ImageRegressionConfig(**{**base, **kw})


def assert_same_result(packed: TrialResult, solo: TrialResult, dB: float = 1e-3) -> None:
    assert packed.steps == solo.steps
    assert abs(packed.metrics["test_psnr"] - solo.metrics["test_psnr"]) < dB
    assert [sorted(r) for r in packed.history] == [sorted(r) for r in solo.history]  # same keys, same steps
    for a, b in zip(packed.history, solo.history):
        assert a["loss"] == pytest.approx(b["loss"], rel=2e-3)
    torch.testing.assert_close(packed.prediction, solo.prediction, rtol=0, atol=2e-3)


@pytest.mark.parametrize("activation", ["sine", "relu_pe"])
@pytest.mark.parametrize("impl", ["forward", "autograd"])
def test_stacked_networks_give_each_networks_values_and_jacobians(activation, impl):
    torch.manual_seed(0)
    coords = AffineCoordinates([2 / 31, 2 / 31], [-1.0, -1.0])
    models = [MLPConfig(activation).build(2, 3, coords, 8).double() for _ in range(3)]
    x = torch.rand(3, 50, 2, dtype=torch.float64) * 31
    tensors = stack_tensors(models)
    if impl == "forward":
        values, jac = mlp_value_and_jacobian(models[0], x, tensors)
    else:
        values, jac = value_and_input_jacobian(lambda c: models[0].forward_with(tensors, c), x)
    assert values.shape == (3, 50, 3) and jac.shape == (3, 50, 3, 2)
    for k, m in enumerate(models):
        v, j = value_and_input_jacobian(m, x[k])
        torch.testing.assert_close(values[k], v, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(jac[k], j, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("gray", [False, True])
def test_packed_trials_equal_the_same_trials_run_alone(gray):
    # different images, seeds, supervisions, λ and learning rates; colour → forward, gray → autograd
    configs = [
        image(image="astronaut", seed=0, supervision="val_der", grayscale=gray),
        image(image="coffee", seed=1, supervision="val", lr=5e-5, grayscale=gray),
        image(image="chelsea", seed=2, supervision="der", grayscale=gray),
        image(image="rocket", seed=3, supervision="val_der", lambda_der=0.3, grayscale=gray),
    ]
    solo = [c.setup().fit() for c in configs]
    pack = PackedTrainer([c.setup() for c in configs])
    assert pack.members[0].derivative_impl == ("autograd" if gray else "forward")
    seen = []
    packed = pack.fit(lambda events: seen.extend((e.index, e.progress.step, e.progress.final) for e in events))
    for p, s in zip(packed, solo):
        assert_same_result(p, s)
    assert "der_loss" not in packed[1].history[-1] and "der_loss" in packed[0].history[-1]
    assert sorted(seen) == sorted((i, step, step == 40) for i in range(4) for step in (10, 20, 30, 40))


def test_audio_trials_pack_too():
    configs = [AudioRegressionConfig(audio="counting", duration=0.05, steps=20, seed=s, supervision=sup)
               for s, sup in ((0, "val"), (1, "val_der"))]
    solo = [c.setup().fit() for c in configs]
    for p, s in zip(PackedTrainer([c.setup() for c in configs]).fit(), solo):
        assert abs(p.metrics["test_psnr"] - s.metrics["test_psnr"]) < 1e-3


def test_a_diverging_member_leaves_the_pack_and_the_others_are_unaffected():
    configs = [image(model=MLPConfig("relu"), supervision="val", lr=lr, seed=s)
               for s, lr in ((0, 1e-4), (1, 1e9), (2, 1e-4))]
    ended = []
    outcomes = PackedTrainer([c.setup() for c in configs]).fit(on_end=lambda i, o: ended.append((i, type(o))))
    assert isinstance(outcomes[1], TrialDiverged) and "diverged at step" in str(outcomes[1])
    with pytest.raises(TrialDiverged) as solo_failure:
        configs[1].setup().fit()
    assert outcomes[1].step == solo_failure.value.step  # the same step as alone
    for i in (0, 2):
        assert_same_result(outcomes[i], configs[i].setup().fit())
    assert ended[0] == (1, TrialDiverged) and sorted(ended[1:]) == [(0, TrialResult), (2, TrialResult)]


def test_pack_restored_from_member_checkpoints_equals_an_uninterrupted_pack():
    configs = [image(seed=s, supervision=sup) for s, sup in ((0, "val_der"), (1, "val_der"), (2, "val"))]
    straight = PackedTrainer([c.setup() for c in configs]).fit()
    first = PackedTrainer([c.setup() for c in configs])
    states = {}

    class Stop(Exception):
        pass

    def stop_at_20(events):
        if events[0].progress.step == 20 and not events[0].progress.final:
            states.update({i: m.state_dict() for i, m in enumerate(first.members)})
            raise Stop

    with pytest.raises(Stop):
        first.fit(stop_at_20)
    restored = [c.setup() for c in configs]
    for i, m in enumerate(restored):
        m.load_state_dict(states[i])
    for a, b in zip(PackedTrainer(restored).fit(), straight):
        assert a.metrics["test_psnr"] == pytest.approx(b.metrics["test_psnr"], abs=1e-6)
        assert [r["step"] for r in a.history] == [10.0, 20.0, 30.0, 40.0]


def test_incompatible_trials_are_refused_with_what_differs():
    with pytest.raises(ConfigError, match="training points"):
        check_packable([image().setup(), image(factor=2).setup()])
    with pytest.raises(ConfigError, match="parameter shapes"):
        check_packable([image().setup(), image(model=MLPConfig("sine", hidden_features=64)).setup()])
    nerf = NerfConfig(preset="cpu", steps=1).setup()
    with pytest.raises(ConfigError, match="cannot be packed"):
        check_packable([nerf])
    # the trainable groups what it was given: a NeRF trial or another shape trains on its own
    assert split_into_packs([nerf, image().setup(), image(factor=2).setup(), image(seed=1).setup()]) == [[0], [1, 3],
                                                                                                     [2]]


def test_planner_packs_only_compatible_trials():
    spec = load_spec(SPECS / "data_efficiency.yaml", ["run.pack=16"])
    trials = plan_sweep(spec, "data_efficiency.yaml").trials
    packs = pack_trials(trials, spec.run.pack)
    assert sorted(t.key for p in packs for t in p) == sorted(t.key for t in trials)  # each trial once
    for p in packs:
        same = {(t.axes["activation"], t.axes["factor"], t.axes["supervision"] != "val") for t in p}
        assert len(same) == 1
    # 3 models × 3 factors × {val, val_der}, 9 trials each (3 images × 3 seeds): 18 packs of 9
    assert len(packs) == 18 and {len(p) for p in packs} == {9}
    assert sorted(len(p) for p in pack_trials(trials, 4))[:18] == [1] * 18  # 9 = 4 + 4 + 1
    assert len(pack_trials(trials, 1)) == len(trials)


def test_cli_plan_shows_packs_and_bad_pack_values_are_one_line_errors(tmp_path):
    from tests.sweep_helpers import cli, one_line_error

    proc = cli("plan", str(SPECS / "data_efficiency.yaml"), "--pack", "16", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "162 trials as 18 batched Tune trials of sizes 9" in proc.stdout
    line = one_line_error(cli("run", str(SPECS / "smoke.yaml"), "--pack", "0", cwd=tmp_path))
    assert "smoke.yaml: run.pack" in line and "greater than or equal to 1" in line
    line = one_line_error(cli("run", str(SPECS / "inverse_rendering_cpu.yaml"), "--pack", "2", cwd=tmp_path))
    assert "run.pack: packing supports tasks image and audio, not nerf" in line
    assert not (tmp_path / "mlflow.db").exists()
