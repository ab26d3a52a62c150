"""Does derivative supervision help?  Paired comparisons that respect the design of the sweep.

The image is the main source of variance and the seeds of one image are not independent
replications of the claim "val_der beats val on images", so the *primary* test is at the
dataset level:

1. **Dataset level** (primary): per dataset, the mean over seeds of ``val_der`` and of ``val``
   (over the seeds where both finished); their differences, one per dataset; the mean difference
   with a 95 % t interval, a paired t-test and (from 6 datasets) a Wilcoxon signed-rank test.
   The t p-values of one table are corrected for the number of models compared (Holm).
2. **Hierarchical bootstrap** interval of the mean difference: resample the datasets, then the
   seeds within each resampled dataset, with replacement (``BOOTSTRAP`` draws, seeded).
3. **Within-image** (secondary, labelled so): every (dataset, seed) pair as if independent — the
   test earlier versions reported, which says how repeatable the gain is on *these* images, not
   whether it generalises.  Holm-corrected too.

With fewer than ``MIN_DATASETS`` datasets the table says that the claim does not generalise
across images; with fewer than ``MIN_PAIRS`` pairs a test prints "n too small".
"""

from __future__ import annotations

import math
from typing import List, Sequence

import numpy as np
import pandas as pd
from scipy import special

from analysis.spread import sample_std
from analysis.tables import LABELS, latex_escape

MIN_PAIRS = 3
"""Below this many pairs, no confidence interval or p-value is reported."""
MIN_PAIRS_WILCOXON = 6
"""The smallest two-sided exact Wilcoxon p-value with 5 pairs is 0.0625: below 6 it cannot reject at 5 %."""
MIN_DATASETS = 3
"""Below this many datasets a claim about images in general is not supported by the sweep."""
BOOTSTRAP = 10_000
"""Hierarchical bootstrap draws."""
TOO_SMALL = "n too small"


def paired_differences(finished: pd.DataFrame, metric: str, model: str, base: str = "val",
                       other: str = "val_der") -> pd.Series:
    """``other − base`` per (dataset, seed) for one model, over the pairs where both finished."""
    rows = finished[(finished["activation"] == model) & finished["supervision"].isin([base, other])]
    wide = rows.pivot_table(index=["dataset", "seed"], columns="supervision", values=metric, aggfunc="first")
    if base not in wide or other not in wide:
        return pd.Series(dtype=float)
    return (wide[other] - wide[base]).dropna()


def t_quantile(dof, level: float = 0.975):
    """The Student t quantile (``scipy.stats.t.ppf``, from ``scipy.special``, which imports in a third of the
    time)."""
    return special.stdtrit(dof, level)


def t_summary(diff: np.ndarray) -> dict:
    """Mean, 95 % t interval, paired t p-value and (n ≥ 6) Wilcoxon p-value of paired differences."""
    n = len(diff)
    out = {"n": n, "mean": float(np.mean(diff)) if n else math.nan, "ci_low": math.nan, "ci_high": math.nan,
           "t_p": math.nan, "wilcoxon_p": math.nan, "note": ""}
    if n < MIN_PAIRS:
        out["note"] = f"{TOO_SMALL} (n = {n} < {MIN_PAIRS})"
        return out
    sd = sample_std(diff)
    half = t_quantile(n - 1) * sd / math.sqrt(n)
    out.update(ci_low=out["mean"] - half, ci_high=out["mean"] + half)
    # the paired t-test is the one-sample t-test of the differences (= scipy.stats.ttest_rel), two-sided
    out["t_p"] = float(2 * special.stdtr(n - 1, -abs(out["mean"] / (sd / math.sqrt(n))))) if sd > 0 else math.nan
    if n >= MIN_PAIRS_WILCOXON and np.any(diff != 0):
        from scipy import stats  # 0.3 s more to import than scipy.special: only where a Wilcoxon test is due

        out["wilcoxon_p"] = float(stats.wilcoxon(diff).pvalue)
    elif n < MIN_PAIRS_WILCOXON:
        out["note"] = f"Wilcoxon: {TOO_SMALL} (n < {MIN_PAIRS_WILCOXON})"
    return out


def hierarchical_bootstrap(diff: pd.Series, draws: int = BOOTSTRAP, seed: int = 0) -> tuple:
    """95 % percentile interval of the mean difference: datasets resampled, then seeds within each.

    ``diff`` is indexed by (dataset, seed).  Each draw picks as many datasets as there are, with
    replacement, and for each picked dataset as many of its seeds, with replacement; the draw's
    statistic is the mean over datasets of their seed means (the dataset-level mean difference).
    """
    groups = [g.to_numpy() for _, g in diff.groupby(level=0)]
    if len(groups) < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(groups), size=(draws, len(groups)))  # (draws, G): datasets drawn
    sizes = np.array([len(g) for g in groups])
    padded = np.zeros((len(groups), sizes.max()))  # (G, S): a dataset's seeds, padded
    for i, g in enumerate(groups):
        padded[i, : len(g)] = g
    n = sizes[picks][..., None]  # (draws, G, 1): seeds of each drawn dataset
    seeds = np.minimum((rng.random((draws, len(groups), sizes.max())) * n).astype(int), n - 1)  # (draws, G, S)
    valid = np.arange(sizes.max()) < n  # a draw of n seeds uses the first n slots
    values = np.where(valid, padded[picks[..., None], seeds], 0.0)
    stats_ = (values.sum(-1) / n[..., 0]).mean(-1)  # (draws,): mean over datasets of their seed means
    low, high = np.percentile(stats_, [2.5, 97.5])
    return float(low), float(high)


def holm(pvalues: Sequence[float]) -> List[float]:
    """Holm's step-down adjusted p-values (NaN entries stay NaN and do not count as comparisons)."""
    order = [i for i in np.argsort(np.nan_to_num(pvalues, nan=np.inf)) if not math.isnan(pvalues[i])]
    adjusted = [math.nan] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def significance_table(finished: pd.DataFrame, metric: str, models: Sequence[str], base: str = "val",
                       other: str = "val_der") -> pd.DataFrame:
    """One row per model: the dataset-level test (primary), the hierarchical bootstrap interval and the
    within-image (dataset, seed) test, with Holm-adjusted p-values across the models of the table.

    Columns: ``datasets``, ``dataset_mean_diff``, ``dataset_ci_low/high``, ``dataset_t_p``,
    ``dataset_t_p_holm``, ``dataset_wilcoxon_p``, ``boot_ci_low/high``; within-image: ``n``,
    ``mean_diff``, ``ci_low/high``, ``t_p``, ``t_p_holm``, ``wilcoxon_p``; ``note``.
    """
    rows: List[dict] = []
    for model in models:
        diff = paired_differences(finished, metric, model, base, other)
        per_dataset = diff.groupby(level=0).mean().to_numpy() if len(diff) else np.array([])
        top, pairs = t_summary(per_dataset), t_summary(diff.to_numpy())
        boot_low, boot_high = hierarchical_bootstrap(diff)
        notes = [f"datasets: {top['note']}" if top["note"] else "", f"within-image: {pairs['note']}" if pairs["note"]
                 else ""]
        if 0 < top["n"] < MIN_DATASETS:
            notes.insert(0, f"{top['n']} dataset(s): the claim does not generalise across images")
        rows.append({
            "model": model, "comparison": f"{other} − {base}",
            "datasets": top["n"], "dataset_mean_diff": top["mean"], "dataset_ci_low": top["ci_low"],
            "dataset_ci_high": top["ci_high"], "dataset_t_p": top["t_p"], "dataset_wilcoxon_p": top["wilcoxon_p"],
            "boot_ci_low": boot_low, "boot_ci_high": boot_high,
            "n": pairs["n"], "mean_diff": pairs["mean"], "ci_low": pairs["ci_low"], "ci_high": pairs["ci_high"],
            "t_p": pairs["t_p"], "wilcoxon_p": pairs["wilcoxon_p"], "note": "; ".join(n for n in notes if n),
        })
    table = pd.DataFrame(rows)
    if len(table):
        table.insert(table.columns.get_loc("dataset_t_p") + 1, "dataset_t_p_holm", holm(list(table["dataset_t_p"])))
        table.insert(table.columns.get_loc("t_p") + 1, "t_p_holm", holm(list(table["t_p"])))
    return table


def _num(x, fmt: str, missing: str = "—") -> str:
    return missing if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def _interval(low, high, missing: str = TOO_SMALL) -> str:
    return f"[{_num(low, '+.3f')}, {_num(high, '+.3f')}]" if not math.isnan(low) else missing


def significance_markdown(table: pd.DataFrame, metric: str, level: str, tuned: str = "") -> str:
    unit = " dB" if "psnr" in metric else ""
    lines = [f"*{metric}: val_der − val at {level}{tuned}. Primary: paired over datasets (seeds averaged within "
             "each), 95 % t interval, hierarchical bootstrap interval (datasets, then seeds), p-values Holm-adjusted "
             "across the models. Within-image: every (dataset, seed) pair, which measures repeatability on these "
             "images, not generalisation.*", "",
             "| model | datasets | mean diff | 95 % CI | bootstrap 95 % | p (Holm) | within-image n | within-image "
             "95 % CI | within-image p (Holm) | note |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        lines.append(
            f"| {r.model} | {r.datasets} | {_num(r.dataset_mean_diff, '+.3f')}{unit} | "
            f"{_interval(r.dataset_ci_low, r.dataset_ci_high)} | {_interval(r.boot_ci_low, r.boot_ci_high, '—')} | "
            f"{_num(r.dataset_t_p, '.2g')} ({_num(r.dataset_t_p_holm, '.2g')}) | {r.n} | "
            f"{_interval(r.ci_low, r.ci_high)} | {_num(r.t_p, '.2g')} ({_num(r.t_p_holm, '.2g')}) | {r.note} |")
    return "\n".join(lines) + "\n"


def significance_latex(table: pd.DataFrame, metric: str, level: str, tuned: str = "") -> str:
    body = []
    for _, r in table.iterrows():
        body.append(
            f"{latex_escape(r.model)} & {r.datasets} & {_num(r.dataset_mean_diff, '+.3f', '--')} & "
            f"{_interval(r.dataset_ci_low, r.dataset_ci_high)} & {_interval(r.boot_ci_low, r.boot_ci_high, '--')} & "
            f"{_num(r.dataset_t_p_holm, '.2g', '--')} & {r.n} & {_num(r.t_p_holm, '.2g', '--')} \\\\")
    caption = latex_escape(
        f"{LABELS.get(metric, metric)}: val_der − val at {level}{tuned}. Paired over datasets (seeds averaged "
        "within each): mean difference, 95 % t interval, hierarchical bootstrap interval and Holm-adjusted "
        "paired t p-value; within-image: the Holm-adjusted p-value over every (dataset, seed) pair.")
    return "\n".join([
        "\\begin{table}", "\\centering", f"\\caption{{{caption}}}", "\\begin{tabular}{lrrllrrr}", "\\toprule",
        "model & datasets & mean diff. & 95\\% CI & bootstrap 95\\% & $p_t$ (Holm) & $n$ (within) & "
        "$p_t$ within (Holm) \\\\", "\\midrule", *body, "\\bottomrule", "\\end{tabular}", "\\end{table}",
    ]) + "\n"
