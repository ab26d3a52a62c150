"""The paper's test metrics (docs/protocol.md, "Image regression" and "Audio regression").

Images are compared in [0, 1] on luma ``Y = (65.738 R + 129.057 G + 25.064 B) / 256`` (no
offset); PSNR is taken over the held-out pixels only and SSIM (kornia, Gaussian window 11)
over the image with a border of ``factor`` pixels cropped on every side.  Audio PSNR is taken
over the held-out samples of the [-1, 1] signal with a peak value of 1.
"""

from __future__ import annotations

import math
from typing import Optional

import kornia
import torch

LUMA_WEIGHTS = (65.738 / 256.0, 129.057 / 256.0, 25.064 / 256.0)
SSIM_WINDOW = 11


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] network values → [0, 1] pixel values, clipped as a saved image would be."""
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0)


def luma(image: torch.Tensor) -> torch.Tensor:
    """Luma Y of a [0, 1] image (ITU-R BT.601 weights, no offset); grayscale passes through.

    Shape:
        - image: ``(C, H, W)`` with C = 1 or 3
        - output: ``(1, H, W)``
    """
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"luma expects a (1|3, H, W) image, got shape {tuple(image.shape)}")
    if image.shape[0] == 1:
        return image
    w = torch.tensor(LUMA_WEIGHTS, dtype=image.dtype, device=image.device)
    return torch.einsum("c,chw->hw", w, image)[None]


def psnr(pred: torch.Tensor, target: torch.Tensor, mask: Optional[torch.Tensor] = None,
         max_value: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB, over the samples where ``mask`` is True (all if None).

    Shape:
        - pred, target: any, same shape
        - mask: broadcastable to the last dimensions of ``pred`` (e.g. ``(H, W)`` for ``(C, H, W)``)
    """
    if pred.shape != target.shape:
        raise ValueError(f"psnr of different shapes {tuple(pred.shape)} and {tuple(target.shape)}")
    err = (pred.double() - target.double()) ** 2
    if mask is not None:
        err = err[..., mask] if mask.ndim < err.ndim else err[mask]
    if err.numel() == 0:
        raise ValueError("psnr over an empty set of samples")
    mse = float(err.mean())
    return float("inf") if mse == 0.0 else 10.0 * math.log10(max_value**2 / mse)


def cropped_ssim(pred: torch.Tensor, target: torch.Tensor, border: int, window: int = SSIM_WINDOW) -> float:
    """Mean kornia SSIM after cropping ``border`` pixels on every side of both images.

    Shape:
        - pred, target: ``(C, H, W)`` in [0, 1]
    """
    if pred.shape != target.shape or pred.ndim != 3:
        raise ValueError(f"ssim expects two (C, H, W) images, got {tuple(pred.shape)} and {tuple(target.shape)}")
    if border > 0:
        pred = pred[:, border:-border, border:-border]
        target = target[:, border:-border, border:-border]
    if min(pred.shape[-2:]) <= window // 2:
        return float("nan")
    ssim_map = kornia.metrics.ssim(target[None].float(), pred[None].float(), window)
    return float(ssim_map.mean())


def held_out_mask(train_mask: torch.Tensor) -> torch.Tensor:
    """The samples not trained on; all samples when nothing is held out (factor 1, ratio 1)."""
    held_out = ~train_mask
    return held_out if bool(held_out.any()) else torch.ones_like(train_mask)


def image_metrics(
    pred: torch.Tensor, target: torch.Tensor, train_mask: torch.Tensor, border: int
) -> dict:
    """Held-out PSNR and cropped SSIM on luma, from [-1, 1] images.

    When nothing is held out (factor 1, ratio 1) the PSNR is taken over all pixels.

    Shape:
        - pred, target: ``(C, H, W)`` in [-1, 1]
        - train_mask: ``(H, W)`` bool
    """
    y_pred, y_true = luma(to_unit_range(pred)), luma(to_unit_range(target))
    return {
        "test_psnr": psnr(y_pred, y_true, held_out_mask(train_mask)),
        "test_ssim": cropped_ssim(y_pred, y_true, border),
    }


def audio_psnr(pred: torch.Tensor, target: torch.Tensor, mask: Optional[torch.Tensor] = None) -> float:
    """PSNR of a [-1, 1] waveform with peak value 1, over ``mask`` (all samples if None).

    Shape:
        - pred, target: ``(C, N)``; mask: ``(N,)``
    """
    return psnr(pred, target, mask, max_value=1.0)
