"""Paper-style results tables: datasets × (model, supervision) at one sampling level.

Each cell is the mean over seeds (``mean ± std`` when there is more than one seed, the sample std of
``analysis.spread``); the last row is the mean over datasets; the best cell of each row is bold (ties at the
shown precision are all bold); a cell without a finished run shows "—".  Rendered with pandas' Styler to
LaTeX (booktabs rules, ``\\multicolumn`` headers, no siunitx), and to CSV and Markdown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import pandas as pd

from analysis.spread import sample_std

MODEL_ORDER = ["relu", "relu_pe", "relu_ff", "sine", "finer", "gauss", "wire"]
SUPERVISION_ORDER = ["val", "der", "val_der"]
DIGITS = {"test_psnr": 2, "train_psnr": 2, "test_ssim": 3, "train_ssim": 3}
LABELS = {"test_psnr": "PSNR (dB)", "test_ssim": "SSIM", "train_psnr": "train PSNR (dB)", "train_ssim": "train SSIM"}
MEAN_ROW = "Mean"
MISSING = "—"
PM_LATEX = "$\\pm$"


def ordered(values: Sequence, order: Sequence) -> List:
    known = [v for v in order if v in set(values)]
    return known + sorted(set(values) - set(order), key=str)


@dataclass
class ResultsTable:
    """Numbers behind one table: mean, std and count per (row, column)."""

    metric: str
    mean: pd.DataFrame
    std: pd.DataFrame
    count: pd.DataFrame
    seeds: int
    caption: str

    @property
    def digits(self) -> int:
        return DIGITS.get(self.metric, 3)

    def best(self) -> pd.DataFrame:
        """True where the cell's shown mean equals the row's best shown mean (higher is better)."""
        shown = self.mean.round(self.digits)
        return shown.eq(shown.max(axis=1), axis=0) & shown.notna()

    def cell(self, row, col, *, latex: bool = False) -> str:
        m = self.mean.loc[row, col]
        if pd.isna(m):
            return "--" if latex else MISSING
        text = f"{m:.{self.digits}f}"
        s = self.std.loc[row, col]
        if self.seeds > 1 and not pd.isna(s):
            pm = PM_LATEX if latex else "±"
            text += f" {pm} {s:.{self.digits}f}"
        return text

    def strings(self, *, latex: bool = False) -> pd.DataFrame:
        return pd.DataFrame(
            [[self.cell(r, c, latex=latex) for c in self.mean.columns] for r in self.mean.index],
            index=self.mean.index, columns=self.mean.columns,
        )


def build_table(finished: pd.DataFrame, metric: str, datasets: Sequence[str], models: Sequence[str],
                supervisions: Sequence[str], caption: str) -> ResultsTable:
    """Step 1: per dataset × model × supervision, the mean/std over seeds; then the mean row.

    The mean row: for each seed, the mean over the datasets that have that seed; then the
    mean and std of those per-seed means over seeds (so its ± is seed variation too).
    """
    columns = pd.MultiIndex.from_product([models, supervisions], names=["model", "supervision"])
    mean = pd.DataFrame(np.nan, index=list(datasets), columns=columns)
    std = mean.copy()
    count = pd.DataFrame(0, index=list(datasets), columns=columns)
    if metric in finished:
        groups = finished.dropna(subset=[metric]).groupby(["dataset", "activation", "supervision"])[metric]
        for (dataset, model, sup), values in groups:
            if dataset in mean.index and (model, sup) in columns:
                mean.loc[dataset, (model, sup)] = values.mean()
                std.loc[dataset, (model, sup)] = sample_std(values)
                count.loc[dataset, (model, sup)] = len(values)
    mean.loc[MEAN_ROW] = np.nan
    std.loc[MEAN_ROW] = np.nan
    count.loc[MEAN_ROW] = count.loc[list(datasets)].sum(axis=0)
    if metric in finished:
        subset = finished[finished["dataset"].isin(list(datasets))].dropna(subset=[metric])
        per_seed = subset.groupby(["activation", "supervision", "seed"])[metric].mean()
        for (model, sup), values in per_seed.groupby(level=[0, 1]):
            if (model, sup) in columns:
                mean.loc[MEAN_ROW, (model, sup)] = values.mean()
                std.loc[MEAN_ROW, (model, sup)] = sample_std(values)
    seeds = int(finished["seed"].nunique()) if "seed" in finished and len(finished) else 0
    return ResultsTable(metric, mean, std, count, seeds, caption)


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": PM_LATEX,
                  "—": "---", "−": "$-$"}


def latex_escape(text: str) -> str:
    """Plain text → LaTeX text (special characters escaped, ± as $\\pm$)."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(table: ResultsTable, label: Optional[str] = None) -> str:
    """Booktabs LaTeX with ``\\multicolumn`` model headers; best cell of each row bold."""
    strings = table.strings(latex=True)
    best = table.best()
    styler = strings.style
    styler = styler.apply(lambda _: np.where(best.values, "textbf:--rwrap;", ""), axis=None)
    styler = styler.format_index(escape="latex", axis=0).format_index(escape="latex", axis=1)
    styler = styler.hide(names=True, axis=1).hide(names=True, axis=0)
    n_data = len(strings.columns)
    latex = styler.to_latex(
        column_format="l" + "c" * n_data,
        hrules=True,
        multicol_align="c",
        position_float="centering",
        caption=latex_escape(table.caption),
        label=label,
        clines=None,
    )
    lines = latex.splitlines()
    for i, line in enumerate(lines):  # booktabs: a \cmidrule under each grouped (model) header
        if "\\multicolumn" in line:
            lines.insert(i + 1, group_rules(line))
            break
    # a rule above the mean row
    for i, line in enumerate(lines):
        if line.startswith(MEAN_ROW + " &"):
            lines.insert(i, "\\midrule")
            break
    return "\n".join(lines) + "\n"


MULTICOLUMN = re.compile(r"\\multicolumn\{(\d+)\}")


def group_rules(header: str) -> str:
    r"""``\cmidrule(lr){a-b}`` under every ``\multicolumn`` cell of a LaTeX header row (columns counted from 1)."""
    rules, column = [], 1
    for cell in header.rstrip().removesuffix("\\\\").split(" & "):
        match = MULTICOLUMN.search(cell)
        span = int(match.group(1)) if match else 1
        if match:
            rules.append(f"\\cmidrule(lr){{{column}-{column + span - 1}}}")
        column += span
    return " ".join(rules)


def to_frame(table: ResultsTable) -> pd.DataFrame:
    """Flat numbers for CSV: one column per (model, supervision) mean, std and n."""
    parts = {}
    for model, sup in table.mean.columns:
        parts[f"{model}/{sup}/mean"] = table.mean[(model, sup)]
        parts[f"{model}/{sup}/std"] = table.std[(model, sup)]
        parts[f"{model}/{sup}/n"] = table.count[(model, sup)]
    frame = pd.DataFrame(parts)
    frame.index.name = "dataset"
    return frame


def to_markdown(table: ResultsTable) -> str:
    strings = table.strings()
    best = table.best()
    header = "| dataset | " + " | ".join(f"{m} {s}" for m, s in strings.columns) + " |"
    rule = "|---|" + "---|" * len(strings.columns)
    rows = []
    for r in strings.index:
        cells = [f"**{strings.loc[r, c]}**" if best.loc[r, c] else strings.loc[r, c] for c in strings.columns]
        rows.append(f"| {r} | " + " | ".join(cells) + " |")
    return "\n".join([f"*{table.caption}*", "", header, rule, *rows]) + "\n"

