"""Pictures of a trial: what people would rather look at than read.

Image trials: the prediction, the |error| map on luma (held-out pixels marked), the
ground-truth vs network gradient maps, and the loss curve.  Audio trials: waveform and error
plot, the loss curve, and the prediction as WAV.  Plain matplotlib (Agg) and scipy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import scipy.io.wavfile  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from sobolev.metrics import LUMA_WEIGHTS, luma, to_unit_range  # noqa: E402
from sobolev.trainers.base import TrialResult  # noqa: E402


def _title(result: TrialResult) -> str:
    cfg = result.config
    sampling = cfg.sampling.label().replace("=", " ")
    return f"{result.extras.get('name', '')} · {cfg.model.activation} · {cfg.supervision} · {sampling}"


def save_loss_curve(result: TrialResult, path: Path) -> Path:
    """Training losses (log scale) and, where evaluated, the held-out PSNR over the steps."""
    steps = [h["step"] for h in result.history]
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    fig.subplots_adjust(left=0.13, right=0.87, bottom=0.14, top=0.9)  # fixed margins: a layout engine costs ~0.4 s
    for key in ("loss", "val_loss", "der_loss"):
        if result.history and key in result.history[0]:
            ax.semilogy(steps, [h[key] for h in result.history], label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(_title(result), fontsize=9)
    handles, labels = ax.get_legend_handles_labels()
    evaluated = [h for h in result.history if "test_psnr" in h]
    if evaluated:
        ax2 = ax.twinx()
        (line,) = ax2.plot([h["step"] for h in evaluated], [h["test_psnr"] for h in evaluated], "k--o", ms=3)
        ax2.set_ylabel("held-out PSNR (dB)")
        handles, labels = handles + [line], labels + ["held-out PSNR"]
    ax.legend(handles, labels, loc="upper right", fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _save_png(array: np.ndarray, path: Path) -> Path:
    Image.fromarray((np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)).save(path)
    return path


def _hwc(image: torch.Tensor) -> np.ndarray:
    arr = image.detach().cpu().permute(1, 2, 0).numpy()
    return arr[:, :, 0] if arr.shape[2] == 1 else arr


def colormap(values: np.ndarray, name: str, vmin: float, vmax: float) -> np.ndarray:
    """``(H, W)`` floats → ``(H, W, 3)`` uint8 through a matplotlib colormap (no figure: fast)."""
    scaled = np.clip((values - vmin) / max(vmax - vmin, 1e-12), 0.0, 1.0)
    return (matplotlib.colormaps[name](scaled)[..., :3] * 255).astype(np.uint8)


def tile(panels: List[tuple], columns: int, title: str = "", min_side: int = 160) -> Image.Image:
    """Labelled grid of ``(label, (H, W, 3) uint8)`` panels, small images enlarged (nearest)."""
    h, w = panels[0][1].shape[:2]
    zoom = max(1, int(np.ceil(min_side / max(h, w))))
    ph, pw, label_h, pad = h * zoom, w * zoom, 14, 4
    rows = int(np.ceil(len(panels) / columns))
    top = label_h + pad if title else 0
    canvas = Image.new("RGB", (columns * (pw + pad) + pad, top + rows * (ph + label_h + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((pad, 2), title, fill="black")
    for i, (label, rgb) in enumerate(panels):
        r, c = divmod(i, columns)
        x, y = pad + c * (pw + pad), top + pad + r * (ph + label_h + pad)
        draw.text((x, y), label, fill="black")
        canvas.paste(Image.fromarray(rgb).resize((pw, ph), Image.NEAREST), (x, y + label_h))
    return canvas


def save_image_artifacts(result: TrialResult, out_dir: Path) -> Dict[str, Path]:
    """Write prediction.png, error.png and gradients.png into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: Dict[str, Path] = {}
    pred01, true01 = to_unit_range(result.prediction), to_unit_range(result.target)
    paths["prediction"] = _save_png(_hwc(pred01), out_dir / "prediction.png")

    error = (luma(pred01) - luma(true01)).abs()[0].numpy()
    top = max(float(np.percentile(error, 99.5)), 1e-6)
    gt = (np.repeat(luma(true01)[0].numpy()[..., None], 3, axis=2) * 255).astype(np.uint8)
    image = tile(
        [("ground truth (Y)", gt), (f"|error| on Y, 0 … {top:.3f}", colormap(error, "inferno", 0.0, top))],
        columns=2,
        title=_title(result),
    )
    image.save(out_dir / "error.png")
    paths["error"] = out_dir / "error.png"

    if result.network_gradient.numel():
        # [-1, 1] network values: halve the derivatives to [0, 1] pixel units
        paths["gradients"] = save_gradient_maps(result, out_dir / "gradients.png", scale=0.5)
    return paths


def save_gradient_maps(result: TrialResult, path: Path, scale: float) -> Path:
    """Rows: finite-difference target, network; columns: ∂Y/∂x, ∂Y/∂y, |∇Y| (per pixel, × ``scale``)."""
    return gradient_maps(result.target_gradient, result.network_gradient, _title(result), path, scale)


def gradient_maps(target_gradient: torch.Tensor, network_gradient: torch.Tensor, title: str, path: Path,
                  scale: float = 1.0) -> Path:
    """Luma gradient maps of ``(C, 2, H, W)`` target and network derivatives, as one labelled PNG."""
    weights = torch.tensor(LUMA_WEIGHTS) if target_gradient.shape[0] == 3 else torch.ones(1)
    # luma is linear, so the gradient of luma is the weighted sum of the channel gradients
    rows = {
        "target": torch.einsum("c,ckhw->khw", weights, target_gradient.float()) * scale,
        "network": torch.einsum("c,ckhw->khw", weights, network_gradient.float()) * scale,
    }
    limit = float(rows["target"].abs().quantile(0.99)) or 1e-3
    panels = []
    for label, grad in rows.items():
        g = grad.numpy()
        panels += [
            (f"{label} dY/dx", colormap(g[0], "RdBu_r", -limit, limit)),
            (f"{label} dY/dy", colormap(g[1], "RdBu_r", -limit, limit)),
            (f"{label} |grad Y|", colormap(np.hypot(g[0], g[1]), "magma", 0.0, 1.5 * limit)),
        ]
    tile(panels, columns=3, title=f"{title}  (±{limit:.3f} per pixel)").save(path)
    return path


def _uint8(image01: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` in [0, 1] → ``(H, W, 3)`` uint8."""
    return (image01.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def save_nerf_artifacts(result: TrialResult, out_dir: Path) -> Dict[str, Path]:
    """views.png (ground truth vs render per test view), depth.png, gradients.png, flythrough.gif."""
    import imageio.v2 as imageio

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    views = result.extras.get("test_views", list(range(len(result.prediction))))
    panels = []
    for v, pred, true in zip(views, result.prediction, result.target):
        panels += [(f"view {v} ground truth", _uint8(true)), (f"view {v} rendered", _uint8(pred))]
    paths = {"views": out_dir / "views.png"}
    tile(panels, columns=2, title=_title(result)).save(paths["views"])
    depth = result.extras.get("depth")
    if depth is not None and len(depth):
        d = depth.numpy()
        lo, hi = float(np.percentile(d, 1)), float(np.percentile(d, 99))
        tile([(f"view {v} depth (NDC)", colormap(x, "viridis", lo, hi)) for v, x in zip(views, d)],
             columns=len(views), title="expected ray depth").save(out_dir / "depth.png")
        paths["depth"] = out_dir / "depth.png"
    if result.network_gradient.numel():  # rendered colours are in [0, 1] already
        paths["gradients"] = save_gradient_maps(result, out_dir / "gradients.png", scale=1.0)
    frames = result.extras.get("flythrough")
    if frames is not None and len(frames):
        imageio.mimsave(out_dir / "flythrough.gif", [_uint8(f) for f in frames], duration=0.12, loop=0)
        paths["flythrough"] = out_dir / "flythrough.gif"
    return paths


def save_audio_artifacts(result: TrialResult, out_dir: Path) -> Dict[str, Path]:
    """Write waveform.png and prediction.wav into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rate = int(result.extras.get("rate", 1))
    target = result.target[0].numpy()
    pred = result.prediction[0].numpy()
    t = np.arange(target.size) / rate
    fig, axes = plt.subplots(3, 1, figsize=(8, 6), sharex=True, constrained_layout=True)
    axes[0].plot(t, target, lw=0.5, color="0.2")
    axes[0].set_title(f"ground truth · {_title(result)}", fontsize=9)
    axes[1].plot(t, pred, lw=0.5, color="C0")
    axes[1].set_title("network", fontsize=9)
    axes[2].plot(t, pred - target, lw=0.5, color="C3")
    axes[2].set_title("error (network − ground truth)", fontsize=9)
    axes[2].set_xlabel("time (s)")
    for ax in axes:
        ax.set_ylim(-1.05, 1.05)
    fig.savefig(out_dir / "waveform.png", dpi=110)
    plt.close(fig)
    scipy.io.wavfile.write(out_dir / "prediction.wav", rate, np.clip(pred, -1, 1).astype(np.float32))
    return {
        "waveform": out_dir / "waveform.png",
        "prediction_wav": out_dir / "prediction.wav",
    }
