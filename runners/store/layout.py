"""The layout of a sweep in MLflow: names only, no MLflow import (the worker, the driver and ``analysis`` agree
on them here).

One experiment per sweep name (tag :data:`TAG_SHAPE`: its task and axes), one parent run per invocation (kind
``sweep``), one child run per trial (kind ``trial``, tag :data:`PARENT`) keyed by :data:`TAG_KEY`, and, in a
tuned comparison, one child run per search configuration (kind ``tuning``).
"""

from __future__ import annotations

from typing import Dict, Optional

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"

PARENT = "mlflow.parentRunId"
TAG_KIND = "sobolev.kind"
"""``sweep`` (a parent run, and the experiment), ``trial`` or ``tuning``."""
KIND_SWEEP, KIND_TRIAL, KIND_TUNING = "sweep", "trial", "tuning"
TAG_KEY = "sobolev.trial_key"
TAG_SHAPE = "sobolev.shape"
"""An experiment's task and axes (JSON): a spec of another shape is refused."""
TAG_TASK = "sobolev.task"
"""An experiment's task as a report needs it (:class:`runners.store.records.TaskInfo`, JSON)."""
TAG_FAILURE = "sobolev.failure"
TAG_DIVERGED = "sobolev.diverged"
TAG_PHASE = "sobolev.phase"
"""A tuned comparison's runs: :data:`PHASE_TUNE` (a configuration of a search) or :data:`PHASE_EVALUATE`."""
PHASE_TUNE, PHASE_EVALUATE = "tune", "evaluate"
TAG_ARM = "sobolev.arm"
"""A tuned comparison's runs: the arm (``sine/val_der``)."""
TAG_SEARCH_KEY = "sobolev.search_key"
"""A tuning run: the key of its arm's search."""
TAG_STOPPED_AT = "sobolev.stopped_at_step"
"""A tuning run that ASHA stopped early: the last step it reported."""
TAG_DRIVER = "sobolev.driver"
"""A parent run: the driver running it, ``host pid start-time`` (``runners.store.drivers``)."""
TAG_INTERRUPTED = "sobolev.interrupted"
"""A run ended KILLED by reconciliation: why (its driver was gone)."""
TAG_EVALUATIONS = "sobolev.evaluations"
"""A trial run: its held-out metrics at every evaluation against the compute spent
(:class:`runners.store.records.EvaluationCurve`, JSON)."""
TAG_ATTEMPTS = "sobolev.attempts"
"""A trial run: its pack's failed attempts so far (a chain gives a pack up after ``run.max_failures`` retries)."""
TAG_ATTEMPTS_OF = "sobolev.attempts_of"
"""A trial run: the parent run (invocation) whose attempts ``sobolev.attempts`` counts; a later invocation counts
afresh (the cause, a full disk say, may be gone)."""
TAG_RESTORED = "sobolev.restored_from_step"
"""A trial run continued from a checkpoint: the step it restarted at."""
TAG_NODE, TAG_NODE_IP, TAG_PACK_SIZE = "sobolev.node", "sobolev.node_ip", "sobolev.pack_size"
TAG_CHAIN_SIZE = "sobolev.chain_size"
"""A trial run: how many trials its Tune trial trained one after the other (``runners.plan.chains``)."""
TAG_SPEC_PATH, TAG_OVERRIDES = "sobolev.spec_path", "sobolev.overrides"
SEARCH_TAG = "sobolev.search."
"""Parent-run tag prefix: ``sobolev.search.<arm key>`` holds the arm's search result
(:class:`runners.store.records.SearchResult`, JSON)."""
SEARCHED = "search."
"""Param prefix of a tuning run's sampled values (``search.lr``)."""
AXIS = "axis."
"""Param prefix of a trial run's grid coordinates (``axis.dataset``)."""
FLOPS_PARAM = "flops_per_step"
"""Param of a trial run: FLOPs of one training step, counted on the trial's own step (``sobolev.flops``)."""
TRAIN_FLOPS = "train_flops"
"""Step metric of a trial run: training FLOPs spent by that step (logged with every held-out evaluation, beside
``time/train_seconds``, so a chart can put the held-out metric against compute)."""
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
"""MLflow 3's UI opens an experiment in its model-training view (runs, metrics, images) with this tag, rather than
its GenAI view (traces, prompts)."""
DESCRIPTION = "mlflow.note.content"
"""A run's description, shown by MLflow's UI on the run page."""
TRAINING_VIEW = "workflowType=machine_learning"
"""The UI's query that selects its model-training view (the sidebar's toggle; the GenAI view is its default)."""
TIME_PREFIX = "time/"
"""Bookkeeping metrics (seconds, steps per second) are named ``time/…``: the UI groups them apart from the science."""
SPEC_ARTIFACT = "spec.yaml"
PLAN_ARTIFACT = "plan.json"
PREVIEW_KEY = "prediction"
"""The MLflow image key of the predictions logged at every evaluation."""
REPORT_FOLDER = "report"
"""Where ``report`` logs its files on the sweep's parent run."""


def timing(metrics: Dict[str, float]) -> Dict[str, float]:
    """Bookkeeping metrics under :data:`TIME_PREFIX`."""
    return {f"{TIME_PREFIX}{k}": v for k, v in metrics.items()}


def ui_page(base: str, experiment_id: Optional[str] = None) -> str:
    """The UI's address of the experiments (or of one experiment's runs) in its model-training view."""
    page = f"experiments/{experiment_id}/runs" if experiment_id else "experiments"
    return f"{base.rstrip('/')}/#/{page}?{TRAINING_VIEW}"
