"""One configuration of a search inside Ray Tune: the arm's members with the sampled values, trained
as one batched network; the mean held-out metric over them is the objective the searcher and ASHA see.

Algorithm (per Tune trial of an arm, ``runners.engine.search_phase``):
  1. The sampled values (Tune's config) applied to every member's base config: validated here,
     once, where the configuration runs.
  2. One MLflow child run of kind ``tuning`` per configuration: the sampled values as params
     (``search.<field>``), the phase and arm as tags; reopened on a retry or a resume.
  3. The members train together (``sobolev.trainers.packed``), restored from Tune's checkpoint.
  4. At every evaluation step: objective = the mean of the members' held-out metric, to MLflow
     and ``tune.report`` (with a checkpoint every ``checkpoint_every`` steps).  When ASHA stops the
     configuration (``SystemExit`` out of ``tune.report``) its run ends FINISHED, tagged
     ``sobolev.stopped_at_step``: stopped, not failed.
  5. At the last step: the final objective, the run FINISHED.  A member whose loss diverges fails
     the configuration: its run FAILED (``sobolev.diverged``), and the searcher is told it failed.
"""

from __future__ import annotations

import math
import time
from typing import Any, Dict, List

from runners.store.layout import (AXIS, KIND_TUNING, PHASE_TUNE, SEARCHED, TAG_ARM, TAG_DIVERGED, TAG_FAILURE,
                                  TAG_PHASE, TAG_SEARCH_KEY, TAG_STOPPED_AT, TRAIN_FLOPS)
from runners.store.tracker import Tracker
from runners.worker.contract import TuningArm
from runners.worker.trial import data_changed
from sobolev.config import flatten


def tuning_params(arm: TuningArm, sampled: Dict[str, Any]) -> Dict[str, Any]:
    """What a tuning run records as params: the sampled values, the arm and its members' data."""
    members = arm.arm.members
    return {**{f"{SEARCHED}{k}": v for k, v in sampled.items()}, **{f"{AXIS}{k}": v for k, v in arm.arm.axes.items()},
            "task": members[0].task.name, "tuning.datasets": ",".join(sorted({m.axes["dataset"] for m in members})),
            "tuning.seeds": ",".join(sorted({str(m.axes["seed"]) for m in members})), "tuning.members": len(members)}


def tuning_trial(config: Dict[str, Any], arm: TuningArm) -> None:
    """The Ray Tune function trainable of a search's configurations (steps 1–5)."""
    import torch
    from ray import tune

    from runners.worker.checkpoints import restore_members
    from sobolev.numerics import flush_denormals
    from sobolev.trainers import PackedTrainer

    ctx = arm.context
    flush_denormals()  # first: Tune runs each trial in a fresh thread, whose pool inherits the mode
    torch.set_num_threads(max(1, int(ctx.cpus)))
    sampled = flatten(config)
    configs = arm.arm.configuration(sampled)  # 1.
    tracker = Tracker(ctx.tracking_uri)
    trial_id = tune.get_context().get_trial_id()
    run, _ = tracker.open_child(ctx.experiment_id, ctx.parent_run_id, arm.run_key(trial_id),  # 2.
                                f"tune {arm.arm.label} {trial_id}", tuning_params(arm, sampled),
                                {TAG_PHASE: PHASE_TUNE, TAG_ARM: arm.arm.label, TAG_SEARCH_KEY: arm.arm.key},
                                kind=KIND_TUNING)
    run_id = run.info.run_id
    if run.info.status == "FINISHED":  # finished before a resume: report what it had
        tune.report({"objective": run.data.metrics.get("objective", math.nan), "step": configs[0].steps})
        return
    for member in arm.arm.members:  # data changed since planning: the configuration fails, the searcher is told
        data = member.dataset
        now = member.task.digest(data.source) if data is not None else None
        if now is not None and now != data.digest:
            reason = data_changed(data.source, data.digest, now)
            tracker.set_tags(run_id, {TAG_FAILURE: reason})
            tracker.finish(run_id, "FAILED")
            raise RuntimeError(reason)
    trainers = [c.setup() for c in configs]  # 3.
    restore_members(tune.get_checkpoint(), [(m.key, t) for m, t in zip(arm.arm.members, trainers)])
    Configuration(arm, tracker, run_id, trainers).fit(PackedTrainer(trainers))


class Configuration:
    """Steps 4–5: the objective of one configuration, reported as its members reach each evaluation."""

    def __init__(self, arm: TuningArm, tracker: Tracker, run_id: str, trainers: List[Any]) -> None:
        self.arm, self.tracker, self.run_id, self.trainers = arm, tracker, run_id, trainers
        self.pending: Dict[int, Dict[int, float]] = {}  # step → member → metric
        self.finals: Dict[int, float] = {}
        self.last_checkpoint = min(t.step for t in trainers)
        self.ended = False

    def fit(self, pack) -> None:
        pack.fit(self.on_progress, self.on_end)

    def on_progress(self, events) -> None:
        metric = self.arm.metric
        for ev in events:
            if not ev.progress.final and metric in ev.progress.metrics:
                self.pending.setdefault(ev.progress.step, {})[ev.index] = float(ev.progress.metrics[metric])
        for step in sorted(s for s, got in self.pending.items() if len(got) == len(self.trainers)):
            self.report(step, self.pending.pop(step))

    def on_end(self, index: int, outcome) -> None:
        from sobolev.errors import TrialDiverged

        if isinstance(outcome, TrialDiverged):  # 5. the configuration fails; so does its Tune trial
            self.tracker.set_tags(self.run_id, {TAG_FAILURE: f"member {self.arm.arm.members[index].name}: {outcome}",
                                                TAG_DIVERGED: "true"})
            self.tracker.finish(self.run_id, "FAILED")
            self.ended = True
            raise outcome
        self.finals[index] = float(outcome.metrics[self.arm.metric])
        if len(self.finals) == len(self.trainers):
            self.report(outcome.steps, self.finals, final=True)

    def report(self, step: int, values: Dict[int, float], final: bool = False) -> None:
        """Step 4: the objective at ``step`` to MLflow, then to Tune (which may stop the configuration here)."""
        from ray import tune

        from runners.worker.checkpoints import report_with_checkpoint

        objective = sum(values.values()) / len(values)
        flops = step * sum(t.measure_flops() for t in self.trainers) / len(self.trainers)  # a member's, on average
        names = [m.axes["dataset"] + f"/s{m.axes['seed']}" for m in self.arm.arm.members]
        row = {"step": step, "objective": objective, TRAIN_FLOPS: flops,
               **{f"{self.arm.metric}/{names[i]}": v for i, v in values.items()}}
        self.tracker.log_metrics(self.run_id, [row], int(time.time() * 1000))
        if final:  # 5. before the last report: ASHA stops every configuration at its last step
            self.tracker.finish(self.run_id, "FINISHED")
            self.ended = True
        result = {"objective": objective, "step": step, TRAIN_FLOPS: flops}  # ASHA's rungs may count FLOPs
        try:
            if not final and step - self.last_checkpoint >= self.arm.context.checkpoint_every:
                self.last_checkpoint = step
                report_with_checkpoint(result, list(zip((m.key for m in self.arm.arm.members), self.trainers)))
            else:
                tune.report(result)
        except SystemExit:  # Tune stopped this configuration (ASHA): a result, not a failure
            if not self.ended:
                self.tracker.set_tags(self.run_id, {TAG_STOPPED_AT: step})
                self.tracker.finish(self.run_id, "FINISHED")
                self.ended = True
            raise
