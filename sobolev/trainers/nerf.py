"""Inverse rendering (docs/protocol.md, "Inverse rendering"): TinyNeRF with derivative supervision.

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

from pathlib import Path
from typing import Any, ClassVar, Dict, List, Literal, Optional

import numpy as np
import torch
from pydantic import Field, field_validator

from sobolev.config import Integer, Number
from sobolev.errors import ConfigError
from sobolev.finite_differences import finite_difference_gradient
from sobolev.jacobian import value_and_input_jacobian
from sobolev.losses import sobolev_loss
from sobolev.metrics import cropped_ssim, psnr
from sobolev.activations import ACTIVATIONS, ReLU, Sine
from sobolev.models import MLPConfig, parse_model_name
from sobolev.rendering.llff import load_llff, scene_images_tensor
from sobolev.rendering.rays import ndc_rays, pixel_rays
from sobolev.rendering.scenes import BUILTIN_SCENES, resolve_scene
from sobolev.rendering.volume import render_rays, sample_depths
from sobolev.tasks import TASKS, Dataset, SignalInfo, Task, file_digest, shrink
from sobolev.trainers.base import RegressionTrainer, TrialResult
from sobolev.trainers.config import CompileSetting, RegressionConfig


def tiny_nerf() -> MLPConfig:
    """TinyNeRF's MLP: 8 layers of 256, ``relu`` (``sine`` is plain ``sin(x)``: w0 = 1)."""
    return MLPConfig(activation="relu", hidden_features=256, hidden_layers=7, w0=1.0)


PRESETS: Dict[str, Dict[str, Any]] = {
    "paper": {},
    "cpu": {"samples": 32, "rays": 256, "scene_width": 84, "model": {"hidden_features": 64, "hidden_layers": 3}},
}
"""``cpu``: fewer samples, a narrower net, fewer rays, smaller images — a few steps/s on 2 cores."""


class NerfConfig(RegressionConfig):
    """One inverse-rendering trial; every default is the paper's setting (TinyNeRF on LLFF)."""

    setting_noun: ClassVar[str] = "nerf trial setting"
    data_field: ClassVar[str] = "scene"
    outside_key = frozenset({"preset"})

    preset: Literal["paper", "cpu"] = "paper"
    """Sizes under the explicit settings: paper (the paper's), cpu (fewer samples and rays, a narrower
    net, smaller images)."""
    model: MLPConfig = Field(default_factory=tiny_nerf)
    """8 × 256 MLP on the NeRF encoding (10 octaves) of the 3-D point; ``relu`` or ``sine`` (plain sin)."""
    steps: Integer = Field(400_000, ge=1)
    """Adam steps of RAYS random rays."""
    lr: Number = Field(5e-4, gt=0)
    """Initial learning rate, decayed by 0.1 every LR_DECAY_STEPS."""
    scene: str = "synthetic"
    """An LLFF scene folder (``images*/`` + ``poses_bounds.npy``) or the built-in ``synthetic`` scene."""
    downsample: Integer = Field(4, ge=1)
    """LLFF image downsampling (``images_4`` when present, else resized)."""
    llffhold: Integer = Field(8, ge=1)
    """Every LLFFHOLD-th view is held out for testing."""
    samples: Integer = Field(128, ge=1)
    """Stratified samples per ray (no fine network)."""
    rays: Integer = Field(1024, ge=1)
    """Random training rays per step."""
    raw_noise: Number = Field(1.0, ge=0)
    """Std of the noise added to σ in training."""
    lr_decay_steps: Integer = Field(250_000, ge=1)
    """lr × 0.1^(step / LR_DECAY_STEPS)."""
    scene_width: Integer = Field(252, ge=1)
    """Width in pixels of the built-in scene's images_4 (ignored for LLFF folders)."""
    flythrough_frames: Integer = Field(24, ge=0)
    """Frames of the fly-through GIF rendered at the end."""
    chunk: Integer = Field(4096, ge=1)
    """Rays per chunk when rendering whole views."""

    @classmethod
    def layer_defaults(cls, data: Dict[str, Any]) -> Dict[str, Any]:
        """The preset's sizes under the explicit settings (explicit ones win, key by key)."""
        preset = PRESETS.get(data.get("preset") or "paper")
        if not preset:  # the paper's sizes are the field defaults; an unknown name fails on its field
            return data
        merged = {**{k: v for k, v in preset.items() if k != "model"}, **data}
        if "model" in preset:
            given = data.get("model")
            given = given.model_dump(exclude_unset=True) if isinstance(given, MLPConfig) else (given or {})
            merged["model"] = {**preset["model"], **given}
        return merged

    @field_validator("model")
    @classmethod
    def _tiny_nerf_networks(cls, model: MLPConfig) -> MLPConfig:
        act, enc = parse_model_name(model.activation)
        if enc is not None or ACTIVATIONS.get(act) not in (ReLU, Sine):
            raise ConfigError(f"TinyNeRF always encodes the point with 10 octaves and runs relu or sine (plain "
                              f"sin); got {model.activation!r}", path=("activation",))
        return model

    @field_validator("compile")
    @classmethod
    def _no_compile(cls, compile: CompileSetting) -> CompileSetting:
        if compile is True:
            raise ConfigError("compile applies to image and audio regression, not nerf; leave compile off")
        return compile

    def compiles(self, points: int) -> bool:
        """Never: the renderer's ray batches are not what ``compile`` compiles (``auto`` stays eager)."""
        return False

    def setup(self) -> "NerfTrainer":
        return NerfTrainer(self)


class NerfTrainer(RegressionTrainer):
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
        self.model = cfg.model.model_copy(update={"activation": f"{act}_nerf"}).build(3, 4, None, samples_per_axis=1)

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
        self.optimizer.zero_grad(set_to_none=True)
        return self.optimise(self.step_terms())

    def step_loss(self) -> torch.Tensor:
        return self.step_terms().total

    def step_terms(self):
        """One step's loss on a random batch of rays (what :meth:`training_step` optimises)."""
        cfg: NerfConfig = self.config
        n = self.train_coords.shape[0]
        idx = torch.randint(0, n, (cfg.rays,), device=self.device)
        pixels = self.train_coords[idx]
        poses = self.poses.to(self.device)[self.train_view.to(self.device)[idx]]
        depths = sample_depths(cfg.rays, cfg.samples, stratified=True, device=self.device)
        noise = torch.randn(depths.shape, device=self.device) * cfg.raw_noise if cfg.raw_noise > 0 else None

        def colour(px: torch.Tensor) -> torch.Tensor:
            return self.render_pixels(px, poses, depths, noise)["rgb"]

        if self.supervision.uses_derivatives:
            rgb, jac = value_and_input_jacobian(colour, pixels, create_graph=True)
            target_jac = self.train_jacobian[idx]
        else:
            rgb, jac, target_jac = colour(pixels), None, None
        return sobolev_loss(cfg.supervision, rgb, self.train_values[idx], jac, target_jac, cfg.lambda_der)

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
        if with_gradients and self.config.flythrough_frames:
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


class NerfTask(Task):
    """Inverse rendering: TinyNeRF on an LLFF scene (or the built-in synthetic one), rays from the
    ::FACTOR grid of the training views."""

    name: ClassVar[str] = "nerf"
    config_class = NerfConfig
    dimensions: ClassVar[int] = 2

    def resolve_dataset(self, entry: str) -> List[Dataset]:
        if entry in BUILTIN_SCENES:
            return [Dataset(entry, entry, self.digest(entry))]
        path = Path(entry).expanduser()
        if not (path / "poses_bounds.npy").is_file():
            raise ConfigError(f"scene {entry!r} is not an LLFF folder (no poses_bounds.npy) or a built-in scene "
                              f"({', '.join(BUILTIN_SCENES)})")
        return [Dataset(path.resolve().name, str(path.resolve()), self.digest(str(path.resolve())))]

    def digest(self, source: str) -> str:
        """A scene folder's camera poses (``poses_bounds.npy``): what the trial keys of earlier versions hash."""
        return f"builtin:{source}" if source in BUILTIN_SCENES else file_digest(Path(source) / "poses_bounds.npy")

    def inspect(self, config: NerfConfig) -> SignalInfo:
        scene = load_llff(resolve_scene(config.scene, config.scene_width), config.downsample, llffhold=config.llffhold)
        return SignalInfo(shape=(scene.height, scene.width), channels=3)

    def training_points(self, config: NerfConfig, info: SignalInfo) -> int:
        """Samples along the rays of one step: the network sees ``rays × samples`` points."""
        return config.rays * config.samples

    def preview(self, result) -> Optional[np.ndarray]:
        """The first held-out view as rendered."""
        view = result.prediction[0].detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy()  # (3, H, W) → (H, W, 3)
        return shrink((view * 255.0).round().astype(np.uint8))

    def save_artifacts(self, result, out_dir: Path) -> List[Path]:
        from sobolev.visualize import save_nerf_artifacts

        return list(save_nerf_artifacts(result, out_dir).values())


TASKS.register(NerfTask.name)(NerfTask())
