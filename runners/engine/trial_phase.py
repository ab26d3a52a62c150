"""The trials of an invocation on Ray Tune, then their states read back from MLflow.

Algorithm (``train_trials``):
  1. The trials still to train: the invocation's, less those finished, diverged or running elsewhere since.
  2. Their interrupted (KILLED) or failed runs of earlier invocations move under this parent: each goes on in its
     own run from its latest checkpoint (Tune's, or the newest file an earlier invocation left), never in a
     second run.
  3. A ``resume`` restores Tune's experiment (``Tuner.restore(…, resume_errored=True)``) when its state is whole
     and of this version; otherwise a new Tuner runs the trials: a grid over chains of packs of trial keys
     (``run.pack`` each; short trials chained, ``runners.plan.chains``), ``tune.with_resources``,
     ``reuse_actors``, retries from checkpoints.
  4. ``tuner.fit()`` under the caller's view.
  5. Every trial's state from MLflow (not from Tune's ResultGrid, which calls interrupted trials finished after
     SIGINT): runs left RUNNING end FAILED (Tune gave up on them) or KILLED (``resume`` reopens them).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict, List, Optional

from runners.engine.cluster import trial_resources
from runners.engine.invocation import Invocation, select_todo
from runners.engine.outcome import FAILED, FINISHED, INTERRUPTED, PENDING, SweepOutcome, TrialRow
from runners.engine.progress import SweepProgress, fit_with_progress
from runners.plan.chains import chain_packs
from runners.plan.estimate import SweepEstimate, estimate_seconds
from runners.plan.trials import PlannedTrial, pack_trials
from runners.spec.schema import SweepSpec
from runners.store.layout import TAG_FAILURE, TAG_KEY, TIME_PREFIX, timing
from runners.store.tracker import Tracker, TrialRuns
from runners.worker.checkpoints import latest_checkpoints
from runners.worker.contract import CHAIN, PackNames, SweepTrials, TrialContext, pack_dirname, pack_keys
from sobolev.errors import last_line


def trial_context(inv: Invocation) -> TrialContext:
    """What every trial of the invocation is told: where to log, how often to report and checkpoint."""
    run = inv.spec.run
    return TrialContext(tracking_uri=inv.tracker.uri, experiment_id=inv.experiment_id or "", parent_run_id=inv.parent,
                        report_every=run.report_every, checkpoint_every=run.checkpoint_every,
                        cpus=inv.spec.resources.cpu, max_failures=run.max_failures)


def continue_unfinished(tracker: Tracker, parent: str, todo: List[PlannedTrial], runs: TrialRuns) -> List[str]:
    """Step 2: interrupted (KILLED) and failed trial runs of earlier invocations move under ``parent``; returns the
    keys continued."""
    continued = []
    for t in todo:
        run = runs.unfinished.get(t.key)
        if run is None or run.diverged or run.status == "RUNNING":
            continue
        if run.parent != parent:
            tracker.adopt(run.run_id, parent)
        continued.append(t.key)
    return continued


def trials_state_is_whole(path: Path) -> bool:
    """Whether Tune can restore the trials' experiment in ``path``: ``tuner.pkl`` and an experiment state whose
    every trial is a pack of this sweep (Tune writes ``tuner.pkl`` before its first experiment state, and
    ``Tuner.can_restore`` accepts a folder with ``tuner.pkl`` alone).  Anything unreadable is not whole."""
    states = sorted(path.glob("experiment_state-*.json"))
    if not (path / "tuner.pkl").is_file() or not states:
        return False
    try:
        trials = json.loads(states[-1].read_text())["trial_data"]
        return bool(trials) and all(CHAIN in json.loads(data[0])["config"] for data in trials)
    except Exception:  # noqa: BLE001 - a state Tune's next version writes differently is not whole to us
        return False


def _trainable(spec: SweepSpec, trials: SweepTrials):
    """``sobolev_trial`` with the invocation's typed trials (``tune.with_parameters``: one copy in Ray's object
    store) and the spec's resources per Tune trial."""
    from ray import tune

    from runners.worker.trial import sobolev_trial

    return tune.with_resources(tune.with_parameters(sobolev_trial, sweep=trials), trial_resources(spec))


def _trial_dirname(trial) -> str:
    return pack_dirname(trial.config)


def new_tuner(inv: Invocation, trials: List[PlannedTrial], checkpoints: Dict[str, str]):
    """Step 3: a Tuner over ``trials`` (a grid of packs, ``run.pack`` each), resumable from the invocation's
    folder."""
    from ray import tune

    from runners.engine.tune_events import ProgressCallback

    spec = inv.spec
    chains = chain_packs(pack_trials(trials, spec.run.pack), estimate_seconds, inv.concurrency(),
                         spec.run.chain_seconds)
    longest = max(len(chain) for chain in chains)
    experiment = Path(inv.state.experiment_path)
    return tune.Tuner(
        _trainable(spec, SweepTrials.of(trials, trial_context(inv), checkpoints)),
        param_space={CHAIN: tune.grid_search([[[t.key for t in pack] for pack in chain] for chain in chains])},
        tune_config=tune.TuneConfig(
            reuse_actors=True,
            max_concurrent_trials=inv.concurrency(),
            trial_name_creator=PackNames({t.key: t.name for t in trials}),
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=experiment.name,
            storage_path=str(experiment.parent),
            # each pack of a chain has its own retries (the worker counts them): the chain may need them all
            failure_config=tune.FailureConfig(max_failures=(spec.run.max_failures + 1) * longest - 1),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[ProgressCallback()],
            verbose=0,
        ),
    )


def restored_tuner(inv: Invocation, checkpoints: Dict[str, str]):
    """Step 3 of a ``resume``: Tune's own experiment of the invocation, its trials given again."""
    from ray import tune

    trials = SweepTrials.of(inv.todo, trial_context(inv), checkpoints)
    return tune.Tuner.restore(inv.state.experiment_path, trainable=_trainable(inv.spec, trials), resume_errored=True)


def train_trials(inv: Invocation) -> SweepOutcome:
    """Steps 1–5."""
    t0 = time.time()
    tracker, outcome = inv.tracker, inv.outcome
    runs = tracker.trial_runs(inv.experiment_id)
    pending = select_todo(inv.todo, runs, inv.opts.rerun)  # 1.
    continued = continue_unfinished(tracker, inv.parent, pending, runs)  # 2.
    checkpoints = latest_checkpoints(inv.root, continued)
    if inv.restore_tune and trials_state_is_whole(Path(inv.state.experiment_path)):  # 3.
        tuner = restored_tuner(inv, checkpoints)
    else:
        tuner = new_tuner(inv, pending, checkpoints)
    outcome.estimate = SweepEstimate.of(pending, inv.concurrency(), inv.overhead())
    progress = SweepProgress({t.key: t.name for t in inv.todo}, outcome.estimate.wall_seconds, outcome.skipped)
    pending_keys = {t.key for t in pending}
    for t in inv.todo:  # finished before (an earlier attempt of this invocation): counted, not trained
        if t.key not in pending_keys:
            progress.state[t.key] = "done"
    t_tune = inv.phase_done("launch", t0)
    completed = fit_with_progress(tuner, progress, inv.view)  # 4.
    inv.phase_done("tune", t_tune)
    return collect(inv, tuner, completed)


def _tune_errors(tuner) -> Dict[str, str]:
    """trial_key → last line of the error of trials that Tune gave up on."""
    errors: Dict[str, str] = {}
    try:
        grid = tuner.get_results()
    except Exception:  # pragma: no cover - no results when interrupted very early
        return errors
    for result in grid:
        if result.error is not None and result.config and CHAIN in result.config:
            for key in pack_keys(result.config):
                errors[key] = last_line(result.error)
    return errors


def _row(t: PlannedTrial, run, status: str, failure: str) -> TrialRow:
    metrics = run.data.metrics
    return TrialRow(name=t.name, axes=dict(t.axes), status=status, test_psnr=metrics.get("test_psnr"),
                    test_ssim=metrics.get("test_ssim"), train_seconds=metrics.get(TIME_PREFIX + "train_seconds"),
                    failure=run.data.tags.get(TAG_FAILURE, failure))


def collect(inv: Invocation, tuner, completed: bool) -> SweepOutcome:
    """Step 5, then the parent run closed: FINISHED, FAILED (some trial failed) or KILLED (interrupted)."""
    t_collect = time.time()
    tracker, outcome, parent = inv.tracker, inv.outcome, inv.parent
    errors = _tune_errors(tuner)
    runs = {r.data.tags.get(TAG_KEY): r for r in tracker.children(inv.experiment_id, parent)}
    for t in inv.todo:
        run = runs.get(t.key)
        if run is None:
            outcome.statuses[t.key] = PENDING
            continue
        status = run.info.status
        if status == "RUNNING":
            if completed and t.key in errors:
                tracker.set_tags(run.info.run_id, {TAG_FAILURE: errors[t.key]})
                tracker.finish(run.info.run_id, FAILED)
                status = FAILED
            else:
                tracker.finish(run.info.run_id, "KILLED")  # `resume` reopens it
                status = INTERRUPTED
        elif status == "KILLED":
            status = INTERRUPTED
        outcome.statuses[t.key] = status
        outcome.rows.append(_row(t, run, status, errors.get(t.key, "")))
        if status == FINISHED:
            outcome.train_seconds += float(run.data.metrics.get(TIME_PREFIX + "train_seconds", 0.0))
    inv.phase_done("collect", t_collect)
    return close(inv)


def close(inv: Invocation, status: Optional[str] = None) -> SweepOutcome:
    """The parent run closed with the invocation's counts and times (``status``: else from the outcome)."""
    outcome = inv.outcome
    outcome.wall_seconds = time.time() - inv.t_start
    if status is None:
        status = (FAILED if outcome.count(FAILED) else FINISHED) if outcome.complete else "KILLED"
    estimate = outcome.estimate
    inv.tracker.log_metrics(inv.parent, [{
        "step": 0, "trials_finished": outcome.count(FINISHED), "trials_failed": outcome.count(FAILED),
        "concurrency": inv.concurrency(),
        "trials_interrupted": outcome.count(INTERRUPTED) + outcome.count(PENDING),
        **timing({"wall_seconds": outcome.wall_seconds, "train_seconds_sum": outcome.train_seconds,
                  **({"estimated_train_seconds": estimate.train_seconds,
                      "estimated_wall_seconds": estimate.wall_seconds} if estimate else {}),
                  **{f"{phase}_seconds": v for phase, v in outcome.phases.items()}}),
    }], int(time.time() * 1000))
    inv.tracker.finish(inv.parent, status)
    return outcome
