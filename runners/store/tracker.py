"""The tracker: every MLflow call of a sweep, through one explicit ``MlflowClient`` built from an absolute
tracking URI (``runners.store.uri``), so a Ray worker in its own working directory logs to the same store.

The layout it writes is ``runners.store.layout``; the records it stores are ``runners.store.records``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from runners.store.drivers import driver_gone, driver_identity
from runners.store.layout import (EXPERIMENT_KIND, KIND_SWEEP, KIND_TRIAL, PARENT, PLAN_ARTIFACT, SEARCH_TAG,
                                  SPEC_ARTIFACT, TAG_DIVERGED, TAG_DRIVER, TAG_INTERRUPTED, TAG_KEY, TAG_KIND,
                                  TAG_SHAPE, TAG_TASK, TIME_PREFIX)
from runners.store.records import PlanRecord, SearchResult, TaskInfo
from runners.store.uri import artifact_location, sqlite_path
from sobolev.config import flatten
from sobolev.errors import ConfigError

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no tqdm bars on stderr


def _quiet_mlflow() -> None:
    """MLflow configures its loggers at import; store creation chatter is not for users."""
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def diverged(run) -> bool:
    """A run that ended FAILED because its loss diverged: deterministic, never trained again."""
    return run.info.status == "FAILED" and run.data.tags.get(TAG_DIVERGED) == "true"


def search_results(run) -> List[SearchResult]:
    """The search results a parent run records (tags ``sobolev.search.<arm key>``)."""
    return searches_in(run.data.tags)


def searches_in(tags: Dict[str, str]) -> List[SearchResult]:
    """The search results among a parent run's tags."""
    return [SearchResult.from_json(text) for tag, text in tags.items() if tag.startswith(SEARCH_TAG)]


def create_store(uri: str) -> None:
    """A missing SQLite store, created whole or not at all, under a lock: two drivers creating one store at once do
    not both migrate it (``duplicate column name``), and a driver killed while creating it leaves no half-made
    store.  MLflow's migrations (dozens of steps, ~5 s) run once per MLflow version into a template in the cache
    (``$SOBOLEV_CACHE``, default ``~/.cache/sobolev-sweep``); a new store is a copy of it, renamed into place."""
    import fcntl
    import shutil

    db = sqlite_path(uri)
    if db is None or db.exists():
        return
    with open(db.parent / f".{db.name}.create.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if db.exists():  # made by the driver that held the lock
            return
        for stale in db.parent.glob(f".{db.name}.creating-*"):  # left by a creator killed mid-way
            stale.unlink(missing_ok=True)
        tmp = db.parent / f".{db.name}.creating-{os.getpid()}"
        shutil.copyfile(store_template(), tmp)
        os.rename(tmp, db)


def store_template() -> Path:
    """An empty, fully migrated SQLite store of this MLflow version (made on first use, atomically)."""
    import fcntl

    import mlflow
    from mlflow.tracking import MlflowClient

    cache = Path(os.environ.get("SOBOLEV_CACHE", Path.home() / ".cache" / "sobolev-sweep"))
    cache.mkdir(parents=True, exist_ok=True)
    template = cache / f"mlflow-{mlflow.__version__}-empty.db"
    if template.exists():
        return template
    with open(cache / f".{template.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not template.exists():
            tmp = cache / f".{template.name}.creating-{os.getpid()}"
            tmp.unlink(missing_ok=True)
            MlflowClient(tracking_uri=f"sqlite:///{tmp}").search_experiments(max_results=1)  # the migrations
            os.rename(tmp, template)  # committed: SQLite's file is whole between transactions
    return template


@dataclass(frozen=True)
class TrialRun:
    """What dedup and resume need of a sweep-trial run."""

    run_id: str
    key: str
    status: str
    diverged: bool
    """Ended FAILED because its loss diverged: deterministic, never trained again."""
    parent: Optional[str]
    start_time: int


class TrialRuns:
    """The experiment's sweep-trial runs by trial key: the FINISHED ones, and the latest of the others."""

    def __init__(self, runs: Sequence[TrialRun]) -> None:
        self.finished: Dict[str, str] = {}
        """trial key → run id of a FINISHED run."""
        self.unfinished: Dict[str, TrialRun] = {}
        """trial key → its latest run that is not FINISHED (RUNNING, KILLED or FAILED)."""
        for run in sorted(runs, key=lambda r: r.start_time):
            if not run.key:
                continue
            if run.status == "FINISHED":
                self.finished[run.key] = run.run_id
            else:
                self.unfinished[run.key] = run


TRIAL_RUNS_SQL = f"""
SELECT r.run_uuid, k.value, r.status, COALESCE(d.value, ''), p.value, COALESCE(r.start_time, 0)
FROM runs r
JOIN tags kind ON kind.run_uuid = r.run_uuid AND kind.key = '{TAG_KIND}' AND kind.value = '{KIND_TRIAL}'
JOIN tags k ON k.run_uuid = r.run_uuid AND k.key = '{TAG_KEY}'
LEFT JOIN tags p ON p.run_uuid = r.run_uuid AND p.key = '{PARENT}'
LEFT JOIN tags d ON d.run_uuid = r.run_uuid AND d.key = '{TAG_DIVERGED}'
WHERE r.experiment_id = ? AND r.lifecycle_stage = 'active'
"""
"""MLflow's own tables (``runs``, ``tags``: the schema every MLflow since 1.x keeps) read for just what dedup needs;
``tests/test_scale.py`` checks it against MLflow's search."""


FIND_CHILD_SQL = f"""
SELECT r.run_uuid FROM runs r
JOIN tags k ON k.run_uuid = r.run_uuid AND k.key = '{TAG_KEY}'
JOIN tags p ON p.run_uuid = r.run_uuid AND p.key = '{PARENT}'
WHERE r.experiment_id = ? AND r.lifecycle_stage = 'active' AND k.value = ? AND p.value = ?
ORDER BY r.start_time LIMIT 1
"""


def sqlite3_reader(db: Path):
    """A read-only connection to a SQLite store (MLflow's own connections write)."""
    import sqlite3

    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)


def _sqlite_trial_runs(db: Path, exp_id: str) -> List[TrialRun]:
    with contextlib.closing(sqlite3_reader(db)) as con:
        rows = con.execute(TRIAL_RUNS_SQL, (int(exp_id),)).fetchall()
    return [TrialRun(run_id, key, status, div == "true", parent, int(start)) for run_id, key, status, div, parent, start
            in rows]


class Tracker:
    """The sweep's view of an MLflow store."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._client = None

    @property
    def client(self):
        """The MlflowClient, made on first use (a missing SQLite store is created first, :func:`create_store`)."""
        if self._client is None:
            from mlflow.tracking import MlflowClient

            _quiet_mlflow()
            create_store(self.uri)
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

    def ensure_experiment(self, name: str, shape: Dict[str, Any], task: Optional[TaskInfo] = None) -> str:
        """The sweep's experiment, made if missing, marked as model training (:data:`EXPERIMENT_KIND`), with its
        task recorded for reports (``task``)."""
        tags = {**EXPERIMENT_KIND, **({TAG_TASK: task.to_json()} if task is not None else {})}
        exp_id = self.check_shape(name, shape)
        if exp_id is None:
            return self.client.create_experiment(
                name,
                artifact_location=artifact_location(self.uri, name),
                tags={TAG_SHAPE: json.dumps(shape, sort_keys=True), TAG_KIND: KIND_SWEEP, **tags},
            )
        existing = self.get_experiment(name).tags
        for key, value in tags.items():  # an experiment made by an earlier version
            if existing.get(key) != value:
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

    def trial_runs(self, exp_id: Optional[str]) -> TrialRuns:
        """Every sweep-trial run of the experiment, in one query (:class:`TrialRuns`): on a SQLite store one SQL
        query of MLflow's tables for just these columns; on a server, MLflow's search (every run's whole record,
        a page of 1000 at a time)."""
        if exp_id is None:
            return TrialRuns([])
        db = sqlite_path(self.uri)
        return TrialRuns(_sqlite_trial_runs(db, exp_id) if db is not None else self.searched_trial_runs(exp_id))

    def searched_trial_runs(self, exp_id: str) -> List[TrialRun]:
        """:meth:`trial_runs` through MLflow's search (any store)."""
        runs = self.search(exp_id, f"tags.`{TAG_KIND}` = '{KIND_TRIAL}'")
        return [TrialRun(r.info.run_id, r.data.tags.get(TAG_KEY, ""), r.info.status, diverged(r),
                         r.data.tags.get(PARENT), r.info.start_time or 0) for r in runs]

    def measured_overhead(self, exp_id: Optional[str], startup: float) -> Optional[float]:
        """Seconds per trial per concurrent slot that this experiment's earlier invocations spent outside training:
        ``((wall − startup) × concurrent − training) / trials``, the median over those that recorded it."""
        if exp_id is None:
            return None
        found = []
        for run in self.search(exp_id, f"tags.`{TAG_KIND}` = '{KIND_SWEEP}'"):
            m = run.data.metrics
            wall, train = m.get(TIME_PREFIX + "wall_seconds"), m.get(TIME_PREFIX + "train_seconds_sum")
            trials, slots = m.get("trials_finished"), m.get("concurrency")
            if wall and train is not None and trials and slots:
                found.append(max(((wall - startup) * slots - train) / trials, 0.0))
        return statistics.median(found) if found else None

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
            kids = [k for k in self.children(exp_id, pid) if k.data.tags.get(TAG_KIND) == KIND_TRIAL]
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
        """The run of ``key`` under ``parent_id``, if there is one (a SQLite store answers it from its tags table)."""
        db = sqlite_path(self.uri)
        if db is not None:
            with contextlib.closing(sqlite3_reader(db)) as con:
                row = con.execute(FIND_CHILD_SQL, (int(exp_id), key, parent_id)).fetchone()
            return self.client.get_run(row[0]) if row else None
        runs = self.search(exp_id, f"tags.`{TAG_KEY}` = '{key}' and tags.`{PARENT}` = '{parent_id}'")
        return runs[0] if runs else None

    def create_parent(self, exp_id: str, name: str, params: Dict[str, Any], tags: Dict[str, str]) -> str:
        """The invocation's parent run, with this driver's identity (:func:`driver_gone` reads it)."""
        run = self.client.create_run(exp_id, run_name=name,
                                     tags={TAG_KIND: KIND_SWEEP, TAG_DRIVER: driver_identity(), **tags})
        self.log_params(run.info.run_id, params)
        return run.info.run_id

    def log_plan(self, parent_id: str, spec_text: str, plan: PlanRecord) -> None:
        """What an invocation runs: the spec file as written (``spec.yaml``) and its plan (``plan.json``: the
        ``--set`` overrides and every planned trial's key, name and axes)."""
        self.client.log_text(parent_id, spec_text, SPEC_ARTIFACT)
        self.client.log_text(parent_id, plan.to_json(), PLAN_ARTIFACT)

    def planned(self, parent_id: str) -> Optional[PlanRecord]:
        """The plan :meth:`log_plan` recorded for a parent run (None before that existed)."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            try:
                local = self.client.download_artifacts(parent_id, PLAN_ARTIFACT, tmp)
            except Exception:  # an older parent run, or a store that lost the file
                return None
            return PlanRecord.from_json(Path(local).read_text())

    def record_search(self, parent_id: str, result: SearchResult) -> None:
        """An arm's search result on a parent run (what the report and a later ``run`` read)."""
        self.set_tags(parent_id, {SEARCH_TAG + result.key: result.to_json()})

    def recorded_searches(self, exp_id: Optional[str], keys: Sequence[str]) -> Dict[str, SearchResult]:
        """Search key → the result of a finished search of that key in this experiment, for the ``keys`` that
        have one (one query of the parent runs for all of them)."""
        if exp_id is None or not keys:
            return {}
        found: Dict[str, SearchResult] = {}
        for run in self.search(exp_id, f"tags.`{TAG_KIND}` = '{KIND_SWEEP}'"):
            for key in keys:
                text = run.data.tags.get(SEARCH_TAG + key)
                if text and key not in found:
                    found[key] = SearchResult.from_json(text)
        return found

    def open_child(self, exp_id: str, parent_id: str, key: str, name: str, params: Optional[Dict[str, Any]],
                   tags: Dict[str, str], kind: str = KIND_TRIAL) -> Tuple[Any, bool]:
        """The trial's child run and whether it was created now: reopened (``tags`` updated) if this
        parent already has it, else created with ``params`` (None: the caller logs them) and ``tags``.  ``kind``:
        ``trial`` (what reports read), or ``tuning`` (one configuration of a search)."""
        existing = self.find_child(exp_id, parent_id, key)
        if existing is not None:
            if existing.info.status != "FINISHED" and not diverged(existing):
                self.client.update_run(existing.info.run_id, status="RUNNING")
                self.set_tags(existing.info.run_id, tags)
            return existing, False
        run = self.client.create_run(
            exp_id, run_name=name, tags={PARENT: parent_id, TAG_KEY: key, TAG_KIND: kind, **tags}
        )
        if params is not None:
            self.log_params(run.info.run_id, params)
        return run, True

    def log_dataset(self, run_id: str, name: str, digest: str, source: str, shape: Sequence[int],
                    samples: int) -> None:
        """The data a trial fits as the run's MLflow dataset input (the runs table's Dataset column): its name,
        content digest, source and shape (``(H, W, C)`` or ``(N, C)``)."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        shape = list(shape)
        dataset = Dataset(name=name, digest=digest.removeprefix("builtin:")[:36],
                          source_type="builtin" if digest.startswith("builtin:") else "local",
                          source=json.dumps({"uri": source}),
                          schema=json.dumps({"mlflow_tensorspec": {"features": json.dumps(
                              [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": shape}}]),
                              "targets": None}}),
                          profile=json.dumps({"shape": shape, "samples": samples}))
        self.client.log_inputs(run_id, datasets=[DatasetInput(dataset, tags=[InputTag("mlflow.data.context",
                                                                                        "training")])])

    def log_artifacts_at(self, artifact_uri: str, local_dir: str, artifact_path: str) -> None:
        """A folder's files under a run's ``artifact_uri`` (read with the run), through MLflow's artifact repository
        of that URI: no tracking store is opened (``report``, which reads its store without MLflow, saves the 1.6 s
        of opening MLflow's SQLAlchemy store)."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        _quiet_mlflow()
        get_artifact_repository(artifact_uri, tracking_uri=self.uri).log_artifacts(local_dir, artifact_path)

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

    def log(self, run_id: str, rows: Iterable[Dict[str, float]], tags: Dict[str, str], timestamp_ms: int) -> None:
        """Metric rows and tags in one ``log_batch`` request per 1000 values (MLflow's limit), not one per value;
        the tags go with the first (a trial's end: its last metrics and its evaluation curve at once)."""
        from mlflow.entities import Metric, RunTag

        metrics = [Metric(k, float(v), timestamp_ms, int(row["step"])) for row in rows for k, v in row.items()
                   if k != "step" and isinstance(v, (int, float))]
        tag_list = [RunTag(k, str(v)[:5000]) for k, v in tags.items()]
        if tag_list or metrics:
            self.client.log_batch(run_id, metrics=metrics[:1000], tags=tag_list)
        for i in range(1000, len(metrics), 1000):
            self.client.log_batch(run_id, metrics=metrics[i : i + 1000])

    def log_metrics(self, run_id: str, rows: Iterable[Dict[str, float]], timestamp_ms: int) -> None:
        """Metric rows alone (:meth:`log`)."""
        self.log(run_id, rows, {}, timestamp_ms)

    def set_tags(self, run_id: str, tags: Dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])

    def delete_tags(self, run_id: str, keys: Iterable[str]) -> None:
        for key in keys:
            self.client.delete_tag(run_id, key)

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status)
