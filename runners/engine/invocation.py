"""Opening an invocation of ``run`` or ``resume``: everything that can fail on bad input, checked before
anything is written, then the store settled and what to train decided.

Algorithm (``open_run``; ``open_resume`` reads what the interrupted invocation recorded instead):
  1. Load and validate the spec, expand the grid, open every dataset (``runners.plan``).
  2. Resolve the tracking URI to an absolute one and check it answers; check the experiment's shape (read-only)
     and the storage folder.  Nothing is written to MLflow before every check has passed.
  3. Reconcile the store: runs that an invocation whose driver is gone left RUNNING end KILLED
     (``Tracker.reconcile``).
  4. A tuned comparison whose every arm was searched before: its evaluation trials are planned with the tuned
     values now; otherwise its search comes first (``runners.engine.search_phase``).
  5. Skip the trials whose key has a FINISHED run, a diverged one, or one another live invocation is running
     (unless ``rerun``).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from runners.engine.claim import claimed
from runners.engine.cluster import check_address, check_local_target
from runners.engine.outcome import SweepOutcome
from runners.engine.progress import View
from runners.engine.state import STATE_FORMAT, SweepState
from runners.plan.bounds import MAX_WALL_HOURS
from runners.plan.estimate import DEFAULT_OVERHEAD_SECONDS, STARTUP_SECONDS, SweepEstimate, TrainingBound
from runners.plan.planner import SweepPlan, plan_sweep, tuned_values
from runners.plan.trials import PlannedTrial
from runners.spec.load import parse_spec_text
from runners.spec.read import read_spec_text
from runners.spec.schema import SweepSpec
from runners.store.drivers import driver_gone
from runners.store.layout import TAG_DRIVER
from runners.store.records import SearchResult
from runners.store.tracker import Tracker, TrialRuns
from runners.store.uri import check_reachable, check_writable, resolve_tracking_uri, store_exists
from sobolev.errors import ConfigError

DEFAULT_STORAGE = ".sobolev"


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
    wait: bool = False
    """Wait for another invocation of the sweep into the same store to end, instead of refusing."""
    yes: bool = False
    """Run (or plan) a sweep estimated to take longer than ``runners.plan.bounds.MAX_WALL_HOURS`` here."""


@dataclass(frozen=True)
class Prepared:
    """Steps 1–2 of ``run`` (and all of ``plan``): a checked spec, its plan and its store, nothing written."""

    spec_text: str
    plan: SweepPlan
    uri: str
    tracker: Tracker
    experiment_id: Optional[str]
    """None while the store has no experiment of this name."""


@dataclass
class Invocation:
    """One ``run`` or ``resume``, as its phases see it."""

    spec_path: str
    spec_text: str
    plan: SweepPlan
    """The grid and its arms; once the arms are tuned, the evaluation trials."""
    opts: SweepOptions
    view: View
    tracker: Tracker
    root: Path
    """The sweep's storage: Tune's experiments, checkpoints and the resume state."""
    experiment_id: Optional[str]
    outcome: SweepOutcome
    recorded: Dict[str, SearchResult] = field(default_factory=dict)
    """A tuned comparison: arm key → the search an earlier invocation finished."""
    todo: List[PlannedTrial] = field(default_factory=list)
    """The trials to train, once known (empty while a search is still to run)."""
    state: Optional[SweepState] = None
    """The resume state: read by ``resume``, written by ``run`` once its parent run exists."""
    restore_tune: bool = False
    """``resume`` of trials whose Tune state this version can restore."""
    resources: Dict[str, float] = field(default_factory=dict)
    t_start: float = field(default_factory=time.time)

    @property
    def spec(self) -> SweepSpec:
        return self.plan.spec

    @property
    def searching(self) -> bool:
        """Arms still to search: the evaluation trials are not known yet."""
        return len(self.recorded) < len(self.plan.arms)

    @property
    def parent(self) -> str:
        return self.outcome.parent_run_id or ""

    def concurrency(self) -> int:
        return concurrency(self.spec, self.opts, int(self.resources.get("CPU", os.cpu_count() or 1)))

    def overhead(self) -> float:
        """Seconds per trial per slot outside training (:func:`trial_overhead`)."""
        return trial_overhead(self.tracker, self.experiment_id)[0]

    def phase_done(self, name: str, since: float) -> float:
        now = time.time()
        self.outcome.phases[name] = now - since
        return now

    def tuned_plan(self) -> SweepPlan:
        """The evaluation trials, planned with every arm's tuned values (``recorded``)."""
        return plan_sweep(self.spec, self.plan.spec_path, tuned_values(self.plan.arms, self.recorded),
                          self.plan.datasets)


# -- shared checks ---------------------------------------------------------------------------

def experiment_shape(spec: SweepSpec) -> Dict[str, Any]:
    axes = ["dataset", "activation", "supervision", "sampling", "seed", *sorted(spec.grid.extra)]
    return {"task": spec.task, "axes": axes}


def storage_root(opts: SweepOptions, spec: SweepSpec) -> Path:
    return Path(opts.storage or DEFAULT_STORAGE).expanduser().resolve() / spec.name


def check_storage(root: Path) -> None:
    """``--storage`` must be (or be creatable as) a writable folder: refused before anything is written."""
    for path in (root, *root.parents):
        if path.exists():
            if not path.is_dir():
                raise ConfigError(f"{path} is a file; Tune's state and checkpoints need a folder", source="--storage")
            if not os.access(path, os.W_OK | os.X_OK):
                raise ConfigError(f"{path} is not writable", source="--storage")
            return


def concurrency(spec: SweepSpec, opts: SweepOptions, cpus: int) -> int:
    by_cpu = max(1, int(cpus // spec.resources.cpu))
    limit = opts.max_concurrent or spec.run.max_concurrent or by_cpu
    return max(1, min(limit, by_cpu))


def checked_uri(given: Optional[str], writes: bool = True) -> str:
    """The absolute tracking URI of ``--tracking-uri``, answering (and, for ``writes``, writable); errors name the
    option."""
    try:
        uri = resolve_tracking_uri(given)
        check_reachable(uri)
        if writes:
            check_writable(uri)
    except ConfigError as exc:
        raise exc.in_source("--tracking-uri") from None
    return uri


def check_wall_time(seconds: float, opts: SweepOptions, spec_path: str) -> None:
    """A sweep estimated to take more than :data:`MAX_WALL_HOURS` of wall time here needs ``--yes``."""
    if seconds > MAX_WALL_HOURS * 3600 and not opts.yes:
        raise ConfigError(f"estimated {seconds / 3600:.1f} h of wall time on this machine, over the limit of "
                          f"{MAX_WALL_HOURS:g} h: pass --yes to run it anyway (or fewer trials, steps, points; "
                          "--address a cluster)", source=spec_path)


def prepare(spec_path: str, opts: SweepOptions, writes: bool = True) -> Prepared:
    """Steps 1–2: everything that can fail on bad input, with no writes anywhere (``writes``: the invocation will
    write, so the store must take it; ``plan`` only reads)."""
    text = read_spec_text(spec_path)
    plan = plan_sweep(parse_spec_text(text, spec_path, opts.overrides), spec_path)
    if not opts.address:  # trials run on this machine: what it cannot run, or hold, is refused now
        check_local_target(plan.spec, plan.every_trial(), spec_path)
        TrainingBound.here(concurrency(plan.spec, opts, os.cpu_count() or 1)).check(plan.every_trial(), spec_path)
    elif writes:
        check_address(opts.address)
    check_storage(storage_root(opts, plan.spec))
    uri = checked_uri(opts.tracking_uri, writes)
    tracker = Tracker(uri)
    exp_id = None
    if store_exists(uri):  # reading a sqlite store that is not there would create it
        try:
            exp_id = tracker.check_shape(plan.spec.name, experiment_shape(plan.spec))
        except ConfigError as exc:
            raise ConfigError(exc.message, path=("name",), source=spec_path) from None
    return Prepared(text, plan, uri, tracker, exp_id)


# -- the store -------------------------------------------------------------------------------

def settle_store(tracker: Tracker, exp_id: Optional[str], view: View) -> TrialRuns:
    """Step 3: reconcile the experiment, say so, and return its trial runs (one query)."""
    for parent in tracker.reconcile(exp_id):
        view.note(f"reconciled: {parent.info.run_name} was left RUNNING by a driver that is gone; its "
                  "interrupted trials continue from their checkpoints")
    return tracker.trial_runs(exp_id)


def select_todo(trials: List[PlannedTrial], runs: TrialRuns, rerun: bool) -> List[PlannedTrial]:
    """Step 5: the trials to train: not FINISHED, not diverged (divergence is deterministic), not running in
    another live invocation; with ``rerun`` also the finished and the diverged."""
    busy = {k for k, r in runs.unfinished.items() if r.status == "RUNNING"}
    done = set(runs.finished) | {k for k, r in runs.unfinished.items() if r.diverged}
    return [t for t in trials if t.key not in busy and (rerun or t.key not in done)]


def check_not_running(tracker: Tracker, parent: str, spec_path: str) -> None:
    """``resume`` of an invocation whose driver is alive on this host is refused (two drivers, one parent)."""
    run = tracker.client.get_run(parent)
    identity = run.data.tags.get(TAG_DRIVER)
    if run.info.status == "RUNNING" and driver_gone(identity) is False:
        raise ConfigError(f"the sweep is still running (driver {identity}); stop it, or wait", source=spec_path)


# -- opening ----------------------------------------------------------------------------------

def trial_overhead(tracker: Tracker, exp_id: Optional[str]) -> Tuple[float, bool]:
    """Seconds per trial per slot outside training, as this experiment's earlier invocations measured it (else
    :data:`DEFAULT_OVERHEAD_SECONDS`), and whether it was measured."""
    measured = tracker.measured_overhead(exp_id, STARTUP_SECONDS)
    return (DEFAULT_OVERHEAD_SECONDS, False) if measured is None else (measured, True)


def open_run(spec_path: str, opts: SweepOptions, view: View, held: contextlib.ExitStack) -> Invocation:
    """``run``: steps 1–5 for a new invocation (its parent run is created once Ray is up); the sweep's claim
    (``runners.engine.claim``) is taken into ``held`` once the input is known to be good."""
    t_start = time.time()
    prepared = prepare(spec_path, opts)
    plan, tracker, exp_id = prepared.plan, prepared.tracker, prepared.experiment_id
    if not opts.address and not plan.arms:  # refused before anything is written (the store read, not settled)
        check_wall_time(SweepEstimate.of(select_todo(plan.trials, tracker.trial_runs(exp_id), opts.rerun),
                                         concurrency(plan.spec, opts, os.cpu_count() or 1),
                                         trial_overhead(tracker, exp_id)[0]).wall_seconds, opts, spec_path)
    held.enter_context(claimed(storage_root(opts, plan.spec), prepared.uri, plan.spec.name, spec_path, opts.wait,
                               view.note))
    if exp_id is None and store_exists(prepared.uri):  # made by the invocation we waited for
        exp_id = tracker.check_shape(plan.spec.name, experiment_shape(plan.spec))
    runs = settle_store(tracker, exp_id, view)
    outcome = SweepOutcome(spec=plan.spec, planned=0, skipped=0, tracking_uri=prepared.uri, experiment_id=exp_id)
    inv = Invocation(spec_path, prepared.spec_text, plan, opts, view, tracker, storage_root(opts, plan.spec),
                     exp_id, outcome, t_start=t_start)
    inv.recorded = tracker.recorded_searches(exp_id, [a.key for a in plan.arms])
    if plan.arms and not inv.searching:  # 4. every arm was tuned before: the evaluation trials are known now
        inv.plan = inv.tuned_plan()
    if not inv.searching:
        inv.todo = select_todo(inv.plan.trials, runs, opts.rerun)
        outcome.planned, outcome.skipped = len(inv.plan.trials), len(inv.plan.trials) - len(inv.todo)
    if not opts.address and inv.todo and plan.arms:  # a tuned comparison's evaluation, known once searched
        check_wall_time(SweepEstimate.of(inv.todo, inv.concurrency(), inv.overhead()).wall_seconds, opts, spec_path)
    return inv


def open_resume(spec_path: str, opts: SweepOptions, view: View, held: contextlib.ExitStack) -> Invocation:
    """``resume``: the invocation the resume state names, with the spec and overrides it ran with (the sweep's
    claim taken into ``held``)."""
    t_start = time.time()
    spec = parse_spec_text(read_spec_text(spec_path), spec_path, opts.overrides)
    root = storage_root(opts, spec)
    state = SweepState.read(root, spec_path)
    if opts.tracking_uri and resolve_tracking_uri(opts.tracking_uri) != state.tracking_uri:
        raise ConfigError(f"the sweep being resumed logs to {state.tracking_uri}", source="--tracking-uri")
    check_reachable(state.tracking_uri)
    check_writable(state.tracking_uri)
    held.enter_context(claimed(root, state.tracking_uri, spec.name, spec_path, opts.wait, view.note))
    state = SweepState.read(root, spec_path)  # again: the invocation waited for may have moved it on
    tracker = Tracker(state.tracking_uri)
    text = read_spec_text(state.spec_path)
    plan = plan_sweep(parse_spec_text(text, state.spec_path, state.overrides), state.spec_path)
    if not opts.address:
        check_local_target(plan.spec, plan.every_trial(), spec_path)
    outcome = SweepOutcome(spec=plan.spec, planned=0, skipped=0, tracking_uri=state.tracking_uri,
                           parent_run_id=state.parent_run_id, experiment_id=state.experiment_id)
    inv = Invocation(spec_path, text, plan, opts, view, tracker, root, state.experiment_id, outcome, state=state,
                     t_start=t_start)
    settle_store(tracker, state.experiment_id, view)
    check_not_running(tracker, state.parent_run_id, spec_path)
    inv.recorded = tracker.recorded_searches(state.experiment_id, [a.key for a in plan.arms])
    if state.phase == "search":  # the search decides the evaluation trials, even if it has ended since
        inv.recorded = {}
    elif plan.arms:
        inv.plan = inv.tuned_plan()
    if not inv.searching:
        keys = set(state.trial_keys)
        inv.todo = [t for t in inv.plan.trials if t.key in keys]
        outcome.planned = len(inv.todo)
        inv.restore_tune = state.restorable
        if not state.restorable:
            view.note(f"the Tune state in {state.experiment_path} was written by an older sobolev-sweep (state "
                      f"format {state.format}, this one writes {STATE_FORMAT}); the unfinished trials continue "
                      "from their checkpoints in a new Tune experiment")
    return inv
