"""Trainers, one per task of the paper, and the loop they share."""

from sobolev.trainers.audio import AudioRegressionConfig, AudioRegressionTrainer
from sobolev.trainers.base import (
    Progress,
    RegressionTrainer,
    TrialResult,
    load_checkpoint,
    save_checkpoint,
)
from sobolev.trainers.image import ImageRegressionConfig, ImageRegressionTrainer

__all__ = [
    "AudioRegressionConfig",
    "AudioRegressionTrainer",
    "ImageRegressionConfig",
    "ImageRegressionTrainer",
    "Progress",
    "RegressionTrainer",
    "TrialResult",
    "load_checkpoint",
    "save_checkpoint",
]
