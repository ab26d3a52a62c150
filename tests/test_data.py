import numpy as np
import pytest
import scipy.io.wavfile
import torch
from PIL import Image

from sobolev.data import BUILTIN_CLIPS, BUILTIN_IMAGES, load_audio, load_image, resolve_images
from sobolev.errors import ConfigError


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee", "rocket", "hubble"])
def test_builtin_images_are_colour_squares_of_the_requested_size(name):
    sig = load_image(name, size=32)
    assert sig.pixels.shape == (3, 32, 32)
    assert sig.pixels.min() >= -1 and sig.pixels.max() <= 1 and sig.pixels.std() > 0.05


def test_builtin_default_size_is_256():
    assert load_image("coffee").pixels.shape == (3, 256, 256)
    assert BUILTIN_IMAGES.names() == ["astronaut", "chelsea", "coffee", "hubble", "rocket"]


def test_file_keeps_its_own_resolution_and_values(png_image):
    path, arr = png_image
    sig = load_image(str(path))
    assert sig.pixels.shape == (3, 24, 32) and sig.name == "pic"
    torch.testing.assert_close(sig.pixels, torch.from_numpy(arr).permute(2, 0, 1).float() / 255 * 2 - 1)
    assert load_image(str(path), size=16).pixels.shape == (3, 16, 16)
    assert load_image(str(path), grayscale=True).pixels.shape == (1, 24, 32)


def test_set5_folder_expands_sorted_and_one_file_loads(tmp_path, png_image):
    _, arr = png_image
    (tmp_path / "Set5" / "HR").mkdir(parents=True)
    for name in ["woman", "baby", "bird"]:
        Image.fromarray(arr).save(tmp_path / "Set5" / "HR" / f"{name}.png")
    sources = resolve_images(str(tmp_path / "Set5"))
    assert [s.rsplit("/", 1)[-1] for s in sources] == ["baby.png", "bird.png", "woman.png"]
    with pytest.raises(ConfigError, match="Set5-style folder of 3 images"):
        load_image(str(tmp_path / "Set5"))
    assert load_image(sources[0]).name == "baby"


def test_bad_images_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="'missing.png' not found.*astronaut"):
        load_image("missing.png")
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(ConfigError, match="cannot read image"):
        load_image(str(bad))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no images under"):
        resolve_images(str(tmp_path / "empty"))


@pytest.mark.parametrize(
    "data,expected",
    [
        (np.array([0, 16384, -32768, 8192], dtype=np.int16), [0, 0.5, -1, 0.25]),
        (np.array([0, 2**30, -(2**31)], dtype=np.int32), [0, 0.5, -1]),
        (np.array([0.0, 0.2, -0.4], dtype=np.float32), [0, 0.5, -1]),
        (np.array([[100, 1], [-200, 2], [50, 3]], dtype=np.int16), [0.5, -1, 0.25]),  # first channel of stereo
    ],
)
def test_wav_formats_are_scaled_by_peak(tmp_path, data, expected):
    path = tmp_path / "x.wav"
    scipy.io.wavfile.write(path, 8000, data)
    sig = load_audio(str(path))
    assert sig.rate == 8000
    np.testing.assert_allclose(sig.samples[0].numpy(), expected, atol=1e-6)


def test_builtin_clips_ship_with_the_package():
    assert BUILTIN_CLIPS.names() == ["counting", "music"]
    music = load_audio("music")
    assert music.rate == 44100 and abs(music.num_samples / 44100 - 5.0) < 0.01
    assert float(music.samples.abs().max()) == 1.0
    counting = load_audio("counting", duration=1.0)
    assert counting.num_samples == counting.rate


def test_bad_wavs_are_refused(tmp_path):
    scipy.io.wavfile.write(tmp_path / "silent.wav", 8000, np.zeros(50, np.int16))
    scipy.io.wavfile.write(tmp_path / "empty.wav", 8000, np.zeros(0, np.int16))
    (tmp_path / "junk.wav").write_bytes(b"RIFF")
    with pytest.raises(ConfigError, match="silent"):
        load_audio(str(tmp_path / "silent.wav"))
    with pytest.raises(ConfigError, match="0 samples"):
        load_audio(str(tmp_path / "empty.wav"))
    with pytest.raises(ConfigError, match="cannot read WAV"):
        load_audio(str(tmp_path / "junk.wav"))
    with pytest.raises(ConfigError, match="known|built-in clip"):
        load_audio("nope.wav")
