"""MLflow layout of a sweep: one experiment per sweep name, a parent run per invocation, a
child run per trial (tag ``mlflow.parentRunId``) keyed by ``sobolev.trial_key``.

Everything goes through an explicit :class:`~mlflow.tracking.MlflowClient` built from an
absolute tracking URI, so a Ray worker in its own working directory logs to the same store.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple
from urllib.parse import urlparse

from sobolev.config import flatten
from sobolev.errors import ConfigError

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no tqdm bars on stderr


def _quiet_mlflow() -> None:
    """MLflow configures its loggers at import; store creation chatter is not for users."""
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
TAG_KIND = "sobolev.kind"
TAG_KEY = "sobolev.trial_key"
TAG_SHAPE = "sobolev.shape"
TAG_FAILURE = "sobolev.failure"
TAG_DIVERGED = "sobolev.diverged"
TAG_PHASE = "sobolev.phase"
"""A tuned comparison's runs: ``tune`` (a configuration of a search) or ``evaluate``."""
TAG_ARM = "sobolev.arm"
"""A tuned comparison's runs: the arm (``sine/val_der``)."""
TAG_SEARCH_KEY = "sobolev.search_key"
"""A tuning run: the key of its arm's search."""
TAG_STOPPED_AT = "sobolev.stopped_at_step"
"""A tuning run that ASHA stopped early: the last step it reported."""
TAG_DRIVER = "sobolev.driver"
"""A parent run: the driver running it, ``host pid start-time`` (:func:`driver_identity`)."""
TAG_INTERRUPTED = "sobolev.interrupted"
"""A run ended KILLED by reconciliation: why (its driver was gone)."""
PARENT = "mlflow.parentRunId"
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


def diverged(run) -> bool:
    """A run that ended FAILED because its loss diverged: deterministic, never trained again."""
    return run.info.status == "FAILED" and run.data.tags.get(TAG_DIVERGED) == "true"


def ui_page(base: str, experiment_id: Optional[str] = None) -> str:
    """The UI's address of the experiments (or of one experiment's runs) in its model-training view."""
    page = f"experiments/{experiment_id}/runs" if experiment_id else "experiments"
    return f"{base.rstrip('/')}/#/{page}?{TRAINING_VIEW}"


def timing(metrics: Dict[str, float]) -> Dict[str, float]:
    """Bookkeeping metrics under :data:`TIME_PREFIX`."""
    return {f"{TIME_PREFIX}{k}": v for k, v in metrics.items()}


def driver_identity() -> str:
    """This process as ``host pid start-time``: with the start time a recycled PID is never mistaken for it."""
    import psutil

    return f"{socket.gethostname()} {os.getpid()} {psutil.Process().create_time():.3f}"


def driver_gone(identity: Optional[str]) -> Optional[bool]:
    """Whether the driver named by a parent run's :data:`TAG_DRIVER` is gone: True or False on this host,
    None (cannot tell) for another host's driver or a run without the tag."""
    import psutil

    try:
        host, pid, started = (identity or "").split(" ")
        if host != socket.gethostname():
            return None
        return abs(psutil.Process(int(pid)).create_time() - float(started)) > 0.01
    except psutil.NoSuchProcess:
        return True
    except (ValueError, psutil.Error):
        return None


def resolve_tracking_uri(uri: Optional[str], cwd: Optional[Path] = None) -> str:
    """An absolute tracking URI: relative sqlite paths are made absolute; file stores refused."""
    uri = uri or DEFAULT_TRACKING_URI
    cwd = Path(cwd or os.getcwd())
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        path = uri[len("sqlite:///") :] if uri.startswith("sqlite:///") else ""
        if not path:
            raise ConfigError(f"tracking URI {uri!r}: expected sqlite:///path/to/mlflow.db")
        if uri.startswith("sqlite:////"):
            return uri
        return f"sqlite:///{(cwd / path).resolve()}"
    if parsed.scheme in ("http", "https"):
        return uri.rstrip("/")
    raise ConfigError(
        f"tracking URI {uri!r} is not supported; use sqlite:///path/mlflow.db (default) or http://host:port "
        "(MLflow 3 refuses the ./mlruns file store)"
    )


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail in seconds, with the cause, when a tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        db = Path(uri[len("sqlite:///") :])
        if not db.parent.is_dir():
            raise ConfigError(f"tracking URI {uri!r}: folder {db.parent} does not exist")
        if db.is_dir():
            raise ConfigError(f"tracking URI {uri!r}: {db} is a folder, not an SQLite database file")
        try:
            if db.exists() and db.stat().st_size:
                with db.open("rb") as fh:
                    if fh.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
                        raise ConfigError(f"tracking URI {uri!r}: {db} is not an SQLite database (an MLflow store "
                                          "is sqlite:///path/to/mlflow.db or http://host:port)")
        except OSError as exc:
            raise ConfigError(f"tracking URI {uri!r}: cannot read {db}: {exc.strerror or exc}") from None
        return
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=timeout) as resp:
            if resp.status != 200:
                raise ConfigError(f"tracking server {uri} answered /health with HTTP {resp.status}")
    except urllib.error.HTTPError as exc:
        raise ConfigError(f"tracking server {uri} answered /health with HTTP {exc.code}") from None
    except (urllib.error.URLError, socket.timeout, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError(f"cannot reach tracking server {uri}: {reason}") from None


SQLITE_HEADER = b"SQLite format 3\x00"


def artifact_location(uri: str, experiment: str) -> Optional[str]:
    """Beside a sqlite store: ``<db folder>/mlartifacts/<experiment>``; a server decides itself."""
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        return (db.parent / "mlartifacts" / experiment).as_uri()
    return None


def store_exists(uri: str) -> bool:
    """False for a sqlite store not created yet (reading it must not create it)."""
    return not uri.startswith("sqlite:///") or Path(uri[len("sqlite:///") :]).exists()


class Tracker:
    """The sweep's view of an MLflow store."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._client = None

    @property
    def client(self):
        """The MlflowClient, made on first use (making it creates a missing sqlite store)."""
        if self._client is None:
            from mlflow.tracking import MlflowClient

            _quiet_mlflow()
            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    # -- experiments ------------------------------------------------------------------------
    def get_experiment(self, name: str):
        return self.client.get_experiment_by_name(name)

    def check_shape(self, name: str, shape: Dict[str, Any]) -> Optional[str]:
        """Read-only: the experiment id if it exists with the same shape; an error if not."""
        exp = self.get_experiment(name)
        if exp is None:
            return None
        theirs = exp.tags.get(TAG_SHAPE)
        if theirs is None:
            raise ConfigError(f"experiment {name!r} exists in {self.uri} but was not made by sobolev-sweep")
        if json.loads(theirs) != shape:
            raise ConfigError(
                f"experiment {name!r} in {self.uri} holds {json.loads(theirs)}, this spec is {shape}; "
                "rename the sweep (key: name)"
            )
        if exp.lifecycle_stage != "active":
            raise ConfigError(f"experiment {name!r} in {self.uri} is deleted; restore it or rename the sweep")
        return exp.experiment_id

    def ensure_experiment(self, name: str, shape: Dict[str, Any]) -> str:
        """The sweep's experiment, made if missing, marked as model training (:data:`EXPERIMENT_KIND`)."""
        exp_id = self.check_shape(name, shape)
        if exp_id is None:
            return self.client.create_experiment(
                name,
                artifact_location=artifact_location(self.uri, name),
                tags={TAG_SHAPE: json.dumps(shape, sort_keys=True), TAG_KIND: "sweep", **EXPERIMENT_KIND},
            )
        for key, value in EXPERIMENT_KIND.items():  # an experiment made by an earlier version
            if self.get_experiment(name).tags.get(key) != value:
                self.client.set_experiment_tag(exp_id, key, value)
        return exp_id

    # -- runs -------------------------------------------------------------------------------
    def search(self, exp_id: str, filter_string: str = "") -> List[Any]:
        runs: List[Any] = []
        token = None
        while True:
            page = self.client.search_runs([exp_id], filter_string=filter_string, max_results=1000, page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def finished_trial_keys(self, exp_id: Optional[str]) -> Dict[str, str]:
        """trial_key → run id of every FINISHED child run in the experiment."""
        if exp_id is None:
            return {}
        runs = self.search(exp_id, "attributes.status = 'FINISHED'")
        return {r.data.tags[TAG_KEY]: r.info.run_id for r in runs if TAG_KEY in r.data.tags}

    def unfinished_trials(self, exp_id: Optional[str]) -> Dict[str, Any]:
        """trial_key → the latest child run (sweep trial) that is not FINISHED: RUNNING, KILLED or FAILED."""
        if exp_id is None:
            return {}
        runs = self.search(exp_id, f"attributes.status != 'FINISHED' and tags.`{TAG_KIND}` = 'trial'")
        latest: Dict[str, Any] = {}
        for run in sorted(runs, key=lambda r: r.info.start_time or 0):
            latest[run.data.tags.get(TAG_KEY, "")] = run
        latest.pop("", None)
        return latest

    def reconcile(self, exp_id: Optional[str]) -> List[Any]:
        """End what invocations whose driver is gone left RUNNING (:func:`driver_gone`): their trial runs
        KILLED with the reason (a later ``run`` or ``resume`` continues them from their checkpoints), their
        parent FINISHED when every trial it planned finished, else KILLED.  Returns the parents ended."""
        if exp_id is None:
            return []
        running = self.search(exp_id, "attributes.status = 'RUNNING'")
        parents = {r.info.run_id: r for r in running if PARENT not in r.data.tags}
        gone = {pid: run for pid, run in parents.items() if driver_gone(run.data.tags.get(TAG_DRIVER))}
        for run in running:  # a trial or tuning run of a gone invocation, or of one that ended without it
            parent = run.data.tags.get(PARENT)
            if parent is not None and (parent in gone or parent not in parents):
                self._end_interrupted(run, parent)
        for pid, run in gone.items():
            kids = [k for k in self.children(exp_id, pid) if k.data.tags.get(TAG_KIND) == "trial"]
            planned = int(run.data.params.get("trials", 0))
            done = 0 < planned <= len(kids) and all(k.info.status == "FINISHED" or diverged(k) for k in kids)
            self.set_tags(pid, {TAG_INTERRUPTED: f"its driver ({run.data.tags.get(TAG_DRIVER)}) ended without "
                                                 f"closing it; found by the driver {driver_identity()}"})
            self.finish(pid, "FINISHED" if done else "KILLED")
        return list(gone.values())

    def _end_interrupted(self, run, parent_id: str) -> None:
        self.set_tags(run.info.run_id, {TAG_INTERRUPTED: f"the invocation {parent_id} ended without closing it"})
        self.finish(run.info.run_id, "KILLED")

    def adopt(self, run_id: str, parent_id: str) -> None:
        """Move an unfinished trial run under the invocation that continues it (no second run for its key)."""
        self.set_tags(run_id, {PARENT: parent_id})

    def children(self, exp_id: str, parent_id: str) -> List[Any]:
        return self.search(exp_id, f"tags.`{PARENT}` = '{parent_id}'")

    def find_child(self, exp_id: str, parent_id: str, key: str):
        runs = self.search(exp_id, f"tags.`{TAG_KEY}` = '{key}' and tags.`{PARENT}` = '{parent_id}'")
        return runs[0] if runs else None

    def create_parent(self, exp_id: str, name: str, params: Dict[str, Any], tags: Dict[str, str]) -> str:
        """The invocation's parent run, with this driver's identity (:func:`driver_gone` reads it)."""
        run = self.client.create_run(exp_id, run_name=name,
                                     tags={TAG_KIND: "sweep", TAG_DRIVER: driver_identity(), **tags})
        self.log_params(run.info.run_id, params)
        return run.info.run_id

    def log_plan(self, parent_id: str, spec_text: str, overrides: List[str], trials: List[Dict[str, Any]]) -> None:
        """What an invocation ran: the spec file as written (``spec.yaml``) and its plan (``plan.json``:
        the ``--set`` overrides and every planned trial's key, name and axes)."""
        self.client.log_text(parent_id, spec_text, SPEC_ARTIFACT)
        self.client.log_text(parent_id, json.dumps({"overrides": overrides, "trials": trials}), PLAN_ARTIFACT)

    def planned_trials(self, parent_id: str) -> Optional[List[Dict[str, Any]]]:
        """The planned trials :meth:`log_plan` recorded for a parent run (None before that existed)."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            try:
                local = self.client.download_artifacts(parent_id, PLAN_ARTIFACT, tmp)
            except Exception:  # an older parent run, or a store that lost the file
                return None
            return json.loads(Path(local).read_text())["trials"]

    def open_child(self, exp_id: str, parent_id: str, key: str, name: str, params: Dict[str, Any],
                   tags: Dict[str, str], kind: str = "trial") -> Tuple[Any, bool]:
        """The trial's child run and whether it was created now: reopened (``tags`` updated) if this
        parent already has it, else created with ``params`` and ``tags``.  ``kind``: ``trial`` (what
        reports read), or ``tuning`` (one configuration of a search)."""
        existing = self.find_child(exp_id, parent_id, key)
        if existing is not None:
            if existing.info.status != "FINISHED" and not diverged(existing):
                self.client.update_run(existing.info.run_id, status="RUNNING")
                self.set_tags(existing.info.run_id, tags)
            return existing, False
        run = self.client.create_run(
            exp_id, run_name=name, tags={PARENT: parent_id, TAG_KEY: key, TAG_KIND: kind, **tags}
        )
        self.log_params(run.info.run_id, params)
        return run, True

    def log_dataset(self, run_id: str, trial) -> None:
        """The data a trial fits as the run's MLflow dataset input (the runs table's Dataset column): its name,
        content digest, source and shape."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        data = trial.dataset
        if data is None:
            return
        shape = [*trial.shape, trial.channels]
        dataset = Dataset(name=data.name, digest=data.digest.removeprefix("builtin:")[:36],
                          source_type="builtin" if data.digest.startswith("builtin:") else "local",
                          source=json.dumps({"uri": data.source}),
                          schema=json.dumps({"mlflow_tensorspec": {"features": json.dumps(
                              [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": shape}}]),
                              "targets": None}}),
                          profile=json.dumps({"shape": shape, "samples": trial.samples}))
        self.client.log_inputs(run_id, datasets=[DatasetInput(dataset, tags=[InputTag("mlflow.data.context",
                                                                                        "training")])])

    def log_picture(self, run_id: str, key: str, picture, step: int) -> None:
        """A uint8 picture as an MLflow image at ``step`` (``mlflow.log_image``: the UI's image view)."""
        self.client.log_image(run_id, picture, key=key, step=step)

    def log_params(self, run_id: str, params: Dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i : i + 100])

    def last_logged_step(self, run_id: str, key: str = "loss") -> int:
        history = self.client.get_metric_history(run_id, key)
        return max((m.step for m in history), default=0)

    def log_metrics(self, run_id: str, rows: Iterable[Dict[str, float]], timestamp_ms: int) -> None:
        """One ``log_batch`` request per 1000 values (MLflow's limit), not one per value."""
        from mlflow.entities import Metric

        items = [
            Metric(k, float(v), timestamp_ms, int(row["step"]))
            for row in rows
            for k, v in row.items()
            if k != "step" and isinstance(v, (int, float))
        ]
        for i in range(0, len(items), 1000):
            self.client.log_batch(run_id, metrics=items[i : i + 1000])

    def set_tags(self, run_id: str, tags: Dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status)
