"""Figures for a paper column: data-efficiency curves and the picture grid (matplotlib)."""

from __future__ import annotations

import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Protocol, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.spread import sample_std  # noqa: E402
from analysis.tables import LABELS  # noqa: E402
from sobolev.errors import last_line  # noqa: E402

COLUMN_WIDTH_IN = 3.4  # one column of a two-column paper
PAPER_STYLE = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7,
               "xtick.labelsize": 7, "ytick.labelsize": 7, "lines.linewidth": 1.2, "savefig.bbox": "tight"}
MODEL_COLORS = {"relu": "#1b9e77", "relu_pe": "#d95f02", "sine": "#7570b3", "relu_ff": "#e7298a",
                "finer": "#66a61e", "gauss": "#e6ab02", "wire": "#a6761d"}
"""One colour per network (ColorBrewer Dark2); the supervision is the line style."""
SUPERVISION_STYLE = {"val": "--", "der": ":", "val_der": "-"}


def curve_data(finished: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean and sample std over datasets and seeds per (model, supervision, fraction), of the finite values."""
    data = finished[np.isfinite(pd.to_numeric(finished[metric], errors="coerce")) & finished["fraction"].notna()]
    return (data.groupby(["activation", "supervision", "fraction"])[metric]
            .agg(["mean", sample_std, "count"]).rename(columns={"sample_std": "std"}).reset_index()
            .sort_values("fraction"))


def data_efficiency_figure(finished: pd.DataFrame, metric: str, title: str, paths: Sequence[Path]) -> List[Path]:
    """Held-out metric against the fraction of training samples, one line per (model, supervision),
    a ±1 sample-std band, log-scaled x axis; the legend sits below the axes, outside the data."""
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

    paths: Sequence[Path]

    def draw(self) -> List[Path]: ...


@dataclass(frozen=True)
class Drawn:
    """What drawing one figure gave: its files, or why there are none (one line)."""

    paths: List[Path]
    failure: str = ""


def _draw(figure: Figure) -> Drawn:
    """One figure; a figure that cannot be drawn is reported, not raised: the rest of the report is written."""
    try:
        return Drawn(figure.draw())
    except Exception as exc:  # noqa: BLE001 - one figure must not end the report; the failure is its note
        import matplotlib.pyplot as plt_

        plt_.close("all")
        names = ", ".join(Path(p).name for p in getattr(figure, "paths", [])) or type(figure).__name__
        return Drawn([], f"{names}: not drawn ({type(exc).__name__}: {last_line(exc, 200)})")


def draw_all(figures: Sequence[Figure], meanwhile: Optional[Callable[[], object]] = None) -> List[Drawn]:
    """Every figure, in forked worker processes, one per core the process may use (matplotlib draws in one thread:
    the main job's 16 curve files took 3.3 s in one process on this 2-core machine); the slowest first.
    ``meanwhile`` runs in this process while they draw (the report opens MLflow then)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = min(cores, len(figures))
    if workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        drawn = [_draw(figure) for figure in figures]
        if meanwhile is not None:
            meanwhile()
        return drawn
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        futures = [pool.submit(_draw, figure) for figure in figures]  # the workers fork now, before meanwhile
        if meanwhile is not None:
            meanwhile()
        return [f.result() for f in futures]


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
    differences: Sequence
    metric: str
    axis: str
    title: str
    paths: Sequence[Path]

    def draw(self) -> List[Path]:
        return compute_figure(self.curves, self.differences, self.metric, self.axis, self.title, self.paths)


def _compact(value: float) -> str:
    """A tick label of a log axis: ``2·10⁹`` as mathtext, ``0.5`` and ``20`` as they are."""
    if value <= 0 or not math.isfinite(value):
        return ""
    exponent = math.floor(math.log10(value) + 1e-9)
    mantissa = value / 10 ** exponent
    if -2 <= exponent <= 3:
        return f"{value:g}"
    if abs(mantissa - 1) < 1e-6:
        return f"$10^{{{exponent}}}$"
    return f"${round(mantissa, 2):g}{{\\cdot}}10^{{{exponent}}}$"


def log_axis(ax, values: Sequence[float]) -> None:
    """A log x axis over the finite positive ``values`` with labelled ticks whatever their span: decades when they
    span several, 1-2-5 steps inside one (matplotlib labels no tick of a span shorter than a decade)."""
    finite = np.asarray([v for v in values if math.isfinite(v) and v > 0], dtype=float)
    low, high = float(finite.min()), float(finite.max())
    if high <= low * 1.0001:  # one compute: a span around it
        low, high = low / 2, high * 2
    ax.set_xscale("log")
    pad = (high / low) ** 0.04
    ax.set_xlim(low / pad, high * pad)
    decades = math.log10(high / low)
    subs = (1.0,) if decades > 3 else (1.0, 2.0, 5.0) if decades > 1.2 else (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs, numticks=12))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _compact(v)))
    ax.xaxis.set_minor_locator(LogLocator(base=10, subs=np.arange(1, 10), numticks=12))
    ax.xaxis.set_minor_formatter(NullFormatter())


def compute_figure(curves: Sequence, differences: Sequence, metric: str, axis: str, title: str,
                   paths: Sequence[Path]) -> List[Path]:
    """Held-out metric against training compute (``axis``: FLOPs or seconds).  Top: one line per arm
    (``analysis.compute.ArmCurve``), the mean over seeds and images, a marker where the mean is of one evaluation.
    Below it, when the sweep has both arms of a comparison: per model the paired ``val_der − val`` difference
    (``analysis.compute.DifferenceCurve``), the mean over images with its 95 % t interval and each image's own
    difference as a thin line; above zero, derivative supervision is ahead at that compute."""
    xs = [v for c in curves for v in c.x] + [v for d in differences for v in d.x]
    with plt.rc_context(PAPER_STYLE):
        rows = 2 if differences else 1
        fig, axes = plt.subplots(rows, 1, figsize=(COLUMN_WIDTH_IN, 2.4 + 1.7 * (rows - 1)), sharex=True,
                                 squeeze=False, gridspec_kw={"height_ratios": [3, 2][:rows]})
        ax = axes[0, 0]
        others = iter(plt.get_cmap("tab10").colors)
        models = sorted({c.model for c in curves} | {d.model for d in differences})
        colors = {m: MODEL_COLORS.get(m) or next(others) for m in models}
        for c in curves:
            ax.plot(c.x, c.mean, SUPERVISION_STYLE.get(c.supervision, "-."), color=colors[c.model],
                    marker="o" if len(c.x) < 2 else None, ms=3, label=f"{c.model} · {c.supervision}")
        ax.set_ylabel(f"held-out {LABELS.get(metric, metric)}")
        ax.set_title(title)
        ax.grid(alpha=0.3, lw=0.5)
        if differences:
            low = axes[1, 0]
            low.axhline(0.0, color="black", lw=0.6)
            for d in differences:
                color = colors[d.model]
                for values in d.per_image.values():
                    low.plot(d.x, values, "-", color=color, lw=0.5, alpha=0.35)
                low.plot(d.x, d.mean, "-", color=color, marker="o" if len(d.x) < 2 else None, ms=3,
                         label=f"{d.model}: {d.other} − {d.base}")
                band = np.isfinite(d.low)
                if band.any():
                    low.fill_between(d.x[band], d.low[band], d.high[band], color=color, alpha=0.18, lw=0)
            unit = " (dB)" if "psnr" in metric else ""
            low.set_ylabel(f"{differences[0].other} − {differences[0].base}{unit}\npaired, 95 % CI")
            low.grid(alpha=0.3, lw=0.5)
        bottom = axes[rows - 1, 0]
        bottom.legend(*ax.get_legend_handles_labels(), loc="upper center", ncol=2, frameon=False,
                      bbox_to_anchor=(0.5, -0.24 if rows == 1 else -0.4))
        log_axis(bottom, xs)
        bottom.set_xlabel("training FLOPs" if axis == "flops" else "training seconds (this machine)")
        written = []
        for path in paths:
            fig.savefig(path, dpi=200)
            written.append(Path(path))
        plt.close(fig)
    return written
