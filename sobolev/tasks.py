"""The task registry: what the sweep engine, the command line and the analysis know of a task.

A :class:`Task` (image regression, audio regression, inverse rendering, …) owns its config
class, its built-in datasets and data checks, its training-point count (for the cost
estimate), the fraction of the signal it trains on, the pictures it writes, and whether its
trials can be packed.  Nothing outside this registry asks *which* task a trial is: it asks
the trial's task.  Adding a task is one module (config, trainer, :class:`Task`) plus
``TASKS.register(name)(MyTask())``; the built-in ones are registered by their trainer modules.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, List, Optional, Tuple, Type

import numpy as np

from sobolev.registry import Registry
from sobolev.sampling import Sampling

BUILTIN_TASK_MODULES = ("sobolev.trainers.image", "sobolev.trainers.audio", "sobolev.trainers.nerf")


@dataclass(frozen=True)
class Dataset:
    """One entry of a sweep's dataset axis, resolved: what it is called, where it is, what it holds."""

    name: str
    """Display name (``astronaut``, ``baby``): the ``dataset`` axis value."""
    source: str
    """The value of the task's data field: a built-in name or an absolute path."""
    digest: str
    """Content digest (``builtin:<name>`` for built-ins): part of every trial key."""


@dataclass(frozen=True)
class SignalInfo:
    """What the planner learns by opening a trial's data once.

    Shape: ``shape`` is the sampled grid of one signal, ``(H, W)`` or ``(N,)``.
    """

    shape: Tuple[int, ...]
    channels: int

    @property
    def samples(self) -> int:
        return int(np.prod(self.shape))


PREVIEW_SIDE = 256
"""The longest side of a :meth:`Task.preview`."""


def shrink(picture: np.ndarray, side: int = PREVIEW_SIDE) -> np.ndarray:
    """``picture`` (uint8) scaled down to at most ``side`` pixels a side (kept as is when smaller)."""
    from PIL import Image

    if max(picture.shape[:2]) <= side:
        return picture
    image = Image.fromarray(picture)
    image.thumbnail((side, side), Image.Resampling.BOX)
    return np.asarray(image)


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's content, first 16 hex digits."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


class Task:
    """A kind of trial.  Subclasses set the class attributes and implement the data methods."""

    name: ClassVar[str]
    """The spec's ``task:`` value; each subclass sets it and is registered under it in ``TASKS``."""
    config_class: ClassVar[Type[Any]]
    """The typed config of one trial (a :class:`~sobolev.trainers.config.RegressionConfig`)."""
    dimensions: ClassVar[int]
    """Axes of the sampled grid: a trial trains on ``1 / factor ** dimensions`` of the samples."""
    packable: ClassVar[bool] = False
    """Trials of this task can share a batched network (``sobolev.trainers.packed``)."""
    metrics: ClassVar[Tuple[str, ...]] = ("test_psnr", "test_ssim")
    """The held-out metrics a trial of this task reports (what a report tabulates by default)."""
    picture_grid: ClassVar[bool] = False
    """A trial's prediction is one picture (:meth:`reference_picture` gives the ground truth): a report draws a
    grid of them."""

    # -- data ---------------------------------------------------------------------------------
    def resolve_dataset(self, entry: str) -> List[Dataset]:  # pragma: no cover - abstract
        """A dataset-axis entry as one or more datasets (a folder may expand); :class:`ConfigError` if
        it is none of the task's kinds of data."""
        raise NotImplementedError

    def digest(self, source: str) -> Optional[str]:
        """The content digest of a resolved dataset source (:attr:`Dataset.digest`, part of every trial key);
        the worker computes it again before training, so data changed after planning is never trained under the
        old key.  None: this task cannot tell (data it makes itself); the built-in tasks digest their files."""
        return None

    def planned_samples(self, config: Any) -> Optional[Tuple[int, str]]:
        """The samples of the trial's signal when its config alone fixes them (an image's ``size``), with the
        setting that does, so the planner can bound them before it opens the data; None otherwise."""
        return None

    def inspect(self, config: Any) -> SignalInfo:  # pragma: no cover - abstract
        """Open the trial's data and check that the config fits it (e.g. the image size is a multiple
        of the factor); :class:`ConfigError` if not."""
        raise NotImplementedError

    def training_points(self, config: Any, info: SignalInfo) -> int:
        """Points the loss sees per step (the cost estimate's unit): the sampled grid by default."""
        sampling = config.sampling
        if sampling.ratio is not None:
            return max(1, int(round(sampling.ratio * info.samples)))
        return int(np.prod(sampling.grid_shape(info.shape)))

    def sampled_fraction(self, sampling: Sampling) -> float:
        """Share of the signal's samples trained on."""
        return sampling.fraction(self.dimensions)

    # -- outputs ------------------------------------------------------------------------------
    def save_artifacts(self, result: Any, out_dir: Path) -> List[Path]:  # pragma: no cover - abstract
        """The pictures (and sounds) of a finished trial, written into ``out_dir`` (not the loss curve: a sweep's
        run has the loss history in MLflow, whose UI draws it; ``train --out`` adds ``loss.png``)."""
        raise NotImplementedError

    def preview(self, result: Any) -> Optional[np.ndarray]:
        """A small picture of a prediction (``(H, W[, 3])`` uint8, at most :data:`PREVIEW_SIDE` a side), logged at
        every evaluation so the UI can compare runs and scrub through steps; None for tasks without one."""
        return None

    def reference_picture(self, config: Any) -> Optional[np.ndarray]:
        """The ground truth a report shows beside the predictions (``(H, W[, 3])`` uint8), or None
        when the task's predictions are not one picture."""
        return None


def _load_builtin_tasks() -> None:
    import importlib

    for module in BUILTIN_TASK_MODULES:
        importlib.import_module(module)


TASKS: Registry[Task] = Registry("task", load=_load_builtin_tasks)
"""Every task by name; built-in tasks are loaded on first use."""


def task_of(config: Any) -> Task:
    """The registered task whose config class ``config`` is."""
    for name in TASKS.in_order():
        task = TASKS.get(name)
        if type(config) is task.config_class:
            return task
    raise LookupError(f"no registered task has config class {type(config).__name__}")
