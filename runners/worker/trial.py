"""One sweep trial inside Ray Tune: a chain of packs (short trials one after the other, ``runners.plan.chains``),
each pack K planned trials (K = ``run.pack``, 1 by default) trained by the shared trainers, reporting through
their callback hook.

Algorithm (per Tune trial, on whichever node Ray places it):
  1. Open every member's MLflow child run — or reopen it after a retry or ``resume``; a run this
     parent already FINISHED (or FAILED by divergence) is not trained again.
  2. Build the members' trainers from their planned configs; restore each from its file in
     ``tune.get_checkpoint()``; group them by architecture and point count
     (``sobolev.trainers.packed``) and train each group as one batched network.
  3. Every ``report_every`` steps: one ``tune.report`` for the pack and one batched MLflow
     request per member; every ``checkpoint_every`` steps also a checkpoint (one file per member:
     model, optimiser, step).
  4. When a member ends: its final metrics, artifacts (pictures, config YAML), run FINISHED.  A
     diverging member ends FAILED with its reason and is not retried (divergence is
     deterministic); the rest of its pack trains on.

The worker receives the typed :class:`~runners.worker.contract.SweepTrials` the driver built (through
``tune.with_parameters``): it trains the planned configs as they are, never rebuilding or
re-validating them.
"""

from __future__ import annotations

import functools
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Set

import yaml

from runners.plan.trials import PlannedTrial
from runners.store.layout import (AXIS, DESCRIPTION, FLOPS_PARAM, PHASE_EVALUATE, PREVIEW_KEY, TAG_ARM, TAG_DIVERGED,
                                  TAG_ATTEMPTS, TAG_ATTEMPTS_OF, TAG_CHAIN_SIZE, TAG_EVALUATIONS, TAG_FAILURE,
                                  TAG_NODE, TAG_NODE_IP, TAG_PACK_SIZE, TAG_PHASE, TAG_RESTORED, TIME_PREFIX, timing)
from runners.store.records import EvaluationCurve
from runners.store.tracker import Tracker, diverged
from runners.worker.checkpoints import report_with_checkpoint, restore_members
from runners.worker.contract import SweepTrials, TrialContext
from sobolev.errors import last_line

FAIL_ONCE_AT_STEP = "SOBOLEV_TEST_FAIL_ONCE_AT_STEP"
"""Test-only fault injection (tests/README.md): every Tune trial raises once on reaching this step."""


FAIL_ALWAYS = "SOBOLEV_TEST_FAIL_ALWAYS"
"""Test-only fault injection, ``KEY@STEP``: the pack training trial ``KEY`` raises at every attempt on reaching
``STEP``."""


class InjectedFailure(RuntimeError):
    """Raised once per Tune trial when ``$SOBOLEV_TEST_FAIL_ONCE_AT_STEP`` is set (fault-injection tests)."""


def _injected_failure_step() -> Optional[int]:
    value = os.environ.get(FAIL_ONCE_AT_STEP)
    return int(value) if value else None


def _injected_failure_marker(run_id: str) -> Path:
    """The file that keeps the injected failure to once: named by the pack's first MLflow run, which a retry
    reopens (not by Tune's trial folder: a restarted trial is handed the staging folder or, on a reused
    actor, the working folder, so a marker there is not always seen again)."""
    return Path(tempfile.gettempdir()) / "sobolev-injected-failures" / run_id


def data_changed(source: str, planned: str, now: str) -> str:
    """The failure of a trial whose data is not what the plan saw."""
    return (f"data changed since the sweep was planned: {source} had digest {planned}, now {now}; re-run "
            "`sobolev-sweep plan` (its trials get the new data's keys)")


def trial_params(trial: PlannedTrial) -> Dict[str, str]:
    """What a child run records as params: the key, the task, the grid coordinates, the full config."""
    return {"trial_key": trial.key, "task": trial.task.name, **{f"{AXIS}{k}": v for k, v in trial.axes.items()},
            **trial.config.to_params()}


def trial_tags(trial: PlannedTrial) -> Dict[str, str]:
    """A trial run's tags besides its key: its description, and a tuned comparison's phase and arm."""
    arm = {TAG_PHASE: PHASE_EVALUATE, TAG_ARM: trial.arm} if trial.arm is not None else {}
    return {**arm, DESCRIPTION: trial.description()}


class BatchedMetrics:
    """Collects history rows and sends them to MLflow in one request per flush."""

    def __init__(self, tracker: Tracker, run_id: str, after_step: int) -> None:
        self.tracker, self.run_id, self.after_step = tracker, run_id, after_step
        self.rows: List[Dict[str, float]] = []

    def add(self, row: Dict[str, float]) -> None:
        if row["step"] > self.after_step:  # a resumed trial does not log its steps twice
            self.rows.append({TIME_PREFIX + k if k.endswith("_seconds") else k: v for k, v in row.items()})

    def flush(self) -> None:
        if self.rows:
            self.tracker.log_metrics(self.run_id, self.rows, int(time.time() * 1000))
            self.after_step = max(self.after_step, int(self.rows[-1]["step"]))
            self.rows = []


def sobolev_trial(config: Dict[str, Any], sweep: SweepTrials) -> None:
    """The Ray Tune function trainable (``tune.report`` / ``tune.get_checkpoint``, Ray 2.60): the packs named by
    ``config`` (``runners.worker.contract.CHAIN``), looked up in ``sweep``, one after the other."""
    import torch
    from ray import tune

    from sobolev.numerics import flush_denormals

    ctx = sweep.context
    flush_denormals()  # first: Tune runs each trial in a fresh thread, whose pool inherits the mode
    torch.set_num_threads(max(1, int(ctx.cpus)))
    tracker = Tracker(ctx.tracking_uri)
    checkpoint = tune.get_checkpoint()  # a retry's: the files of the pack it stopped in
    reports = ChainReports()
    packs = sweep.packs(config)
    chained = sum(len(members) for members in packs)
    for i, members in enumerate(packs):
        pack = TrialPack(members, ctx, tracker, chained)
        if pack.open_runs() and pack.check_data():
            pack.build(checkpoint, sweep.checkpoints)
            try:
                pack.fit()
            except BaseException as exc:
                pack.flush()  # the runs stay RUNNING: Tune retries the chain, this pack from its last checkpoint
                if not pack.give_up(exc):
                    raise
        reports.add(pack.summary(), last=i == len(packs) - 1)


class ChainReports:
    """A chain's reports to Tune: what its packs ended, sent at most every :data:`REPORT_SECONDS` (each report
    waits for the driver) and after its last pack."""

    REPORT_SECONDS = 1.0

    def __init__(self) -> None:
        self.finished: List[str] = []
        self.failed: List[str] = []
        self.sent = time.monotonic()

    def add(self, summary: Dict[str, Any], last: bool) -> None:
        from ray import tune

        self.finished += [k for k in summary["finished_keys"].split(",") if k]
        self.failed += [k for k in summary["failed_keys"].split(",") if k]
        if last or time.monotonic() - self.sent >= self.REPORT_SECONDS:
            tune.report({**summary, "finished_keys": ",".join(self.finished), "failed_keys": ",".join(self.failed),
                         "finished": len(self.finished), "failed": len(self.failed)})
            self.finished, self.failed, self.sent = [], [], time.monotonic()


class TrialPack:
    """The members of one Tune trial: their child runs, trainers, metric buffers and reports."""

    def __init__(self, members: List[PlannedTrial], ctx: TrialContext, tracker: Tracker, chained: int = 1) -> None:
        self.members, self.ctx, self.tracker, self.chained = members, ctx, tracker, chained
        self.run_ids: Dict[str, str] = {}
        self.finished: List[str] = []
        self.failed: List[str] = []
        self.todo: List[PlannedTrial] = []
        self.trainers: List[Any] = []
        self.logs: List[BatchedMetrics] = []
        self.best: Dict[str, Any] = {}
        self.step = 0
        self.last = {"report": 0, "checkpoint": 0}
        self.setup_seconds = 0.0
        self.report_seconds = 0.0
        self.logged_step: Dict[str, int] = {}  # member to train → last step its run has (0: created now)
        self.stale_failure: Set[str] = set()
        self.bare: Set[str] = set()
        """Members whose run has no params yet: created by this attempt, or by one that ended before build()."""
        self.attempts = 0  # this pack's failed attempts so far (its runs' tag)

    # 1. child runs
    def open_runs(self) -> int:
        """Open every member's run; returns how many still need training."""
        tags = {TAG_NODE: socket.gethostname(), TAG_NODE_IP: _node_ip(), TAG_PACK_SIZE: str(len(self.members)),
                TAG_CHAIN_SIZE: str(self.chained)}
        for t in self.members:
            run, created = self.tracker.open_child(self.ctx.experiment_id, self.ctx.parent_run_id, t.key,
                                                   t.name, None, {**tags, **trial_tags(t)})  # params: build()
            self.run_ids[t.key] = run.info.run_id
            if created or "trial_key" not in run.data.params:  # an earlier attempt may have died before build()
                self.bare.add(t.key)
            if t.key in self.bare and t.dataset is not None and not (run.inputs and run.inputs.dataset_inputs):
                self.tracker.log_dataset(run.info.run_id, t.dataset.name, t.dataset.digest, t.dataset.source,
                                         [*t.shape, t.channels], t.samples)
            if run.info.status == "FINISHED":
                self.finished.append(t.key)
                self._observe(t, run.data.metrics)
            elif diverged(run):
                self.failed.append(t.key)
            elif self._attempts(run) > self.ctx.max_failures:  # given up by an earlier attempt of this invocation
                self.tracker.finish(run.info.run_id, "FAILED")
                self.failed.append(t.key)
            else:
                self.todo.append(t)
                self.logged_step[t.key] = 0 if created else self.tracker.last_logged_step(run.info.run_id)
                if TAG_FAILURE in run.data.tags:  # an earlier attempt's failure: cleared when this one finishes
                    self.stale_failure.add(t.key)
                self.attempts = max(self.attempts, self._attempts(run))
        return len(self.todo)

    def _attempts(self, run) -> int:
        """The failed attempts of this invocation the run's tags record (an earlier invocation's do not count)."""
        if run.data.tags.get(TAG_ATTEMPTS_OF) != self.ctx.parent_run_id:
            return 0
        return int(run.data.tags.get(TAG_ATTEMPTS, 0))

    def check_data(self) -> int:
        """Members whose data changed since the sweep was planned (another file content under the same name, a
        file gone) end FAILED with the reason, untrained: their trial key names the data the plan saw.  Returns
        how many are left to train."""
        now: Dict[str, Optional[str]] = {}
        for t in list(self.todo):
            if t.dataset is None:
                continue
            source = t.dataset.source
            if source not in now:
                try:
                    now[source] = t.task.digest(source)
                except OSError as exc:
                    now[source] = f"unreadable ({exc.strerror or exc})"
            if now[source] is not None and now[source] != t.dataset.digest:
                run_id = self.run_ids[t.key]
                self.tracker.set_tags(run_id, {TAG_FAILURE: data_changed(source, t.dataset.digest, now[source])})
                self.tracker.finish(run_id, "FAILED")
                self.failed.append(t.key)
                self.todo.remove(t)
        return len(self.todo)

    def give_up(self, exc: BaseException) -> bool:
        """A failed attempt of this pack, counted on its runs: within ``max_failures`` retries, False (Tune retries
        the chain, this pack from its checkpoint); past them, its unfinished runs end FAILED with the cause and the
        chain goes on to its next pack (True).  A stop from Tune or the process is never given up on."""
        if not isinstance(exc, Exception):
            return False
        self.attempts += 1
        reason = last_line(exc)
        left = [t for t in self.todo if t.key not in self.finished and t.key not in self.failed]
        for t in left:
            self.tracker.set_tags(self.run_ids[t.key], {TAG_ATTEMPTS: self.attempts, TAG_FAILURE: reason,
                                                        TAG_ATTEMPTS_OF: self.ctx.parent_run_id})
        if self.attempts <= self.ctx.max_failures:
            return False
        for t in left:
            self.tracker.finish(self.run_ids[t.key], "FAILED")
            self.failed.append(t.key)
        return True

    # 2. trainers, restored from the latest checkpoint: Tune's (a retry, a resume) or an earlier invocation's
    def build(self, checkpoint, earlier: Dict[str, str]) -> None:
        if _injected_failure_step() == 0:  # test-only: an attempt that ends before its runs have their params
            marker = _injected_failure_marker(self.run_ids[self.members[0].key])
            if not marker.exists():
                marker.parent.mkdir(exist_ok=True)
                marker.write_text("0")
                raise InjectedFailure("injected failure before the trainers were built")
        t0 = time.perf_counter()
        self.trainers = [t.config.setup() for t in self.todo]
        self.setup_seconds = (time.perf_counter() - t0) / len(self.todo)  # data, targets, model: per member
        trainers = dict(zip((t.key for t in self.todo), self.trainers))
        for key in restore_members(checkpoint, list(trainers.items()), earlier):
            self.tracker.set_tags(self.run_ids[key], {TAG_RESTORED: trainers[key].step})
        for t, trainer in zip(self.todo, self.trainers):  # its FLOPs counted on its own step (sobolev.flops)
            flops = {FLOPS_PARAM: trainer.measure_flops()}
            self.tracker.log_params(self.run_ids[t.key], {**trial_params(t), **flops} if t.key in self.bare
                                    else flops)
        self.logs = [BatchedMetrics(self.tracker, self.run_ids[t.key], self.logged_step[t.key]) for t in self.todo]
        self.step = self.last["report"] = self.last["checkpoint"] = min(tr.step for tr in self.trainers)

    def fit(self) -> None:
        from sobolev.trainers.packed import PackedTrainer, split_into_packs

        for group in split_into_packs(self.trainers):
            trainer = PackedTrainer([self.trainers[i] for i in group])
            trainer.fit(lambda events, g=group: self.on_progress(g, events),
                        lambda j, outcome, g=group: self.on_end(g[j], outcome))

    # 3. report / checkpoint through the trainers' callback hook
    def on_progress(self, group: List[int], events) -> None:
        t0 = time.perf_counter()
        try:
            self._report(group, events)
        finally:
            self.report_seconds += (time.perf_counter() - t0) / len(self.todo)  # each member's share

    def _report(self, group: List[int], events) -> None:
        from ray import tune

        for ev in events:
            self.logs[group[ev.index]].add(ev.progress.metrics)
            self._log_preview(group[ev.index], ev.progress)
        if all(ev.progress.final for ev in events):
            return
        self.step = max(ev.progress.step for ev in events)
        doomed, _, at = os.environ.get(FAIL_ALWAYS, "").partition("@")
        if doomed in {t.key for t in self.todo} and self.step >= int(at):
            self.flush()
            raise InjectedFailure(f"injected failure at step {self.step} (every attempt)")
        fail_at = _injected_failure_step()
        marker = _injected_failure_marker(self.run_ids[self.members[0].key]) if fail_at else None
        if marker is not None and self.step >= fail_at and not marker.exists():
            marker.parent.mkdir(exist_ok=True)
            marker.write_text(str(self.step))
            self.flush()
            raise InjectedFailure(f"injected failure at step {self.step}")
        if self.step - self.last["report"] < self.ctx.report_every:
            return
        self.last["report"] = self.step
        self.flush()
        # the first member's latest metrics; the best finished member's PSNR (and name) wins over them
        report = {**{k: v for k, v in events[0].progress.metrics.items() if k != "step"}, **self.summary()}
        if self.step - self.last["checkpoint"] < self.ctx.checkpoint_every:
            tune.report(report)
            return
        self.last["checkpoint"] = self.step
        report_with_checkpoint(report, [(t.key, trainer) for t, trainer in zip(self.todo, self.trainers)
                                        if t.key not in self.finished and t.key not in self.failed])

    # 4. a member ends: FINISHED with artifacts, or FAILED by divergence (not retried)
    def on_end(self, index: int, outcome) -> None:
        from sobolev.errors import TrialDiverged

        t0 = time.perf_counter()
        t, log = self.todo[index], self.logs[index]
        run_id = self.run_ids[t.key]
        if isinstance(outcome, TrialDiverged):
            log.flush()
            self.tracker.set_tags(run_id, {TAG_FAILURE: str(outcome), TAG_DIVERGED: "true"})
            self.tracker.finish(run_id, "FAILED")
            self.failed.append(t.key)
            return
        final = {**outcome.metrics, **timing({
            "train_seconds": outcome.train_seconds, "steps_per_second": outcome.steps_per_second,
            "setup_seconds": self.setup_seconds, "report_seconds": self.report_seconds,
            "eval_seconds": outcome.eval_seconds})}
        curve = EvaluationCurve.of(outcome.history, [m for m in t.task.metrics if m in outcome.metrics])
        with tempfile.TemporaryDirectory() as d:
            t.task.save_artifacts(outcome, Path(d))
            (Path(d) / "config.yaml").write_text(yaml.safe_dump(
                {"trial_key": t.key, "task": t.task.name, "axes": t.axes, "config": t.config.model_dump(mode="json")},
                sort_keys=False))
            self.tracker.client.log_artifacts(run_id, d)
        final.update(timing({"finish_seconds": time.perf_counter() - t0}))  # artifacts and MLflow (not evaluation)
        rows, log.rows = list(log.rows), []  # one request: the last metrics and the curve
        if rows and rows[-1]["step"] == outcome.steps:  # the final record: one row for the final step
            rows[-1] = {**rows[-1], **final}
        else:
            rows.append({"step": outcome.steps, **final})
        self.tracker.log(run_id, rows, {TAG_EVALUATIONS: curve.to_json()} if curve.rows else {},
                         int(time.time() * 1000))
        if t.key in self.stale_failure:
            self.tracker.delete_tags(run_id, [TAG_FAILURE])
        self.tracker.finish(run_id, "FINISHED")
        self.finished.append(t.key)
        self._observe(t, final)

    def _log_preview(self, index: int, progress) -> None:
        """At an evaluation step of a trial that evaluates periodically (not logged before, e.g. by the run of an
        earlier attempt): the prediction's preview as an MLflow image at that step (the UI compares runs' images and
        scrubs through steps)."""
        evaluation = progress.trainer.last_evaluation
        if evaluation is None or evaluation.steps != progress.step or progress.step <= self.logs[index].after_step:
            return  # no evaluation at this step (it is the evaluation's own step count), or logged before
        if not progress.trainer.config.eval_every:
            return  # no periodic evaluations: nothing to scrub through (prediction.png is the final one)
        picture = self.todo[index].task.preview(evaluation)
        if picture is not None:
            self.tracker.log_picture(self.run_ids[self.todo[index].key], PREVIEW_KEY, picture, progress.step)

    def flush(self) -> None:
        for log in self.logs:
            log.flush()

    def _observe(self, trial: PlannedTrial, metrics: Dict[str, Any]) -> None:
        psnr = metrics.get("test_psnr")
        if isinstance(psnr, (int, float)) and (not self.best or psnr > self.best["test_psnr"]):
            self.best = {"test_psnr": float(psnr), "best_trial": trial.name}

    def summary(self) -> Dict[str, Any]:
        """The pack's report to Tune: which members ended how (read by the live view), the best PSNR."""
        running = [t.key for t in self.todo if t.key not in self.finished and t.key not in self.failed]
        return {"step": self.step, "members": len(self.members), "finished": len(self.finished),
                "running_keys": ",".join(running),
                "failed": len(self.failed), "finished_keys": ",".join(self.finished),
                "failed_keys": ",".join(self.failed), **self.best}


@functools.lru_cache(maxsize=1)
def _node_ip() -> str:
    """The address of the Ray node running this trial (as the cluster knows it; a worker stays on its node)."""
    try:
        import ray

        node_id = ray.get_runtime_context().get_node_id()
        for node in ray.nodes():
            if node.get("NodeID") == node_id:
                return str(node.get("NodeManagerAddress", ""))
    except Exception:  # pragma: no cover - outside Ray
        pass
    return ""
