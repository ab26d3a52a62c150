import math

import numpy as np
import pytest
import torch

from sobolev.metrics import audio_psnr, cropped_ssim, image_metrics, luma, psnr, to_unit_range


def numpy_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM written out: Gaussian window 11, σ 1.5, reflect padding, c1=(0.01)², c2=(0.03)²."""
    x = np.arange(11) - 5
    g = np.exp(-(x**2) / (2 * 1.5**2))
    g /= g.sum()

    def blur(img):
        p = np.pad(img, 5, mode="reflect")
        rows = np.stack([np.convolve(r, g, mode="valid") for r in p])
        return np.stack([np.convolve(c, g, mode="valid") for c in rows.T]).T

    mu_a, mu_b = blur(a), blur(b)
    saa = blur(a * a) - mu_a**2
    sbb = blur(b * b) - mu_b**2
    sab = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    m = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (saa + sbb + c2) + 1e-12)
    return float(m.mean())


def test_luma_uses_the_papers_weights_without_offset():
    img = torch.tensor([1.0, 0.5, 0.25]).reshape(3, 1, 1)
    expected = (65.738 * 1.0 + 129.057 * 0.5 + 25.064 * 0.25) / 256
    assert float(luma(img)) == pytest.approx(expected)
    assert float(to_unit_range(torch.tensor(-1.0))) == 0.0 and float(to_unit_range(torch.tensor(3.0))) == 1.0


def test_psnr_over_mask_by_hand():
    target = torch.zeros(1, 2, 2)
    pred = torch.tensor([[[0.1, 0.0], [0.0, 0.3]]])
    mask = torch.tensor([[False, True], [True, True]])
    mse = (0 + 0 + 0.09) / 3
    assert psnr(pred, target, mask) == pytest.approx(10 * math.log10(1 / mse), rel=1e-6)
    assert audio_psnr(torch.tensor([[0.5, 0.0]]), torch.zeros(1, 2), torch.tensor([True, False])) == pytest.approx(
        10 * math.log10(1 / 0.25)
    )


def test_ssim_crops_border_and_matches_hand_computation():
    rng = np.random.default_rng(1)
    a = rng.random((40, 36))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    ours = cropped_ssim(torch.from_numpy(b)[None], torch.from_numpy(a)[None], border=4)
    assert ours == pytest.approx(numpy_ssim(a[4:-4, 4:-4], b[4:-4, 4:-4]), abs=1e-6)
    # differences only inside the border are invisible after the crop
    c = a.copy()
    c[:3, :] = 0.0
    c[:, -2:] = 1.0
    assert cropped_ssim(torch.from_numpy(c)[None], torch.from_numpy(a)[None], border=4) == pytest.approx(1.0, abs=1e-6)
    assert cropped_ssim(torch.from_numpy(c)[None], torch.from_numpy(a)[None], border=0) < 0.99


def test_image_metrics_use_luma_and_held_out_pixels_only():
    torch.manual_seed(0)
    target = torch.rand(3, 16, 16) * 2 - 1
    pred = target.clone()
    train_mask = torch.zeros(16, 16, dtype=torch.bool)
    train_mask[::4, ::4] = True
    pred[:, ~train_mask] += 0.2  # +0.1 in [0,1] units on held-out pixels
    pred[:, train_mask] += 1.0  # big error where we train: must not count
    m = image_metrics(pred, target, train_mask, border=4)
    y_p, y_t = luma(to_unit_range(pred)), luma(to_unit_range(target))
    held = ~train_mask
    mse = float(((y_p - y_t)[0][held] ** 2).mean())
    assert m["test_psnr"] == pytest.approx(10 * math.log10(1 / mse), rel=1e-6)
    expected = numpy_ssim(y_t[0, 4:-4, 4:-4].double().numpy(), y_p[0, 4:-4, 4:-4].double().numpy())
    assert m["test_ssim"] == pytest.approx(expected, abs=1e-5)
