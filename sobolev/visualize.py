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
from PIL import Image  # noqa: E402

from sobolev.metrics import LUMA_WEIGHTS, luma, to_unit_range  # noqa: E402
from sobolev.trainers.base import TrialResult  # noqa: E402


def _title(result: TrialResult) -> str:
    cfg = result.config
    sampling = f"ratio {cfg['ratio']:g}" if cfg.get("ratio") else f"factor {cfg['factor']}"
    return f"{result.extras.get('name', '')} · {cfg['model']['activation']} · {cfg['supervision']} · {sampling}"


def save_loss_curve(result: TrialResult, path: Path) -> Path:
    """Training losses (log scale) and, where evaluated, the held-out PSNR over the steps."""
    steps = [h["step"] for h in result.history]
    fig, ax = plt.subplots(figsize=(5.5, 3.5), constrained_layout=True)
    for key in ("loss", "val_loss", "der_loss"):
        if result.history and key in result.history[0]:
            ax.semilogy(steps, [h[key] for h in result.history], label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(_title(result), fontsize=9)
    evaluated = [h for h in result.history if "test_psnr" in h]
    if evaluated:
        ax2 = ax.twinx()
        ax2.plot([h["step"] for h in evaluated], [h["test_psnr"] for h in evaluated], "k--", label="test PSNR")
        ax2.set_ylabel("held-out PSNR (dB)")
    ax.legend(loc="upper right", fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _save_png(array: np.ndarray, path: Path) -> Path:
    Image.fromarray((np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)).save(path)
    return path


def _hwc(image: torch.Tensor) -> np.ndarray:
    arr = image.detach().cpu().permute(1, 2, 0).numpy()
    return arr[:, :, 0] if arr.shape[2] == 1 else arr


def save_image_artifacts(result: TrialResult, out_dir: Path) -> Dict[str, Path]:
    """Write prediction.png, error.png, gradients.png and loss.png into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: Dict[str, Path] = {}
    pred01, true01 = to_unit_range(result.prediction), to_unit_range(result.target)
    paths["prediction"] = _save_png(_hwc(pred01), out_dir / "prediction.png")

    error = (luma(pred01) - luma(true01)).abs()[0].numpy()
    fig, ax = plt.subplots(figsize=(5, 4.4), constrained_layout=True)
    im = ax.imshow(error, cmap="inferno", vmin=0.0, vmax=max(float(np.percentile(error, 99.5)), 1e-6))
    ax.set_title(f"|error| on luma · {_title(result)}", fontsize=8)
    ax.axis("off")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.savefig(out_dir / "error.png", dpi=120)
    plt.close(fig)
    paths["error"] = out_dir / "error.png"

    if result.network_gradient.numel():
        paths["gradients"] = save_gradient_maps(result, out_dir / "gradients.png")
    paths["loss"] = save_loss_curve(result, out_dir / "loss.png")
    return paths


def save_gradient_maps(result: TrialResult, path: Path) -> Path:
    """Rows: finite-difference target, network; columns: ∂/∂x, ∂/∂y, |∇| (luma, per pixel)."""
    weights = torch.tensor(LUMA_WEIGHTS) if result.target.shape[0] == 3 else torch.ones(1)
    # Luma is linear, so the gradient of luma is the weighted sum of the channel gradients
    # ([-1, 1] values: halved to [0, 1] units).
    rows = {
        "target (finite differences)": torch.einsum("c,ckhw->khw", weights, result.target_gradient) / 2,
        "network (autograd)": torch.einsum("c,ckhw->khw", weights, result.network_gradient) / 2,
    }
    limit = float(rows["target (finite differences)"].abs().quantile(0.99)) or 1e-3
    fig, axes = plt.subplots(2, 3, figsize=(9, 6.2), constrained_layout=True)
    for r, (label, grad) in enumerate(rows.items()):
        panels = [grad[0], grad[1], grad.norm(dim=0)]
        for c, (panel, name) in enumerate(zip(panels, ["∂Y/∂x", "∂Y/∂y", "|∇Y|"])):
            ax = axes[r, c]
            if c < 2:
                ax.imshow(panel.numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit)
            else:
                ax.imshow(panel.numpy(), cmap="magma", vmin=0, vmax=limit * 1.5)
            ax.set_title(f"{label}: {name}", fontsize=8)
            ax.axis("off")
    fig.suptitle(_title(result), fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def save_audio_artifacts(result: TrialResult, out_dir: Path) -> Dict[str, Path]:
    """Write waveform.png, prediction.wav and loss.png into ``out_dir``."""
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
        "loss": save_loss_curve(result, out_dir / "loss.png"),
    }


def save_artifacts(result: TrialResult, out_dir: Path) -> List[Path]:
    """The pictures of a trial of any task."""
    saver = save_audio_artifacts if result.task == "audio" else save_image_artifacts
    return list(saver(result, out_dir).values())
