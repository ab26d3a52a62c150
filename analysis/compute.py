"""Equal compute: the held-out metric against the training FLOPs and seconds each trial spent.

Every trial records its held-out metrics at each evaluation with the FLOPs and seconds spent by then
(``runners.store.records.EvaluationCurve``, read by ``analysis.collect`` into the ``curve`` column).  From them:

1. **Curves** (``arm_curves``): per arm (model × supervision), each trial's metric interpolated (linearly in
   log-compute) on a common log-spaced grid inside the range it covers; mean and sample std over the trials
   (seeds and images) where at least half of them are defined.  **Paired differences**
   (``difference_curves``): per model and image, ``val_der − val`` of the same seed at the same compute (both
   interpolated, where both curves reach it), averaged over seeds; then the mean over images with its 95 % t
   interval: whether derivative supervision is ahead at equal compute, image by image.
2. **Time to target** (``time_to_target``): the compute each arm's mean curve needed to first reach given levels
   of the metric (linear interpolation between evaluations); "not reached" where it did not.
3. **Equal compute** (``at_equal_compute``): the largest compute every arm reached (the smallest of the arms'
   final compute, each arm's by its mean over trials), and every trial's metric interpolated there: the frame the
   report's paired val_der − val test (``analysis.significance``) takes, as it takes the final metrics at equal
   steps.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from analysis.significance import t_quantile
from analysis.spread import nan_sample_std, sample_std
from runners.store.records import EvaluationCurve

AXES = {"flops": "train_flops", "seconds": "train_seconds"}
"""What compute is measured in: FLOPs (machine-independent) or seconds (this machine's)."""
GRID_POINTS = 48


def _xy(curve: EvaluationCurve, x: str, metric: str) -> Tuple[np.ndarray, np.ndarray]:
    cols = list(curve.columns)
    if x not in cols or metric not in cols or not curve.rows:
        return np.array([]), np.array([])
    rows = np.asarray(curve.rows, dtype=float)
    xs, ys = rows[:, cols.index(x)], rows[:, cols.index(metric)]
    keep = np.isfinite(xs) & np.isfinite(ys) & (xs > 0)
    order = np.argsort(xs[keep], kind="stable")
    return xs[keep][order], ys[keep][order]


def value_at(curve: EvaluationCurve, x: str, metric: str, at: float) -> float:
    """The metric at compute ``at`` (linear in log-compute between evaluations); NaN outside the curve's range."""
    xs, ys = _xy(curve, x, metric)
    if not len(xs) or at < xs[0] or at > xs[-1]:
        return math.nan
    return float(np.interp(math.log(at), np.log(xs), ys))


def first_reach(xs: np.ndarray, ys: np.ndarray, level: float) -> float:
    """The compute at which ``ys`` first reaches ``level`` (interpolated between the two evaluations around the
    crossing); NaN if it never does."""
    above = np.nonzero(ys >= level)[0]
    if not len(above):
        return math.nan
    i = int(above[0])
    if i == 0:
        return float(xs[0])
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return float(x0 + (level - y0) / (y1 - y0) * (x1 - x0)) if y1 != y0 else float(x1)


def half_defined(values: np.ndarray) -> np.ndarray:
    """The grid points (columns) where at least half of the curves (rows), and at least one, have a value: where a
    mean over them is shown."""
    return np.isfinite(values).sum(axis=0) >= max(1, math.ceil(len(values) / 2))


@dataclass(frozen=True)
class ArmCurve:
    """One arm's metric against compute: a log-spaced grid and the mean and std over its trials."""

    model: str
    supervision: str
    x: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    trials: int


def _with_curves(finished: pd.DataFrame) -> pd.DataFrame:
    if "curve" not in finished:
        return finished.iloc[0:0]
    return finished[finished["curve"].map(lambda c: isinstance(c, EvaluationCurve) and bool(c.rows))]


def arm_curves(finished: pd.DataFrame, metric: str, axis: str = "flops") -> List[ArmCurve]:
    """Step 1: per arm, the trials' curves on a common log-spaced grid (mean ± sample std where at least half of
    the arm's trials are defined; where no compute is shared by half of them, one point: the mean of their last
    evaluations at the geometric mean of their compute)."""
    x = AXES[axis]
    data = _with_curves(finished)
    out = []
    for (model, sup), group in data.groupby(["activation", "supervision"], sort=True):
        curves = [_xy(c, x, metric) for c in group["curve"]]
        curves = [(xs, ys) for xs, ys in curves if len(xs)]
        if not curves:
            continue
        low, high = min(xs[0] for xs, _ in curves), max(xs[-1] for xs, _ in curves)
        grid = np.geomspace(low, high, GRID_POINTS) if high > low else np.array([low])
        values = np.full((len(curves), len(grid)), np.nan)
        for k, (xs, ys) in enumerate(curves):
            inside = (grid >= xs[0]) & (grid <= xs[-1])
            values[k, inside] = np.interp(np.log(grid[inside]), np.log(xs), ys)
        keep = half_defined(values)
        if not keep.any():  # no compute half of the trials share (one evaluation each, say): where they ended
            finals = np.array([(xs[-1], ys[-1]) for xs, ys in curves])
            out.append(ArmCurve(model, sup, np.array([math.exp(np.log(finals[:, 0]).mean())]),
                                np.array([finals[:, 1].mean()]), np.array([sample_std(finals[:, 1])]), len(curves)))
            continue
        with np.errstate(invalid="ignore"):
            mean = np.nanmean(values[:, keep], axis=0)
            std = nan_sample_std(values[:, keep], axis=0)
        out.append(ArmCurve(model, sup, grid[keep], mean, std, len(curves)))
    return out


@dataclass(frozen=True)
class DifferenceCurve:
    """One model's paired ``other − base`` difference against compute.

    Shape: ``x``, ``mean``, ``low``, ``high`` ``(G,)``; ``per_image`` dataset → ``(G,)`` (NaN where that image has
    no pair reaching the compute)."""

    model: str
    base: str
    other: str
    x: np.ndarray
    mean: np.ndarray
    """Mean over images of each image's seed-mean difference."""
    low: np.ndarray
    """95 % t interval over images (NaN where fewer than two images are defined)."""
    high: np.ndarray
    per_image: Dict[str, np.ndarray]


def _pair_curves(data: pd.DataFrame, x: str, metric: str, model: str, base: str, other: str) -> Dict[str, list]:
    """Dataset → the (xs, ys) curves of both arms of each seed that has both, for one model."""
    rows = data[data["activation"] == model]
    found: Dict[tuple, Dict[str, tuple]] = {}
    for _, r in rows[rows["supervision"].isin([base, other])].iterrows():
        xs, ys = _xy(r["curve"], x, metric)
        if len(xs):
            found.setdefault((r["dataset"], r["seed"]), {})[r["supervision"]] = (xs, ys)
    pairs: Dict[str, list] = {}
    for (dataset, _), arms in sorted(found.items(), key=lambda kv: str(kv[0])):
        if base in arms and other in arms:
            low = max(arms[base][0][0], arms[other][0][0])
            high = min(arms[base][0][-1], arms[other][0][-1])
            if low <= high:
                pairs.setdefault(dataset, []).append((low, high, arms[base], arms[other]))
    return pairs


def difference_curves(finished: pd.DataFrame, metric: str, axis: str = "flops", base: str = "val",
                      other: str = "val_der") -> List[DifferenceCurve]:
    """Step 1, paired: per model, ``other − base`` of each (image, seed) pair on a common log-spaced grid where both
    of its curves are defined; each image's mean over its seeds; the mean over images and its 95 % t interval
    where at least half of the images are defined.  Models without a pair of curves that share some compute have
    none."""
    x = AXES[axis]
    data = _with_curves(finished)
    out = []
    for model in sorted(data["activation"].dropna().unique(), key=str):
        pairs = _pair_curves(data, x, metric, model, base, other)
        if not pairs:
            continue
        low = min(p[0] for ps in pairs.values() for p in ps)
        high = max(p[1] for ps in pairs.values() for p in ps)
        grid = np.geomspace(low, high, GRID_POINTS) if high > low else np.array([low])
        per_image = {}
        for dataset, ps in pairs.items():
            values = np.full((len(ps), len(grid)), np.nan)
            for k, (a, b, (bx, by), (ox, oy)) in enumerate(ps):
                inside = (grid >= a) & (grid <= b)
                g = np.log(grid[inside])
                values[k, inside] = np.interp(g, np.log(ox), oy) - np.interp(g, np.log(bx), by)
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a grid point no seed of this image reaches
                per_image[dataset] = np.nanmean(values, axis=0)
        images = np.vstack(list(per_image.values()))
        keep = half_defined(images)
        images = images[:, keep]
        n = np.isfinite(images).sum(axis=0)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(images, axis=0)
        half = np.where(n > 1, t_quantile(np.maximum(n - 1, 1)) * nan_sample_std(images, axis=0)
                        / np.sqrt(n), np.nan)
        if keep.any():
            out.append(DifferenceCurve(str(model), base, other, grid[keep], mean, mean - half, mean + half,
                                       {d: v[keep] for d, v in per_image.items()}))
    return out


def target_levels(curves: Sequence[ArmCurve], count: int = 3) -> List[float]:
    """Levels worth a time-to-target table: from the worst arm's final mean (every arm reaches it: the compute each
    needed to match the worst's result) towards the best's (excluded: only one arm reaches it), evenly spaced,
    rounded down to a tenth."""
    finals = [c.mean[-1] for c in curves if len(c.mean) and math.isfinite(c.mean[-1])]
    if len(finals) < 2:
        return []
    low, high = min(finals), max(finals)
    return sorted({math.floor((low + (high - low) * k / count) * 10) / 10 for k in range(count)})  # distinct


def time_to_target(curves: Sequence[ArmCurve], levels: Sequence[float]) -> pd.DataFrame:
    """Step 2: rows model, supervision; one column per level: the compute its mean curve needed (NaN: not
    reached)."""
    rows = []
    for c in curves:
        rows.append({"model": c.model, "supervision": c.supervision,
                     **{f"{level:g}": first_reach(c.x, c.mean, level) for level in levels}})
    return pd.DataFrame(rows, columns=["model", "supervision", *(f"{level:g}" for level in levels)])


def equal_compute_budget(finished: pd.DataFrame, metric: str, axis: str = "flops") -> Optional[float]:
    """The largest compute every arm reached: the smallest compute any trial reached by its last evaluation of
    ``metric`` (evaluations at a compute no log axis shows, 0, NaN or inf, do not count)."""
    ends = [xs[-1] for xs, _ in (_xy(c, AXES[axis], metric) for c in _with_curves(finished)["curve"]) if len(xs)]
    return float(min(ends)) if ends else None


def at_equal_compute(finished: pd.DataFrame, metric: str, budget: float, axis: str = "flops") -> pd.DataFrame:
    """Step 3: the finished trials with ``metric`` replaced by its value at ``budget`` compute (NaN where a
    trial's curve does not reach it), for the paired tests of ``analysis.significance``."""
    data = _with_curves(finished).copy()
    data[metric] = [value_at(c, AXES[axis], metric, budget) for c in data["curve"]]
    return data.dropna(subset=[metric])


def _amount(value: float, axis: str) -> str:
    if value is None or not math.isfinite(value):
        return "not reached"
    return f"{value:.3g}" if axis == "flops" else f"{value:.2f} s"


def time_to_target_markdown(tables: dict, metric: str, level: str) -> str:
    """Both compute axes as one Markdown table: per arm and level, FLOPs (seconds)."""
    flops = tables["flops"]
    seconds = tables.get("seconds", flops.iloc[0:0]).set_index(["model", "supervision"])
    levels = [c for c in flops.columns if c not in ("model", "supervision")]
    lines = [f"*Compute to reach a held-out {metric} at {level}: training FLOPs (seconds on this machine) the mean "
             "curve of each arm needed; interpolated between evaluations.*", "",
             "| model | supervision | " + " | ".join(f"{metric} ≥ {v}" for v in levels) + " |",
             "|---|---|" + "---|" * len(levels)]
    for _, f in flops.iterrows():
        arm = (f["model"], f["supervision"])
        s = seconds.loc[arm] if arm in seconds.index else {v: math.nan for v in levels}
        cells = [_amount(f[v], "flops") + (f" ({_amount(s[v], 'seconds')})" if math.isfinite(f[v]) else "")
                 for v in levels]
        lines.append(f"| {f['model']} | {f['supervision']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def time_to_target_latex(tables: dict, metric: str, level: str) -> str:
    from analysis.tables import latex_escape

    flops = tables["flops"]
    levels = [c for c in flops.columns if c not in ("model", "supervision")]
    body = [" & ".join([latex_escape(str(r["model"])), latex_escape(str(r["supervision"])),
                        *(latex_escape(_amount(r[v], "flops")) for v in levels)]) + " \\\\"
            for _, r in flops.iterrows()]
    caption = latex_escape(f"Training FLOPs each arm's mean curve needed to reach a held-out {metric} at {level} "
                           "(interpolated between evaluations).")
    return "\n".join(["\\begin{table}", "\\centering", f"\\caption{{{caption}}}",
                      "\\begin{tabular}{ll" + "r" * len(levels) + "}", "\\toprule",
                      "model & supervision & " + " & ".join(f"$\\geq$ {v}" for v in levels) + " \\\\", "\\midrule",
                      *body, "\\bottomrule", "\\end{tabular}", "\\end{table}"]) + "\n"
