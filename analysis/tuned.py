"""The tuned values of a tuned comparison, per arm, with the budget each arm got (Markdown, CSV, LaTeX).

One row per arm: its best configuration's values (one column per searched field; "—" where a
field does not apply to the arm), the best mean held-out metric on the tuning data, and the
budget: configurations tried, how many trained every step, how many ASHA stopped early, how
many failed, and the steps trained in all.
"""

from __future__ import annotations

from typing import List

import pandas as pd

from analysis.tables import latex_escape
from runners.store.records import SearchResult

BUDGET = ["configurations", "completed", "stopped", "failed", "steps_trained"]


def tuned_frame(searches: List[SearchResult]) -> pd.DataFrame:
    """One row per arm (index: the arm's label)."""
    fields = sorted({k for s in searches for k in s.values})
    rows = []
    for s in searches:
        rows.append({"arm": s.label, **{f: s.values.get(f) for f in fields}, "objective": s.objective,
                     **{b: getattr(s, b) for b in BUDGET}})
    return pd.DataFrame(rows).set_index("arm")


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "—"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def tuned_markdown(frame: pd.DataFrame, metric: str, caption: str) -> str:
    header = ["arm", *frame.columns[:-len(BUDGET) - 1], f"best {metric} (tuning)", "configurations", "completed",
              "stopped early", "failed", "steps trained"]
    lines = [f"*{caption}*", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for arm, row in frame.iterrows():
        lines.append("| " + " | ".join([str(arm), *(_cell(v) for v in row.values)]) + " |")
    return "\n".join(lines) + "\n"


def tuned_latex(frame: pd.DataFrame, metric: str, caption: str) -> str:
    fields = list(frame.columns[:-len(BUDGET) - 1])
    header = ["arm", *fields, f"best {metric}", "configs", "completed", "stopped", "failed", "steps"]
    body = [" & ".join(latex_escape(c) for c in [str(arm), *(_cell(v) for v in row.values)]) + " \\\\"
            for arm, row in frame.iterrows()]
    return "\n".join([
        "\\begin{table}", "\\centering", f"\\caption{{{latex_escape(caption)}}}",
        "\\begin{tabular}{l" + "r" * (len(header) - 1) + "}", "\\toprule",
        " & ".join(latex_escape(h) for h in header) + " \\\\", "\\midrule", *body, "\\bottomrule", "\\end{tabular}",
        "\\end{table}",
    ]) + "\n"


def tuned_caption(searches: List[SearchResult]) -> str:
    members = searches[0].members if searches else 0
    budgets = {s.configurations for s in searches}
    budget = "/".join(str(b) for b in sorted(budgets))
    return (f"Every arm tuned with the same budget ({budget} configurations, each trained on {members} tuning "
            "member(s) as one network; best by the mean held-out metric on the tuning data), then evaluated with "
            "its tuned values.")
