"""Image regression (docs/protocol.md, "Image regression"): fit an image from its ``::factor`` grid.

Algorithm:
  1. Load the image in [-1, 1] (colour unless ``grayscale``), shape ``(C, H, W)``.
  2. Derivative targets: normalised Sobel (or diff) on the FULL image, read at the training
     pixels — or, with ``derivative_source="subsampled"``, on the training grid alone
     (then divided by ``factor``, the grid spacing in pixels).
  3. Training pixels: the ``::factor`` grid, or a seeded random ``ratio`` of the pixels.
  4. Coordinates: raw pixel ``(x, y)``; the network normalises ``x / (W-1) · 2 - 1`` itself,
     so its derivative is per pixel, like the targets.
  5. Train (``sobolev.trainers.base``), then metrics on luma: held-out PSNR, cropped SSIM.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, List, Optional, Tuple

import numpy as np
import torch
from pydantic import field_validator

from sobolev.config import Integer
from sobolev.data.images import BUILTIN_IMAGES, ImageSignal, load_image, resolve_images
from sobolev.errors import ConfigError
from sobolev.finite_differences import finite_difference_gradient
from sobolev.metrics import SSIM_WINDOW, cropped_ssim, image_metrics, luma, psnr, to_unit_range
from sobolev.models import AffineCoordinates
from sobolev.sampling import Sampling
from sobolev.tasks import TASKS, Dataset, SignalInfo, Task, file_digest, shrink
from sobolev.trainers.base import RegressionTrainer
from sobolev.trainers.config import RegressionConfig


class ImageRegressionConfig(RegressionConfig):
    """One image-regression trial; every default is the paper's setting (Set5 protocol)."""

    setting_noun: ClassVar[str] = "image trial setting"
    data_field: ClassVar[str] = "image"

    image: str = "astronaut"
    """Built-in image (astronaut, chelsea, coffee, rocket, hubble) or a PNG/JPEG file."""
    size: Optional[Integer] = None
    """Centre-crop to a square and resize to SIZE (at least the SSIM window, 11); None: a file's own size, 256 for
    built-ins."""
    grayscale: bool = False
    """Fit the luma channel only (the paper fits colour)."""

    @field_validator("size")
    @classmethod
    def _size(cls, size: Optional[int]) -> Optional[int]:
        if size is not None and size < SSIM_WINDOW:
            raise ConfigError(f"must be at least {SSIM_WINDOW} (the SSIM window), got {size}")
        return size

    def setup(self) -> "ImageRegressionTrainer":
        """The config is the factory: build the trainer for this trial."""
        return ImageRegressionTrainer(self)


def check_image_fits(signal: ImageSignal, sampling: Sampling) -> None:
    """The image can be trained on and measured: each side at least the SSIM window, and on the grid H and W
    multiples of ``factor`` so the grid and crop are regular."""
    h, w = signal.shape
    if min(h, w) < SSIM_WINDOW:
        raise ConfigError(f"image {signal.source!r} is {w}x{h}: each side must be at least {SSIM_WINDOW} pixels "
                          "(the SSIM window)")
    if sampling.is_grid and (h % sampling.factor or w % sampling.factor):
        raise ConfigError(
            f"image {signal.source!r} is {w}x{h}, not a multiple of factor {sampling.factor}; "
            f"pick a size (--size, trial.size) that is a multiple of {sampling.factor}, or another factor"
        )


def pixel_coordinates(h: int, w: int) -> torch.Tensor:
    """Raw pixel coordinates ``(x, y)`` in row-major order. Shape: ``(H·W, 2)``."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    return torch.stack((xs.reshape(-1), ys.reshape(-1)), dim=1)


def pixel_normalisation(h: int, w: int) -> AffineCoordinates:
    """``x / (W-1) · 2 - 1`` and ``y / (H-1) · 2 - 1``: by the FULL image size."""
    return AffineCoordinates(scale=(2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)), shift=(-1.0, -1.0))


def image_derivative_targets(pixels: torch.Tensor, operator: str, source: str, factor: int) -> torch.Tensor:
    """Step 2: the derivative targets at every pixel (full) or grid pixel (subsampled).

    Shape:
        - pixels: ``(C, H, W)``
        - output: ``(C, 2, H, W)`` (full) or ``(C, 2, H/f, W/f)`` (subsampled)
    """
    if source == "full":
        return finite_difference_gradient(pixels, operator)
    return finite_difference_gradient(pixels[:, ::factor, ::factor], operator) / factor


def per_point(field: torch.Tensor) -> torch.Tensor:
    """``(C, K, H, W)`` maps → ``(H·W, C, K)`` rows, the layout of Jacobians."""
    c, k, h, w = field.shape
    return field.permute(2, 3, 0, 1).reshape(h * w, c, k)


def per_map(rows: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`per_point`: ``(H·W, C, K)`` → ``(C, K, H, W)``."""
    n, c, k = rows.shape
    return rows.reshape(h, w, c, k).permute(2, 3, 0, 1).contiguous()


class ImageRegressionTrainer(RegressionTrainer):
    def setup(self) -> None:
        cfg: ImageRegressionConfig = self.config
        self.signal = load_image(cfg.image, cfg.size, cfg.grayscale)  # step 1
        check_image_fits(self.signal, cfg.sampling)
        pixels = self.target = self.signal.pixels
        c, h, w = pixels.shape
        self.sampling = cfg.sampling
        self.train_mask = self.sampling.mask((h, w))  # step 3
        self.target_gradient = finite_difference_gradient(pixels, cfg.operator)  # for reports
        targets = image_derivative_targets(pixels, cfg.operator, cfg.derivative_source, cfg.factor)  # step 2
        self.coords = pixel_coordinates(h, w)  # step 4
        flat_mask = self.train_mask.reshape(-1)
        self.train_coords = self.coords[flat_mask]
        self.train_values = pixels.reshape(c, -1).t()[flat_mask]
        if cfg.derivative_source == "full":
            self.train_jacobian = per_point(targets)[flat_mask]
        else:  # the grid in row-major order is exactly the masked pixels in row-major order
            self.train_jacobian = per_point(targets)
        if not self.supervision.uses_derivatives:
            self.train_jacobian = None
        self.model = cfg.model.build(
            in_features=2,
            out_features=c,
            coordinates=pixel_normalisation(h, w),
            samples_per_axis=self.sampling.samples_per_axis((h, w)),
        )

    def to_signal(self, values: torch.Tensor) -> torch.Tensor:
        c, h, w = self.target.shape
        return values.t().reshape(c, h, w)

    def to_gradient_maps(self, jacobian: torch.Tensor) -> torch.Tensor:
        return per_map(jacobian, *self.target.shape[-2:])

    def signal_metrics(self, prediction: torch.Tensor) -> dict:
        """Luma metrics: held-out PSNR and cropped SSIM, plus the same on the training grid."""
        metrics = image_metrics(prediction, self.target, self.train_mask, self.sampling.equivalent_factor(2))
        y_pred, y_true = luma(to_unit_range(prediction)), luma(to_unit_range(self.target))
        metrics["train_psnr"] = psnr(y_pred, y_true, self.train_mask)
        if self.sampling.is_grid:
            f = self.sampling.factor
            metrics["train_ssim"] = cropped_ssim(y_pred[:, ::f, ::f], y_true[:, ::f, ::f], border=0)
        return metrics

    def extras(self) -> dict:
        return {"name": self.signal.name}


def _uint8(pixels: torch.Tensor) -> np.ndarray:
    """``(C, H, W)`` in [-1, 1] → ``(H, W[, 3])`` uint8."""
    array = ((pixels.permute(1, 2, 0).numpy() + 1.0) / 2.0 * 255.0).clip(0, 255).astype(np.uint8)
    return array[..., 0] if array.shape[2] == 1 else array


class ImageTask(Task):
    """Image regression: fit an image from its ::FACTOR grid (Set5 protocol); a built-in image or an image
    file (a sweep's dataset axis also takes Set5-style folders)."""

    name: ClassVar[str] = "image"
    config_class = ImageRegressionConfig
    dimensions: ClassVar[int] = 2
    packable: ClassVar[bool] = True
    picture_grid: ClassVar[bool] = True

    def resolve_dataset(self, entry: str) -> List[Dataset]:
        if entry in BUILTIN_IMAGES:
            return [Dataset(entry, entry, self.digest(entry))]
        out = []
        for source in resolve_images(entry):  # a Set5-style folder gives one dataset per image
            absolute = str(Path(source).expanduser().resolve())
            out.append(Dataset(Path(source).stem, absolute, self.digest(absolute)))
        return out

    def digest(self, source: str) -> str:
        return f"builtin:{source}" if source in BUILTIN_IMAGES else file_digest(source)

    def planned_samples(self, config: ImageRegressionConfig) -> Optional[Tuple[int, str]]:
        return (config.size ** 2, "size") if config.size is not None else None

    def inspect(self, config: ImageRegressionConfig) -> SignalInfo:
        signal = load_image(config.image, config.size, config.grayscale)
        check_image_fits(signal, config.sampling)
        return SignalInfo(shape=signal.shape, channels=int(signal.pixels.shape[0]))

    def save_artifacts(self, result, out_dir: Path) -> List[Path]:
        from sobolev.visualize import save_image_artifacts

        return list(save_image_artifacts(result, out_dir).values())

    def preview(self, result) -> Optional[np.ndarray]:
        return shrink(_uint8(result.prediction.detach().cpu()))

    def reference_picture(self, config: ImageRegressionConfig) -> Optional[np.ndarray]:
        return _uint8(load_image(config.image, config.size, config.grayscale).pixels)


TASKS.register(ImageTask.name)(ImageTask())
