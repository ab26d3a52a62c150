"""Trainers, one per task of the paper, and the loop they share.

Each task module holds the task's typed config, its trainer and its :class:`~sobolev.tasks.Task`
(registered in :data:`sobolev.tasks.TASKS`).
"""

# Import order is registration order (how error messages list the tasks): image, audio, nerf.
from sobolev.trainers.image import ImageRegressionConfig, ImageRegressionTrainer  # isort: skip
from sobolev.trainers.audio import AudioRegressionConfig, AudioRegressionTrainer  # isort: skip
from sobolev.trainers.base import (
    Progress,
    RegressionTrainer,
    TrialResult,
    load_checkpoint,
    save_checkpoint,
)
from sobolev.trainers.nerf import NerfConfig, NerfTrainer
from sobolev.trainers.packed import PackedTrainer, check_packable, pack_signature

__all__ = [
    "AudioRegressionConfig",
    "AudioRegressionTrainer",
    "ImageRegressionConfig",
    "ImageRegressionTrainer",
    "NerfConfig",
    "NerfTrainer",
    "PackedTrainer",
    "Progress",
    "RegressionTrainer",
    "TrialResult",
    "check_packable",
    "pack_signature",
    "load_checkpoint",
    "save_checkpoint",
]
