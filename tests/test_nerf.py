"""Inverse rendering: the LLFF loader on a generated scene, rays, NDC, renderer derivatives, training."""

import json
import math
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from sobolev.errors import ConfigError
from sobolev.jacobian import value_and_input_jacobian
from sobolev.rendering.llff import load_llff
from sobolev.rendering.rays import ndc_rays, pixel_rays
from sobolev.rendering.synthetic import DOWNSAMPLE, _texture, cast, make_scene
from sobolev.trainers.nerf import NerfConfig
from tests.sweep_helpers import ENV, cli, one_line_error


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return make_scene(tmp_path_factory.mktemp("scene") / "tiny", width=40, height=30)


def test_loader_reproduces_the_generators_poses_and_bounds(scene_dir):
    truth = json.loads((scene_dir / "scene.json").read_text())
    scene = load_llff(scene_dir, DOWNSAMPLE)
    assert scene.images.shape == (20, 30, 40, 3) and (scene.height, scene.width) == (30, 40)
    assert scene.focal == pytest.approx(truth["focal"])
    assert scene.test_views == [0, 8, 16] and len(scene.train_views) == 17
    # documented steps 4–5: translations and bounds × sc, then relative to the average pose
    near = np.array(truth["near"])
    sc = 1.0 / (near.min() * 0.75)
    assert scene.scale == pytest.approx(sc)
    np.testing.assert_allclose(scene.bounds[:, 0], near * sc, rtol=1e-6)
    np.testing.assert_allclose(scene.bounds[:, 1], np.array(truth["far"]) * sc, rtol=1e-6)
    bottom = np.array([[0, 0, 0, 1.0]])
    for loaded, c2w in zip(scene.poses, truth["c2w"]):
        world = np.array(c2w)
        world[:, 3] *= sc
        expected = (np.linalg.inv(scene.recenter) @ np.concatenate([world, bottom]))[:3]
        np.testing.assert_allclose(loaded, expected, atol=1e-5)
    # the recentred poses average to the identity frame
    np.testing.assert_allclose(scene.poses[:, :3, 3].mean(0), 0, atol=1e-5)


def test_ray_through_a_known_pixel_passes_through_the_known_point(scene_dir):
    truth = json.loads((scene_dir / "scene.json").read_text())
    scene = load_llff(scene_dir, DOWNSAMPLE)
    textures = {n: _texture(n) for n in ("coffee", "chelsea", "astronaut", "rocket")}
    for view, pixel in [(3, (7.0, 21.0)), (12, (30.0, 4.0))]:
        c2w = torch.tensor(truth["c2w"][view], dtype=torch.float64)
        o, d = pixel_rays(torch.tensor([pixel], dtype=torch.float64), c2w, 30, 40, truth["focal"])
        _, t, point = cast(o.numpy(), d.numpy(), textures)  # the 3-D point this pixel sees
        p = scene.world_to_scene(point)[0]
        lo, ld = pixel_rays(torch.tensor([pixel], dtype=torch.float64), torch.from_numpy(scene.poses[view]).double(),
                            30, 40, scene.focal)
        lo, ld = lo[0].numpy(), ld[0].numpy()
        along = np.dot(p - lo, ld) / np.dot(ld, ld)
        assert along > 0
        assert np.linalg.norm(lo + along * ld - p) < 1e-4


def test_ndc_matches_a_hand_computation():
    o = torch.tensor([[0.2, -0.1, 0.0]])
    d = torch.tensor([[0.1, 0.05, -1.0]])
    o_ndc, d_ndc = ndc_rays(30, 40, 50.0, 1.0, o, d)
    # shifted origin (0.3, -0.05, -1); o = (-f/(W/2)·ox/oz, -f/(H/2)·oy/oz, 1 + 2n/oz)
    torch.testing.assert_close(o_ndc[0], torch.tensor([0.75, -1 / 6, -1.0]))
    # d = (-f/(W/2)(dx/dz - ox/oz), -f/(H/2)(dy/dz - oy/oz), -2n/oz)
    torch.testing.assert_close(d_ndc[0], torch.tensor([-0.5, 1 / 3, 2.0]))


@pytest.mark.parametrize("activation,h", [("sine", 1e-5), ("relu", 1e-7)])
def test_rendered_colour_derivative_equals_finite_difference_of_the_renderer(scene_dir, activation, h):
    # relu (with 10 octaves) has kinks every ~1e-4 pixel along a ray: its differences need a smaller step
    torch.manual_seed(0)
    cfg = NerfConfig(preset="cpu", scene=str(scene_dir), steps=1, samples=16, model={"activation": activation})
    trainer = cfg.setup()
    trainer.model.double()
    pose = torch.from_numpy(trainer.scene.poses[[2, 5]]).double()
    pixels = torch.tensor([[12.3, 7.6], [25.5, 19.2]], dtype=torch.float64)
    depths = torch.rand(2, 16, dtype=torch.float64).sort(dim=1).values
    noise = torch.randn(2, 16, dtype=torch.float64)

    def colour(px):
        return trainer.render_pixels(px, pose, depths, noise)["rgb"]

    _, jac = value_and_input_jacobian(colour, pixels, create_graph=False)
    for k in range(2):
        step = torch.zeros(2, dtype=torch.float64)
        step[k] = h
        fd = (colour(pixels + step) - colour(pixels - step)) / (2 * h)
        torch.testing.assert_close(jac[:, :, k], fd.detach(), rtol=1e-5, atol=1e-7)
    assert jac.abs().max() > 0


def test_tiny_training_improves_held_out_psnr(scene_dir):
    # measured on the 2-core machine: 6.56 dB before, 13.21 dB after 100 steps (relu, val, 40 × 30 views)
    cfg = NerfConfig(preset="cpu", scene=str(scene_dir), steps=100, log_every=20, flythrough_frames=3,
                      supervision="val")
    trainer = cfg.setup()
    before = trainer.evaluate(with_gradients=False).metrics["test_psnr"]
    result = trainer.fit()
    assert result.metrics["test_psnr"] > before + 5.0
    assert result.prediction.shape == (3, 3, 30, 40) and result.network_gradient.shape == (3, 2, 30, 40)
    assert result.extras["flythrough"].shape[0] >= 3


def _broken(scene_dir, tmp_path, name):
    bad = tmp_path / name
    shutil.copytree(scene_dir, bad)
    return bad


def test_bad_scenes_are_refused_naming_the_file(scene_dir, tmp_path):
    no_poses = _broken(scene_dir, tmp_path, "no_poses")
    (no_poses / "poses_bounds.npy").unlink()
    with pytest.raises(ConfigError, match="has no poses_bounds.npy"):
        load_llff(no_poses)
    fewer = _broken(scene_dir, tmp_path, "fewer")
    np.save(fewer / "poses_bounds.npy", np.load(fewer / "poses_bounds.npy")[:-1])
    with pytest.raises(ConfigError, match="19 poses but 20 images"):
        load_llff(fewer)
    nan = _broken(scene_dir, tmp_path, "nan")
    rows = np.load(nan / "poses_bounds.npy")
    rows[3, 2] = np.nan
    np.save(nan / "poses_bounds.npy", rows)
    with pytest.raises(ConfigError, match="poses_bounds.npy: holds NaN"):
        load_llff(nan)
    bounds = _broken(scene_dir, tmp_path, "bounds")
    rows = np.load(bounds / "poses_bounds.npy")
    rows[4, 15] = rows[4, 16] + 1
    np.save(bounds / "poses_bounds.npy", rows)
    with pytest.raises(ConfigError, match="view 4 has near .* >= far"):
        load_llff(bounds)
    sizes = _broken(scene_dir, tmp_path, "sizes")
    Image.new("RGB", (20, 10)).save(sizes / "images_4" / "005.png")
    with pytest.raises(ConfigError, match="have different sizes"):
        load_llff(sizes)
    line = one_line_error(cli("train", "nerf", "--scene", str(no_poses), "--steps", "1", "--quiet", cwd=tmp_path))
    assert "no_poses" in line and "poses_bounds.npy" in line


def test_train_nerf_cli_writes_the_same_json_keys_and_pictures(tmp_path):
    env = {**ENV, "SOBOLEV_CACHE": str(tmp_path / "cache")}
    proc = cli("train", "nerf", "--scene", "synthetic", "--preset", "cpu", "--scene-width", "40", "--activation",
               "sine", "--supervision", "val_der", "--steps", "6", "--flythrough-frames", "3",
               "--json", str(tmp_path / "r.json"), "--out", str(tmp_path / "out"), cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "r.json").read_text())
    for key in ("test_psnr", "test_ssim", "train_psnr", "steps", "train_seconds", "steps_per_second"):
        assert key in result and math.isfinite(result[key])
    assert result["config"]["samples"] == 32 and result["config"]["model"]["hidden_features"] == 64
    for name in ("views.png", "depth.png", "gradients.png", "flythrough.gif", "loss.png"):
        assert (tmp_path / "out" / name).stat().st_size > 1000, name
