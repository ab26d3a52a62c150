import numpy as np
import pytest
import torch

from sobolev.errors import ConfigError
from sobolev.finite_differences import finite_difference_gradient, time_derivative
from sobolev.losses import derivative_loss, sobolev_loss, value_loss
from sobolev.sampling import Sampling


def hand_sobel(a: np.ndarray):
    """Normalised 3×3 Sobel with replicated borders, written out by hand."""
    p = np.pad(a, 1, mode="edge")
    h, w = a.shape
    gx = np.zeros_like(a)
    gy = np.zeros_like(a)
    for y in range(h):
        for x in range(w):
            win = p[y : y + 3, x : x + 3]
            gx[y, x] = ((win[0, 2] + 2 * win[1, 2] + win[2, 2]) - (win[0, 0] + 2 * win[1, 0] + win[2, 0])) / 8
            gy[y, x] = ((win[2, 0] + 2 * win[2, 1] + win[2, 2]) - (win[0, 0] + 2 * win[0, 1] + win[0, 2])) / 8
    return gx, gy


def test_sobel_targets_equal_hand_written_sobel():
    rng = np.random.default_rng(0)
    a = rng.random((5, 7))
    gx, gy = hand_sobel(a)
    out = finite_difference_gradient(torch.from_numpy(a)[None], "sobel")
    assert out.shape == (1, 2, 5, 7)
    np.testing.assert_allclose(out[0, 0].numpy(), gx, atol=1e-12)
    np.testing.assert_allclose(out[0, 1].numpy(), gy, atol=1e-12)


def test_diff_targets_are_central_differences_per_pixel():
    a = torch.tensor([[0.0, 1.0, 4.0, 9.0, 16.0]], dtype=torch.float64)
    out = finite_difference_gradient(a[None], "diff")
    # interior: (f[x+1] - f[x-1]) / 2; borders replicate the edge sample
    np.testing.assert_allclose(out[0, 0, 0].numpy(), [0.5, 2.0, 4.0, 6.0, 3.5])
    np.testing.assert_allclose(time_derivative(a, "diff")[0, 0].numpy(), [0.5, 2.0, 4.0, 6.0, 3.5])


def test_losses_by_hand():
    pred = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    target = torch.tensor([[1.0, 0.0], [0.0, 4.0]])
    assert float(value_loss(pred, target)) == pytest.approx((0 + 4 + 9 + 0) / 4)
    pj = torch.zeros(2, 2, 2)
    tj = torch.ones(2, 2, 2)
    tj[1] *= 2
    # point 0: 4 components × 1 = 4; point 1: 4 × 4 = 16 → mean 10
    assert float(derivative_loss(pj, tj)) == pytest.approx(10.0)
    terms = sobolev_loss("val_der", pred, target, pj, tj, lambda_der=0.5)
    assert float(terms.total) == pytest.approx(13 / 4 + 0.5 * 10)
    assert float(sobolev_loss("der", pred, target, pj, tj).total) == pytest.approx(10.0)
    assert float(sobolev_loss("val", pred, target).total) == pytest.approx(13 / 4)
    with pytest.raises(ConfigError, match="known: der, val, val_der"):
        sobolev_loss("vals", pred, target)


def test_grid_sampling_mask():
    mask = Sampling(factor=4).mask((8, 12))
    assert mask.sum() == 2 * 3
    assert mask[0, 0] and mask[4, 8] and not mask[1, 0]
    assert Sampling(factor=4).samples_per_axis((8, 12)) == 2
    assert Sampling(factor=4).fraction(2) == 1 / 16


def test_random_sampling_is_seeded_and_sized():
    a = Sampling(ratio=0.1, seed=3).mask((20, 30))
    b = Sampling(ratio=0.1, seed=3).mask((20, 30))
    c = Sampling(ratio=0.1, seed=4).mask((20, 30))
    assert int(a.sum()) == 60
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert Sampling(ratio=1 / 16).equivalent_factor(2) == 4


@pytest.mark.parametrize("kw,msg", [({"factor": 0}, "factor must be in 1..8"), ({"factor": 9}, "got 9"),
                                    ({"ratio": 0.0}, r"ratio must be in \(0, 1\]"), ({"ratio": 1.5}, "1.5")])
def test_sampling_rejects_bad_values(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        Sampling(**kw).validate()
