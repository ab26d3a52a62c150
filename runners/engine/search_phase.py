"""Phase 1 of a tuned comparison: one Ray Tune search per arm, every arm with the same budget.

Algorithm (``run_search``, for each arm in turn):
  1. A search of the same key that already finished in this experiment is not repeated: its result
     is read back from the parent run that recorded it (tag ``sobolev.search.<key>``) and recorded on
     this invocation's parent run too.
  2. Otherwise a Tuner over the arm's space: Optuna's TPE (``OptunaSearch``, seeded) or random search,
     ASHA (``ASHAScheduler`` on the reported ``step``, up to the arm's own steps) if the spec asks,
     ``samples`` configurations, each a ``runners.worker.tuning_trial.tuning_trial``.  A resume restores the
     interrupted arm's Tuner (the searcher's state included) when Tune's state is whole
     (``tune_state_is_whole``) and of this version.  Otherwise (no Tune state, or a driver killed between Tune's
     write of its experiment state and its searcher's) the incomplete state is set aside, and the searcher is rebuilt
     from the configurations MLflow already holds (Optuna is told their objectives) and searches the rest
     of the budget, its seed moved on by the budget spent so that it does not draw those again; a
     configuration that was running stays KILLED in MLflow.
  3. The arm's best configuration: the highest final objective among the configurations that trained
     every step (ASHA's survivors; all of them without ASHA; should ASHA have stopped every one, among
     all), read from MLflow and recorded on the parent run.  If every configuration failed, the arm is
     evaluated with its untuned values, and its result says so.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from runners.engine.cluster import trial_resources
from runners.engine.progress import SearchProgress, View, fit_with_progress
from runners.plan.arms import Arm
from runners.spec.schema import SweepSpec
from runners.spec.search import Distribution
from runners.store.layout import (KIND_TUNING, PARENT, SEARCHED, TAG_DIVERGED, TAG_FAILURE, TAG_KEY, TAG_KIND,
                                  TAG_SEARCH_KEY, TAG_STOPPED_AT, TRAIN_FLOPS)
from runners.store.records import SearchResult
from runners.store.tracker import Tracker
from runners.worker.contract import TrialContext, TuningArm
from sobolev.config import nest
from sobolev.errors import last_line


def arm_runs(tracker: Tracker, exp_id: str, arm: Arm, parent: Optional[str] = None) -> List[Any]:
    """The tuning runs of an arm's search (of one parent run, or of the whole experiment)."""
    query = f"tags.`{TAG_SEARCH_KEY}` = '{arm.key}' and tags.`{TAG_KIND}` = '{KIND_TUNING}'"
    if parent is not None:
        query += f" and tags.`{PARENT}` = '{parent}'"
    return tracker.search(exp_id, query)


def sampled_values(run, arm: Arm) -> Dict[str, Any]:
    """A tuning run's sampled values, typed by the trial fields they set (MLflow keeps params as text)."""
    return arm.typed_values({k[len(SEARCHED):]: v for k, v in run.data.params.items() if k.startswith(SEARCHED)})


def search_result(runs: List[Any], arm: Arm, metric: str) -> SearchResult:
    """Step 3: the best configuration and the budget the arm got, from its tuning runs."""
    steps = arm.steps
    finished = [r for r in runs if r.info.status == "FINISHED" and "objective" in r.data.metrics]
    complete = [r for r in finished if TAG_STOPPED_AT not in r.data.tags]
    pool = complete or finished
    best = max(pool, key=lambda r: r.data.metrics["objective"]) if pool else None
    return SearchResult(
        label=arm.label, axes=dict(arm.axes), key=arm.key, metric=metric, members=len(arm.members),
        values=sampled_values(best, arm) if best else {},
        objective=best.data.metrics["objective"] if best else math.nan,
        best_run=best.info.run_id if best else None,
        note="" if best else "every configuration failed: evaluated with its untuned values",
        configurations=len(runs), completed=len(complete), stopped=len(finished) - len(complete),
        failed=sum(1 for r in runs if r.info.status == "FAILED"),
        diverged=sum(1 for r in runs if r.data.tags.get(TAG_DIVERGED) == "true"),
        steps_trained=sum(int(r.data.tags.get(TAG_STOPPED_AT, steps)) for r in finished),
        flops_trained=flops_spent(runs),
    )


def flops_spent(runs: List[Any]) -> float:
    """Training FLOPs the configurations of ``runs`` spent (each its last report's, a member's mean)."""
    return float(sum(r.data.metrics.get(TRAIN_FLOPS, 0.0) for r in runs))


MAX_CONFIGURATIONS = 10_000
"""Configurations an arm budgeted in FLOPs may draw when ``samples`` is not given."""


def configurations(search) -> int:
    """The most configurations an arm draws: ``samples``; with ``budget_flops``, the budget decides, up to
    ``samples`` if the spec gives it."""
    if search.budget_flops is not None and "samples" not in search.model_fields_set:
        return MAX_CONFIGURATIONS
    return search.samples


class FlopBudget:
    """Tune's stopper of an arm budgeted in FLOPs: the search ends once its configurations have spent the budget
    (each one's latest ``train_flops``; ``spent``: what earlier attempts of the search spent)."""

    def __init__(self, budget: float, spent: float = 0.0) -> None:
        self.budget, self.spent, self.latest = budget, spent, {}

    def __call__(self, trial_id: str, result: Dict[str, Any]) -> bool:
        self.latest[trial_id] = float(result.get(TRAIN_FLOPS, 0.0))
        return False

    def stop_all(self) -> bool:
        return self.spent + sum(self.latest.values()) >= self.budget


def tune_domain(dist: Distribution):
    """The Ray Tune search domain of one dimension."""
    from ray import tune

    kind, value = dist.kind, getattr(dist, dist.kind)
    if kind == "randint":
        return tune.randint(value[0], value[1] + 1)
    return tune.choice(value) if kind == "choice" else getattr(tune, kind)(*value)


def param_space(arm: Arm) -> Dict[str, Any]:
    """Tune's nested param space of an arm (``{"model": {"w0": tune.uniform(…)}}``)."""
    return nest({path: tune_domain(dist) for path, dist in arm.space.items()})


def _trainable(arm: Arm, spec: SweepSpec, ctx: TrialContext):
    from ray import tune

    from runners.worker.tuning_trial import tuning_trial

    return tune.with_resources(tune.with_parameters(tuning_trial, arm=TuningArm(ctx, arm, spec.search.metric)),
                               trial_resources(spec))


def search_tuner(arm: Arm, spec: SweepSpec, ctx: TrialContext, storage: Path, name: str, concurrent: int,
                 done: Optional[List[Any]] = None, spent: int = 0, spent_flops: float = 0.0):
    """Step 2: the Tuner of one arm's search.  Rebuilding an interrupted search without Tune's state: ``done``
    are the configurations MLflow holds with an objective (Optuna is told them), ``spent`` how many of the
    budget ended already (failed ones too), ``spent_flops`` what they trained."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator
    from ray.tune.search.optuna import OptunaSearch

    from runners.engine.tune_events import SearchCallback

    search = spec.search
    done = done or []
    if search.algorithm == "optuna":
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        algorithm = OptunaSearch(seed=_drawn_on(search.seed, spent),
                                 points_to_evaluate=[nest(sampled_values(r, arm)) for r in done] or None,
                                 evaluated_rewards=[r.data.metrics["objective"] for r in done] or None)
    else:
        algorithm = BasicVariantGenerator(random_state=_drawn_on(search.seed, spent))
    scheduler, stop = None, None
    flops = search.budget_flops is not None and arm.step_flops  # a budget in FLOPs: ASHA's rungs in FLOPs too
    if search.scheduler is not None:
        asha = search.scheduler.asha
        unit = arm.step_flops if flops else 1
        scheduler = ASHAScheduler(time_attr=TRAIN_FLOPS if flops else "step", grace_period=asha.grace_steps * unit,
                                  reduction_factor=asha.reduction_factor, max_t=arm.steps * unit)
    if flops:
        stop = FlopBudget(search.budget_flops, spent_flops)
    return tune.Tuner(
        _trainable(arm, spec, ctx),
        param_space=param_space(arm),
        tune_config=tune.TuneConfig(search_alg=algorithm, scheduler=scheduler, metric="objective", mode="max",
                                    num_samples=configurations(search) - spent, max_concurrent_trials=concurrent,
                                    trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0, callbacks=[SearchCallback()],
                                  failure_config=tune.FailureConfig(max_failures=0), stop=stop,
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
    )


def _drawn_on(seed: int, spent: int) -> int:
    """The seed of a searcher rebuilt after ``spent`` configurations: it draws on instead of drawing those again
    (NumPy takes seeds below 2³²)."""
    return (seed + spent) % 2**32


def restore_tuner(arm: Arm, spec: SweepSpec, ctx: TrialContext, path: Path):
    """A resume's Tuner of an interrupted arm: Tune's own state, the searcher's included.  The search space is
    given again: Tune writes its experiment state before the searcher's, so a driver killed between the two
    leaves a searcher with no space to sample from (its saved state, where there is one, replaces it)."""
    from ray import tune

    return tune.Tuner.restore(str(path), trainable=_trainable(arm, spec, ctx), param_space=param_space(arm),
                              resume_errored=False, resume_unfinished=True)


def tune_state_is_whole(path: Path) -> bool:
    """Whether Tune can restore the search in ``path``: its newest experiment state has the searcher state
    saved with it, and (Optuna) that searcher suggested every configuration the experiment state holds.
    Tune writes the experiment state first and the searcher's after it, so a driver killed between the two
    leaves trials the searcher never heard of (restoring them fails in the searcher).  Anything unreadable
    counts as not whole: the search is then rebuilt from MLflow, which is the truth."""
    import pickle

    states = sorted(path.glob("experiment_state-*.json"))
    if not (path / "tuner.pkl").is_file() or not states:
        return False
    stamp = states[-1].name[len("experiment_state-"):-len(".json")]
    try:
        trial_ids = {json.loads(data[0])["trial_id"] for data in json.loads(states[-1].read_text())["trial_data"]}
        searcher = path / f"searcher-state-{stamp}.pkl"
        if searcher.is_file():  # Optuna (wrapped in Tune's SearchGenerator)
            if not (path / f"search_gen_state-{stamp}.json").is_file():
                return False
            with searcher.open("rb") as f:
                suggested = set(pickle.load(f)["_ot_trials"])
            return trial_ids <= suggested
        return (path / f"basic-variant-state-{stamp}.json").is_file()  # random search
    except Exception:  # noqa: BLE001 - a state Tune's next version writes differently is not whole to us
        return False


def set_aside(path: Path) -> Path:
    """Move an incomplete Tune state out of the way (its trial checkpoints are kept, never deleted)."""
    n = 1
    while (aside := path.with_name(f"{path.name}.incomplete-{n}")).exists():
        n += 1
    path.rename(aside)
    return aside


def _trial_dirname(trial) -> str:
    return trial.trial_id


def settle_runs(tuner, tracker: Tracker, exp_id: str, parent: str, arm: Arm) -> None:
    """After an arm's search, every tuning run ends as Tune saw its configuration end: a Tune error → FAILED,
    stopped before its last step → FINISHED with ``sobolev.stopped_at_step`` (the worker is stopped by
    ``SystemExit`` and may not get to say so itself), a run of a configuration searched again after an
    interruption → KILLED."""
    ended = {}
    for result in tuner.get_results():
        trial_id = (result.metrics or {}).get("trial_id") or Path(result.path).name
        ended[f"{arm.key}/{trial_id}"] = result
    for run in arm_runs(tracker, exp_id, arm, parent):
        if run.info.status != "RUNNING":
            continue
        result = ended.get(run.data.tags.get(TAG_KEY))
        if result is None:
            tracker.finish(run.info.run_id, "KILLED")
        elif result.error is not None:
            tracker.set_tags(run.info.run_id, {TAG_FAILURE: last_line(result.error)})
            tracker.finish(run.info.run_id, "FAILED")
        else:
            reached = int((result.metrics or {}).get("step", arm.steps))
            if reached < arm.steps:
                tracker.set_tags(run.info.run_id, {TAG_STOPPED_AT: reached})
            tracker.finish(run.info.run_id, "FINISHED")


def run_search(arms: List[Arm], spec: SweepSpec, tracker: Tracker, exp_id: str, parent: str, ctx: TrialContext,
               storage: Path, concurrent: int, view: View, restorable: bool = True
               ) -> Tuple[Dict[str, SearchResult], bool]:
    """Steps 1–3 for ``arms`` in turn; returns ``({arm key: result}, completed)`` (False: interrupted).
    ``restorable``: whether the Tune states under ``storage`` were written by this version."""
    progress = SearchProgress({a.label: a.steps for a in arms}, configurations(spec.search), spec.search.metric)
    results: Dict[str, SearchResult] = {}
    recorded = tracker.recorded_searches(exp_id, [a.key for a in arms])  # 1.
    for arm in arms:
        progress.current = arm.label
        result = recorded.get(arm.key)
        if result is None:
            path = storage / f"tune-{arm.key}"
            tuner = None
            if restorable and tune_state_is_whole(path):  # 2. a resume: Tune's state, the searcher's included
                tuner = restore_tuner(arm, spec, ctx, path)
            else:
                if path.exists():
                    set_aside(path)
                ended = [r for r in arm_runs(tracker, exp_id, arm, parent)
                         if r.info.status in ("FINISHED", "FAILED")]
                scored = [r for r in ended if r.info.status == "FINISHED" and "objective" in r.data.metrics]
                budget = spec.search.budget_flops
                if len(ended) < configurations(spec.search) and (budget is None or flops_spent(ended) < budget):
                    tuner = search_tuner(arm, spec, ctx, storage, path.name, concurrent, scored, len(ended),
                                         flops_spent(ended))
            if tuner is not None:
                if not fit_with_progress(tuner, progress, view):
                    return results, False
                settle_runs(tuner, tracker, exp_id, parent, arm)
            result = search_result(arm_runs(tracker, exp_id, arm, parent), arm, spec.search.metric)  # 3.
        tracker.record_search(parent, result)
        results[arm.key] = result
    return results, True

