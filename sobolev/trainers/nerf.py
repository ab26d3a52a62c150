"""Inverse rendering (PROTOCOL.md, "Inverse rendering"): TinyNeRF with derivative supervision.

Algorithm:
  1. Load the LLFF scene (``sobolev.rendering.llff``): recentred poses, NDC rays, every 8th
     view held out.
  2. Training rays: the ``::factor`` grid (4) of the training views; targets their colours and
     the normalised Sobel derivatives of the FULL images at those pixels.
  3. Each step: ``rays`` random training rays (1024); depths stratified (128) and σ noise drawn
     first; colour rendered from the pixel coordinate ``(x, y)`` through rays → NDC → points →
     TinyNeRF → volume rendering, so ``∂rgb/∂(x, y)`` is exact autograd.
  4. Loss ``val`` / ``val_der`` as for images; Adam, lr ``5e-4 · 0.1^(step / 250 000)``.
  5. Evaluate: render the held-out views in chunks; mean PSNR and SSIM over them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Dict, Optional

import numpy as np
import torch

from sobolev.errors import ConfigError
from sobolev.finite_differences import finite_difference_gradient
from sobolev.jacobian import value_and_input_jacobian
from sobolev.losses import sobolev_loss
from sobolev.metrics import cropped_ssim, psnr
from sobolev.models import MLPConfig, parse_model_name
from sobolev.rendering.llff import load_llff, scene_images_tensor
from sobolev.rendering.rays import ndc_rays, pixel_rays
from sobolev.rendering.scenes import resolve_scene
from sobolev.rendering.volume import render_rays, sample_depths
from sobolev.trainers.base import RegressionTrainer, TrialResult
from sobolev.trainers.config import RegressionConfig


def _tiny_nerf() -> MLPConfig:
    return MLPConfig(activation="relu", hidden_features=256, hidden_layers=7, w0=1.0)


PRESETS: Dict[str, Dict[str, Any]] = {
    "paper": {},
    "cpu": {"samples": 32, "rays": 256, "scene_width": 84, "model": {"hidden_features": 64, "hidden_layers": 3}},
}
"""``cpu``: fewer samples, a narrower net, fewer rays, smaller images — a few steps/s on 2 cores."""


@dataclass
class NerfConfig(RegressionConfig):
    """One inverse-rendering trial; every default is the paper's setting (TinyNeRF on LLFF)."""

    model: MLPConfig = field(default_factory=_tiny_nerf)
    """8 × 256 MLP on the NeRF encoding (10 octaves) of the 3-D point; ``relu`` or ``sine`` (plain sin)."""
    steps: int = 400_000
    """Adam steps of ``rays`` random rays."""
    lr: float = 5e-4
    """Initial learning rate, decayed by 0.1 every ``lr_decay_steps``."""
    scene: str = "synthetic"
    """An LLFF scene folder (``images*/`` + ``poses_bounds.npy``) or the built-in ``synthetic`` scene."""
    downsample: int = 4
    """LLFF image downsampling (``images_4`` when present, else resized)."""
    llffhold: int = 8
    """Every ``llffhold``-th view is held out for testing."""
    samples: int = 128
    """Stratified samples per ray (no fine network)."""
    rays: int = 1024
    """Random training rays per step."""
    raw_noise: float = 1.0
    """Std of the noise added to σ in training."""
    lr_decay_steps: int = 250_000
    """lr × 0.1^(step / lr_decay_steps)."""
    scene_width: int = 252
    """Width in pixels of the built-in scene's images_4 (ignored for LLFF folders)."""
    flythrough_frames: int = 24
    """Frames of the fly-through GIF rendered at the end."""
    chunk: int = 4096
    """Rays per chunk when rendering whole views."""

    def validate(self) -> None:
        super().validate()
        if self.compile:
            raise ConfigError("compile applies to image and audio regression, not nerf; leave compile off")
        act, enc = parse_model_name(self.model.activation)
        if enc is not None:
            raise ConfigError(f"TinyNeRF always encodes the point with 10 octaves; activation must be relu or sine, "
                              f"got {self.model.activation!r}")
        for name in ("samples", "rays", "downsample", "llffhold", "lr_decay_steps", "scene_width", "chunk"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")

    def setup(self) -> "NerfTrainer":
        return NerfTrainer(self)


def apply_preset(settings: Dict[str, Any]) -> Dict[str, Any]:
    """Settings with ``preset`` expanded (explicit settings win over the preset's)."""
    settings = dict(settings)
    name = settings.pop("preset", None) or "paper"
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    merged = {k: v for k, v in PRESETS[name].items() if k != "model"}
    model = {**PRESETS[name].get("model", {}), **(settings.pop("model", None) or {})}
    merged.update(settings)
    if model:
        merged["model"] = model
    return merged


def nerf_config(**settings: Any) -> NerfConfig:
    """A :class:`NerfConfig` from plain settings (``preset`` expanded, ``model`` given as a dict)."""
    settings = apply_preset(settings)
    model = settings.pop("model", None) or {}
    base = _tiny_nerf()
    return NerfConfig(model=replace(base, **model), **settings)


class NerfTrainer(RegressionTrainer):
    task = "nerf"

    def __init__(self, config: NerfConfig) -> None:
        super().__init__(config)
        self.derivative_impl = "autograd"  # the derivative is of the rendered colour, through the renderer

    def setup(self) -> None:
        cfg: NerfConfig = self.config
        root = resolve_scene(cfg.scene, cfg.scene_width)
        self.scene = load_llff(root, cfg.downsample, llffhold=cfg.llffhold)  # step 1
        if not self.scene.test_views or not self.scene.train_views:
            raise ConfigError(f"scene {cfg.scene!r}: llffhold {cfg.llffhold} leaves no test or no training view")
        sc = self.scene
        h, w = sc.height, sc.width
        images = scene_images_tensor(sc)  # (V, 3, H, W) in [0, 1]
        self.images = images
        self.poses = torch.from_numpy(sc.poses)
        self.sampling = cfg.sampling
        mask = self.sampling.mask((h, w))  # step 2 (random ratio: the same pixels in every view)
        self.train_mask = mask
        ys, xs = torch.nonzero(mask, as_tuple=True)
        views = torch.tensor(sc.train_views)
        self.train_view = views.repeat_interleave(len(xs))
        pixels = torch.stack([xs, ys], dim=1).float()
        self.train_coords = pixels.repeat(len(views), 1)
        self.train_values = images[views][:, :, ys, xs].permute(0, 2, 1).reshape(-1, 3)
        if cfg.derivative_source == "full":
            grads = torch.stack([finite_difference_gradient(images[v], cfg.operator) for v in sc.train_views])
            jac = grads[:, :, :, ys, xs]  # (V, 3, 2, P)
        else:
            f = cfg.factor
            grads = torch.stack([finite_difference_gradient(images[v][:, ::f, ::f], cfg.operator) / f
                                 for v in sc.train_views])
            jac = grads.reshape(len(views), 3, 2, -1)
        self.train_jacobian = jac.permute(0, 3, 1, 2).reshape(-1, 3, 2) if self.supervision.uses_derivatives else None
        act = cfg.model.activation
        self.model = replace(cfg.model, activation=f"{act}_nerf").build(3, 4, None, samples_per_axis=1)

    # -- step 3 ---------------------------------------------------------------------------
    def render_pixels(self, pixels: torch.Tensor, poses: torch.Tensor, depths: torch.Tensor,
                      noise: Optional[torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Colour of the rays through ``pixels`` of cameras ``poses`` (differentiable in ``pixels``)."""
        sc = self.scene
        origins, directions = pixel_rays(pixels, poses, sc.height, sc.width, sc.focal)
        origins, directions = ndc_rays(sc.height, sc.width, sc.focal, 1.0, origins, directions)
        return render_rays(self.model, origins, directions, depths, noise)

    def training_step(self) -> Dict[str, float]:
        cfg: NerfConfig = self.config
        for group in self.optimizer.param_groups:  # step 4: the paper's exponential decay
            group["lr"] = cfg.lr * 0.1 ** (self.step / cfg.lr_decay_steps)
        n = self.train_coords.shape[0]
        idx = torch.randint(0, n, (cfg.rays,), device=self.device)
        pixels = self.train_coords[idx]
        poses = self.poses.to(self.device)[self.train_view.to(self.device)[idx]]
        depths = sample_depths(cfg.rays, cfg.samples, stratified=True, device=self.device)
        noise = torch.randn(depths.shape, device=self.device) * cfg.raw_noise if cfg.raw_noise > 0 else None

        def colour(px: torch.Tensor) -> torch.Tensor:
            return self.render_pixels(px, poses, depths, noise)["rgb"]

        self.optimizer.zero_grad(set_to_none=True)
        if self.supervision.uses_derivatives:
            rgb, jac = value_and_input_jacobian(colour, pixels, create_graph=True)
            target_jac = self.train_jacobian[idx]
        else:
            rgb, jac, target_jac = colour(pixels), None, None
        terms = sobolev_loss(cfg.supervision, rgb, self.train_values[idx], jac, target_jac, cfg.lambda_der)
        return self.optimise(terms)

    # -- step 5 ---------------------------------------------------------------------------
    def render_view(self, pose: torch.Tensor, with_jacobian: bool = False) -> Dict[str, torch.Tensor]:
        """A whole view in chunks, no noise, bin-centre depths. ``rgb (3, H, W)``, ``depth (H, W)``."""
        cfg: NerfConfig = self.config
        h, w = self.scene.height, self.scene.width
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        pixels = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1).float()
        rgb, depth, jac = [], [], []
        pose = pose.to(self.device)
        self.model.eval()
        for chunk in pixels.split(cfg.chunk):
            chunk = chunk.to(self.device)
            depths = sample_depths(len(chunk), cfg.samples, stratified=False, device=self.device)
            if with_jacobian:
                out, j = value_and_input_jacobian(
                    lambda px: self.render_pixels(px, pose, depths, None)["rgb"], chunk, create_graph=False)
                jac.append(j.cpu())
                with torch.no_grad():
                    depth.append(self.render_pixels(chunk, pose, depths, None)["depth"].cpu())
                rgb.append(out.cpu())
            else:
                with torch.no_grad():
                    r = self.render_pixels(chunk, pose, depths, None)
                rgb.append(r["rgb"].cpu())
                depth.append(r["depth"].cpu())
        self.model.train()
        out = {"rgb": torch.cat(rgb).t().reshape(3, h, w), "depth": torch.cat(depth).reshape(h, w)}
        if jac:
            out["jacobian"] = torch.cat(jac).reshape(h, w, 3, 2).permute(2, 3, 0, 1).contiguous()
        return out

    def evaluate(self, with_gradients: bool = True) -> TrialResult:
        sc = self.scene
        renders = [self.render_view(self.poses[v], with_jacobian=with_gradients and i == 0)
                   for i, v in enumerate(sc.test_views)]
        prediction = torch.stack([r["rgb"] for r in renders])
        target = self.images[sc.test_views]
        metrics = {
            "test_psnr": float(np.mean([psnr(p.clamp(0, 1), t) for p, t in zip(prediction, target)])),
            "test_ssim": float(np.mean([cropped_ssim(p.clamp(0, 1), t, border=0) for p, t in zip(prediction, target)])),
        }
        with torch.no_grad():
            n = min(4096, self.train_coords.shape[0])
            idx = torch.linspace(0, self.train_coords.shape[0] - 1, n).long()
            poses = self.poses.to(self.device)[self.train_view.to(self.device)[idx]]
            depths = sample_depths(n, self.config.samples, stratified=False, device=self.device)
            rgb = self.render_pixels(self.train_coords[idx], poses, depths, None)["rgb"].cpu()
        metrics["train_psnr"] = psnr(rgb.clamp(0, 1), self.train_values[idx].cpu())
        extras: Dict[str, Any] = {"name": sc.name, "depth": torch.stack([r["depth"] for r in renders]),
                                  "test_views": list(sc.test_views)}
        if with_gradients:
            frames = [self.render_view(torch.from_numpy(p))["rgb"] for p in
                      sc.render_poses[:: max(1, len(sc.render_poses) // self.config.flythrough_frames)]]
            extras["flythrough"] = torch.stack(frames) if frames else torch.empty(0)
        first = sc.test_views[0]
        return self.make_result(
            metrics,
            prediction=prediction,
            target=target,
            network_gradient=renders[0].get("jacobian", torch.empty(0)),
            target_gradient=finite_difference_gradient(self.images[first], self.config.operator),
            train_mask=self.train_mask,
            extras=extras,
        )
