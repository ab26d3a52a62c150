"""The forward-mode derivative path gives the autograd path's values, Jacobians, gradients and results."""

import re

import pytest
import torch

from sobolev.errors import ConfigError
from sobolev.jacobian import choose_impl, mlp_value_and_jacobian, value_and_input_jacobian
from sobolev.models import AffineCoordinates, MLPConfig
from sobolev.trainers import AudioRegressionConfig, ImageRegressionConfig


@pytest.mark.parametrize("activation", ["sine", "relu", "relu_pe", "sine_pe"])
@pytest.mark.parametrize("in_features,out_features", [(2, 3), (2, 1), (1, 1)])
def test_forward_tangents_equal_autograd(activation, in_features, out_features):
    torch.manual_seed(0)
    coords = AffineCoordinates([2 / 63, 2 / 47][:in_features], [-1.0] * in_features)
    model = MLPConfig(activation).build(in_features, out_features, coords, 16).double()
    x = torch.rand(64, in_features, dtype=torch.float64) * 40
    v1, j1 = value_and_input_jacobian(model, x, create_graph=True)
    v2, j2 = mlp_value_and_jacobian(model, x)
    torch.testing.assert_close(v2, v1, rtol=0, atol=1e-12)
    torch.testing.assert_close(j2, j1, rtol=1e-10, atol=1e-12)
    # the gradient of a Sobolev loss with respect to every parameter is the same too
    target = torch.randn_like(j1)
    g1 = torch.autograd.grad(((j1 - target) ** 2).sum() + (v1**2).sum(), list(model.parameters()))
    g2 = torch.autograd.grad(((j2 - target) ** 2).sum() + (v2**2).sum(), list(model.parameters()))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-11)
    with torch.no_grad():  # needs no graph at evaluation time
        _, j3 = mlp_value_and_jacobian(model, x)
    torch.testing.assert_close(j3, j1.detach())


def test_auto_picks_forward_for_colour_and_autograd_for_one_channel():
    model = MLPConfig("sine").build(2, 3, AffineCoordinates((1.0, 1.0), (0.0, 0.0)), 16)
    assert choose_impl("auto", model, 3, 2) == "forward"
    assert choose_impl("auto", model, 1, 2) == "autograd"
    assert choose_impl("autograd", model, 3, 2) == "autograd"
    with pytest.raises(ValueError, match="known: auto, autograd, forward"):
        choose_impl("fast", model, 3, 2)


def test_trainer_results_match_between_implementations():
    common = dict(image="coffee", size=32, factor=4, supervision="val_der", steps=40, model=MLPConfig("sine"))
    slow = ImageRegressionConfig(derivative_impl="autograd", **common).setup()
    fast = ImageRegressionConfig(derivative_impl="forward", **common).setup()
    assert (slow.derivative_impl, fast.derivative_impl) == ("autograd", "forward")
    a, b = slow.fit(), fast.fit()
    assert abs(a.metrics["test_psnr"] - b.metrics["test_psnr"]) < 1e-3
    # float32 trajectories drift apart slowly (measured 0.6 % on der_loss after 40 steps)
    assert abs(a.history[-1]["der_loss"] - b.history[-1]["der_loss"]) < 0.02 * a.history[-1]["der_loss"]
    torch.testing.assert_close(b.network_gradient, a.network_gradient, rtol=0, atol=2e-3)  # measured 8e-4
    audio = AudioRegressionConfig(audio="counting", duration=0.05, steps=5, derivative_impl="forward").setup()
    assert audio.fit().metrics["test_psnr"] > 0


def test_compile_auto_compiles_only_trials_long_enough_to_repay_it():
    """``compile: auto`` (the default) compiles a trial of at least ``COMPILE_AUTO_POINT_STEPS`` steps × points
    (measured break-even, ``benchmarks/bench_compile.py``); ``true``/``false`` force it; ``auto`` keeps the trial
    keys that ``false``, the default before it, gave; TinyNeRF never compiles."""
    from sobolev.trainers import NerfConfig
    from sobolev.trainers.config import COMPILE_AUTO_POINT_STEPS

    short = ImageRegressionConfig(image="coffee", size=32, factor=4, supervision="val_der", steps=100)
    points = 8 * 8
    assert short.compile == "auto" and not short.compiles(points)
    enough = COMPILE_AUTO_POINT_STEPS // points
    long = short.with_changes({"steps": enough})
    assert long.compiles(points) and not short.with_changes({"steps": enough - 1}).compiles(points)
    assert short.with_changes({"compile": True}).compiles(points)
    assert not long.with_changes({"compile": False}).compiles(points)
    assert long.setup().compiled and not short.setup().compiled  # setup only: compiling waits for the first step
    # one output channel: auto's derivative path is autograd, which stays eager even when the trial is long
    assert not long.with_changes({"grayscale": True}).setup().compiled
    # the key: auto hashes as false did; an explicit true is another trial
    assert short.identity() == short.with_changes({"compile": False}).identity()
    assert short.identity() != short.with_changes({"compile": True}).identity()
    assert ImageRegressionConfig.from_params(short.to_params()).compile == "auto"  # read back from MLflow params
    nerf = NerfConfig(preset="cpu", steps=10**9)
    assert nerf.compile == "auto" and not nerf.compiles(10**9)
    with pytest.raises(ConfigError, match="compile applies to image and audio"):
        NerfConfig(preset="cpu", compile=True)


def test_compiled_loss_gives_the_eager_result():
    """Compiled and eager fp32 kernels sum in different orders, by an amount that depends on the CPU.

    So the test is tight where rounding alone separates them, one step from the same parameters,
    and loose along a trajectory, where Adam amplifies rounding differences step by step.
    Measured (coffee 16², sine, val_der): one step, loss terms within 1.6e-7 relative and every
    gradient within 7.7e-7 of its largest entry (an AMD EPYC, AVX2); after 15 steps, der_loss 1.08e-3
    apart (an Intel Xeon, AVX-512) and up to 2.4e-3 apart at step 14 (the EPYC), held-out PSNR 1e-7 dB.
    """
    common = dict(image="coffee", size=16, factor=4, supervision="val_der", steps=15, model=MLPConfig("sine"))
    eager = ImageRegressionConfig(**common).setup()
    compiled = ImageRegressionConfig(compile=True, **common).setup()
    assert compiled.compiled and not eager.compiled and compiled.derivative_impl == "forward"
    # 1. one step from the same parameters: rounding only (fp32 ε = 1.2e-7; bounds ~10-60× the measured)
    e_terms, c_terms = eager._loss(), compiled._loss()
    for e, c in zip(e_terms, c_terms):
        assert float(c.detach()) == pytest.approx(float(e.detach()), rel=1e-5)
    e_terms[0].backward()
    c_terms[0].backward()
    for (name, pe), pc in zip(eager.model.named_parameters(), compiled.model.parameters()):
        scale = float(pe.grad.abs().max())
        assert float((pc.grad - pe.grad).abs().max()) <= 1e-5 * scale, name
    eager.optimizer.zero_grad(set_to_none=True)
    compiled.optimizer.zero_grad(set_to_none=True)
    # 2. the trajectory: the end result agrees; the losses only within the measured drift (≤ 2.4e-3) × 8
    a, b = eager.fit(), compiled.fit()
    assert abs(a.metrics["test_psnr"] - b.metrics["test_psnr"]) < 1e-3
    assert b.history[-1]["der_loss"] == pytest.approx(a.history[-1]["der_loss"], rel=2e-2)
    # one output channel: autograd (auto) stays eager, its double backward cannot be compiled
    gray = ImageRegressionConfig(compile=True, grayscale=True, **common).setup()
    assert gray.derivative_impl == "autograd" and not gray.compiled


@pytest.mark.slow
def test_gpu_check_script_runs_on_cpu():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    proc = subprocess.run([sys.executable, str(script), "--device", "cpu", "--quick", "--no-compile"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "goal 1 (forward)" in out and "goal 2 (val_der)" in out and "trial-steps/s" in out
    assert "goal 3: packed vs alone" in out and out.split("goal 3")[1].split("\n")[0].endswith("PASS")
    study = out.split("goal 4: the data-efficiency study at 50000 steps, 162 trials of 32²")[1].split("\n")[0]
    packed, solo = (float(x) for x in re.findall(r"([0-9.]+) min", study)[:2])
    assert 0 < packed and 0 < solo  # both extrapolations made (their ratio is the device's business)
