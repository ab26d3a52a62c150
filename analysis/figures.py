"""Figures for a paper column: data-efficiency curves and the picture grid (matplotlib)."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Protocol, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.tables import LABELS  # noqa: E402

COLUMN_WIDTH_IN = 3.4  # one column of a two-column paper
PAPER_STYLE = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7,
               "xtick.labelsize": 7, "ytick.labelsize": 7, "lines.linewidth": 1.2, "savefig.bbox": "tight"}
MODEL_COLORS = {"relu": "#1b9e77", "relu_pe": "#d95f02", "sine": "#7570b3", "relu_ff": "#e7298a",
                "finer": "#66a61e", "gauss": "#e6ab02", "wire": "#a6761d"}
"""One colour per network (ColorBrewer Dark2); the supervision is the line style."""
SUPERVISION_STYLE = {"val": "--", "der": ":", "val_der": "-"}


def curve_data(finished: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean and std over datasets and seeds per (model, supervision, fraction)."""
    data = finished.dropna(subset=[metric])
    return (data.groupby(["activation", "supervision", "fraction"])[metric]
            .agg(["mean", "std", "count"]).reset_index().sort_values("fraction"))


def data_efficiency_figure(finished: pd.DataFrame, metric: str, title: str, paths: Sequence[Path]) -> List[Path]:
    """Held-out metric against the fraction of training samples, one line per (model, supervision),
    a ±1 std band, log-scaled x axis; the legend sits below the axes, outside the data."""
    data = curve_data(finished, metric)
    with plt.rc_context(PAPER_STYLE):
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 2.6))
        others = iter(plt.get_cmap("tab10").colors)
        colors = {m: MODEL_COLORS.get(m) or next(others) for m in sorted(data["activation"].unique())}
        for (model, sup), line in data.groupby(["activation", "supervision"], sort=True):
            color = colors[model]
            std = line["std"].fillna(0.0)
            ax.plot(line["fraction"], line["mean"], SUPERVISION_STYLE.get(sup, "-."), marker="o", ms=2.5,
                    color=color, label=f"{model} · {sup}")
            ax.fill_between(line["fraction"], line["mean"] - std, line["mean"] + std, color=color, alpha=0.12, lw=0)
        ax.set_xscale("log")
        fractions = sorted(data["fraction"].unique())
        ax.set_xticks(fractions)
        ax.set_xticklabels([_fraction_label(f) for f in fractions])
        ax.minorticks_off()
        ax.set_xlabel("fraction of samples trained on")
        ax.set_ylabel(f"held-out {LABELS.get(metric, metric)}")
        ax.set_title(title)
        ax.grid(alpha=0.3, lw=0.5)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)
        written = []
        for path in paths:
            fig.savefig(path, dpi=200)
            written.append(Path(path))
        plt.close(fig)
    return written


@dataclass(frozen=True)
class Curve:
    """One data-efficiency figure to draw: its runs, metric, title and the files (one per format)."""

    finished: pd.DataFrame
    metric: str
    title: str
    paths: Sequence[Path]

    def draw(self) -> List[Path]:
        return data_efficiency_figure(self.finished, self.metric, self.title, self.paths)


class Figure(Protocol):
    """Something :func:`draw_all` draws: its files."""

    def draw(self) -> List[Path]: ...


def _draw(figure: Figure) -> List[Path]:
    return figure.draw()


def draw_all(figures: Sequence[Figure]) -> List[Path]:
    """Every figure, in forked worker processes, one per core the process may use (matplotlib draws in one thread:
    the main job's 16 curve files took 3.3 s in one process on this 2-core machine); the slowest first."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = min(cores, len(figures))
    if workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return [p for figure in figures for p in figure.draw()]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        return [p for drawn in pool.map(_draw, figures) for p in drawn]


def _fraction_label(f: float) -> str:
    inv = 1.0 / f
    return f"1/{inv:.0f}" if abs(inv - round(inv)) < 1e-6 and inv > 1 else f"{f:g}"


def picture_grid(ground_truth: np.ndarray, panels: Dict[tuple, Optional[np.ndarray]], captions: Dict[tuple, str],
                 models: Sequence[str], supervisions: Sequence[str], title: str, path: Path) -> Path:
    """Ground truth, then one row per supervision and one column per model; missing runs marked."""
    rows, cols = len(supervisions), 1 + len(models)
    with plt.rc_context(PAPER_STYLE):
        fig, axes = plt.subplots(rows, cols, figsize=(1.7 * cols, 1.9 * rows), squeeze=False)
        for r, sup in enumerate(supervisions):
            for c in range(cols):
                ax = axes[r, c]
                ax.set_xticks([])
                ax.set_yticks([])
                if c == 0:
                    if r == 0:
                        ax.imshow(ground_truth, cmap="gray" if ground_truth.ndim == 2 else None, vmin=0, vmax=255,
                                  interpolation="nearest")
                        ax.set_title("ground truth")
                    else:
                        ax.axis("off")
                    continue
                key = (models[c - 1], sup)
                image = panels.get(key)
                if image is None:
                    ax.text(0.5, 0.5, "no finished run", ha="center", va="center", transform=ax.transAxes)
                else:
                    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255,
                              interpolation="nearest")
                caption = captions.get(key, "")
                ax.set_title(f"{key[0]} · {key[1]}" + (f"\n{caption}" if caption else ""))
        fig.suptitle(title)
        fig.savefig(path, dpi=150)
        plt.close(fig)
    return Path(path)


@dataclass(frozen=True)
class ComputeCurve:
    """One figure of the metric against compute (:func:`compute_figure`)."""

    curves: Sequence
    metric: str
    axis: str
    title: str
    paths: Sequence[Path]

    def draw(self) -> List[Path]:
        return compute_figure(self.curves, self.metric, self.axis, self.title, self.paths)


def compute_figure(curves: Sequence, metric: str, axis: str, title: str, paths: Sequence[Path]) -> List[Path]:
    """Held-out metric against training compute (``axis``: FLOPs or seconds), one line per arm
    (``analysis.compute.ArmCurve``): the mean over seeds and images with a ±1 std band, log x."""
    with plt.rc_context(PAPER_STYLE):
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 2.6))
        others = iter(plt.get_cmap("tab10").colors)
        colors = {m: MODEL_COLORS.get(m) or next(others) for m in sorted({c.model for c in curves})}
        for c in curves:
            color = colors[c.model]
            ax.plot(c.x, c.mean, SUPERVISION_STYLE.get(c.supervision, "-."), color=color,
                    label=f"{c.model} · {c.supervision}")
            ax.fill_between(c.x, c.mean - c.std, c.mean + c.std, color=color, alpha=0.12, lw=0)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # decades only: the minor labels of a short span overlap
        ax.set_xlabel("training FLOPs" if axis == "flops" else "training seconds (this machine)")
        ax.set_ylabel(f"held-out {LABELS.get(metric, metric)}")
        ax.set_title(title)
        ax.grid(alpha=0.3, lw=0.5)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)
        written = []
        for path in paths:
            fig.savefig(path, dpi=200)
            written.append(Path(path))
        plt.close(fig)
    return written
