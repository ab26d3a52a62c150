"""FINER, Gauss, WIRE and Fourier features: definitions, inits, both derivative paths, packing, learning."""

import math

import pytest
import torch

from sobolev.activations import ComplexGabor, Finer
from sobolev.jacobian import mlp_value_and_jacobian, value_and_input_jacobian
from sobolev.models import AffineCoordinates, CoordinateMLP, MLPConfig
from sobolev.trainers import ImageRegressionConfig, PackedTrainer
from tests.sweep_helpers import cli, one_line_error

NEW = ["finer", "gauss", "wire", "relu_ff"]


def network(name: str, in_features: int = 2, out_features: int = 3, width: int = 32, **knobs) -> CoordinateMLP:
    coords = AffineCoordinates([2 / 63, 2 / 47][:in_features], [-1.0] * in_features)
    return MLPConfig(name, hidden_features=width, **knobs).build(in_features, out_features, coords, 16).double()


@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("in_features,out_features", [(2, 3), (1, 1)])
def test_forward_tangents_equal_autograd_and_finite_differences(name, in_features, out_features):
    torch.manual_seed(0)
    model = network(name, in_features, out_features)
    x = torch.rand(64, in_features, dtype=torch.float64) * 40
    v1, j1 = value_and_input_jacobian(model, x, create_graph=True)
    v2, j2 = mlp_value_and_jacobian(model, x)
    torch.testing.assert_close(v2, v1, rtol=0, atol=1e-8)
    torch.testing.assert_close(j2, j1, rtol=0, atol=1e-8 * float(j1.detach().abs().max()))
    # the Jacobian is the network's own derivative: central differences of its forward pass
    h = 1e-6
    eye = torch.eye(in_features, dtype=x.dtype)
    with torch.no_grad():
        fd = torch.stack([(model(x + h * eye[k]) - model(x - h * eye[k])) / (2 * h) for k in range(in_features)], -1)
    torch.testing.assert_close(fd, j1.detach(), rtol=0, atol=1e-6 * float(j1.detach().abs().max()))
    # a val_der loss has the same gradient for every parameter on both paths
    target = torch.randn_like(j1)
    params = list(model.parameters())
    g1 = torch.autograd.grad(((j1 - target) ** 2).sum() + (v1**2).sum(), params)
    g2 = torch.autograd.grad(((j2 - target) ** 2).sum() + (v2**2).sum(), params)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(b, a, rtol=1e-8, atol=1e-10 * float(a.abs().max()))


def test_finer_derivative_has_the_2z_plus_1_factor():
    finer = Finer(w0=30.0)
    z = torch.tensor([0.1, -0.2], dtype=torch.float64, requires_grad=True)
    value, derivative = finer.value_and_derivative(z)
    # by hand: d/dz sin(30 (|z| + 1) z) = 30 (2|z| + 1) cos(30 (|z| + 1) z)
    expected = [30 * 1.2 * math.cos(30 * 1.1 * 0.1), 30 * 1.4 * math.cos(30 * 1.2 * -0.2)]
    torch.testing.assert_close(derivative, torch.tensor(expected, dtype=torch.float64))
    torch.testing.assert_close(value, torch.sin(torch.tensor([3.3, -7.2], dtype=torch.float64)))
    (autograd,) = torch.autograd.grad(finer(z).sum(), z)  # the forward pass differentiates the same
    torch.testing.assert_close(autograd, derivative)
    detached = Finer(w0=30.0, detach_scale=True)  # FINER's code: the scale is a constant to autograd
    (grad,) = torch.autograd.grad(detached(z).sum(), z)
    torch.testing.assert_close(grad, torch.tensor([30 * 1.1 * math.cos(3.3), 30 * 1.2 * math.cos(-7.2)],
                                                  dtype=torch.float64))
    torch.testing.assert_close(detached.value_and_derivative(z)[1], grad)


def test_wire_tangent_is_the_derivative_of_its_non_holomorphic_map():
    gabor = ComplexGabor(w0=20.0, s0=10.0)
    z = torch.tensor([0.03 + 0.02j], dtype=torch.complex128)
    for direction in (1.0, 1j):  # along the real and the imaginary axis
        h = 1e-7
        fd = (gabor(z + h * direction) - gabor(z - h * direction)) / (2 * h)
        _, tangent = gabor.value_and_tangent(z, torch.full_like(z, direction))
        torch.testing.assert_close(tangent, fd, rtol=1e-6, atol=1e-9)


def _uniform_bound_and_std(w: torch.Tensor, bound: float) -> None:
    assert float(w.abs().max()) <= bound and float(w.abs().max()) > 0.95 * bound
    assert abs(float(w.std()) - bound / math.sqrt(3)) < 0.05 * bound


def test_initial_weights_follow_the_authors_distributions():
    torch.manual_seed(0)
    finer = MLPConfig("finer").build(2, 3, None, 16)  # SIREN's init, w0 = 30
    assert float(finer.linears[0].weight.detach().abs().max()) <= 1 / 2
    for layer in [*finer.linears[1:], finer.output]:
        _uniform_bound_and_std(layer.weight.detach(), math.sqrt(6 / 256) / 30)
    gauss = MLPConfig("gauss").build(2, 3, None, 16)  # PyTorch's default: U(±1/√fan_in), weights and biases
    for layer in [*gauss.linears, gauss.output]:
        _uniform_bound_and_std(layer.weight.detach(), 1 / math.sqrt(layer.in_features))
        assert float(layer.bias.detach().abs().max()) <= 1 / math.sqrt(layer.in_features)
    wire = MLPConfig("wire").build(2, 3, None, 16)
    assert [lin.weight.dtype for lin in wire.linears] == [torch.float32] + [torch.complex64] * 3
    assert wire.output.weight.dtype == torch.complex64 and wire.linears[1].in_features == 181  # ⌊256/√2⌋
    for layer in wire.linears[1:]:  # PyTorch's default, real and imaginary parts each U(±1/√fan_in)
        _uniform_bound_and_std(layer.weight.detach().real, 1 / math.sqrt(181))
        _uniform_bound_and_std(layer.weight.detach().imag, 1 / math.sqrt(181))
    ff = MLPConfig("relu_ff").build(2, 3, AffineCoordinates((2 / 63, 2 / 63), (-1.0, -1.0)), 16)
    B = ff.encoding.B
    n = B.numel()  # N(0, 10²): within 4 standard errors (of the std: σ/√(2n), of the mean: σ/√n)
    assert B.shape == (256, 2) and abs(float(B.std()) - 10.0) < 4 * 10 / math.sqrt(2 * n)
    assert abs(float(B.mean())) < 4 * 10 / math.sqrt(n)
    assert ff.linears[0].in_features == 512  # [cos 2πBv, sin 2πBv]
    for layer in [*ff.linears[1:], ff.output]:  # the project's ReLU MLP: Kaiming-normal
        expected = math.sqrt(2 / layer.in_features)
        assert abs(float(layer.weight.detach().std()) - expected) < 0.1 * expected


def test_fourier_features_come_from_the_trial_seed_and_are_saved():
    config = ImageRegressionConfig(image="coffee", size=16, steps=1, model=MLPConfig("relu_ff"), seed=3)
    a, b = config.setup(), config.setup()
    other = ImageRegressionConfig(image="coffee", size=16, steps=1, model=MLPConfig("relu_ff"), seed=4).setup()
    assert torch.equal(a.model.encoding.B, b.model.encoding.B)
    assert not torch.equal(a.model.encoding.B, other.model.encoding.B)
    assert "encoding.B" in a.state_dict()["model"]
    # v in [0, 1]: pixel (0, 0) is v = 0, so every feature there is cos 0 = 1, sin 0 = 0
    features = a.model.encoding(a.model.coordinates(torch.zeros(1, 2)))
    torch.testing.assert_close(features, torch.cat((torch.ones(1, 256), torch.zeros(1, 256)), dim=1))


@pytest.mark.parametrize("name", NEW)
def test_a_packed_pair_equals_the_two_trials_alone(name):
    """Every step of the pack is each member's own step: the same loss and gradients as the member alone
    from the same state (to fp32 rounding).  Whole runs are compared where the dynamics are tame: Gauss's
    and WIRE's val_der losses start in the thousands, and Adam amplifies rounding (1e-7 after one step)
    to 0.1 dB after 20 steps, packed or not."""
    configs = [ImageRegressionConfig(image=img, size=16, factor=2, steps=20, log_every=10, seed=s,
                                     supervision="val_der", model=MLPConfig(name))
               for img, s in (("coffee", 0), ("chelsea", 1))]
    pack = PackedTrainer([c.setup() for c in configs])
    worst = []
    for _ in range(5):
        alone = []
        for config, member in zip(configs, pack.members):
            solo = config.setup()
            solo.load_state_dict(member.state_dict())
            solo.optimizer.zero_grad(set_to_none=True)
            total, _, _ = solo.loss_parts()
            total.backward()
            alone.append((float(total), [p.grad.clone() for p in solo.model.parameters()]))
        losses, diverged = pack.training_step([0, 1])
        assert not diverged
        for i, (loss, grads) in enumerate(alone):
            assert losses[i]["loss"] == pytest.approx(loss, rel=1e-5)
            for g, p in zip(grads, pack.members[i].model.parameters()):
                worst.append(float((p.grad - g).abs().max()) / float(g.abs().max()))
    print(f"{name}: gradients packed vs alone, worst {max(worst):.1e} of the largest entry")
    assert max(worst) <= 2e-5  # measured ≤ 1.2e-6 (fp32 rounding of batched vs single products)
    if name in ("finer", "relu_ff"):
        solo = [c.setup().fit() for c in configs]
        for packed, alone_result in zip(PackedTrainer([c.setup() for c in configs]).fit(), solo):
            assert abs(packed.metrics["test_psnr"] - alone_result.metrics["test_psnr"]) < 1e-3


# Measured on this 2-core CI machine (chelsea 32², factor 2, val_der, 200 steps): held-out PSNR at
# the start → after, finer (lr 1e-4) 20.0 → 22.8 dB, gauss (1e-3) 18.2 → 20.3, wire (1e-3)
# 16.9 → 20.0, relu_ff (1e-3) 10.9 → 20.1.
@pytest.mark.parametrize("name,lr,threshold", [("finer", 1e-4, 22.2), ("gauss", 1e-3, 19.6), ("wire", 1e-3, 19.3),
                                               ("relu_ff", 1e-3, 19.4)])
def test_each_new_network_learns_a_small_builtin_image(name, lr, threshold):
    trainer = ImageRegressionConfig(image="chelsea", size=32, factor=2, steps=200, lr=lr, supervision="val_der",
                                    model=MLPConfig(name)).setup()
    before = trainer.evaluate(with_gradients=False).metrics["test_psnr"]
    after = trainer.fit().metrics["test_psnr"]
    assert after > threshold and after > before + 1.0


@pytest.mark.parametrize("name", ["gauss", "sine"])
def test_every_network_flushes_denormals_on_a_cpu(name):
    """Always on a CPU (``sobolev.numerics``): it changes no result of any network (measured), and Gauss's and
    WIRE's would be 10-50x slower without it on CPUs that penalise denormals.  Every thread: tests/test_numerics."""
    torch.set_flush_denormal(False)
    tiny = torch.tensor([1e-38])
    assert float(tiny * 1e-3) > 0.0
    ImageRegressionConfig(image="coffee", size=16, steps=1, model=MLPConfig(name)).setup()
    assert float(tiny * 1e-3) == 0.0  # a denormal result is flushed to zero


@pytest.mark.parametrize("args,message", [
    (["--activation", "finer", "--w0", "0"], "--model.w0: Input should be greater than 0"),
    (["--activation", "gauss", "--model.s0", "-1"], "--model.s0: Input should be greater than 0"),
    (["--activation", "relu_ff", "--ff-sigma", "0"], "--model.ff-sigma: Input should be greater than 0"),
    (["--activation", "relu_ff", "--ff-features", "0"], "--model.ff-features: Input should be greater than or equal"),
    (["--activation", "finer", "--detach-scale", "--supervision", "val_der"],
     "--model.detach-scale: detach_scale trains FINER on values only"),
])
def test_bad_knobs_are_one_line_errors(tmp_path, args, message):
    line = one_line_error(cli("train", "image", "--quiet", "--size", "16", "--steps", "2", *args, cwd=tmp_path))
    assert message in line


@pytest.mark.parametrize("name", NEW)
def test_train_image_runs_each_new_network(tmp_path, name):
    import json

    proc = cli("train", "image", "--image", "coffee", "--size", "16", "--steps", "5", "--activation", name,
               "--supervision", "val_der", "--json", str(tmp_path / "r.json"), "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["config"]["model"]["activation"] == name and result["test_psnr"] > 0
