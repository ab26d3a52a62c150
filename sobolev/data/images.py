"""Images: five CC0/public-domain photographs from the scikit-image wheel, files, Set5 folders.

A source is a built-in name, a PNG/JPEG path, or a Set5-style folder ``<root>/HR/<name>.png``
(which expands to its images, sorted by name, so the paper's Set5 table runs unchanged).
Files keep their precision: 8-bit images are scaled by 1/255, 16-bit ones (grayscale, and colour PNGs through
pypng, which Pillow would read at 8 bits) by 1/65535.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from sobolev.errors import ConfigError
from sobolev.registry import Registry

BUILTIN_IMAGES: Registry[Callable[[], np.ndarray]] = Registry("built-in image")
DEFAULT_BUILTIN_SIZE = 256
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
"""Pillow's modes of 16-bit grayscale (Pillow reads 16-bit colour PNGs as 8-bit ``RGB``: pypng reads those)."""


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        return getattr(skimage.data, name)()

    load.__name__ = name
    return load


# Licences (scikit-image's docstrings): astronaut NASA, public domain; chelsea CC0 (Stefan van
# der Walt); coffee CC0 (Rachel Michetti); rocket SpaceX, public domain; hubble NASA, public domain.
for _name, _fn in [
    ("astronaut", "astronaut"),
    ("chelsea", "chelsea"),
    ("coffee", "coffee"),
    ("rocket", "rocket"),
    ("hubble", "hubble_deep_field"),
]:
    BUILTIN_IMAGES.register(_name)(_skimage(_fn))


@dataclass
class ImageSignal:
    """An image to fit, in the network's value range.

    Shape:
        - pixels: ``(C, H, W)`` float32 in [-1, 1], C = 3 (colour) or 1 (grayscale)
    """

    name: str
    pixels: torch.Tensor
    source: str

    @property
    def shape(self):
        return tuple(self.pixels.shape[-2:])


def _set5_images(root: Path) -> List[Path]:
    hr = root / "HR"
    return sorted(p for p in hr.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if hr.is_dir() else []


def resolve_images(spec: str) -> List[str]:
    """Expand a dataset entry into image sources: a Set5-style folder gives one per image.

    Raises :class:`ConfigError` naming the entry when it is neither a built-in name, an image
    file, nor a folder with images under ``HR/``.
    """
    if spec in BUILTIN_IMAGES:
        return [spec]
    path = Path(spec).expanduser()
    if path.is_file():
        return [str(path)]
    if path.is_dir():
        images = _set5_images(path)
        if not images:
            raise ConfigError(f"image folder {spec!r} has no images under {spec.rstrip('/')}/HR/ (Set5 layout)")
        return [str(p) for p in images]
    raise ConfigError(
        f"image {spec!r} not found: not a file, a Set5-style folder, or a built-in image "
        f"({', '.join(BUILTIN_IMAGES.names())})"
    )


def open_image(path: Path) -> Image.Image:
    """The decoded image at ``path``.  A file Pillow cannot read, or whose header claims more than
    ``Image.MAX_IMAGE_PIXELS`` pixels (Pillow's decompression-bomb guard, its warning taken as an error: nothing
    is decoded), is a :class:`ConfigError` naming the file and, for a bomb, its pixel count and the limit."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:  # leaving the block closes the file, not the decoded image
                img.load()
                return img
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        raise ConfigError(f"cannot read image {str(path)!r}: {exc}") from None


def _sixteen_bit_colour_png(path: Path) -> Optional[np.ndarray]:
    """A 16-bit colour PNG read at full precision by pypng (Pillow reads these as 8-bit ``RGB``), ``(H, W, 3)``
    uint16 (alpha dropped); None for any other file.  Pillow's decompression-bomb limit holds here too."""
    import png

    try:
        reader = png.Reader(filename=str(path))
        reader.preamble()
    except (png.Error, OSError, ValueError):
        return None  # not a PNG (or not one pypng reads): Pillow decides
    if reader.bitdepth != 16 or not reader.color_type & 2:  # colour type 2 (RGB) or 6 (RGBA)
        return None
    pixels = reader.width * reader.height
    if Image.MAX_IMAGE_PIXELS and pixels > Image.MAX_IMAGE_PIXELS:
        raise ConfigError(f"cannot read image {str(path)!r}: {pixels} pixels is over the limit of "
                          f"{Image.MAX_IMAGE_PIXELS} (a decompression bomb?)")
    try:
        width, height, rows, info = png.Reader(filename=str(path)).asDirect()
        array = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows])
    except (png.Error, OSError, ValueError) as exc:
        raise ConfigError(f"cannot read image {str(path)!r}: {exc}") from None
    return array.reshape(height, width, info["planes"])[:, :, :3]


def _read_file(path: Path) -> np.ndarray:
    """Pixels ``(H, W[, 3])``: uint8, or uint16 for a 16-bit image (grayscale or colour, kept at full
    precision)."""
    colour16 = _sixteen_bit_colour_png(path)
    if colour16 is not None:
        return colour16
    img = open_image(path)
    if img.mode in SIXTEEN_BIT_MODES:
        return np.asarray(img).astype(np.uint16)
    if img.mode == "I":  # 32-bit integers: what some readers give for 16-bit grayscale
        array = np.asarray(img)
        if array.size and (array.min() < 0 or array.max() > 65535):
            raise ConfigError(f"image {str(path)!r} holds 32-bit values in {array.min()}..{array.max()}; "
                              "known: 8-bit and 16-bit images (0..65535)")
        return array.astype(np.uint16)
    return np.asarray(img if img.mode in ("RGB", "L") else img.convert("RGB"))


def center_crop_resize(array: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to a square, then resize to ``size × size`` (Lanczos)."""
    h, w = array.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = array[top : top + side, left : left + side]
    if side == size:
        return square
    if square.dtype == np.uint16 and square.ndim == 3:  # Pillow has no 16-bit colour mode: channel by channel
        channels = [np.asarray(Image.fromarray(square[:, :, c].astype(np.float32), mode="F")
                               .resize((size, size), Image.LANCZOS)) for c in range(square.shape[2])]
        return np.clip(np.rint(np.stack(channels, axis=2)), 0, 65535).astype(np.uint16)
    return np.asarray(Image.fromarray(square).resize((size, size), Image.LANCZOS))


def load_image(spec: str, size: Optional[int] = None, grayscale: bool = False) -> ImageSignal:
    """Read a built-in name or an image file into an :class:`ImageSignal`.

    ``size`` centre-crops to a square and resizes; ``None`` keeps a file's own resolution and
    gives built-in images ``DEFAULT_BUILTIN_SIZE``.  Decoded images are cached per process
    (keyed by the file's modification time), so a sweep worker reads each image once.
    """
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 8):
        raise ConfigError(f"size must be an integer >= 8, got {size!r}")
    path = Path(spec).expanduser()
    stamp = path.stat().st_mtime_ns if spec not in BUILTIN_IMAGES and path.is_file() else 0
    signal = _load_image_cached(spec, size, grayscale, stamp)
    return ImageSignal(name=signal.name, pixels=signal.pixels.clone(), source=signal.source)


@functools.lru_cache(maxsize=32)
def _load_image_cached(spec: str, size: Optional[int], grayscale: bool, stamp: int) -> ImageSignal:
    if spec in BUILTIN_IMAGES:
        array, name = BUILTIN_IMAGES.get(spec)(), spec
        size = DEFAULT_BUILTIN_SIZE if size is None else size
    else:
        sources = resolve_images(spec)
        if len(sources) > 1:
            names = ", ".join(Path(s).stem for s in sources)
            raise ConfigError(
                f"image {spec!r} is a Set5-style folder of {len(sources)} images ({names}); "
                f"pass one of them, e.g. {sources[0]}"
            )
        path = Path(sources[0])
        array, name = _read_file(path), path.stem
    if size is not None:
        array = center_crop_resize(array, size)
    if array.ndim == 2:
        array = array[:, :, None]
    pixels = torch.from_numpy(array.astype(np.float32)).permute(2, 0, 1) / float(np.iinfo(array.dtype).max)
    if grayscale and pixels.shape[0] == 3:
        from sobolev.metrics import luma

        pixels = luma(pixels)
    return ImageSignal(name=name, pixels=pixels * 2.0 - 1.0, source=spec)
