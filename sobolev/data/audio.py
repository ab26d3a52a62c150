"""Audio: any WAV file (scipy), and two built-in clips shipped as package data.

``music`` is 5 s of a real instrument recording from the music21 wheel (BSD-3) and
``counting`` is "one, two, … ten" spoken by eSpeak NG; see ``clips/NOTICE.md``.  They stand in
for SIREN's gt_bach.wav and gt_counting.wav, which the paper used.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Optional

import numpy as np
import scipy.io.wavfile
import torch

from sobolev.errors import ConfigError
from sobolev.registry import Registry

BUILTIN_CLIPS: Registry[str] = Registry("built-in clip")
BUILTIN_CLIPS.register("music")("music.wav")
BUILTIN_CLIPS.register("counting")("counting.wav")


@dataclass
class AudioSignal:
    """A waveform to fit, scaled by its peak to [-1, 1] (docs/protocol.md, "Audio regression").

    Shape:
        - samples: ``(1, N)`` float32
    """

    name: str
    samples: torch.Tensor
    rate: int
    source: str

    @property
    def num_samples(self) -> int:
        return int(self.samples.shape[-1])


def builtin_clip_path(name: str) -> Path:
    filename = BUILTIN_CLIPS.get(name)
    return Path(str(resources.files("sobolev.data") / "clips" / filename))


def _to_float(data: np.ndarray) -> np.ndarray:
    if data.dtype == np.uint8:
        return (data.astype(np.float64) - 128.0) / 128.0
    if np.issubdtype(data.dtype, np.integer):
        return data.astype(np.float64) / float(-np.iinfo(data.dtype).min)
    return data.astype(np.float64)


def load_audio(spec: str, duration: Optional[float] = None) -> AudioSignal:
    """Read a built-in clip name or a WAV path; keep the first channel; scale by max |x|.

    ``duration`` (seconds) keeps only the start of the clip, a CPU-friendly option.
    """
    if spec in BUILTIN_CLIPS:
        path, name = builtin_clip_path(spec), spec
    else:
        path, name = Path(spec).expanduser(), Path(spec).stem
        if not path.is_file():
            raise ConfigError(
                f"audio {spec!r} not found: not a WAV file or a built-in clip ({', '.join(BUILTIN_CLIPS.names())})"
            )
    try:
        rate, data = scipy.io.wavfile.read(path)
    except Exception as exc:  # scipy raises ValueError, struct.error, EOFError, … on bad files
        raise ConfigError(f"cannot read WAV {spec!r}: {exc or type(exc).__name__}") from None
    if data.ndim == 2:
        data = data[:, 0]
    waveform = _to_float(data)
    if duration is not None:
        if not duration > 0:
            raise ConfigError(f"duration must be > 0 seconds, got {duration}")
        waveform = waveform[: int(round(duration * rate))]
    if waveform.size < 2:
        raise ConfigError(f"WAV {spec!r} has {waveform.size} samples; at least 2 are needed")
    peak = float(np.max(np.abs(waveform)))
    if not np.isfinite(peak):
        raise ConfigError(f"WAV {spec!r} holds NaN or infinite samples")
    if peak == 0.0:
        raise ConfigError(f"WAV {spec!r} is silent (every sample is 0)")
    samples = torch.from_numpy(waveform / peak).float()[None]
    return AudioSignal(name=name, samples=samples, rate=int(rate), source=spec)
