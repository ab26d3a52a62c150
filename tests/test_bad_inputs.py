"""Bad input (issue #13): hostile or broken specs, images, checkpoints and seeds are one line, exit code 2.

Every refusal runs the real command line in a subprocess; a refused ``run`` writes nothing (no
``mlflow.db``, no ``.sobolev``).  The guards themselves are timed in-process where speed is the point.
"""

import io
import struct
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from runners.spec.read import MAX_SPEC_BYTES, read_spec_text
from runners.spec.safe_yaml import MAX_NODES, load_yaml
from runners.spec.search import SearchSettings
from sobolev.data import load_image
from sobolev.errors import ConfigError
from sobolev.trainers import ImageRegressionConfig
from tests.sweep_helpers import cli, one_line_error, write_spec

MAX_SEED = "0..9223372036854775807"
BOMB = "lol: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"l{i}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for i, (a, b) in enumerate(zip("abcdefgh", "bcdefghi")))
"""A "billion laughs": nine levels of nine aliases, 9⁹ ≈ 387 million strings once expanded."""


def refused(tmp_path: Path, *args: str) -> str:
    """The one error line of ``sobolev-sweep ARGS`` run in ``tmp_path``, which must hold no store afterwards."""
    line = one_line_error(cli(*args, cwd=tmp_path))
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / ".sobolev").exists()
    return line


def train_image(tmp_path: Path, *args: str) -> str:
    return refused(tmp_path, "train", "image", "--steps", "2", "--quiet", *args)


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A 1×1 PNG whose header claims ``width × height``: Pillow checks the header before decoding anything."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", width, height)  # IHDR data after signature (8), length (4) and type (4)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # its CRC covers the type and the data
    path.write_bytes(bytes(data))
    return path


# -- spec files ----------------------------------------------------------------------------------

def test_oversized_spec_is_refused_before_it_is_read(tmp_path):
    big = tmp_path / "big.yaml"
    with open(big, "wb") as fh:
        fh.truncate(1 << 30)  # a sparse 1 GiB file: reading it would take seconds, refusing it must not
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=f"spec is {1 << 30} bytes, over the limit of {MAX_SPEC_BYTES} bytes"):
        read_spec_text(big)
    assert time.perf_counter() - t0 < 0.05
    line = refused(tmp_path, "run", str(big))
    assert f"big.yaml: spec is {1 << 30} bytes, over the limit of {MAX_SPEC_BYTES} bytes (1 MiB)" in line


@pytest.mark.parametrize("content,offset,byte", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", 0, "0x89"),  # binary junk
    ("name: café\ntask: image\n".encode("latin-1"), 9, "0xe9"),  # Latin-1, not UTF-8
])
def test_spec_that_is_not_utf8_names_the_byte_offset(tmp_path, content, offset, byte):
    (tmp_path / "junk.yaml").write_bytes(content)
    line = refused(tmp_path, "run", "junk.yaml")
    assert f"junk.yaml: not UTF-8 text: byte {byte} at byte offset {offset}" in line


def test_duplicate_keys_are_refused_with_both_lines(tmp_path):
    text = write_spec(tmp_path).read_text() + "name: other\n"
    (tmp_path / "dup.yaml").write_text(text)
    line = refused(tmp_path, "run", "dup.yaml")
    assert f"dup.yaml: duplicate key 'name' (line 1 and line {len(text.splitlines())})" in line
    line = refused(tmp_path, "plan", str(write_spec(tmp_path)), "--set", "trial={steps: 5, steps: 6}")
    assert "--set 'trial={steps: 5, steps: 6}': value: duplicate key 'steps' (line 1 and line 1)" in line


def test_alias_bomb_is_refused_fast_without_expanding(tmp_path):
    assert len(BOMB) < 1024
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=f"aliases expand this YAML to more than {MAX_NODES} nodes"):
        load_yaml(BOMB)
    elapsed, (_, peak) = time.perf_counter() - t0, tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert elapsed < 0.2 and peak < 2 << 20, (elapsed, peak)
    spec = write_spec(tmp_path)
    under_trial = "".join(f"  {line}\n" for line in BOMB.splitlines())
    (tmp_path / "bomb.yaml").write_text(spec.read_text().replace("trial:\n", "trial:\n" + under_trial, 1))
    line = refused(tmp_path, "run", "bomb.yaml")
    assert f"bomb.yaml: aliases expand this YAML to more than {MAX_NODES} nodes, the limit" in line
    line = refused(tmp_path, "plan", str(spec), "--set", "trial.x={" + ", ".join(BOMB.splitlines()) + "}")
    assert "value: aliases expand this YAML" in line


def test_recursive_alias_and_deep_nesting_are_one_line():
    with pytest.raises(ConfigError, match="refers to a node that contains it"):
        load_yaml("a: &x [1, *x]")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_yaml("[" * 5000)


# -- images --------------------------------------------------------------------------------------

@pytest.mark.parametrize("width,pixels,limit", [(20000, 400000000, 178956970), (10000, 100000000, 89478485)])
def test_decompression_bomb_image_is_refused_by_train(tmp_path, width, pixels, limit):
    """Over twice Pillow's limit it raises; between once and twice it only warns: both are refused."""
    bomb = png_claiming(tmp_path / "bomb.png", width, width)
    line = train_image(tmp_path, "--image", str(bomb))
    assert f"cannot read image '{bomb}': Image size ({pixels} pixels) exceeds limit of {limit} pixels" in line


def test_decompression_bomb_image_is_refused_by_run_at_plan_time(tmp_path):
    bomb = png_claiming(tmp_path / "bomb.png", 20000, 20000).resolve()
    line = refused(tmp_path, "run", str(write_spec(tmp_path, grid__datasets=[str(bomb)])))
    assert f"tiny.yaml: trial: cannot read image '{bomb}': Image size (400000000 pixels) exceeds limit" in line


def test_file_that_is_not_an_image_is_one_line(tmp_path):
    (tmp_path / "notes.png").write_text("shopping list\n")
    line = train_image(tmp_path, "--image", str(tmp_path / "notes.png"))
    assert f"cannot read image '{tmp_path / 'notes.png'}': cannot identify image file" in line


@pytest.mark.parametrize("fmt,mode", [("png", "I;16"), ("tiff", "I;16B"), ("tiff", "I")])
def test_16_bit_images_keep_full_precision(tmp_path, fmt, mode):
    values = np.linspace(0, 65535, 48 * 64).round().astype(np.uint16).reshape(48, 64)
    stored = {"I;16": values, "I;16B": values.astype(">u2"), "I": values.astype(np.int32)}[mode]
    path = tmp_path / f"deep.{fmt}"
    Image.fromarray(stored).save(path)
    assert Image.open(path).mode == mode
    pixels = (load_image(str(path)).pixels[0].double() + 1) / 2
    np.testing.assert_allclose(pixels.numpy(), values / 65535.0, atol=0.5 / 65535)
    assert len(np.unique(pixels.numpy())) > 256
    assert len(torch.unique(load_image(str(path), size=32).pixels)) > 256  # resized at 16 bits too


@pytest.mark.parametrize("alpha", [False, True])
def test_16_bit_colour_png_keeps_full_precision(tmp_path, alpha):
    """Pillow reads a 16-bit colour PNG at 8 bits (every value a multiple of 257); pypng reads it whole."""
    import png

    rng = np.random.default_rng(0)
    values = rng.integers(0, 65536, size=(24, 32, 4 if alpha else 3), dtype=np.uint16)
    path = tmp_path / "deep-colour.png"
    with path.open("wb") as fh:
        png.Writer(32, 24, bitdepth=16, greyscale=False, alpha=alpha).write(fh, values.reshape(24, -1))
    assert Image.open(path).mode in ("RGB", "RGBA")  # what Pillow alone would give
    pixels = (load_image(str(path)).pixels.double() + 1) / 2
    np.testing.assert_allclose(pixels.permute(1, 2, 0).numpy(), values[:, :, :3] / 65535.0, atol=0.5 / 65535)
    assert np.any(values[:, :, :3] % 257)  # values 8 bits cannot hold, kept
    resized = load_image(str(path), size=16).pixels
    assert resized.shape == (3, 16, 16) and len(torch.unique(resized)) > 256  # resized at 16 bits too


def test_32_bit_image_out_of_16_bit_range_is_refused(tmp_path):
    Image.fromarray(np.full((16, 16), 70000, np.int32)).save(tmp_path / "wide.tiff")
    with pytest.raises(ConfigError, match="32-bit values in 70000..70000; known: 8-bit and 16-bit"):
        load_image(str(tmp_path / "wide.tiff"))


def test_image_smaller_than_the_ssim_window_is_refused(tmp_path):
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    dot = str(tmp_path / "dot.png")
    line = train_image(tmp_path, "--image", dot)
    assert f"image '{dot}' is 1x1: each side must be at least 11 pixels (the SSIM window)" in line
    spec = write_spec(tmp_path, grid__datasets=[dot], trial={"steps": 2})
    line = refused(tmp_path, "run", str(spec))
    assert f"tiny.yaml: trial: image '{Path(dot).resolve()}' is 1x1: each side must be at least 11" in line


def test_size_below_the_ssim_window_is_refused_at_its_key(tmp_path):
    assert "--size: must be at least 11 (the SSIM window), got 8" in train_image(tmp_path, "--size", "8")
    line = refused(tmp_path, "run", str(write_spec(tmp_path)), "--set", "trial.size=10")
    assert "tiny.yaml: trial.size: must be at least 11 (the SSIM window), got 10" in line


# -- checkpoints ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,message", [
    ("random bytes", "not a sobolev-sweep checkpoint: torch.load fails"),
    ("text", "not a sobolev-sweep checkpoint: torch.load fails"),
    ("a tensor", "not a sobolev-sweep checkpoint of format 1 (it holds a Tensor)"),
])
def test_foreign_checkpoint_names_the_file(tmp_path, kind, message):
    ck = tmp_path / "ck.pt"
    if kind == "random bytes":
        ck.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "text":
        ck.write_text("model: resnet\nepoch: 3\n")
    else:
        torch.save(torch.zeros(3), ck)
    line = train_image(tmp_path, "--size", "16", "--checkpoint", str(ck))
    assert f"sobolev-sweep: error: {ck}: {message}" in line


# -- seeds ---------------------------------------------------------------------------------------

def test_seed_beyond_what_torch_takes_is_refused_at_plan_time(tmp_path):
    huge = "100000000000000000000000"
    assert f"--seed: must be in {MAX_SEED} (2**63 - 1), got {huge}" in train_image(tmp_path, "--seed", huge)
    line = refused(tmp_path, "run", str(write_spec(tmp_path, grid__seeds=[int(huge)])))
    assert f"tiny.yaml: grid.seeds[0]: must be in {MAX_SEED} (2**63 - 1), got {huge}" in line
    with pytest.raises(ConfigError, match=rf"^seed: must be in {MAX_SEED} \(2\*\*63 - 1\), got -1"):
        ImageRegressionConfig.parse({"seed": -1})
    assert ImageRegressionConfig.parse({"seed": 2**63 - 1}).seed == 2**63 - 1


def test_search_seeds_are_bounded():
    base = {"space": {"lr": {"loguniform": [1e-5, 1e-3]}}, "datasets": ["coffee"]}
    with pytest.raises(ConfigError, match=rf"seeds\[0\]: must be in {MAX_SEED}"):
        SearchSettings.parse({**base, "seeds": [2**63]})
    with pytest.raises(ConfigError, match=r"^seed: must be in 0..4294967295 \(2\*\*32 - 1\)"):
        SearchSettings.parse({**base, "seed": 2**32})
    assert SearchSettings.parse({**base, "seeds": [2**63 - 1], "seed": 2**32 - 1}).seed == 2**32 - 1


# -- what this machine cannot hold (runners.plan.bounds), refused before anything is allocated -----

@pytest.mark.parametrize("command,setting,where,allowed", [
    ("plan", "trial.size=100000", "trial.size: 10000000000 samples × 3 channels need",
     "allowed here: a side of at most"),
    ("run", "trial.model.hidden_features=100000000", "trial.model.hidden_features: 100000000 units per layer need",
     "allowed here: at most"),
])
def test_a_spec_larger_than_this_machine_is_refused_before_allocating(tmp_path, command, setting, where, allowed):
    t0 = time.perf_counter()
    line = refused(tmp_path, command, str(write_spec(tmp_path)), "--set", setting)
    assert f"tiny.yaml: {where}" in line and allowed in line, line
    assert time.perf_counter() - t0 < 30  # no 21 GB image decoded, no 10⁸-wide network built on the way


def test_a_sweep_beyond_the_wall_time_limit_needs_yes(tmp_path):
    spec = write_spec(tmp_path, trial__steps=100_000_000)
    for command in ("plan", "run"):
        line = refused(tmp_path, command, str(spec))
        assert "of wall time on this machine, over the limit of 24 h: pass --yes" in line, line
    proc = cli("plan", str(spec), "--yes", cwd=tmp_path)
    assert proc.returncode == 0 and "Estimated cost on this machine" in proc.stdout, proc.stderr


@pytest.mark.parametrize("setting", ["trial.lr=.inf", "trial.lambda_der=-.inf"])
def test_every_float_setting_refuses_infinity_and_nan(tmp_path, setting):
    key = setting.split("=")[0]
    line = refused(tmp_path, "run", str(write_spec(tmp_path)), "--set", setting)
    assert f"tiny.yaml: {key}: " in line and ("finite number" in line or "greater than" in line), line


def test_ui_on_a_busy_port_is_one_line(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = one_line_error(cli("ui", "--port", str(port), cwd=tmp_path, timeout=60))
    assert f"--port: 127.0.0.1:{port} is in use" in line and "allowed: a free port" in line


def test_a_store_that_cannot_be_written_is_one_line_and_left_as_it_was(tmp_path):
    """An immutable database file (``chattr +i``; a read-only bind mount where the filesystem has no such
    attribute): one line naming it, nothing started, the file unchanged."""
    import subprocess

    from runners.store.tracker import Tracker

    (tmp_path / "store").mkdir()
    db = tmp_path / "store" / "mlflow.db"
    Tracker(f"sqlite:///{db}").client.search_experiments()  # a real, empty MLflow store
    before = db.read_bytes()
    if subprocess.run(["chattr", "+i", str(db)], capture_output=True).returncode == 0:
        undo = ["chattr", "-i", str(db)]
    else:
        subprocess.run(["mount", "--bind", "-o", "ro", str(db.parent), str(db.parent)], check=True)
        undo = ["umount", str(db.parent)]
    try:
        proc = cli("run", str(write_spec(tmp_path)), "--tracking-uri", f"sqlite:///{db}", cwd=tmp_path, timeout=120)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert f"cannot write {db}: " in lines[0], lines[0]
    finally:
        subprocess.run(undo, check=True)
    assert db.read_bytes() == before and not (tmp_path / ".sobolev").exists()
