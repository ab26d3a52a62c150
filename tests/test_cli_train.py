"""``sobolev-sweep train``: the real command in a subprocess, its JSON, pictures and errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
import scipy.io.wavfile
from PIL import Image

CLI = [sys.executable, "-m", "runners.cli"]


def run(*args, cwd=None):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_train_image_writes_json_and_pictures(tmp_path):
    proc = run("train", "image", "--image", "coffee", "--size", "32", "--factor", "4", "--activation", "sine",
               "--supervision", "val_der", "--steps", "30", "--seed", "0",
               "--json", str(tmp_path / "r.json"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "r.json").read_text())
    for key in ("test_psnr", "test_ssim", "train_psnr", "steps", "train_seconds", "steps_per_second"):
        assert key in result
    assert result["steps"] == 30 and result["test_psnr"] > 5 and 0 < result["test_ssim"] <= 1
    assert result["config"]["model"]["activation"] == "sine" and len(result["history"]) == 30
    for name in ("prediction.png", "error.png", "gradients.png", "loss.png"):
        assert (tmp_path / "out" / name).stat().st_size > 1000
    assert Image.open(tmp_path / "out" / "prediction.png").size == (32, 32)


def test_train_image_file_uses_its_own_resolution_and_resumes(tmp_path, png_image):
    path, _ = png_image
    ck = tmp_path / "ck.pt"
    base = ["train", "image", "--image", str(path), "--steps", "10", "--activation", "relu_pe",
            "--supervision", "val", "--checkpoint", str(ck), "--json", str(tmp_path / "a.json"), "--quiet"]
    assert run(*base).returncode == 0
    assert json.loads((tmp_path / "a.json").read_text())["steps"] == 10 and ck.exists()
    more = run(*[a if a != "10" else "20" for a in base])
    assert more.returncode == 0 and "resumed from" in more.stderr and "at step 10" in more.stderr


def test_train_audio_writes_wav_and_plot(tmp_path):
    t = np.arange(2000) / 2000
    scipy.io.wavfile.write(tmp_path / "a.wav", 2000, (0.5 * np.sin(2 * np.pi * 50 * t) * 32767).astype(np.int16))
    proc = run("train", "audio", "--audio", str(tmp_path / "a.wav"), "--factor", "5", "--activation", "sine",
               "--supervision", "val_der", "--steps", "20", "--json", str(tmp_path / "r.json"),
               "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "r.json").read_text())
    assert {"test_psnr", "train_psnr", "steps_per_second"} <= set(result)
    rate, wav = scipy.io.wavfile.read(tmp_path / "out" / "prediction.wav")
    assert rate == 2000 and wav.shape == (2000,)
    assert (tmp_path / "out" / "waveform.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "args,message",
    [
        (["--activation", "tanh"], "unknown activation 'tanh'; known: finer, finer_ff, finer_nerf, finer_pe, gauss"),
        (["--operator", "scharr"], "unknown operator 'scharr'; known: diff, sobel"),
        (["--supervision", "both"], "unknown supervision 'both'; known: der, val, val_der"),
        (["--factor", "0"], "factor must be in 1..8, got 0"),
        (["--ratio", "1.5"], "ratio must be in (0, 1], got 1.5"),
        (["--image", "missing.png"], "image 'missing.png' not found"),
        (["--size", "30", "--factor", "4"], "not a multiple of factor 4"),
        (["--derivative-source", "half"], "unknown derivative_source 'half'; known: full, subsampled"),
        (["--activation", "relu", "--lr", "1e9"], "trial diverged at step"),
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--steps", "x"], "Invalid value for '--steps'"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, message):
    defaults = {"--size": "32", "--steps": "20"}
    for k, v in defaults.items():
        if k not in args:
            args = [*args, k, v]
    proc = run("train", "image", "--quiet", *args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("sobolev-sweep: error: ") and message in lines[0]


def test_bad_wav_is_one_line_exit_2(tmp_path):
    scipy.io.wavfile.write(tmp_path / "s.wav", 8000, np.zeros(100, np.int16))
    for path, message in [(tmp_path / "s.wav", "silent"), (tmp_path / "none.wav", "not found")]:
        proc = run("train", "audio", "--audio", str(path), "--steps", "2", "--quiet")
        assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
