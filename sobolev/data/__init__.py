"""Signals the trainers fit: built-in images and clips (no download, ever) and user files."""

from sobolev.data.audio import BUILTIN_CLIPS, AudioSignal, load_audio
from sobolev.data.images import BUILTIN_IMAGES, ImageSignal, load_image, resolve_images

__all__ = [
    "BUILTIN_CLIPS",
    "BUILTIN_IMAGES",
    "AudioSignal",
    "ImageSignal",
    "load_audio",
    "load_image",
    "resolve_images",
]
