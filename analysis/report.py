"""``sobolev-sweep report``: tables, significance, curves and pictures of a sweep, from MLflow.

Algorithm:
  1. Collect the trials (``analysis.collect``); count finished, failed and missing ones.
  2. Check the request: metrics some run has, a sampling level that exists.
  3. Per metric: the paper-style table at the level (LaTeX, CSV, Markdown) and the paired
     val_der − val significance table.
  4. Data-efficiency curves over every sampling level (overall and per dataset), PNG/PDF.
  5. The picture grid of one dataset (images): ground truth and each model × supervision.
  6. An index ``report.md``; everything is also logged to the sweep's parent run in MLflow.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from analysis.collect import SweepResults, collect
from analysis.figures import Curve, draw_curves, picture_grid
from analysis.significance import significance_latex, significance_markdown, significance_table
from analysis.tables import LABELS, MODEL_ORDER, SUPERVISION_ORDER, build_table, ordered, to_frame, to_latex, to_markdown
from analysis.tuned import tuned_caption, tuned_frame, tuned_latex, tuned_markdown
from sobolev.errors import ConfigError

FORMATS = ("tex", "csv", "md", "png", "pdf")
PAPER_LEVEL = "factor 4"


@dataclass
class ReportOptions:
    out: Path = Path("reports")
    metrics: Sequence[str] = ("test_psnr", "test_ssim")
    formats: Sequence[str] = FORMATS
    factor: Optional[int] = None
    ratio: Optional[float] = None
    dataset: Optional[str] = None
    parent: str = "all"
    tracking_uri: Optional[str] = None
    log_to_mlflow: bool = True
    overrides: Sequence[str] = ()


@dataclass
class Report:
    results: SweepResults
    level: str
    files: List[Path] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    latex: Dict[str, str] = field(default_factory=dict)


def _check_request(results: SweepResults, opts: ReportOptions) -> str:
    """Step 2: the metrics and the sampling level; returns the level label."""
    finished = results.finished
    if finished.empty:
        counts = results.status_counts()
        hint = ("; planned trials without a run are MISSING (was the sweep run with other --set overrides?)"
                if counts.get("MISSING") else "")
        summary = ", ".join(f"{k} {v}" for k, v in counts.items())
        raise ConfigError(f"experiment {results.name!r} has no finished runs ({summary}){hint}")
    known = sorted(c for c in finished.columns if c.startswith(("test_", "train_")) and finished[c].notna().any())
    for metric in opts.metrics:
        if metric not in known:
            raise ConfigError(f"--metric {metric!r}: no run of {results.name!r} has it; known: {', '.join(known)}")
    bad = sorted(set(opts.formats) - set(FORMATS))
    if bad:
        raise ConfigError(f"--format {bad[0]!r}: unknown; known: {', '.join(FORMATS)}")
    levels = list(dict.fromkeys(finished.sort_values("fraction", ascending=False)["sampling"]))
    if opts.factor is not None or opts.ratio is not None:
        level = f"factor {opts.factor}" if opts.factor is not None else f"ratio {opts.ratio:g}"
        if level not in levels:
            raise ConfigError(f"sampling level {level!r} has no finished run; known: {', '.join(levels)}")
        return level
    return PAPER_LEVEL if PAPER_LEVEL in levels else levels[len(levels) // 2]


def make_report(target: str, opts: ReportOptions) -> Report:
    results = collect(target, opts.tracking_uri, opts.parent, opts.overrides)  # 1
    level = _check_request(results, opts)  # 2
    report = Report(results, level)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    frame, finished = results.frame, results.finished
    datasets = ordered(frame["dataset"].dropna().unique(), [])
    models = ordered(frame["activation"].dropna().unique(), MODEL_ORDER)
    sups = ordered(frame["supervision"].dropna().unique(), SUPERVISION_ORDER)
    at_level = finished[finished["sampling"] == level]
    planned_at_level = frame[frame["sampling"] == level]
    seeds = int(at_level["seed"].nunique())
    counts = results.status_counts()
    report.notes.append("trials: " + ", ".join(f"{v} {k.lower()}" for k, v in counts.items()))
    for axis, values in (("activation", models), ("supervision", sups), ("dataset", datasets)):
        if len(values) < 2:
            report.notes.append(f"axis {axis} does not vary (only {values[0] if values else 'none'})")

    md_parts = [f"# Report: sweep `{results.name}` ({results.task.name})", "",
                f"Trials: {', '.join(f'{v} {k}' for k, v in counts.items())}. Tables at **{level}**, "
                f"{seeds} seed(s).", ""]

    def write(name: str, text: str) -> None:
        path = out / name
        path.write_text(text)
        report.files.append(path)

    tuned_note = ""
    if results.searches:  # a tuned comparison: its tuned values and budgets first
        tuned, caption = tuned_frame(results.searches), tuned_caption(results.searches)
        tuning_metric = results.searches[0].get("metric", "test_psnr")
        md = tuned_markdown(tuned, tuning_metric, caption)
        if "md" in opts.formats:
            write("tuned.md", md)
        if "csv" in opts.formats:
            write("tuned.csv", tuned.to_csv(float_format="%.10g"))
        if "tex" in opts.formats:
            write("tuned.tex", tuned_latex(tuned, tuning_metric, caption))
        md_parts += ["## Tuned values per arm", "", md, ""]
        tuned_note = ", every arm tuned with an equal budget (tuned.md)"

    # 3. tables and significance, per metric
    for metric in opts.metrics:
        caption = (f"Sweep {results.name}: held-out {LABELS.get(metric, metric)} at {level}, "
                   + (f"mean ± std over {seeds} seeds" if seeds > 1 else "one seed")
                   + f" ({len(at_level)}/{len(planned_at_level)} trials finished{tuned_note}).")
        table = build_table(at_level, metric, datasets, models, sups, caption)
        latex = to_latex(table, label=f"tab:{results.name}-{metric}")
        report.latex[metric] = latex
        md_table = to_markdown(table)
        if "tex" in opts.formats:
            write(f"table_{metric}.tex", latex)
        if "csv" in opts.formats:
            write(f"table_{metric}.csv", to_frame(table).to_csv(float_format="%.10g"))
        if "md" in opts.formats:
            write(f"table_{metric}.md", md_table)
        md_parts += [f"## {metric} at {level}", "", md_table, ""]
        if "val" in sups and "val_der" in sups:
            sig = significance_table(at_level, metric, models)
            sig_md = significance_markdown(sig, metric, level, tuned_note)
            if "csv" in opts.formats:
                write(f"significance_{metric}.csv", sig.to_csv(index=False, float_format="%.10g"))
            if "md" in opts.formats:
                write(f"significance_{metric}.md", sig_md)
            if "tex" in opts.formats:
                write(f"significance_{metric}.tex", significance_latex(sig, metric, level, tuned_note))
            md_parts += [sig_md, ""]
        else:
            report.notes.append("significance needs both val and val_der runs: skipped")

    # 4. data-efficiency curves
    figure_formats = [f for f in ("png", "pdf") if f in opts.formats]
    if figure_formats:
        if finished["fraction"].nunique() < 2:
            report.notes.append("one sampling level only: no data-efficiency curve (the sampling axis does not vary)")
        else:
            curves = []
            for metric in opts.metrics:
                base = out / f"curve_{metric}"
                curves.append(Curve(finished, metric, f"{results.name}: all datasets",
                                    [base.with_suffix(f".{f}") for f in figure_formats]))
                md_parts += [f"![{metric} curve]({base.name}.png)", ""] if "png" in figure_formats else []
                for dataset in datasets:
                    sub = finished[finished["dataset"] == dataset]
                    if sub["fraction"].nunique() >= 2:
                        curves.append(Curve(sub, metric, f"{results.name}: {dataset}",
                                            [out / f"curve_{metric}_{dataset}.{f}" for f in figure_formats]))
            report.files += draw_curves(curves)
    # 5. picture grid
    if "png" in opts.formats:
        dataset = opts.dataset or datasets[0]
        if dataset not in datasets:
            raise ConfigError(f"--dataset {dataset!r}: not in the sweep; known: {', '.join(datasets)}")
        path = _picture_grid(results, at_level, dataset, models, sups, level, out)
        if path is not None:
            report.files.append(path)
            md_parts += [f"![pictures]({path.name})", ""]
        else:
            report.notes.append(f"picture grid: none for {dataset} (no finished run at {level}, or {results.task.name} "
                                "trials are not one picture each; their runs keep their own plots)")

    # 6. index, notes, MLflow
    md_parts += ["## Notes", ""] + [f"- {n}" for n in report.notes]
    failed = frame[frame["status"] != "FINISHED"]
    if len(failed):
        md_parts += ["", "## Trials not finished", "", "| trial | status | failure |", "|---|---|---|"]
        for _, r in failed.iterrows():
            name = f"{r['dataset']}/{r['activation']}/{r['supervision']}/{r['sampling']}/seed {r['seed']}"
            md_parts.append(f"| {name} | {r['status']} | {r.get('failure') or ''} |")
    write("report.md", "\n".join(md_parts) + "\n")
    if opts.log_to_mlflow and results.latest_parent:
        from runners.tracking import Tracker

        Tracker(results.tracking_uri).client.log_artifacts(results.latest_parent, str(out), "report")
        report.notes.append(f"logged to MLflow run {results.latest_parent} under report/")
    return report


def _picture_grid(results: SweepResults, at_level: pd.DataFrame, dataset: str, models, sups, level: str,
                  out: Path) -> Optional[Path]:
    """Step 5: ground truth vs each prediction (lowest seed) from the runs' artifacts; None when the task's
    predictions are not one picture (``Task.reference_picture``)."""
    from PIL import Image

    from runners.tracking import Tracker

    rows = at_level[at_level["dataset"] == dataset]
    if rows.empty:
        return None
    seed = int(rows["seed"].min())
    rows = rows[rows["seed"] == seed]
    config = next((c for c in rows["config"] if c is not None), None)
    gt = results.task.reference_picture(config) if config is not None else None
    if gt is None:
        return None
    client = Tracker(results.tracking_uri).client
    panels: Dict[tuple, Optional[np.ndarray]] = {}
    captions: Dict[tuple, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            for sup in sups:
                key = (model, sup)
                match = rows[(rows["activation"] == model) & (rows["supervision"] == sup)]
                if match.empty:
                    panels[key] = None
                    continue
                run = match.iloc[0]
                try:
                    local = client.download_artifacts(run["run_id"], "prediction.png", tmp)
                    panels[key] = np.asarray(Image.open(local))
                except Exception:  # an artifact store that lost the file: show the gap, not a crash
                    panels[key] = None
                captions[key] = f"{run['test_psnr']:.2f} dB" if "test_psnr" in run else ""
    return picture_grid(gt, panels, captions, models, sups, f"{results.name}: {dataset}, {level}, seed {seed}",
                        out / f"pictures_{dataset}.png")
