"""``sobolev-sweep report``: tables, significance, curves and pictures of a sweep, from MLflow.

Algorithm (``make_report``):
  1. Collect the trials (``analysis.collect``); count finished, failed and missing ones.
  2. Check the request: metrics some run has (default: the task's), a sampling level that exists.
  3. Compute the content once (``compute``): a tuned comparison's tuned values; per metric the paper-style
     table at the level and the paired val_der − val significance table; the data-efficiency curves (overall
     and per dataset); the picture grid of one dataset; the first metric against compute (``analysis.compute``:
     curves against FLOPs and seconds, the compute to reach given levels, and the comparison at equal compute
     with the same tests); notes.
  4. Write it with the writer of each requested format (``TEXT_WRITERS``: tex, csv, md; figures: png, pdf),
     then the index ``report.md``; everything is also logged to the sweep's latest parent run in MLflow.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from analysis.collect import SweepResults, collect
from analysis.compute import (AXES, arm_curves, at_equal_compute, difference_curves, equal_compute_budget,
                              target_levels, time_to_target, time_to_target_latex, time_to_target_markdown)
from analysis.figures import ComputeCurve, Curve, Drawn, draw_all, picture_grid
from analysis.spread import STD_NAME
from analysis.significance import significance_latex, significance_markdown, significance_table
from analysis.tables import (LABELS, MODEL_ORDER, SUPERVISION_ORDER, ResultsTable, build_table, ordered, to_frame,
                             to_latex, to_markdown)
from analysis.tuned import tuned_caption, tuned_frame, tuned_latex, tuned_markdown
from runners.store.layout import REPORT_FOLDER
from runners.store.tracker import Tracker
from runners.store.uri import local_folder
from sobolev.errors import ConfigError

TEXT_FORMATS = ("tex", "csv", "md")
FIGURE_FORMATS = ("png", "pdf")
FORMATS = (*TEXT_FORMATS, *FIGURE_FORMATS)
PAPER_LEVEL = "factor 4"


@dataclass
class ReportOptions:
    out: Path = Path("reports")
    metrics: Optional[Sequence[str]] = None
    """Metrics to tabulate; None: the task's held-out metrics (``Task.metrics``)."""
    formats: Sequence[str] = FORMATS
    factor: Optional[int] = None
    ratio: Optional[float] = None
    dataset: Optional[str] = None
    parent: str = "all"
    tracking_uri: Optional[str] = None
    log_to_mlflow: bool = True
    overrides: Sequence[str] = ()


@dataclass
class MetricSection:
    """One metric's table at the level and, with both val and val_der, its significance table."""

    metric: str
    table: ResultsTable
    latex: str
    significance: Optional[pd.DataFrame]


@dataclass
class ComputeSection:
    """The first metric against compute (``analysis.compute``): curves, time to target, and the comparison at
    the largest compute every arm reached."""

    metric: str
    curves: Dict[str, list]
    """``flops`` and ``seconds`` → each arm's curve."""
    differences: Dict[str, list]
    """``flops`` and ``seconds`` → each model's paired val_der − val curve (empty without both arms)."""
    targets: Dict[str, pd.DataFrame]
    """``flops`` and ``seconds`` → time to target per arm and level."""
    budget: Optional[float]
    """FLOPs of the equal-compute comparison."""
    equal: Optional[MetricSection]


@dataclass
class TunedSection:
    frame: pd.DataFrame
    caption: str
    metric: str


@dataclass(frozen=True)
class CurvePlan:
    """One data-efficiency figure: its file stem (each figure format adds its suffix), data, metric and title."""

    stem: str
    finished: pd.DataFrame
    metric: str
    title: str


@dataclass(frozen=True)
class PictureGrid:
    """Ground truth and each model × supervision of one dataset (lowest seed), from the runs' files: drawn in a
    worker process (:func:`analysis.figures.draw_all`), which loads the task to render the ground truth (the
    report's own process reads the store without torch)."""

    task: str
    dataset: str
    seed: int
    params: Dict[str, str]
    """A run's params: its config, from which the task renders the ground truth."""
    runs: Dict[tuple, Optional[Tuple[str, float]]]
    """(model, supervision) → (the run's artifact URI, its held-out PSNR), or None without a finished run."""
    models: Sequence[str]
    supervisions: Sequence[str]
    title: str
    tracking_uri: str
    path: Path

    @property
    def paths(self) -> List[Path]:
        return [self.path]

    def draw(self) -> List[Path]:
        from PIL import Image

        from sobolev.tasks import TASKS

        task = TASKS.get(self.task)
        ground_truth = task.reference_picture(task.config_class.from_params(self.params))
        panels: Dict[tuple, Optional[np.ndarray]] = {}
        captions: Dict[tuple, str] = {}
        with tempfile.TemporaryDirectory() as tmp:
            for key, run in self.runs.items():
                panels[key] = None
                if run is None:
                    continue
                uri, psnr = run
                try:
                    folder = local_folder(uri)
                    local = folder / "prediction.png" if folder is not None else _downloaded(
                        uri, "prediction.png", tmp, self.tracking_uri)
                    panels[key] = np.asarray(Image.open(local))
                except Exception:  # an artifact store that lost the file: show the gap, not a crash
                    pass
                captions[key] = f"{psnr:.2f} dB" if math.isfinite(psnr) else ""
        return [picture_grid(ground_truth, panels, captions, self.models, self.supervisions, self.title, self.path)]


def _downloaded(artifact_uri: str, name: str, folder: str, tracking_uri: str) -> str:
    from mlflow.artifacts import download_artifacts

    return download_artifacts(artifact_uri=f"{artifact_uri}/{name}", dst_path=folder, tracking_uri=tracking_uri)


@dataclass
class ReportContent:
    """Everything a report says, computed once (step 3); the writers only render it."""

    results: SweepResults
    level: str
    seeds: int
    models: List[str]
    supervisions: List[str]
    datasets: List[str]
    sections: List[MetricSection]
    tuned: Optional[TunedSection]
    curves: List[CurvePlan]
    pictures: Optional[PictureGrid]
    compute: Optional[ComputeSection] = None
    notes: List[str] = field(default_factory=list)

    @property
    def tuned_note(self) -> str:
        return ", every arm tuned with an equal budget (tuned.md)" if self.tuned is not None else ""


@dataclass
class Report:
    results: SweepResults
    level: str
    files: List[Path] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    latex: Dict[str, str] = field(default_factory=dict)


# -- 2. the request ----------------------------------------------------------------------------

def check_request(results: SweepResults, opts: ReportOptions) -> tuple:
    """Step 2: ``(metrics, level label)``."""
    finished = results.finished
    if finished.empty:
        counts = results.status_counts()
        hint = ("; planned trials without a run are MISSING (was the sweep run with other --set overrides?)"
                if counts.get("MISSING") else "")
        summary = ", ".join(f"{k} {v}" for k, v in counts.items())
        raise ConfigError(f"experiment {results.name!r} has no finished runs ({summary}){hint}")
    known = sorted(c for c in finished.columns if c.startswith(("test_", "train_")) and finished[c].notna().any())
    if opts.metrics:
        metrics = list(opts.metrics)
        for metric in metrics:
            if metric not in known:
                raise ConfigError(f"--metric {metric!r}: no run of {results.name!r} has it; known: {', '.join(known)}")
    else:  # the task's metrics that some finished run has (a note in the report names the others)
        metrics = [m for m in results.task.metrics if m in known]
        if not metrics:
            raise ConfigError(f"experiment {results.name!r}: no finished run has any of its task's metrics "
                              f"({', '.join(results.task.metrics)}); known: {', '.join(known) or 'none'}")
    bad = sorted(set(opts.formats) - set(FORMATS))
    if bad:
        raise ConfigError(f"--format {bad[0]!r}: unknown; known: {', '.join(FORMATS)}")
    levels = list(dict.fromkeys(finished.sort_values("fraction", ascending=False)["sampling"]))
    if opts.factor is not None or opts.ratio is not None:
        level = f"factor {opts.factor}" if opts.factor is not None else f"ratio {opts.ratio:g}"
        if level not in levels:
            raise ConfigError(f"sampling level {level!r} has no finished run; known: {', '.join(levels)}")
        return metrics, level
    return metrics, PAPER_LEVEL if PAPER_LEVEL in levels else levels[len(levels) // 2]


# -- 3. the content -----------------------------------------------------------------------------

def compute(results: SweepResults, metrics: Sequence[str], level: str, opts: ReportOptions) -> ReportContent:
    frame, finished = results.frame, results.finished
    datasets = ordered(frame["dataset"].dropna().unique(), [])
    models = ordered(frame["activation"].dropna().unique(), MODEL_ORDER)
    sups = ordered(frame["supervision"].dropna().unique(), SUPERVISION_ORDER)
    at_level = finished[finished["sampling"] == level]
    planned_at_level = frame[frame["sampling"] == level]
    seeds = int(at_level["seed"].nunique())
    notes = ["trials: " + ", ".join(f"{v} {k.lower()}" for k, v in results.status_counts().items())]
    notes += [f"{m}: no finished run recorded it, no table" for m in results.task.metrics
              if not opts.metrics and m not in metrics]
    for axis, values in (("activation", models), ("supervision", sups), ("dataset", datasets)):
        if len(values) < 2:
            notes.append(f"axis {axis} does not vary (only {values[0] if values else 'none'})")
    tuned = None
    if results.searches:  # a tuned comparison: its tuned values and budgets first
        tuned = TunedSection(tuned_frame(results.searches), tuned_caption(results.searches),
                             results.searches[0].metric)
    tuned_note = ", every arm tuned with an equal budget (tuned.md)" if tuned is not None else ""
    both = "val" in sups and "val_der" in sups
    if not both:
        notes.append("significance needs both val and val_der runs: skipped")
    sections = []
    for metric in metrics:
        caption = (f"Sweep {results.name}: held-out {LABELS.get(metric, metric)} at {level}, "
                   + (f"mean ± {STD_NAME} over {seeds} seeds" if seeds > 1 else "one seed")
                   + f" ({len(at_level)}/{len(planned_at_level)} trials finished{tuned_note}).")
        table = build_table(at_level, metric, datasets, models, sups, caption)
        sections.append(MetricSection(metric, table, to_latex(table, label=f"tab:{results.name}-{metric}"),
                                      significance_table(at_level, metric, models) if both else None))
    curves: List[CurvePlan] = []
    if finished["fraction"].nunique() < 2:
        notes.append("one sampling level only: no data-efficiency curve (the sampling axis does not vary)")
    else:
        for metric in metrics:
            curves.append(CurvePlan(f"curve_{metric}", finished, metric, f"{results.name}: all datasets"))
            for dataset in datasets:
                sub = finished[finished["dataset"] == dataset]
                if sub["fraction"].nunique() >= 2:
                    curves.append(CurvePlan(f"curve_{metric}_{dataset}", sub, metric, f"{results.name}: {dataset}"))
    dataset = opts.dataset or datasets[0]
    if dataset not in datasets:
        raise ConfigError(f"--dataset {dataset!r}: not in the sweep; known: {', '.join(datasets)}")
    pictures = _picture_runs(results, at_level, dataset, models, sups, level, Path(opts.out))
    if pictures is None:
        notes.append(f"picture grid: none for {dataset} (no finished run at {level}, or {results.task.name} trials "
                     "are not one picture each; their runs keep their own plots)")
    compute_section = _compute_section(results.name, at_level, metrics[0], models, sups, datasets, level, both, notes)
    return ReportContent(results, level, seeds, models, sups, datasets, sections, tuned, curves, pictures,
                         compute_section, notes)


def _compute_section(name: str, at_level: pd.DataFrame, metric: str, models, sups, datasets, level: str, both: bool,
                     notes: List[str]) -> Optional[ComputeSection]:
    """The first metric against compute at the level; None (with a note) without evaluation curves."""
    curves = {axis: arm_curves(at_level, metric, axis) for axis in AXES}
    curves = {axis: arms for axis, arms in curves.items() if arms}
    if "flops" in curves and "seconds" not in curves:
        notes.append(f"{metric} against seconds: no evaluation recorded a positive, finite training time")
    if "flops" not in curves:
        notes.append("no metric against compute: the trials recorded no evaluation curve (set trial.eval_every; "
                     "runs of versions before 0.2 have none)")
        return None
    differences = {axis: difference_curves(at_level, metric, axis) for axis in AXES} if both else {}
    if both and not differences["flops"]:
        notes.append(f"{metric} against compute: no image has val and val_der evaluated at a compute both reached, "
                     "no paired difference (evaluate more often, trial.eval_every, or give val more steps at equal "
                     "compute, sweeps/equal_compute.yaml)")
    levels = target_levels(curves["flops"])
    targets = {axis: time_to_target(arms, levels) for axis, arms in curves.items()}
    budget = equal_compute_budget(at_level, metric)
    equal = None
    frame = at_equal_compute(at_level, metric, budget) if budget else at_level.iloc[0:0]
    if len(frame):
        caption = (f"Sweep {name}: held-out {LABELS.get(metric, metric)} at {level} at equal compute, "
                   f"{budget:.3g} training FLOPs per trial (the most every trial reached), mean ± {STD_NAME} over "
                   "seeds.")
        table = build_table(frame, metric, datasets, models, sups, caption)
        equal = MetricSection(metric, table, to_latex(table, label=f"tab:{name}-{metric}-equal-compute"),
                              significance_table(frame, metric, models) if both else None)
    else:
        notes.append("equal compute: no evaluation of every arm at a common compute (evaluate more often: "
                     "trial.eval_every)")
    return ComputeSection(metric, curves, differences, targets, budget, equal)


def _picture_runs(results: SweepResults, at_level: pd.DataFrame, dataset: str, models, sups, level: str,
                  out: Path) -> Optional[PictureGrid]:
    """The runs of the picture grid (lowest seed); None when the task's predictions are not one picture
    (``Task.picture_grid``) or nothing finished."""
    rows = at_level[at_level["dataset"] == dataset]
    if rows.empty or not results.task.pictures:
        return None
    seed = int(rows["seed"].min())
    rows = rows[rows["seed"] == seed]
    runs = {}
    for model in models:
        for sup in sups:
            match = rows[(rows["activation"] == model) & (rows["supervision"] == sup)]
            run = None if match.empty else match.iloc[0]
            runs[(model, sup)] = None if run is None else (run["artifact_uri"], float(run.get("test_psnr", math.nan)))
    return PictureGrid(results.task.name, dataset, seed, dict(rows.iloc[0]["params"]), runs, models, sups,
                       f"{results.name}: {dataset}, {level}, seed {seed}", results.tracking_uri,
                       out / f"pictures_{dataset}.png")


# -- 4. the writers -----------------------------------------------------------------------------

def _compute_md(c: ReportContent) -> Dict[str, str]:
    """The compute section (time to target, the equal-compute table and its test) in Markdown."""
    k = c.compute
    if k is None:
        return {}
    text = time_to_target_markdown(k.targets, k.metric, c.level)
    if k.equal is not None:
        text += "\n" + to_markdown(k.equal.table)
        if k.equal.significance is not None:
            text += "\n" + significance_markdown(k.equal.significance, k.metric, c.level, " at equal compute")
    return {f"compute_{k.metric}.md": text}


def _compute_csv(c: ReportContent) -> Dict[str, str]:
    k = c.compute
    if k is None:
        return {}
    frame = pd.concat([t.assign(compute=axis) for axis, t in k.targets.items()])
    files = {f"time_to_target_{k.metric}.csv": frame.to_csv(index=False, float_format="%.10g")}
    if k.equal is not None:
        files[f"equal_compute_{k.metric}.csv"] = to_frame(k.equal.table).to_csv(float_format="%.10g")
        if k.equal.significance is not None:
            files[f"significance_equal_compute_{k.metric}.csv"] = k.equal.significance.to_csv(
                index=False, float_format="%.10g")
    return files


def _compute_tex(c: ReportContent) -> Dict[str, str]:
    k = c.compute
    if k is None:
        return {}
    files = {f"time_to_target_{k.metric}.tex": time_to_target_latex(k.targets, k.metric, c.level)}
    if k.equal is not None:
        files[f"equal_compute_{k.metric}.tex"] = k.equal.latex
        if k.equal.significance is not None:
            files[f"significance_equal_compute_{k.metric}.tex"] = significance_latex(
                k.equal.significance, k.metric, c.level, " at equal compute")
    return files


def _tex(c: ReportContent) -> Dict[str, str]:
    files = {"tuned.tex": tuned_latex(c.tuned.frame, c.tuned.metric, c.tuned.caption)} if c.tuned else {}
    for s in c.sections:
        files[f"table_{s.metric}.tex"] = s.latex
        if s.significance is not None:
            files[f"significance_{s.metric}.tex"] = significance_latex(s.significance, s.metric, c.level, c.tuned_note)
    files.update(_compute_tex(c))
    return files


def _csv(c: ReportContent) -> Dict[str, str]:
    files = {"tuned.csv": c.tuned.frame.to_csv(float_format="%.10g")} if c.tuned else {}
    for s in c.sections:
        files[f"table_{s.metric}.csv"] = to_frame(s.table).to_csv(float_format="%.10g")
        if s.significance is not None:
            files[f"significance_{s.metric}.csv"] = s.significance.to_csv(index=False, float_format="%.10g")
    files.update(_compute_csv(c))
    return files


def _md(c: ReportContent) -> Dict[str, str]:
    files = {"tuned.md": tuned_markdown(c.tuned.frame, c.tuned.metric, c.tuned.caption)} if c.tuned else {}
    for s in c.sections:
        files[f"table_{s.metric}.md"] = to_markdown(s.table)
        if s.significance is not None:
            files[f"significance_{s.metric}.md"] = significance_markdown(s.significance, s.metric, c.level,
                                                                        c.tuned_note)
    files.update(_compute_md(c))
    return files


TEXT_WRITERS: Dict[str, Callable[[ReportContent], Dict[str, str]]] = {"tex": _tex, "csv": _csv, "md": _md}
"""Format → the files (name → text) it writes of the content."""


def draw_figures(c: ReportContent, formats: Sequence[str], out: Path,
                 meanwhile: Optional[Callable[[], object]] = None) -> List[Drawn]:
    """The curves in every figure format asked for, the metric against compute, and the picture grid (PNG), all
    in worker processes (``analysis.figures.draw_all``); what each gave (its files, or why none)."""
    if not formats:
        if meanwhile is not None:
            meanwhile()
        return []
    figures: List = []
    if "png" in formats and c.pictures is not None:
        figures.append(c.pictures)  # first: it loads the task and the data
    figures += [Curve(k.finished, k.metric, k.title, [out / f"{k.stem}.{f}" for f in formats]) for k in c.curves]
    if c.compute is not None:
        figures += [ComputeCurve(arms, c.compute.differences.get(axis, []), c.compute.metric, axis,
                                 f"{c.results.name}: {c.level}",
                                 [out / f"compute_{c.compute.metric}_{axis}.{f}" for f in formats])
                    for axis, arms in c.compute.curves.items()]
    return draw_all(figures, meanwhile)


def _import_mlflow() -> None:
    """What logging the report needs of MLflow, imported while the figures draw in their worker processes."""
    import mlflow.store.artifact.artifact_repository_registry  # noqa: F401


def index(c: ReportContent, figures: Sequence[str], written: Optional[set] = None) -> str:
    """``report.md``: every table in Markdown, the figures that were ``written`` (file names; None: every figure
    planned), the notes and the trials that did not finish."""

    def picture(alt: str, name: str) -> List[str]:
        return [f"![{alt}]({name})"] if "png" in figures and (written is None or name in written) else []

    counts = c.results.status_counts()
    parts = [f"# Report: sweep `{c.results.name}` ({c.results.task.name})", "",
             f"Trials: {', '.join(f'{v} {k}' for k, v in counts.items())}. Tables at **{c.level}**, "
             f"{c.seeds} seed(s).", ""]
    md = _md(c)
    if c.tuned is not None:
        parts += ["## Tuned values per arm", "", md["tuned.md"], ""]
    for s in c.sections:
        parts += [f"## {s.metric} at {c.level}", "", md[f"table_{s.metric}.md"], ""]
        if s.significance is not None:
            parts += [md[f"significance_{s.metric}.md"], ""]
        if c.curves:
            parts += picture(f"{s.metric} curve", f"curve_{s.metric}.png") + [""]
    if c.compute is not None:
        k = c.compute
        parts += [f"## {k.metric} against compute at {c.level}", "", md[f"compute_{k.metric}.md"], ""]
        parts += (picture(f"{k.metric} against FLOPs", f"compute_{k.metric}_flops.png")
                  + picture(f"{k.metric} against seconds", f"compute_{k.metric}_seconds.png") + [""])
    if c.pictures is not None:
        parts += picture("pictures", f"pictures_{c.pictures.dataset}.png") + [""]
    parts += ["## Notes", ""] + [f"- {n}" for n in c.notes]
    frame = c.results.frame
    failed = frame[frame["status"] != "FINISHED"]
    if len(failed):
        parts += ["", "## Trials not finished", "", "| trial | status | failure |", "|---|---|---|"]
        for _, r in failed.iterrows():
            name = f"{r['dataset']}/{r['activation']}/{r['supervision']}/{r['sampling']}/seed {r['seed']}"
            parts.append(f"| {name} | {r['status']} | {r.get('failure') or ''} |")
    return "\n".join(parts) + "\n"


def make_report(target: str, opts: ReportOptions) -> Report:
    """Steps 1–4."""
    results = collect(target, opts.tracking_uri, opts.parent, opts.overrides)  # 1.
    metrics, level = check_request(results, opts)  # 2.
    content = compute(results, metrics, level, opts)  # 3.
    report = Report(results, level, notes=list(content.notes))
    report.latex = {s.metric: s.latex for s in content.sections}
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    texts: Dict[str, str] = {}
    for fmt in (f for f in TEXT_FORMATS if f in opts.formats):  # 4.
        texts.update(TEXT_WRITERS[fmt](content))
    for name, text in texts.items():
        (out / name).write_text(text)
        report.files.append(out / name)
    figures = [f for f in FIGURE_FORMATS if f in opts.formats]
    log = opts.log_to_mlflow and results.latest_parent is not None
    drawn = draw_figures(content, figures, out, _import_mlflow if log else None)  # MLflow imports meanwhile
    report.files += [p for d in drawn for p in d.paths]
    failed = [d.failure for d in drawn if d.failure]
    content.notes += failed
    report.notes += failed
    (out / "report.md").write_text(index(content, figures, {p.name for p in report.files}))
    report.files.append(out / "report.md")
    if log:
        Tracker(results.tracking_uri).log_artifacts_at(results.artifact_uris[results.latest_parent], str(out),
                                                       REPORT_FOLDER)
        report.notes.append(f"logged to MLflow run {results.latest_parent} under {REPORT_FOLDER}/")
    return report
