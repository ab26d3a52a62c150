"""One sweep trial inside Ray Tune: the shared trainer, reporting through its callback hook.

Algorithm (per trial, on whichever node Ray places it):
  1. Open the trial's MLflow child run — or reopen it after a retry or ``resume``; a run this
     parent already FINISHED is not trained again (idempotent after a driver crash).
  2. Build the trainer from the planned config; restore it from ``tune.get_checkpoint()``.
  3. Every ``report_every`` steps: ``tune.report(metrics)`` and one batched MLflow request;
     every ``checkpoint_every`` steps also a checkpoint (model, optimiser, step).
  4. At the end: final metrics, artifacts (pictures, config YAML), run FINISHED.  A diverging
     trial ends FAILED with its reason and is not retried (divergence is deterministic).
"""

from __future__ import annotations

import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import yaml

from runners.plan import PlannedTrial
from runners.tracking import TAG_FAILURE, Tracker

CHECKPOINT_FILE = "trainer.pt"
FAILURE_MARKER = "injected_failure_done"


class InjectedFailure(RuntimeError):
    """Raised once per trial when ``run.fail_once_at_step`` is set (fault-injection tests)."""


def trial_params(trial: PlannedTrial) -> Dict[str, Any]:
    """What a child run records as params: grid coordinates, the full config, the key."""
    return {"trial_key": trial.key, "task": trial.task, **{f"axis.{k}": v for k, v in trial.axes.items()},
            **trial.config}


class BatchedMetrics:
    """Collects history rows and sends them to MLflow in one request per flush."""

    def __init__(self, tracker: Tracker, run_id: str, after_step: int) -> None:
        self.tracker, self.run_id, self.after_step = tracker, run_id, after_step
        self.rows: List[Dict[str, float]] = []

    def add(self, row: Dict[str, float]) -> None:
        if row["step"] > self.after_step:  # a resumed trial does not log its steps twice
            self.rows.append(dict(row))

    def flush(self) -> None:
        if self.rows:
            self.tracker.log_metrics(self.run_id, self.rows, int(time.time() * 1000))
            self.after_step = max(self.after_step, int(self.rows[-1]["step"]))
            self.rows = []


def sobolev_trial(config: Dict[str, Any]) -> None:
    """The Ray Tune function trainable (``tune.report`` / ``tune.get_checkpoint``, Ray 2.60)."""
    import torch
    from ray import tune

    from sobolev.errors import TrialDiverged
    from sobolev.trainers import load_checkpoint, save_checkpoint
    from sobolev.visualize import save_artifacts

    ctx = config["ctx"]
    trial = PlannedTrial.from_dict(config["trial"])
    torch.set_num_threads(max(1, int(ctx.get("cpus", 1))))
    tracker = Tracker(ctx["tracking_uri"])

    # 1. the child run
    run = tracker.open_child(
        ctx["experiment_id"], ctx["parent_run_id"], trial.key, trial.name, trial_params(trial),
        {"sobolev.node": socket.gethostname(), "sobolev.node_ip": _node_ip()},
    )
    run_id = run.info.run_id
    if run.info.status == "FINISHED":
        tune.report({**run.data.metrics, "mlflow_run_id": run_id, "already_finished": 1})
        return
    tracker.set_tags(run_id, {"sobolev.node": socket.gethostname(), "sobolev.node_ip": _node_ip()})

    # 2. trainer, restored from Tune's checkpoint when this is a retry or a resume
    trainer = trial.build_config().setup()
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            trainer.load_state_dict(load_checkpoint(Path(d) / CHECKPOINT_FILE))
        tracker.set_tags(run_id, {"sobolev.restored_from_step": trainer.step})
    metrics_log = BatchedMetrics(tracker, run_id, tracker.last_logged_step(run_id))
    last = {"report": trainer.step, "checkpoint": trainer.step}
    fail_at = ctx.get("fail_once_at_step")
    trial_dir = Path(tune.get_context().get_trial_dir() or tempfile.gettempdir())

    # 3. report / checkpoint through the trainer's callback hook
    def on_progress(progress) -> None:
        metrics_log.add(progress.metrics)
        if progress.final:
            return
        if fail_at and progress.step >= fail_at and not (trial_dir / FAILURE_MARKER).exists():
            (trial_dir / FAILURE_MARKER).write_text(str(progress.step))
            metrics_log.flush()
            raise InjectedFailure(f"injected failure at step {progress.step}")
        if progress.step - last["report"] < ctx["report_every"]:
            return
        last["report"] = progress.step
        metrics_log.flush()
        report = {k: v for k, v in progress.metrics.items() if k != "step"}
        report.update(step=progress.step, mlflow_run_id=run_id)
        if progress.step - last["checkpoint"] >= ctx["checkpoint_every"]:
            last["checkpoint"] = progress.step
            with tempfile.TemporaryDirectory() as d:
                save_checkpoint(progress.state_dict(), Path(d) / CHECKPOINT_FILE)
                tune.report(report, checkpoint=tune.Checkpoint.from_directory(d))
        else:
            tune.report(report)

    try:
        result = trainer.fit(on_progress)
    except TrialDiverged as exc:
        # 4b. deterministic failure: record the reason, end FAILED, do not retry
        metrics_log.flush()
        tracker.set_tags(run_id, {TAG_FAILURE: str(exc)})
        tracker.finish(run_id, "FAILED")
        tune.report({"diverged": 1, "failure": str(exc), "mlflow_run_id": run_id, "step": exc.step})
        return
    except BaseException:
        metrics_log.flush()  # the run stays RUNNING: Tune retries it from the last checkpoint
        raise

    # 4. final metrics and artifacts
    metrics_log.flush()
    final = {**result.metrics, "train_seconds": result.train_seconds, "steps_per_second": result.steps_per_second}
    tracker.log_metrics(run_id, [{"step": result.steps, **final}], int(time.time() * 1000))
    with tempfile.TemporaryDirectory() as d:
        save_artifacts(result, Path(d))
        (Path(d) / "config.yaml").write_text(
            yaml.safe_dump({"trial_key": trial.key, "task": trial.task, "axes": trial.axes, "config": trial.config},
                           sort_keys=False)
        )
        tracker.client.log_artifacts(run_id, d)
    tracker.finish(run_id, "FINISHED")
    tune.report({**final, "step": result.steps, "mlflow_run_id": run_id})


def _node_ip() -> str:
    """The address of the Ray node running this trial (as the cluster knows it)."""
    try:
        import ray

        node_id = ray.get_runtime_context().get_node_id()
        for node in ray.nodes():
            if node.get("NodeID") == node_id:
                return str(node.get("NodeManagerAddress", ""))
    except Exception:  # pragma: no cover - outside Ray
        pass
    return ""
