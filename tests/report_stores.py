"""Sweep stores of many shapes for the property tests of ``analysis/`` (``tests/test_report_properties.py``).

A :class:`StoreShape` says what a sweep left in its store: its task, grid, which trials ran in which invocation
and how each ended, their final metrics and evaluation curves, a tuned comparison's search results.  It is drawn
by hypothesis (:func:`store_shapes`) and written through the project's own writer (``runners.store.tracker``
on a real SQLite MLflow), exactly as the sweep engine lays a store out.  :meth:`StoreShape.expected_runs` is the
oracle's view of the same store: one row per trial key with what a report must show, computed from the shape
alone (never read back through ``analysis``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import pandas as pd
from hypothesis import strategies as st

from runners.store.layout import TAG_DIVERGED, TAG_EVALUATIONS, TAG_FAILURE
from runners.store.records import EvaluationCurve, PlanRecord, SearchResult, TaskInfo, TrialRecord
from runners.store.tracker import Tracker

TASK_INFO = {
    "image": TaskInfo("image", 2, ("test_psnr", "test_ssim"), True),
    "audio": TaskInfo("audio", 1, ("test_psnr",), False),
    "nerf": TaskInfo("nerf", 2, ("test_psnr", "test_ssim"), False),
}
"""What each registered task records with its experiment (``TaskInfo.of``; ``test_report_properties`` checks
these against the registry)."""
MODELS = ["relu", "sine", "finer"]
SUPERVISIONS = ["val", "der", "val_der"]
FACTORS = [2, 4, 8]
RATIOS = [0.1, 0.25, 0.5]
ENDINGS = ["FINISHED", "FAILED", "DIVERGED", "KILLED", "RUNNING", "NO_PARAMS", "NO_RUN"]
"""How a planned trial ended: a finished run, a failed one, one failed by divergence, killed, still RUNNING (a
driver killed without reconciliation), a run created but killed before its params were logged, or no run at all."""
ODD_COMPUTE = [0.0, math.nan, math.inf, -1.0]
"""Compute values a curve may carry that no axis can show on a log scale."""
MAX_TRIALS = 40
HUNDREDTHS = st.integers(-200, 200).map(lambda i: i / 100)
"""A metric's noise, −2 to 2 (integers: a float strategy refuses to run where the test process flushes denormals,
as the trainers' tests leave it)."""


@dataclass
class Run:
    """One MLflow run of a planned trial."""

    ending: str
    parent: int
    metrics: Dict[str, float] = field(default_factory=dict)
    curve: Optional[List[Tuple[float, ...]]] = None
    """Rows ``(step, train_flops, train_seconds, *task metrics)``; None: no curve recorded."""
    picture: bool = False


@dataclass
class Trial:
    key: str
    axes: Dict[str, object]
    runs: List[Run]


@dataclass
class StoreShape:
    task: str
    datasets: List[str]
    models: List[str]
    supervisions: List[str]
    sampling: str
    """``factor`` or ``ratio``."""
    levels: List[float]
    seeds: List[int]
    parents: int
    trials: List[Trial]
    search: bool
    parent: str = "all"
    """What the report reads: ``all`` invocations or the ``latest``."""

    @property
    def info(self) -> TaskInfo:
        return TASK_INFO[self.task]

    def expected_runs(self) -> pd.DataFrame:
        """One row per trial key as a report must see it: its newest run, a FINISHED one preferred (a retried or
        resumed trial), with the axes it was planned with and, when finished, its final metrics and curve."""
        rows = []
        for t in self.trials:
            runs = [r for r in t.runs if self.parent == "all" or r.parent == self.parents - 1]
            if not runs:
                rows.append({"trial_key": t.key, "status": "MISSING", **t.axes})
                continue
            finished = [r for r in runs if r.ending == "FINISHED"]
            run = finished[-1] if finished else runs[-1]
            status = {"DIVERGED": "FAILED", "NO_PARAMS": "KILLED"}.get(run.ending, run.ending)
            rows.append({"trial_key": t.key, "status": status, **t.axes, **run.metrics,
                         "curve_rows": run.curve})
        frame = pd.DataFrame(rows)
        level = "factor" if self.sampling == "factor" else "ratio"
        frame["sampling"] = [f"{level} {v:g}" for v in frame[self.sampling]]
        frame["fraction"] = [(1 / v ** self.info.dimensions) if level == "factor" else v
                             for v in frame[self.sampling]]
        return frame


def _curve_rows(draw, metrics: Dict[str, float], names: Tuple[str, ...], step_flops: float) -> Optional[List]:
    """None (no curve), one evaluation, or several, some with compute a log axis cannot show."""
    kind = draw(st.sampled_from(["none", "one", "many", "many", "odd"]))
    if kind == "none":
        return None
    steps = [4] if kind == "one" else sorted(draw(st.sets(st.integers(1, 12), min_size=2, max_size=5)))
    rows = []
    for i, step in enumerate(steps):
        last = i == len(steps) - 1
        flops, seconds = step * step_flops, step * draw(st.sampled_from([1e-4, 0.003, 0.05, 0.7]))
        if kind == "odd" and not last or kind == "odd" and draw(st.booleans()):
            flops = draw(st.sampled_from(ODD_COMPUTE + [flops]))
            seconds = draw(st.sampled_from(ODD_COMPUTE + [seconds]))
        values = [metrics[m] if last else metrics[m] - (len(steps) - i) * draw(st.sampled_from([0.1, 0.5, 2.0]))
                  for m in names]
        rows.append((float(step), flops, seconds, *values))
    return rows


@st.composite
def store_shapes(draw) -> StoreShape:
    """A sweep's store: any task, 1–4 datasets, 1–3 seeds, 1–3 sampling levels (factors or ratios), arms missing,
    trials failed, diverged, killed, running, without params or without a run, one or two invocations, curves with
    no, one or many evaluations (some at compute 0, NaN, inf), a search phase."""
    task = draw(st.sampled_from(sorted(TASK_INFO)))
    datasets = [f"d{i}" for i in range(draw(st.integers(1, 4)))]
    models = draw(st.lists(st.sampled_from(MODELS), min_size=1, max_size=2, unique=True))
    supervisions = draw(st.lists(st.sampled_from(SUPERVISIONS), min_size=1, max_size=3, unique=True))
    if draw(st.integers(0, 3)) > 0 and "val" not in supervisions:  # mostly a comparison: val beside another
        supervisions.append("val")
    sampling = draw(st.sampled_from(["factor", "factor", "ratio"]))
    levels = draw(st.lists(st.sampled_from(FACTORS if sampling == "factor" else RATIOS), min_size=1, max_size=3,
                           unique=True))
    seeds = list(range(draw(st.integers(1, 3))))
    while len(datasets) * len(models) * len(supervisions) * len(levels) * len(seeds) > MAX_TRIALS:
        for axis in (seeds, levels, datasets, supervisions, models):
            if len(axis) > 1:
                axis.pop()
                break
    parents = draw(st.integers(1, 2))
    missing_arm = draw(st.sampled_from([None, *[(m, s) for m in models for s in supervisions]]))
    names = TASK_INFO[task].metrics
    weights = draw(st.sampled_from(["mostly finished", "mixed"]))
    endings = ENDINGS if weights == "mixed" else ["FINISHED"] * 12 + ENDINGS
    trials = []
    for d in datasets:
        for m in models:
            for s in supervisions:
                for v in levels:
                    for seed in seeds:
                        axes = {"dataset": d, "activation": m, "supervision": s, sampling: v, "seed": seed}
                        key = f"{d}-{m}-{s}-{v:g}-{seed}"
                        if (m, s) == missing_arm:
                            trials.append(Trial(key, axes, []))
                            continue
                        runs = []
                        for parent in range(parents):
                            if parent and draw(st.integers(0, 3)):  # most trials run in one invocation only
                                continue
                            ending = draw(st.sampled_from(endings))
                            if ending == "NO_RUN":
                                continue
                            run = Run(ending, parent)
                            if ending == "FINISHED":
                                base = 10.0 + 5 * datasets.index(d) + 3 * models.index(m) + (s == "val_der")
                                noise = draw(st.one_of(st.sampled_from([0.0, 0.5, -1.0]), HUNDREDTHS))
                                run.metrics = {name: round(base + noise, 4) / (1 if name == "test_psnr" else 40)
                                               for name in names}
                                if len(names) > 1 and draw(st.integers(0, 9)) == 0:
                                    run.metrics.pop(names[1])  # a run without one of the task's metrics
                                full = {n: run.metrics.get(n, math.nan) for n in names}
                                step_flops = 1e5 * (4 if s == "val" else 12) / (v if sampling == "factor" else 1)
                                run.curve = _curve_rows(draw, full, names, step_flops)
                                run.picture = task == "image" and draw(st.booleans())
                            runs.append(run)
                        trials.append(Trial(key, axes, runs))
    return StoreShape(task, datasets, models, supervisions, sampling, levels, seeds, parents, trials,
                      search=draw(st.integers(0, 4)) == 0,
                      parent=draw(st.sampled_from(["all", "all", "latest"])) if parents > 1 else "all")


def write_store(shape: StoreShape, uri: str, picture: Path, name: str = "shaped") -> None:
    """The store a sweep of ``shape`` leaves, written as the engine writes it (``runners.store.tracker``)."""
    tracker = Tracker(uri)
    exp = tracker.ensure_experiment(name, {"task": shape.task, "axes": ["dataset", "activation", "supervision",
                                                                          "sampling", "seed"]}, shape.info)
    parents = [tracker.create_parent(exp, f"{name}-{i}", {"task": shape.task, "trials": len(shape.trials)}, {})
               for i in range(shape.parents)]
    plan = PlanRecord.of([], [TrialRecord(t.key, t.key, dict(t.axes)) for t in shape.trials])
    for parent in parents:
        tracker.log_plan(parent, f"name: {name}\n", plan)
    if shape.search:
        for m in shape.models:
            for s in shape.supervisions:
                tracker.record_search(parents[0], SearchResult(
                    f"{m}/{s}", {"activation": m, "supervision": s}, f"arm-{m}-{s}", "test_psnr", 1,
                    {"lr": 1e-4}, 20.5, None, "", 4, 3, 1, 0, 0, 40))
    for t in shape.trials:
        for run in t.runs:
            params = None if run.ending == "NO_PARAMS" else _params(shape, t)
            child, _ = tracker.open_child(exp, parents[run.parent], t.key, t.key, params, {})
            run_id = child.info.run_id
            if run.ending == "FINISHED":
                tags = {}
                if run.curve is not None:
                    columns = ("step", "train_flops", "train_seconds", *shape.info.metrics)
                    tags[TAG_EVALUATIONS] = EvaluationCurve(columns, tuple(run.curve)).to_json()
                tracker.log(run_id, [{"step": 12, **run.metrics, "train_flops": 1e6}], tags, 0)
                if run.picture:
                    tracker.client.log_artifact(run_id, str(picture))
            elif run.ending in ("FAILED", "DIVERGED"):
                tracker.set_tags(run_id, {TAG_FAILURE: "trial diverged at step 3: loss is nan" if run.ending ==
                                          "DIVERGED" else "RuntimeError: injected",
                                          **({TAG_DIVERGED: "true"} if run.ending == "DIVERGED" else {})})
            if run.ending != "RUNNING":
                tracker.finish(run_id, {"NO_PARAMS": "KILLED", "DIVERGED": "FAILED"}.get(run.ending, run.ending))
    for parent in parents:
        tracker.finish(parent)


def _params(shape: StoreShape, t: Trial) -> Dict[str, object]:
    """A trial run's params as the worker logs them: the key, task, axes and (enough of) the config to render the
    ground truth of an image."""
    sampling = {shape.sampling: t.axes[shape.sampling]}
    return {"trial_key": t.key, "task": shape.task, **{f"axis.{k}": v for k, v in t.axes.items()},
            "image": "astronaut", "size": 16, **sampling}


def sample_std(values: np.ndarray) -> float:
    """The std every table states: the sample std (n − 1), NaN below two values."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
