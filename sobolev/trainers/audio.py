"""Audio regression (docs/protocol.md, "Audio regression"): fit a waveform from every 5th sample.

Algorithm:
  1. Load the clip, first channel, scaled by max |x| to [-1, 1]; shape ``(1, N)``.
  2. Derivative targets: normalised ``diff`` along time on the FULL signal, read at the
     training samples (or, ``derivative_source="subsampled"``, on the training samples alone,
     divided by ``factor``).
  3. Training samples: ``::factor`` (5 in the paper) or a seeded random ``ratio``.
  4. Coordinate: raw sample index t, normalised by the network to ``(t/(N-1) - 0.5) · 200``.
  5. Train (``sobolev.trainers.base``), then PSNR over the held-out samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, List, Optional, Tuple

import torch
from pydantic import Field

from sobolev.config import Integer, Number
from sobolev.data.audio import BUILTIN_CLIPS, load_audio
from sobolev.errors import ConfigError
from sobolev.finite_differences import time_derivative
from sobolev.metrics import audio_psnr, held_out_mask
from sobolev.models import AffineCoordinates
from sobolev.tasks import TASKS, Dataset, SignalInfo, Task, file_digest
from sobolev.trainers.base import RegressionTrainer
from sobolev.trainers.config import RegressionConfig

AUDIO_COORDINATE_RANGE = 100.0


class AudioRegressionConfig(RegressionConfig):
    """One audio-regression trial; every default is the paper's setting (SIREN's audio protocol)."""

    setting_noun: ClassVar[str] = "audio trial setting"
    max_factor: ClassVar[int] = 64
    data_field: ClassVar[str] = "audio"

    factor: Integer = 5
    """Train on ``samples[::factor]``."""
    operator: str = "diff"
    """Finite-difference operator along time (``diff``; ``sobel`` equals it on a 1-D signal)."""
    steps: Integer = Field(8_000, ge=1)
    """Adam steps, full batch."""
    lr: Number = Field(5e-5, gt=0)
    """Constant learning rate."""
    audio: str = "music"
    """Built-in clip (music, counting) or a WAV file."""
    duration: Optional[Number] = Field(None, gt=0)
    """Keep only the first DURATION seconds (CPU-friendly); None: the whole clip."""

    def setup(self) -> "AudioRegressionTrainer":
        """The config is the factory: build the trainer for this trial."""
        return AudioRegressionTrainer(self)


def check_clip_fits_factor(n: int, sampling) -> None:
    """The ``::factor`` grid must keep at least two of the clip's ``n`` samples."""
    if sampling.is_grid and sampling.factor >= n:
        raise ConfigError(f"factor {sampling.factor} leaves one training sample of {n}; pick a smaller factor")


def sample_normalisation(n: int) -> AffineCoordinates:
    """``(t / (N-1) - 0.5) · 200``: raw sample index → [-100, 100]."""
    scale = 2.0 * AUDIO_COORDINATE_RANGE / max(n - 1, 1)
    return AffineCoordinates(scale=(scale,), shift=(-AUDIO_COORDINATE_RANGE,))


class AudioRegressionTrainer(RegressionTrainer):
    def setup(self) -> None:
        cfg: AudioRegressionConfig = self.config
        self.signal = load_audio(cfg.audio, cfg.duration)  # step 1
        samples = self.target = self.signal.samples
        n = samples.shape[-1]
        self.sampling = cfg.sampling
        check_clip_fits_factor(n, self.sampling)
        self.train_mask = self.sampling.mask((n,))  # step 3
        self.target_gradient = time_derivative(samples, cfg.operator)  # (1, 1, N)
        if cfg.derivative_source == "full":  # step 2
            targets = self.target_gradient[..., self.train_mask]
        else:
            targets = time_derivative(samples[:, :: cfg.factor], cfg.operator) / cfg.factor
        self.coords = torch.arange(n, dtype=torch.float32)[:, None]  # step 4
        self.train_coords = self.coords[self.train_mask]
        self.train_values = samples.t()[self.train_mask]
        self.train_jacobian = targets.permute(2, 0, 1).contiguous() if self.supervision.uses_derivatives else None
        self.model = cfg.model.build(
            in_features=1,
            out_features=1,
            coordinates=sample_normalisation(n),
            samples_per_axis=self.sampling.samples_per_axis((n,)),
        )

    def to_signal(self, values: torch.Tensor) -> torch.Tensor:
        return values.t().contiguous()

    def to_gradient_maps(self, jacobian: torch.Tensor) -> torch.Tensor:
        return jacobian.permute(1, 2, 0).contiguous()

    def signal_metrics(self, prediction: torch.Tensor) -> dict:
        """PSNR over the held-out samples and over the training samples."""
        return {
            "test_psnr": audio_psnr(prediction, self.target, held_out_mask(self.train_mask)),
            "train_psnr": audio_psnr(prediction, self.target, self.train_mask),
        }

    def extras(self) -> dict:
        return {"name": self.signal.name, "rate": self.signal.rate}


class AudioTask(Task):
    """Audio regression: fit a waveform from every FACTOR-th sample (SIREN audio protocol); built-in
    clips or WAV files."""

    name: ClassVar[str] = "audio"
    metrics: ClassVar[Tuple[str, ...]] = ("test_psnr",)
    config_class = AudioRegressionConfig
    dimensions: ClassVar[int] = 1
    packable: ClassVar[bool] = True

    def resolve_dataset(self, entry: str) -> List[Dataset]:
        if entry in BUILTIN_CLIPS:
            return [Dataset(entry, entry, self.digest(entry))]
        path = Path(entry).expanduser()
        if not path.is_file():
            raise ConfigError(f"audio {entry!r} not found: not a WAV file or a built-in clip "
                              f"({', '.join(BUILTIN_CLIPS.names())})")
        absolute = str(path.resolve())
        return [Dataset(path.stem, absolute, self.digest(absolute))]

    def digest(self, source: str) -> str:
        return f"builtin:{source}" if source in BUILTIN_CLIPS else file_digest(source)

    def inspect(self, config: AudioRegressionConfig) -> SignalInfo:
        n = load_audio(config.audio, config.duration).num_samples
        check_clip_fits_factor(n, config.sampling)
        return SignalInfo(shape=(n,), channels=1)

    def save_artifacts(self, result, out_dir: Path) -> List[Path]:
        from sobolev.visualize import save_audio_artifacts

        return list(save_audio_artifacts(result, out_dir).values())


TASKS.register(AudioTask.name)(AudioTask())
