"""Precision as a trial setting (``sobolev.precision``): the emulations round as tensor cores do, reduced precision
stays out of the first layer, fp32 keeps every trial key, and what cannot run here is one line at plan time."""

import pytest
import torch

from sobolev.models import MLPConfig
from sobolev.precision import EMULATIONS, PRECISIONS, Rounded, round_mantissa, rounded_matmul
from sobolev.trainers import ImageRegressionConfig
from sobolev.trainers.packed import PackedTrainer
from tests.sweep_helpers import cli, one_line_error, write_spec


def _floats(n: int = 1 << 16) -> torch.Tensor:
    """Normal values over many binades, plus exact ties of both parities at 7 and 10 bits, zeros and infinities."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, generator=g) * torch.exp2(torch.randint(-60, 60, (n,), generator=g).float())
    ties = []
    for drop in (16, 13):  # halfway between two representable values: odd and even kept mantissas
        for kept in (0x3F800000, 0x3F810000, 0x3F802000, 0xBF812000):
            ties.append(kept | (1 << (drop - 1)))
    special = torch.tensor(ties, dtype=torch.int64).to(torch.int32).view(torch.float32)
    return torch.cat([x, special, torch.tensor([0.0, -0.0, float("inf"), float("-inf"), 3.4e38])])


def test_rounding_to_7_bits_is_bfloat16s_own_rounding():
    x = _floats()
    assert torch.equal(round_mantissa(x, 7).view(torch.int32), x.to(torch.bfloat16).float().view(torch.int32))


def test_rounding_to_10_bits_is_tf32s_rounding_to_nearest_even():
    x = _floats()
    r = round_mantissa(x, 10)
    finite = torch.isfinite(r) & torch.isfinite(x)
    assert int((r[finite].view(torch.int32) & ((1 << 13) - 1)).abs().sum()) == 0  # 13 low bits dropped
    rel = ((r - x).abs() / x.abs().clamp_min(1e-38))[finite & (x != 0)]
    assert float(rel.max()) <= 2.0 ** -11  # half a unit in the 10th bit
    one = torch.tensor([1.0]).view(torch.int32)
    below, above = (one | (1 << 12)).view(torch.float32), ((one + (1 << 13)) | (1 << 12)).view(torch.float32)
    assert float(round_mantissa(below, 10)) == 1.0  # a tie rounds to the even neighbour: down here …
    assert float(round_mantissa(above, 10)) == float((one + (2 << 13)).view(torch.float32))  # … and up here


def test_emulated_products_and_their_backward_products_take_rounded_operands():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(5, 7, generator=g, requires_grad=True)
    b = torch.randn(7, 3, generator=g, requires_grad=True)
    upstream = torch.randn(5, 3, generator=g)
    out = rounded_matmul(a, b, 7)
    torch.testing.assert_close(out, round_mantissa(a.detach(), 7) @ round_mantissa(b.detach(), 7), rtol=0, atol=0)
    out.backward(upstream)
    r = lambda t: round_mantissa(t, 7)  # noqa: E731
    torch.testing.assert_close(a.grad, r(upstream) @ r(b.detach()).T, rtol=0, atol=0)
    torch.testing.assert_close(b.grad, r(a.detach()).T @ r(upstream), rtol=0, atol=0)
    assert not torch.equal(a.grad, upstream @ b.detach().T)  # the rounding is there to see


def test_the_first_layer_stays_fp32_and_the_hidden_layers_take_the_precision():
    """A precision that keeps no explicit mantissa bit moves the hidden layers' products a lot; the first layer's
    pre-activation (a SIREN's phase ω0·Wx) must stay exactly fp32 unless the precision asks for it."""
    torch.manual_seed(0)
    model = MLPConfig("sine", hidden_features=32, hidden_layers=2).build(2, 3, None, 16)
    x = torch.rand(64, 2) * 2 - 1
    phases = []
    model.activations[0].register_forward_pre_hook(lambda m, args: phases.append(args[0].detach()))
    exact = model(x).detach()
    model.precision = Rounded(bits=0)
    crude = model(x).detach()
    model.precision = Rounded(bits=0, first_layer=True)
    model(x)
    assert torch.equal(phases[1], phases[0])  # the first layer kept out of the reduced products …
    assert (crude - exact).abs().max() > 1e-3  # … while the hidden layers took them
    assert not torch.equal(phases[2], phases[0])  # and in them when the precision asks


def _psnr(precision: str, impl: str = "auto") -> float:
    config = ImageRegressionConfig(image="coffee", size=24, factor=2, steps=60, seed=0, supervision="val_der",
                                   derivative_impl=impl, precision=precision, model=MLPConfig("sine"))
    return config.setup().fit().metrics["test_psnr"]


@pytest.mark.parametrize("impl", ["forward", "autograd"])
def test_a_bf16_trial_learns_what_an_fp32_trial_learns(impl):
    """Real bf16 products (oneDNN) on both derivative paths, against fp32 (measured: within 0.05 dB)."""
    fp32, bf16 = _psnr("fp32", impl), _psnr("bf16", impl)
    assert fp32 > 14.0 and abs(bf16 - fp32) < 0.5, (fp32, bf16)
    assert bf16 != fp32  # the products really were bf16


def test_a_packed_bf16_pair_equals_the_two_trials_alone():
    configs = [ImageRegressionConfig(image=img, size=16, factor=2, steps=20, seed=s, supervision="val_der",
                                     precision="bf16", model=MLPConfig("sine"))
               for img, s in (("coffee", 0), ("chelsea", 1))]
    alone = [c.setup().fit().metrics["test_psnr"] for c in configs]
    packed = [r.metrics["test_psnr"] for r in PackedTrainer([c.setup() for c in configs]).fit()]
    assert packed == pytest.approx(alone, abs=0.05)


def test_fp32_hashes_as_if_absent_and_another_precision_is_another_trial():
    base = ImageRegressionConfig(image="coffee", size=16, steps=2)
    assert "precision" not in base.identity()
    assert ImageRegressionConfig(image="coffee", size=16, steps=2, precision="fp32").identity() == base.identity()
    assert ImageRegressionConfig(image="coffee", size=16, steps=2, precision="bf16").identity()["precision"] == "bf16"
    assert set(PRECISIONS.names()) == {"fp32", "tf32", "bf16"}
    assert set(EMULATIONS.names()) == {"tf32-emulated", "bf16-emulated"}


@pytest.mark.parametrize("setting,expected", [
    ("trial.precision=tf32", "tiny.yaml: trial.precision: tf32 is a mode of CUDA's tensor cores"),
    ("trial.precision=fp16", "tiny.yaml: trial.precision: "),
    ("grid.activations=[wire]", "tiny.yaml: trial.precision: "),
])
def test_a_precision_this_machine_cannot_run_is_one_line_at_plan_time(tmp_path, setting, expected):
    overrides = ["--set", setting] + (["--set", "trial.precision=bf16"] if "wire" in setting else [])
    line = one_line_error(cli("plan", str(write_spec(tmp_path)), *overrides, cwd=tmp_path))
    assert expected in line, line
    if "fp16" in setting:
        assert "fp32" in line and "bf16" in line, line  # the allowed values
    if "wire" in setting:
        assert "bfloat16 has no complex type" in line and "allowed: fp32" in line, line
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / ".sobolev").exists()
