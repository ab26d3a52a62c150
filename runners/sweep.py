"""The sweep engine: plan, check, then run the trials on Ray Tune with results in MLflow.

Algorithm (``sobolev-sweep run SPEC``):
  1. Load and validate the spec, expand the grid, open every dataset (``runners.plan``).
  2. Resolve the tracking URI to an absolute one and check it answers; check the experiment's
     shape (read-only).  Nothing is written to MLflow before every check has passed.
  3. Skip the trials whose ``trial_key`` already has a FINISHED child run (unless ``rerun``).
  4. Connect to Ray (a local one started for the run, or ``--address``); refuse a GPU request
     that the cluster cannot satisfy instead of leaving trials PENDING forever.
  5. Create the experiment and a parent run; run the trials with ``tune.Tuner`` (grid over
     trials, ``tune.with_resources``, ``reuse_actors``, retries from checkpoints).
  6. Read every trial's state back from MLflow (not from Tune's ResultGrid, which calls
     interrupted trials finished after SIGINT) and print the summary.
``resume`` continues the same parent run: a tuned comparison's interrupted search first
(``runners.tuning``), then the trials, restoring Tune's experiment (``Tuner.restore(...,
resume_errored=True)``) when its state is there and of this version, else starting the
unfinished trials afresh.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from rich.table import Table

from runners.checkpoints import latest_checkpoints
from runners.cluster import check_local_target, connect_ray, shutdown_ray, trial_resources
from runners.console import console, out
from runners.contract import PACK, PackNames, SweepTrials, TrialContext, pack_dirname, pack_keys
from runners.estimate import ORCHESTRATION_SECONDS, SweepEstimate, estimate_seconds
from runners.plan import PlannedTrial, SweepPlan, pack_trials, plan_sweep, searched_members
from runners.progress import SweepProgress, fit_with_progress
from runners.spec import SweepSpec, parse_spec_text, read_spec_text
from runners.tracking import (TAG_DRIVER, TAG_FAILURE, TAG_KEY, TIME_PREFIX, Tracker, check_reachable, diverged,
                              driver_gone, driver_identity, resolve_tracking_uri, store_exists, timing)
from runners.tuning import record_search, recorded_searches, run_search, tuned_values
from sobolev.config import flatten
from sobolev.errors import ConfigError
from sobolev.trainers.config import COMPILE_AUTO_POINT_STEPS

STATE_FILE = "latest.json"
STATE_FORMAT = 3
"""Format of the Tune state a ``resume`` can restore: 2 = member keys as configs, typed trials through
``tune.with_parameters`` (``runners.contract``); 3 = Tune callbacks in ``runners.tune_events``."""


@dataclass
class SweepOptions:
    """Command-line settings of ``run`` / ``resume`` / ``plan``."""

    overrides: Sequence[str] = ()
    """``--set key.path=value`` assignments."""
    address: Optional[str] = None
    """Ray cluster to join (``HOST:PORT`` or ``auto``); None starts a local Ray."""
    tracking_uri: Optional[str] = None
    """MLflow store; default ``sqlite:///mlflow.db`` in the working directory."""
    max_concurrent: Optional[int] = None
    """At most this many trials at once (overrides the spec's ``run.max_concurrent``)."""
    rerun: bool = False
    """Run trials even when a FINISHED run with their key exists."""
    storage: Optional[str] = None
    """Where Tune keeps experiment state and checkpoints; default ``./.sobolev``."""
    live: Optional[bool] = None
    """Live view (default: when stderr is a terminal)."""


@dataclass
class SweepOutcome:
    spec: SweepSpec
    planned: int
    skipped: int
    statuses: Dict[str, str] = field(default_factory=dict)
    """trial_key → FINISHED / FAILED / INTERRUPTED / PENDING."""
    wall_seconds: float = 0.0
    train_seconds: float = 0.0
    parent_run_id: Optional[str] = None
    experiment_id: Optional[str] = None
    tracking_uri: str = ""
    rows: List[Dict[str, Any]] = field(default_factory=list)
    phases: Dict[str, float] = field(default_factory=dict)
    """Wall seconds of the driver's phases: prepare (plan, checks), ray_start, launch (parent run, Tuner,
    estimate), search (a tuned comparison's phase 1), tune (the trials), collect (states from MLflow)."""
    searches: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    """A tuned comparison: arm key → its search's result (``runners.tuning.search_result``)."""
    search_interrupted: bool = False
    """Interrupted while tuning: ``resume`` continues the search."""
    estimate: Optional[SweepEstimate] = None
    """The estimate of the trials this invocation launched."""

    def count(self, status: str) -> int:
        return sum(1 for s in self.statuses.values() if s == status)

    @property
    def complete(self) -> bool:
        return not self.search_interrupted and all(s in ("FINISHED", "FAILED") for s in self.statuses.values())

    @property
    def exit_code(self) -> int:
        """0: every trial finished; 1: some failed; 130: interrupted (resume continues it)."""
        if not self.complete:
            return 130
        return 1 if self.count("FAILED") else 0


# -- shared checks ---------------------------------------------------------------------------

def experiment_shape(spec: SweepSpec) -> Dict[str, Any]:
    axes = ["dataset", "activation", "supervision", "sampling", "seed", *sorted(spec.grid.extra)]
    return {"task": spec.task, "axes": axes}


def prepare(spec_path: str, opts: SweepOptions):
    """Steps 1–3: everything that can fail on bad input, with no writes anywhere."""
    text = read_spec_text(spec_path)
    spec = parse_spec_text(text, spec_path, opts.overrides)
    plan = plan_sweep(spec, spec_path)
    if not opts.address:
        check_local_target(spec, plan.every_trial(), spec_path)
    check_storage(storage_root(opts, spec))
    try:
        uri = resolve_tracking_uri(opts.tracking_uri)
        check_reachable(uri)
    except ConfigError as exc:
        raise exc.in_source("--tracking-uri") from None
    tracker = Tracker(uri)
    exp_id = None
    if store_exists(uri):  # reading a sqlite store that is not there would create it
        try:
            exp_id = tracker.check_shape(spec.name, experiment_shape(spec))
        except ConfigError as exc:
            raise ConfigError(exc.message, path=("name",), source=spec_path) from None
    finished = tracker.finished_trial_keys(exp_id)
    return text, plan, uri, tracker, exp_id, finished


def storage_root(opts: SweepOptions, spec: SweepSpec) -> Path:
    return (Path(opts.storage or ".sobolev").expanduser().resolve()) / spec.name


def check_storage(root: Path) -> None:
    """``--storage`` must be (or be creatable as) a writable folder: refused before anything is written."""
    for path in (root, *root.parents):
        if path.exists():
            if not path.is_dir():
                raise ConfigError(f"{path} is a file; Tune's state and checkpoints need a folder", source="--storage")
            if not os.access(path, os.W_OK | os.X_OK):
                raise ConfigError(f"{path} is not writable", source="--storage")
            return


def settle_store(tracker: Tracker, exp_id: Optional[str]) -> Dict[str, Any]:
    """Reconcile the experiment (runs of invocations whose driver is gone end KILLED, ``Tracker.reconcile``),
    say so, and return trial_key → its latest unfinished run."""
    for parent in tracker.reconcile(exp_id):
        out.print(f"reconciled: {parent.info.run_name} was left RUNNING by a driver that is gone; its "
                  "interrupted trials continue from their checkpoints", soft_wrap=True)
    return tracker.unfinished_trials(exp_id)


def select_todo(trials: List[PlannedTrial], finished: Dict[str, str], unfinished: Dict[str, Any],
                rerun: bool) -> List[PlannedTrial]:
    """The trials to train: not FINISHED, not diverged (divergence is deterministic), not running in another live
    invocation; with ``rerun`` also the finished and the diverged."""
    busy = {k for k, r in unfinished.items() if r.info.status == "RUNNING"}
    done = set(finished) | {k for k, r in unfinished.items() if diverged(r)}
    return [t for t in trials if t.key not in busy and (rerun or t.key not in done)]


def continue_unfinished(tracker: Tracker, parent: str, todo: List[PlannedTrial], unfinished: Dict[str, Any]
                        ) -> List[str]:
    """Interrupted (KILLED) and failed trial runs of earlier invocations move under ``parent``: their trial goes on
    in the same run (from its latest checkpoint), never in a second one.  Returns the keys continued."""
    continued = []
    for t in todo:
        run = unfinished.get(t.key)
        if run is None or diverged(run) or run.info.status == "RUNNING":
            continue
        if run.data.tags.get("mlflow.parentRunId") != parent:
            tracker.adopt(run.info.run_id, parent)
        continued.append(t.key)
    return continued


def check_not_running(tracker: Tracker, parent: str, spec_path: str) -> None:
    """``resume`` of an invocation whose driver is alive on this host is refused (two drivers, one parent)."""
    run = tracker.client.get_run(parent)
    identity = run.data.tags.get(TAG_DRIVER)
    if run.info.status == "RUNNING" and driver_gone(identity) is False:
        raise ConfigError(f"the sweep is still running (driver {identity}); stop it, or wait", source=spec_path)


def concurrency(spec: SweepSpec, opts: SweepOptions, cpus: int) -> int:
    by_cpu = max(1, int(cpus // spec.resources.cpu))
    limit = opts.max_concurrent or spec.run.max_concurrent or by_cpu
    return max(1, min(limit, by_cpu))


# -- plan --------------------------------------------------------------------------------------

def show_plan(spec_path: str, opts: SweepOptions) -> SweepPlan:
    """``sobolev-sweep plan``: the trials, their count, which are finished, and the cost; a tuned comparison:
    its search first (per arm: what it tunes, its budget and its cost), then its evaluation trials."""
    _, plan, uri, tracker, exp_id, finished = prepare(spec_path, opts)
    spec = plan.spec
    conc = concurrency(spec, opts, os.cpu_count() or 1)
    recorded = recorded_searches(tracker, exp_id, plan.arms)
    search_est = show_search_plan(plan, recorded) if plan.arms else 0.0
    if plan.arms and len(recorded) == len(plan.arms):
        plan = plan_sweep(spec, spec_path, tuned_values(plan.arms, recorded))
    elif plan.arms:
        out.print("evaluation: the trials below with each arm's tuned values (their keys are known after tuning; "
                  "the costs assume the untuned settings)", soft_wrap=True)
    table = Table(title=f"sweep {spec.name!r} ({spec.task}) — {spec_path}")
    for col in ("#", "trial", "trial_key", "points", "steps", "compile", "est. s", "in MLflow"):
        table.add_column(col, justify="right" if col in ("#", "points", "steps", "est. s") else "left")
    unfinished = tracker.unfinished_trials(exp_id)
    to_run = {t.key for t in select_todo(plan.trials, finished, unfinished, opts.rerun)}
    total_est = 0.0
    todo = len(to_run)
    for i, t in enumerate(plan.trials):
        est = estimate_seconds(t)
        if t.key in to_run:
            total_est += est
        if i < 40 or len(plan.trials) <= 60:
            table.add_row(str(i + 1), t.name, t.key, str(t.points), str(t.config.steps),
                          "yes" if t.config.compiles(t.points) else "no", f"{est:.1f}",
                          _store_state(t.key, finished, unfinished))
    out.print(table)
    if len(plan.trials) > 60:
        out.print(f"… and {len(plan.trials) - 40} more trials")
    compiled = sum(1 for t in plan.trials if t.key in to_run and t.config.compiles(t.points))
    if compiled:
        out.print(f"torch.compile: {compiled} of the {todo} trials to run (`compile: auto` compiles trials of at "
                  f"least {COMPILE_AUTO_POINT_STEPS:,} steps × points, where it repays its first step; the "
                  f"autograd derivative path stays eager)", soft_wrap=True)
    if spec.run.pack > 1:
        packs = pack_trials([t for t in plan.trials if t.key in to_run], spec.run.pack)
        out.print(f"packed (run.pack={spec.run.pack}): {todo} trials as {len(packs)} batched Tune trials "
                  f"of sizes {', '.join(str(n) for n in sorted({len(p) for p in packs}, reverse=True))}", soft_wrap=True)
    out.print(
        f"{len(plan.trials)} trials ({plan.dropped} dropped by include/exclude), "
        f"{len(plan.trials) - todo} already FINISHED, diverged or running in {uri}, {todo} to run.\n"
        f"Estimated cost on this machine: {total_est / 60:.1f} trial-minutes of training, "
        f"about {total_est / conc / 60:.1f} min wall time with {conc} concurrent trial(s) "
        f"(plus ~{ORCHESTRATION_SECONDS * todo / conc / 60:.1f} min orchestration).",
        soft_wrap=True,
    )
    if search_est:
        out.print(f"With the search: about {(search_est + total_est) / conc / 60:.1f} min wall time in all.")
    return plan


def _store_state(key: str, finished: Dict[str, str], unfinished: Dict[str, Any]) -> str:
    """What the store has of a trial, as ``plan`` shows it."""
    if key in finished:
        return "[green]FINISHED[/]"
    run = unfinished.get(key)
    if run is None:
        return ""
    if diverged(run):
        return "[red]diverged[/] (--rerun trains it again)"
    return {"RUNNING": "[yellow]RUNNING[/] (another invocation)", "KILLED": "interrupted: continues"}.get(
        run.info.status, f"{run.info.status}: trains again")


def show_search_plan(plan: SweepPlan, recorded: Dict[str, Dict[str, Any]]) -> float:
    """Phase 1 of a tuned comparison in ``plan``: per arm, the searched fields, the budget and the cost
    (``recorded``: the arms searched before). Returns the search's estimated trial-seconds."""
    search = plan.spec.search
    asha = search.scheduler.asha if search.scheduler is not None else None
    scheduler = f"ASHA (grace {asha.grace_steps} steps, ×1/{asha.reduction_factor:g} per rung)" if asha else "none"
    table = Table(title=f"search ({search.algorithm}, scheduler {scheduler}): every arm gets {search.samples} "
                        f"configurations, each trained on {', '.join(search.datasets)} × seeds "
                        f"{', '.join(map(str, search.seeds))} as one batched network; objective: mean held-out "
                        f"{search.metric}")
    for col in ("arm", "searched", "not searched (do not apply)", "members", "steps (budget)", "est. s", "in MLflow"):
        table.add_column(col)
    total = 0.0
    for arm in plan.arms:
        budget = (asha_steps(search.samples, asha.grace_steps, asha.reduction_factor, arm.steps) if asha
                  else float(search.samples * arm.steps))
        est = sum(estimate_seconds(m) for m in arm.members) * budget / arm.steps
        done = arm.key in recorded
        total += 0.0 if done else est
        searched = ", ".join(f"{k} {d.kind}{d.candidates() if d.kind != 'choice' else d.choice}"
                             for k, d in arm.space.items())
        skipped = ", ".join(k for k in search.space if k not in arm.space) or "—"
        table.add_row(arm.label, searched, skipped, str(len(arm.members)), f"{budget:.0f}", f"{est:.1f}",
                      "[green]searched[/]" if done else "")
    out.print(table)
    return total


def asha_steps(samples: int, grace: int, eta: float, max_t: int) -> float:
    """Steps ASHA trains ``samples`` configurations for, in expectation: ``samples / eta^k`` of them reach
    rung ``k`` at ``grace · eta^k`` steps, and the survivors of the last rung go on to ``max_t``."""
    rungs = [grace * eta**k for k in range(64) if grace * eta**k < max_t] + [max_t]
    total, reached = 0.0, 0.0
    for k, milestone in enumerate(rungs):
        total += samples / eta**k * (milestone - reached)
        reached = milestone
    return total


# -- run / resume --------------------------------------------------------------------------------

def _trainable(spec: SweepSpec, trials: SweepTrials):
    """``sobolev_trial`` with the invocation's typed trials (``tune.with_parameters``: one copy in Ray's object
    store) and the spec's resources per Tune trial."""
    from ray import tune

    from runners.trial import sobolev_trial

    return tune.with_resources(tune.with_parameters(sobolev_trial, sweep=trials), trial_resources(spec))


def _trial_dirname(trial) -> str:
    return pack_dirname(trial.config)


def _live(opts: SweepOptions) -> bool:
    return console.is_terminal if opts.live is None else opts.live


def _write_state(root: Path, state: Dict[str, Any]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, root / STATE_FILE)


def _read_state(root: Path, spec_path: str) -> Dict[str, Any]:
    try:
        return json.loads((root / STATE_FILE).read_text())
    except FileNotFoundError:
        raise ConfigError(f"nothing to resume: no sweep state in {root} (start it with "
                          f"`sobolev-sweep run {spec_path}`)", source=spec_path) from None


def run_sweep(spec_path: str, opts: SweepOptions) -> SweepOutcome:
    """``sobolev-sweep run``: steps 1–6 (a tuned comparison: its search first, ``runners.tuning``)."""
    t_start = time.time()
    spec_text, plan, uri, tracker, exp_id, finished = prepare(spec_path, opts)
    spec = plan.spec
    unfinished = settle_store(tracker, exp_id)
    searches = recorded_searches(tracker, exp_id, plan.arms)
    to_search = [a for a in plan.arms if a.key not in searches]
    if plan.arms and not to_search:  # every arm was tuned before: the evaluation trials are known now
        plan = plan_sweep(spec, spec_path, tuned_values(plan.arms, searches))
    todo = select_todo(plan.trials, finished, unfinished, opts.rerun) if not to_search else []
    skipped = len(plan.trials) - len(todo) if not to_search else 0
    outcome = SweepOutcome(spec=spec, planned=len(plan.trials), skipped=skipped, tracking_uri=uri,
                           searches=searches, experiment_id=exp_id)
    if not to_search and not todo:
        out.print(f"all {len(plan.trials)} trials of {spec.name!r} are already FINISHED (or diverged) in {uri}; "
                  "nothing to run (--rerun forces)", soft_wrap=True)
        return outcome
    outcome.phases["prepare"] = time.time() - t_start
    resources = connect_ray(spec, [*todo, *searched_members(to_search)], opts.address, spec_path)
    outcome.phases["ray_start"] = time.time() - t_start - outcome.phases["prepare"]
    try:

        # 5. experiment, parent run, state for resume
        exp_id = outcome.experiment_id = tracker.ensure_experiment(spec.name, experiment_shape(spec))
        invocation = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        parent = tracker.create_parent(
            exp_id,
            f"{spec.name}-{invocation}",
            {"spec": spec_path, "task": spec.task, "trials": len(todo), "skipped": skipped,
             **flatten(spec.trial.model_dump(exclude_unset=True), "trial.")},
            {"sobolev.spec_path": str(Path(spec_path).resolve()), "sobolev.overrides": " ".join(opts.overrides)},
        )
        outcome.parent_run_id = parent
        root = storage_root(opts, spec)
        ctx = _trial_context(spec, uri, exp_id, parent)
        conc = concurrency(spec, opts, int(resources.get("CPU", 1)))
        state = {"format": STATE_FORMAT, "experiment_path": str(root / invocation), "parent_run_id": parent,
                 "experiment_id": exp_id, "tracking_uri": uri, "spec_path": str(Path(spec_path).resolve()),
                 "overrides": list(opts.overrides), "phase": "search" if to_search else "evaluate",
                 "trial_keys": [t.key for t in todo], "started": t_start}
        _write_state(root, state)
        for arm in plan.arms:  # searches of earlier invocations, reused: recorded for this one's report too
            if arm.key in searches:
                record_search(tracker, parent, arm, searches[arm.key])
        if to_search:  # phase 1: tune every arm, then plan the evaluation with the tuned values
            t_search = time.time()
            found, completed = run_search(to_search, spec, tracker, exp_id, parent, ctx, root / invocation, conc,
                                          _live(opts))
            outcome.searches.update(found)
            outcome.phases["search"] = time.time() - t_search
            if not completed:
                return _interrupted_search(outcome, tracker, parent, t_start)
            plan = plan_sweep(spec, spec_path, tuned_values(plan.arms, outcome.searches))
            todo = select_todo(plan.trials, finished, unfinished, opts.rerun)
            outcome.planned, outcome.skipped = len(plan.trials), len(plan.trials) - len(todo)
            _write_state(root, {**state, "phase": "evaluate", "trial_keys": [t.key for t in todo]})
        tracker.log_plan(parent, spec_text, list(opts.overrides), [t.summary() for t in plan.trials])
        if not todo:  # tuned values that earlier evaluations already ran
            tracker.finish(parent, "FINISHED")
            outcome.wall_seconds = time.time() - t_start
            return outcome
        continued = continue_unfinished(tracker, parent, todo, unfinished)
        tuner = _new_tuner(spec, todo, ctx, root, invocation, conc, latest_checkpoints(root, continued))
        outcome.estimate = SweepEstimate.of(todo, conc)
        progress = SweepProgress({t.key: t.name for t in todo}, outcome.estimate.wall_seconds, outcome.skipped)
        t_tune = time.time()
        outcome.phases["launch"] = t_tune - t_start - outcome.phases["prepare"] - outcome.phases["ray_start"]
        completed = fit_with_progress(tuner, progress, _live(opts))
        outcome.phases["tune"] = time.time() - t_tune
        return _finish(outcome, tracker, exp_id, parent, todo, tuner, completed, t_start)
    finally:
        shutdown_ray()


def resume_sweep(spec_path: str, opts: SweepOptions) -> SweepOutcome:
    """``sobolev-sweep resume``: continue the latest invocation of the spec where it stopped."""
    t_start = time.time()
    spec = parse_spec_text(read_spec_text(spec_path), spec_path, opts.overrides)
    root = storage_root(opts, spec)
    state = _read_state(root, spec_path)
    uri = state["tracking_uri"]
    if opts.tracking_uri and resolve_tracking_uri(opts.tracking_uri) != uri:
        raise ConfigError(f"the sweep being resumed logs to {uri}", source="--tracking-uri")
    check_reachable(uri)
    tracker = Tracker(uri)
    exp_id, parent = state["experiment_id"], state["parent_run_id"]
    ran_spec = parse_spec_text(read_spec_text(state["spec_path"]), state["spec_path"], state["overrides"])
    plan = plan_sweep(ran_spec, state["spec_path"])
    if not opts.address:
        check_local_target(ran_spec, plan.every_trial(), spec_path)
    searching = state.get("phase") == "search"
    todo = [t for t in plan.trials if t.key in set(state["trial_keys"])]
    outcome = SweepOutcome(spec=ran_spec, planned=len(todo), skipped=0, tracking_uri=uri, parent_run_id=parent,
                           experiment_id=exp_id)
    unfinished = settle_store(tracker, exp_id)
    check_not_running(tracker, parent, spec_path)
    resources = connect_ray(ran_spec, [*todo, *searched_members(plan.arms)], opts.address, spec_path)
    try:
        from ray import tune

        tracker.set_tags(parent, {TAG_DRIVER: driver_identity()})  # this driver holds the invocation now
        tracker.client.update_run(parent, status="RUNNING")
        path = state["experiment_path"]
        ctx = _trial_context(plan.spec, uri, exp_id, parent)
        if plan.arms:  # a tuned comparison: the search first (restored where it stopped), then its evaluation
            conc = concurrency(ran_spec, opts, int(resources.get("CPU", 1)))
            outcome.searches, completed = run_search(plan.arms, ran_spec, tracker, exp_id, parent, ctx, Path(path),
                                                     conc, _live(opts))
            if not completed:
                return _interrupted_search(outcome, tracker, parent, t_start)
            plan = plan_sweep(ran_spec, state["spec_path"], tuned_values(plan.arms, outcome.searches))
            if searching:
                todo = select_todo(plan.trials, tracker.finished_trial_keys(exp_id),
                                   tracker.unfinished_trials(exp_id), rerun=False)
                tracker.log_plan(parent, read_spec_text(state["spec_path"]), state["overrides"],
                                 [t.summary() for t in plan.trials])
                _write_state(root, {**state, "phase": "evaluate", "trial_keys": [t.key for t in todo]})
            else:
                todo = [t for t in plan.trials if t.key in set(state["trial_keys"])]
            outcome.planned = len(todo)
        finished = tracker.finished_trial_keys(exp_id)
        done = set(finished) | {k for k, r in unfinished.items() if diverged(r)}
        if not todo:
            tracker.finish(parent, "FINISHED")
            return outcome
        pending = [t for t in todo if t.key not in done]
        continue_unfinished(tracker, parent, pending, unfinished)
        earlier = latest_checkpoints(root, [t.key for t in pending])
        if not searching and state.get("format") == STATE_FORMAT and tune.Tuner.can_restore(path):
            tuner = tune.Tuner.restore(path, trainable=_trainable(plan.spec, SweepTrials.of(todo, ctx, earlier)),
                                       resume_errored=True)
        else:  # no Tune state (the driver died first), or one of an older version: start the unfinished afresh
            conc = concurrency(ran_spec, opts, int(resources.get("CPU", 1)))
            tuner = _new_tuner(plan.spec, pending, ctx, root, Path(path).name, conc, earlier)
        progress = SweepProgress({t.key: t.name for t in todo}, 0.0, 0)
        for key in done & progress.names.keys():  # finished before the interruption: counted, not re-run
            progress.state[key] = "done"
        completed = fit_with_progress(tuner, progress, _live(opts))
        return _finish(outcome, tracker, exp_id, parent, todo, tuner, completed, t_start)
    finally:
        shutdown_ray()


def _interrupted_search(outcome: SweepOutcome, tracker: Tracker, parent: str, t_start: float) -> SweepOutcome:
    """Ctrl-C while tuning: the parent run KILLED, ``resume`` continues the search."""
    outcome.search_interrupted = True
    outcome.wall_seconds = time.time() - t_start
    tracker.finish(parent, "KILLED")
    return outcome


def _new_tuner(spec: SweepSpec, trials: List[PlannedTrial], ctx: TrialContext, root: Path, name: str,
               concurrent: int, checkpoints: Optional[Dict[str, str]] = None):
    """A Tuner over ``trials`` (a grid of packs of planned trials, ``run.pack`` each), resumable from ``root / name``."""
    from ray import tune

    from runners.tune_events import ProgressCallback

    packs = [[t.key for t in pack] for pack in pack_trials(trials, spec.run.pack)]
    return tune.Tuner(
        _trainable(spec, SweepTrials.of(trials, ctx, checkpoints)),
        param_space={PACK: tune.grid_search(packs)},
        tune_config=tune.TuneConfig(
            reuse_actors=True,
            max_concurrent_trials=concurrent,
            trial_name_creator=PackNames({t.key: t.name for t in trials}),
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(root),
            failure_config=tune.FailureConfig(max_failures=spec.run.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[ProgressCallback()],
            verbose=0,
        ),
    )


def _trial_context(spec: SweepSpec, uri: str, exp_id: str, parent: str) -> TrialContext:
    return TrialContext(tracking_uri=uri, experiment_id=exp_id, parent_run_id=parent,
                        report_every=spec.run.report_every, checkpoint_every=spec.run.checkpoint_every,
                        cpus=spec.resources.cpu)


def _tune_errors(tuner) -> Dict[str, str]:
    """trial_key → last line of the error of trials that Tune gave up on."""
    errors: Dict[str, str] = {}
    try:
        grid = tuner.get_results()
    except Exception:  # pragma: no cover - no results when interrupted very early
        return errors
    for result in grid:
        if result.error is not None and result.config:
            for key in pack_keys(result.config):
                errors[key] = str(result.error).strip().splitlines()[-1][:500]
    return errors


def _finish(outcome: SweepOutcome, tracker: Tracker, exp_id: str, parent: str, todo: List[PlannedTrial],
            tuner, completed: bool, t_start: float) -> SweepOutcome:
    """Step 6: the truth comes from MLflow; runs left RUNNING become KILLED or FAILED."""
    t_collect = time.time()
    errors = _tune_errors(tuner)
    runs = {r.data.tags.get(TAG_KEY): r for r in tracker.children(exp_id, parent)}
    for t in todo:
        run = runs.get(t.key)
        if run is None:
            outcome.statuses[t.key] = "PENDING"
            continue
        status = run.info.status
        if status == "RUNNING":
            if completed and t.key in errors:
                tracker.set_tags(run.info.run_id, {TAG_FAILURE: errors[t.key]})
                tracker.finish(run.info.run_id, "FAILED")
                status = "FAILED"
            else:
                tracker.finish(run.info.run_id, "KILLED")  # `resume` reopens it
                status = "INTERRUPTED"
        elif status == "KILLED":
            status = "INTERRUPTED"
        outcome.statuses[t.key] = status
        metrics = run.data.metrics
        outcome.rows.append({
            **{f"axis.{k}": v for k, v in t.axes.items()},
            "trial": t.name, "status": status, "test_psnr": metrics.get("test_psnr"),
            "test_ssim": metrics.get("test_ssim"), "train_seconds": metrics.get(TIME_PREFIX + "train_seconds"),
            "failure": run.data.tags.get(TAG_FAILURE, errors.get(t.key, "")),
        })
        if status == "FINISHED":
            outcome.train_seconds += float(metrics.get(TIME_PREFIX + "train_seconds", 0.0))
    outcome.wall_seconds = time.time() - t_start
    outcome.phases["collect"] = time.time() - t_collect
    if outcome.complete:
        parent_status = "FINISHED" if outcome.count("FAILED") == 0 else "FAILED"
    else:
        parent_status = "KILLED"
    tracker.log_metrics(parent, [{
        "step": 0, "trials_finished": outcome.count("FINISHED"), "trials_failed": outcome.count("FAILED"),
        "trials_interrupted": outcome.count("INTERRUPTED") + outcome.count("PENDING"),
        **timing({"wall_seconds": outcome.wall_seconds, "train_seconds_sum": outcome.train_seconds,
                  **({"estimated_train_seconds": outcome.estimate.train_seconds,
                      "estimated_wall_seconds": outcome.estimate.wall_seconds} if outcome.estimate else {}),
                  **{f"{phase}_seconds": v for phase, v in outcome.phases.items()}}),
    }], int(time.time() * 1000))
    tracker.finish(parent, parent_status)
    return outcome
