"""Does derivative supervision help?  Paired comparisons beyond the paper (which ran one seed).

For each model: pairs (dataset, seed) where both ``val`` and ``val_der`` finished at the same
sampling level; the difference ``val_der − val`` of the metric, its mean with a 95 % t
confidence interval, a paired t-test and a Wilcoxon signed-rank test (``scipy.stats``).
With fewer than ``MIN_PAIRS`` pairs no p-value is printed: "n too small".
"""

from __future__ import annotations

import math
from typing import List, Sequence

import pandas as pd
from scipy import stats

from analysis.tables import LABELS, latex_escape

MIN_PAIRS = 3
"""Below this many pairs, no confidence interval or p-value is reported."""
MIN_PAIRS_WILCOXON = 6
"""The smallest two-sided exact Wilcoxon p-value with 5 pairs is 0.0625: below 6 it cannot reject at 5 %."""
TOO_SMALL = "n too small"


def paired_differences(finished: pd.DataFrame, metric: str, model: str, base: str = "val",
                       other: str = "val_der") -> pd.Series:
    """``other − base`` per (dataset, seed) for one model, over the pairs where both finished."""
    rows = finished[(finished["activation"] == model) & finished["supervision"].isin([base, other])]
    wide = rows.pivot_table(index=["dataset", "seed"], columns="supervision", values=metric, aggfunc="first")
    if base not in wide or other not in wide:
        return pd.Series(dtype=float)
    return (wide[other] - wide[base]).dropna()


def significance_table(finished: pd.DataFrame, metric: str, models: Sequence[str], base: str = "val",
                       other: str = "val_der") -> pd.DataFrame:
    """One row per model: n, mean difference, 95 % CI, paired t and Wilcoxon p-values."""
    rows: List[dict] = []
    for model in models:
        diff = paired_differences(finished, metric, model, base, other)
        n = len(diff)
        row = {"model": model, "comparison": f"{other} − {base}", "n": n,
               "mean_diff": float(diff.mean()) if n else math.nan,
               "ci_low": math.nan, "ci_high": math.nan, "t_p": math.nan, "wilcoxon_p": math.nan, "note": ""}
        if n >= MIN_PAIRS:
            sd = float(diff.std(ddof=1))
            half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
            row.update(ci_low=row["mean_diff"] - half, ci_high=row["mean_diff"] + half)
            # the paired t-test is the one-sample t-test of the differences (= stats.ttest_rel)
            row["t_p"] = float(stats.ttest_1samp(diff.values, 0.0).pvalue) if sd > 0 else math.nan
            if n >= MIN_PAIRS_WILCOXON and (diff != 0).any():
                row["wilcoxon_p"] = float(stats.wilcoxon(diff.values).pvalue)
            elif n < MIN_PAIRS_WILCOXON:
                row["note"] = f"Wilcoxon: {TOO_SMALL} (n < {MIN_PAIRS_WILCOXON})"
        else:
            row["note"] = f"{TOO_SMALL} (n = {n} < {MIN_PAIRS})"
        rows.append(row)
    return pd.DataFrame(rows)


def significance_markdown(table: pd.DataFrame, metric: str, level: str) -> str:
    unit = " dB" if "psnr" in metric else ""
    lines = [f"*{metric}: val_der − val, paired over (dataset, seed) at {level}; 95 % t interval*", "",
             "| model | n | mean diff | 95 % CI | paired t p | Wilcoxon p | note |", "|---|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        def num(x, fmt):
            return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)

        ci = f"[{num(r.ci_low, '+.3f')}, {num(r.ci_high, '+.3f')}]" if not math.isnan(r.ci_low) else TOO_SMALL
        lines.append(f"| {r.model} | {r.n} | {num(r.mean_diff, '+.3f')}{unit} | {ci} | {num(r.t_p, '.2g')} | "
                     f"{num(r.wilcoxon_p, '.2g')} | {r.note} |")
    return "\n".join(lines) + "\n"


def significance_latex(table: pd.DataFrame, metric: str, level: str) -> str:
    def num(x, fmt):
        return "--" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)

    body = []
    for _, r in table.iterrows():
        ci = f"[{num(r.ci_low, '+.3f')}, {num(r.ci_high, '+.3f')}]" if not math.isnan(r.ci_low) else TOO_SMALL
        body.append(f"{latex_escape(r.model)} & {r.n} & {num(r.mean_diff, '+.3f')} & {ci} & "
                    f"{num(r.t_p, '.2g')} & {num(r.wilcoxon_p, '.2g')} \\\\")
    caption = latex_escape(f"{LABELS.get(metric, metric)}: val_der − val paired over (dataset, seed) at {level}; "
                           "mean difference, 95 % t interval, paired t-test and Wilcoxon signed-rank p-values.")
    return "\n".join([
        "\\begin{table}", "\\centering", f"\\caption{{{caption}}}", "\\begin{tabular}{lrrlrr}", "\\toprule",
        "model & $n$ & mean diff. & 95\\% CI & $p_t$ & $p_W$ \\\\", "\\midrule", *body, "\\bottomrule",
        "\\end{tabular}", "\\end{table}",
    ]) + "\n"
