"""``run`` and ``resume``: an invocation's phases composed, and ``plan``'s preview.

    run     open_run    → Ray → begin (experiment, parent run, state) → search phase → trial phase → close
    resume  open_resume → Ray → reclaim (the same parent run)         → search phase → trial phase → close

The phases: ``runners.engine.invocation`` (open), ``runners.engine.search_phase`` (a tuned comparison's arms),
``runners.engine.trial_phase`` (the trials and the close).  A ``resume`` continues the same parent run: a tuned
comparison's interrupted search first, then the trials (Tune's own state restored when it is whole and of this
version, else the unfinished trials from their checkpoints).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, List, Optional

from runners.engine.cluster import connect_ray, shutdown_ray
from runners.engine.invocation import (Invocation, SweepOptions, check_wall_time, concurrency, experiment_shape,
                                       open_resume, open_run, prepare, select_todo, trial_overhead)
from runners.engine.failures import MachineFailure, full_or_read_only, machine_failure
from runners.engine.outcome import SweepOutcome
from runners.engine.progress import QuietView, View
from runners.engine.search_phase import run_search
from runners.engine.signals import Received, as_interrupt
from runners.engine.state import NothingToResume, SweepState
from runners.engine.trial_phase import close, train_trials, trial_context
from runners.plan.arms import Arm
from runners.plan.estimate import asha_steps, estimate_seconds, wall_seconds
from runners.plan.chains import chain_packs
from runners.plan.planner import plan_sweep, searched_members, tuned_values
from runners.plan.trials import pack_trials
from runners.spec.schema import SweepSpec
from runners.spec.search import SearchSettings
from runners.store.drivers import driver_identity
from runners.store.layout import TAG_DRIVER, TAG_FAILURE, TAG_OVERRIDES, TAG_SPEC_PATH
from runners.store.uri import sqlite_path
from runners.store.records import PlanRecord, TaskInfo
from runners.store.tracker import TrialRuns
from sobolev.config import flatten


@contextlib.contextmanager
def ray_for(inv: Invocation) -> Iterator[None]:
    """A Ray for the invocation (a local one, or ``--address``), left however the phases end."""
    t0 = time.time()
    arms = inv.plan.arms if inv.searching else []
    inv.resources = connect_ray(inv.spec, [*inv.todo, *searched_members(arms)], inv.opts.address, inv.spec_path)
    inv.phase_done("ray_start", t0)
    try:
        with as_interrupt():
            yield
    finally:
        inv.outcome.signal = Received.signum
        shutdown_ray()


def begin(inv: Invocation) -> None:
    """``run``: the experiment, this invocation's parent run, the resume state (and the plan, if known)."""
    spec, tracker = inv.spec, inv.tracker
    exp_id = inv.experiment_id = inv.outcome.experiment_id = tracker.ensure_experiment(
        spec.name, experiment_shape(spec), TaskInfo.of(spec.task_def))
    invocation = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    inv.outcome.parent_run_id = tracker.create_parent(
        exp_id, f"{spec.name}-{invocation}",
        {"spec": inv.spec_path, "task": spec.task, "trials": len(inv.todo), "skipped": inv.outcome.skipped,
         **flatten(spec.trial.model_dump(exclude_unset=True), "trial.")},
        {TAG_SPEC_PATH: str(Path(inv.spec_path).resolve()), TAG_OVERRIDES: " ".join(inv.opts.overrides)})
    inv.state = SweepState(
        experiment_path=str(inv.root / invocation), parent_run_id=inv.parent, experiment_id=exp_id,
        tracking_uri=tracker.uri, spec_path=str(Path(inv.spec_path).resolve()), overrides=list(inv.opts.overrides),
        phase="search" if inv.searching else "evaluate", trial_keys=[t.key for t in inv.todo], started=inv.t_start)
    inv.state.write(inv.root)
    if not inv.searching:
        log_plan(inv)


def reclaim(inv: Invocation) -> None:
    """``resume``: this driver holds the invocation's parent run now."""
    inv.tracker.set_tags(inv.parent, {TAG_DRIVER: driver_identity()})
    inv.tracker.client.update_run(inv.parent, status="RUNNING")


def log_plan(inv: Invocation) -> None:
    inv.tracker.log_plan(inv.parent, inv.spec_text, PlanRecord.of(inv.state.overrides,
                                                                  [t.record() for t in inv.plan.trials]))


def search_phase(inv: Invocation) -> bool:
    """A tuned comparison's arms, each searched (or its earlier search reused and recorded on this parent); once
    every arm is tuned, its evaluation trials.  False: interrupted (``resume`` continues the search)."""
    if not inv.plan.arms:
        return True
    t0 = time.time()
    was_searching = inv.searching
    folder = Path(inv.state.experiment_path)
    inv.recorded, completed = run_search(inv.plan.arms, inv.spec, inv.tracker, inv.experiment_id, inv.parent,
                                         trial_context(inv), folder, inv.concurrency(), inv.view,
                                         restorable=inv.state.restorable)
    inv.outcome.searches = dict(inv.recorded)
    if not completed:
        inv.outcome.interrupted = True
        return False
    if was_searching:
        inv.outcome.phases["search"] = time.time() - t0
        inv.plan = inv.tuned_plan()
        tracker = inv.tracker
        inv.todo = select_todo(inv.plan.trials, tracker.trial_runs(inv.experiment_id), inv.opts.rerun)
        inv.outcome.planned, inv.outcome.skipped = len(inv.plan.trials), len(inv.plan.trials) - len(inv.todo)
        inv.state = inv.state.evaluating([t.key for t in inv.todo])
        inv.state.write(inv.root)
        log_plan(inv)
    return True


def trial_phase(inv: Invocation) -> SweepOutcome:
    if not inv.todo:  # a tuned comparison whose tuned trials earlier evaluations already ran
        return close(inv, "FINISHED")
    return train_trials(inv)


def run_sweep(spec_path: str, opts: SweepOptions, view: Optional[View] = None) -> SweepOutcome:
    """``sobolev-sweep run``."""
    with contextlib.ExitStack() as held:  # the sweep's claim, held to the end
        with refused_writes():
            inv = open_run(spec_path, opts, view or QuietView(), held)
        if not inv.searching and not inv.todo:
            inv.view.note(f"all {len(inv.plan.trials)} trials of {inv.spec.name!r} are already FINISHED (or "
                          f"diverged) in {inv.tracker.uri}; nothing to run (--rerun forces)")
            return inv.outcome
        inv.phase_done("prepare", inv.t_start)
        with ray_for(inv), machine_failures(inv):
            try:
                begin(inv)
                return phases(inv)
            except KeyboardInterrupt:
                return interrupted(inv)


def resume_sweep(spec_path: str, opts: SweepOptions, view: Optional[View] = None) -> SweepOutcome:
    """``sobolev-sweep resume``: the latest invocation of the spec, where it stopped; an invocation killed before
    it recorded its state (or none at all) is started as ``run`` would start it."""
    view = view or QuietView()
    with contextlib.ExitStack() as held:
        try:
            with refused_writes():
                inv = open_resume(spec_path, opts, view, held)
        except NothingToResume as exc:
            view.note(f"{exc.message}: running the sweep as `run` would (what finished is not trained again)")
            held.close()
            return run_sweep(spec_path, opts, view)
        inv.phase_done("prepare", inv.t_start)
        with ray_for(inv), machine_failures(inv):
            try:
                reclaim(inv)
                return phases(inv)
            except KeyboardInterrupt:
                return interrupted(inv)


def phases(inv: Invocation) -> SweepOutcome:
    """The search phase, then the trial phase (each closes the invocation)."""
    if not search_phase(inv):
        return close(inv, "KILLED")
    return trial_phase(inv)


@contextlib.contextmanager
def refused_writes() -> Iterator[None]:
    """While opening (nothing of this invocation in the store yet): the machine's refusals as one line."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001
        reason = machine_failure(exc)
        if reason is None:
            raise
        raise MachineFailure(reason) from None


@contextlib.contextmanager
def machine_failures(inv: Invocation) -> Iterator[None]:
    """A full disk, a read-only or unwritable store (``runners.engine.failures``): this invocation's runs end FAILED
    with the cause, as far as the store still takes it, and the command ends in one line, exit 1."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - only the machine's refusals are turned into a line; the rest re-raised
        db = sqlite_path(inv.tracker.uri)
        reason = machine_failure(exc, inv.tracker.uri) or full_or_read_only([inv.root, *([db.parent] if db else [])])
        if reason is None:
            raise
        _end_failed(inv, reason)
        raise MachineFailure(reason) from None


def _end_failed(inv: Invocation, reason: str) -> None:
    """What this invocation left RUNNING ends FAILED with ``reason``, each write on its own (a store that refuses
    one may take the next; what it refuses, the next invocation reconciles)."""
    if not inv.parent:
        return
    try:
        running = [r for r in inv.tracker.children(inv.experiment_id, inv.parent) if r.info.status == "RUNNING"]
    except Exception:  # noqa: BLE001 - the store itself refuses
        running = []
    for run_id in [r.info.run_id for r in running] + [inv.parent]:
        try:
            inv.tracker.set_tags(run_id, {TAG_FAILURE: reason})
        except Exception:  # noqa: BLE001
            pass
        try:
            inv.tracker.finish(run_id, "FAILED")
        except Exception:  # noqa: BLE001
            pass


def interrupted(inv: Invocation) -> SweepOutcome:
    """Ctrl-C, SIGTERM or SIGHUP outside Tune's own handling (opening, closing): what this invocation left RUNNING
    ends KILLED, as ``resume`` and ``run`` expect."""
    inv.outcome.interrupted = True
    if not inv.parent:
        return inv.outcome
    for run in inv.tracker.children(inv.experiment_id, inv.parent):
        if run.info.status == "RUNNING":
            inv.tracker.finish(run.info.run_id, "KILLED")
    return close(inv, "KILLED")


# -- plan --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrialLine:
    """One trial as ``plan`` shows it."""

    name: str
    key: str
    points: int
    steps: int
    compiles: bool
    seconds: float
    """Estimated training seconds on this machine."""
    stored: str
    """What the store has of it: ``finished``, ``diverged``, ``running`` (another invocation), ``interrupted``
    (continues), a run status (trains again), or empty."""
    to_run: bool
    step_flops: Optional[int] = None
    """FLOPs of one step, counted by the planner for a budget given in FLOPs."""


@dataclass(frozen=True)
class ArmLine:
    """One arm of a search as ``plan`` shows it."""

    arm: Arm
    skipped: List[str]
    """Searched fields that do not apply to it."""
    budget_steps: float
    seconds: float
    searched: bool
    """A search of its key finished before: reused."""


@dataclass
class PlanPreview:
    """What ``plan`` shows: the trials, which the store has, the cost; a tuned comparison's arms first."""

    plan_path: str
    spec_name: str
    task: str
    uri: str
    trials: List[TrialLine]
    dropped: int
    concurrent: int
    search: Optional[SearchSettings] = None
    """The spec's search block, if any."""
    arms: List[ArmLine] = field(default_factory=list)
    tuned_known: bool = True
    """False while some arm is still to search: the trials shown are untuned."""
    pack: int = 1
    packs: int = 0
    """Tune trials the trials to run make, packed ``pack`` at a time."""
    pack_sizes: List[int] = field(default_factory=list)
    overhead: float = 0.0
    """Seconds per trial per slot outside training."""
    overhead_measured: bool = False
    """Whether ``overhead`` is what this experiment's earlier invocations measured (else the default)."""
    chains: int = 0
    """Tune trials that train several short trials one after the other (``runners.plan.chains``)."""
    chained: int = 0
    """The trials in them."""

    @property
    def to_run(self) -> List[TrialLine]:
        return [t for t in self.trials if t.to_run]

    @property
    def train_seconds(self) -> float:
        return sum(t.seconds for t in self.to_run)

    @property
    def search_seconds(self) -> float:
        return sum(a.seconds for a in self.arms if not a.searched)


def _stored(key: str, runs: TrialRuns) -> str:
    if key in runs.finished:
        return "finished"
    run = runs.unfinished.get(key)
    if run is None:
        return ""
    if run.diverged:
        return "diverged"
    return {"RUNNING": "running", "KILLED": "interrupted"}.get(run.status, run.status)


def preview(spec_path: str, opts: SweepOptions) -> PlanPreview:
    """``sobolev-sweep plan``: the trials, their count, which are finished, and the cost; a tuned comparison: its
    search first (per arm: what it tunes, its budget and its cost), then its evaluation trials."""
    prepared = prepare(spec_path, opts, writes=False)
    plan, tracker, exp_id, spec = prepared.plan, prepared.tracker, prepared.experiment_id, prepared.plan.spec
    recorded = tracker.recorded_searches(exp_id, [a.key for a in plan.arms])
    arms = [_arm_line(arm, spec, arm.key in recorded) for arm in plan.arms]
    tuned_known = len(recorded) == len(plan.arms)
    if plan.arms and tuned_known:
        plan = plan_sweep(spec, spec_path, tuned_values(plan.arms, recorded), plan.datasets)
    runs = tracker.trial_runs(exp_id)
    to_run = {t.key for t in select_todo(plan.trials, runs, opts.rerun)}
    lines = [TrialLine(t.name, t.key, t.points, t.config.steps, t.config.compiles(t.points), estimate_seconds(t),
                       _stored(t.key, runs), t.key in to_run, t.step_flops) for t in plan.trials]
    packs = pack_trials([t for t in plan.trials if t.key in to_run], spec.run.pack)
    sizes = sorted({len(p) for p in packs}, reverse=True)
    conc = concurrency(spec, opts, os.cpu_count() or 1)
    chains = [c for c in chain_packs(packs, estimate_seconds, conc, spec.run.chain_seconds) if len(c) > 1]
    overhead, measured = trial_overhead(tracker, exp_id)
    if not opts.address:
        train = sum(line.seconds for line in lines if line.to_run) + sum(a.seconds for a in arms if not a.searched)
        check_wall_time(wall_seconds(train, len(to_run), conc, overhead), opts, spec_path)
    return PlanPreview(spec_path, spec.name, spec.task, prepared.uri, lines, plan.dropped, conc, spec.search, arms,
                       tuned_known, spec.run.pack, len(packs), sizes, overhead, measured, len(chains),
                       sum(len(p) for c in chains for p in c))


def _arm_line(arm: Arm, spec: SweepSpec, searched: bool) -> ArmLine:
    search = spec.search
    asha = search.scheduler.asha if search.scheduler is not None else None
    if search.budget_flops is not None and arm.step_flops:  # the same FLOPs for every arm: its steps' worth
        budget = search.budget_flops / arm.step_flops
    else:
        budget = (asha_steps(search.samples, asha.grace_steps, asha.reduction_factor, arm.steps) if asha
                  else float(search.samples * arm.steps))
    seconds = sum(estimate_seconds(m) for m in arm.members) * budget / arm.steps
    return ArmLine(arm, [k for k in search.space if k not in arm.space], budget, seconds, searched)
