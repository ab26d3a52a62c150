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
from sobolev.trainers.packed import PackedTrainer, check_packable, pack_signature

__all__ = [
    "AudioRegressionConfig",
    "AudioRegressionTrainer",
    "ImageRegressionConfig",
    "ImageRegressionTrainer",
    "PackedTrainer",
    "Progress",
    "RegressionTrainer",
    "TrialResult",
    "check_packable",
    "pack_signature",
    "load_checkpoint",
    "save_checkpoint",
]
