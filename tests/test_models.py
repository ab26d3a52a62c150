import math

import pytest
import torch

from sobolev.encodings import nyquist_num_frequencies, positional_encoding
from sobolev.errors import ConfigError
from sobolev.jacobian import value_and_input_jacobian
from sobolev.models import AffineCoordinates, CoordinateMLP, MLPConfig, known_models, parse_model_name
from sobolev.registry import Registry


def test_nyquist_frequency_count_matches_floor_log2_samples_over_4():
    assert nyquist_num_frequencies(64) == 4
    assert nyquist_num_frequencies(32) == 3
    assert nyquist_num_frequencies(100) == 4  # log2(25) = 4.64
    assert nyquist_num_frequencies(44100) == math.floor(math.log2(44100 / 4))
    assert nyquist_num_frequencies(4) == 1  # the formula gives 0; at least one is kept


def test_positional_encoding_layout_and_size():
    x = torch.tensor([[0.25, -0.5]])
    out = positional_encoding(x, 3)
    assert out.shape == (1, 2 + 2 * 2 * 3)
    expected = [0.25, -0.5]
    for i in range(3):
        for xj in (0.25, -0.5):
            a = (2**i) * math.pi * xj
            expected += [math.sin(a), math.cos(a)]
    torch.testing.assert_close(out[0], torch.tensor(expected), rtol=1e-6, atol=1e-6)


def test_relu_pe_model_input_width_follows_training_grid():
    coords = AffineCoordinates((1.0, 1.0), (0.0, 0.0))
    model = MLPConfig("relu_pe").build(2, 3, coords, samples_per_axis=32)  # 128² at factor 4
    assert model.encoding.num_frequencies == 3
    assert model.linears[0].in_features == 2 + 2 * 2 * 3
    assert len(model.linears) == 4 and model.output.out_features == 3


def test_sine_init_bounds():
    torch.manual_seed(0)
    model = CoordinateMLP(2, 3, activation="sine", w0=30.0)
    first = model.linears[0].weight.detach()
    assert first.abs().max() <= 1 / 2 and first.abs().max() > 0.45  # U(-1/fan_in, 1/fan_in)
    bound = math.sqrt(6 / 256) / 30
    for layer in [*model.linears[1:], model.output]:
        w = layer.weight.detach()
        assert w.abs().max() <= bound and w.abs().max() > 0.95 * bound
        assert abs(float(w.std()) - bound / math.sqrt(3)) < 0.05 * bound


def test_relu_kaiming_normal_init_every_layer_including_output():
    torch.manual_seed(0)
    model = CoordinateMLP(2, 3, activation="relu")
    for layer in [*model.linears[1:], model.output]:
        expected = math.sqrt(2 / layer.in_features)
        assert abs(float(layer.weight.detach().std()) - expected) < 0.1 * expected
        assert abs(float(layer.weight.detach().mean())) < 0.1 * expected


def test_unknown_activation_lists_known_ones():
    with pytest.raises(ConfigError, match=r"unknown activation 'tanh'; known: finer, finer_ff, finer_nerf, finer_pe, "
                                          r"gauss, gauss_ff, gauss_nerf, gauss_pe, relu, relu_ff, relu_nerf, relu_pe, "
                                          r"sine, sine_ff, sine_nerf, sine_pe, wire, wire_ff, wire_nerf, wire_pe$"):
        parse_model_name("tanh")
    with pytest.raises(ConfigError, match="relu_xx"):
        parse_model_name("relu_xx")
    assert parse_model_name("relu_pe") == ("relu", "pe")
    assert "sine" in known_models() and "relu_nerf" in known_models()


def test_registry_refuses_duplicates_and_names_bad_value():
    reg: Registry = Registry("widget")
    reg.register("a")(1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(2)
    with pytest.raises(ConfigError, match="unknown widget 'b'; known: a"):
        reg.get("b")


@pytest.mark.parametrize("activation", ["sine", "relu_pe"])
def test_network_derivative_equals_finite_difference_of_network(activation):
    torch.manual_seed(0)
    coords = AffineCoordinates((2 / 63, 2 / 47), (-1.0, -1.0))
    model = MLPConfig(activation).build(2, 3, coords, samples_per_axis=16).double()
    points = torch.tensor([[10.3, 20.7], [40.1, 5.5], [0.2, 46.0]], dtype=torch.float64)
    _, jac = value_and_input_jacobian(model, points, create_graph=False)
    h = 1e-5
    for d in range(2):
        step = torch.zeros(2, dtype=torch.float64)
        step[d] = h
        fd = (model(points + step) - model(points - step)) / (2 * h)
        torch.testing.assert_close(jac[:, :, d], fd.detach(), rtol=1e-5, atol=1e-6)
