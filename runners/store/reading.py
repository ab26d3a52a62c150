"""What ``report`` reads of a sweep's store, as typed records: the experiment, every run (status, params, tags,
latest metrics) and an invocation's plan.

On a local SQLite store it is one SQL read of MLflow's own tables (``experiments``, ``runs``, ``tags``, ``params``,
``latest_metrics``: the schema every MLflow since 1.x keeps) and the plan's file in the local artifact folder, so a
report imports no MLflow to read (importing it and opening its SQLAlchemy store took 1.6 s of the main job's 5.7-s
report on a 2-core Xeon).  Anywhere else, MLflow's search.  Both give the same records
(``tests/test_report_properties.py`` checks the SQL read against MLflow's search); every write still goes through
MLflow (``runners.store.tracker``).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from runners.store.layout import PLAN_ARTIFACT
from runners.store.records import PlanRecord
from runners.store.tracker import Tracker, sqlite3_reader
from runners.store.uri import local_folder, sqlite_path

@dataclass(frozen=True)
class StoredExperiment:
    """An experiment as a report reads it: its id, whether it is deleted, its tags (shape, task)."""

    experiment_id: str
    lifecycle_stage: str
    tags: Dict[str, str]


@dataclass(frozen=True)
class StoredRun:
    """One run as a report reads it."""

    run_id: str
    status: str
    start_time: int
    artifact_uri: str
    params: Dict[str, str]
    tags: Dict[str, str]
    metrics: Dict[str, float]
    """Each metric's latest value (of its largest step), as MLflow's search gives it."""

    @classmethod
    def of(cls, run: Any) -> "StoredRun":
        """Of an MLflow ``Run``."""
        return cls(run.info.run_id, run.info.status, int(run.info.start_time or 0), run.info.artifact_uri or "",
                   dict(run.data.params), dict(run.data.tags), dict(run.data.metrics))


def _reader(db: Path):
    return contextlib.closing(sqlite3_reader(db))


def read_experiment(uri: str, name: str) -> Optional[StoredExperiment]:
    """The experiment called ``name`` (None if there is none)."""
    db = sqlite_path(uri)
    if db is None:
        exp = Tracker(uri).get_experiment(name)
        return None if exp is None else StoredExperiment(exp.experiment_id, exp.lifecycle_stage, dict(exp.tags))
    with _reader(db) as con:
        found = con.execute("SELECT experiment_id, lifecycle_stage FROM experiments WHERE name = ?", (name,)).fetchone()
        if found is None:
            return None
        tags = con.execute("SELECT key, value FROM experiment_tags WHERE experiment_id = ?", (found[0],)).fetchall()
    return StoredExperiment(str(found[0]), found[1], dict(tags))


def read_runs(uri: str, experiment_id: str) -> List[StoredRun]:
    """Every active run of the experiment."""
    db = sqlite_path(uri)
    if db is None:
        return [StoredRun.of(r) for r in Tracker(uri).search(experiment_id)]
    of_experiment = "SELECT run_uuid FROM runs WHERE experiment_id = ? AND lifecycle_stage = 'active'"
    exp = (int(experiment_id),)
    with _reader(db) as con:
        runs = con.execute("SELECT run_uuid, status, COALESCE(start_time, 0), COALESCE(artifact_uri, '') FROM runs "
                           "WHERE experiment_id = ? AND lifecycle_stage = 'active'", exp).fetchall()
        params: Dict[str, Dict[str, str]] = {r[0]: {} for r in runs}
        tags: Dict[str, Dict[str, str]] = {r[0]: {} for r in runs}
        metrics: Dict[str, Dict[str, float]] = {r[0]: {} for r in runs}
        for run_id, key, value in con.execute(f"SELECT run_uuid, key, value FROM params WHERE run_uuid IN "
                                              f"({of_experiment})", exp):
            params[run_id][key] = value
        for run_id, key, value in con.execute(f"SELECT run_uuid, key, value FROM tags WHERE run_uuid IN "
                                              f"({of_experiment})", exp):
            tags[run_id][key] = value
        for run_id, key, value, is_nan in con.execute(f"SELECT run_uuid, key, value, is_nan FROM latest_metrics "
                                                      f"WHERE run_uuid IN ({of_experiment})", exp):
            metrics[run_id][key] = math.nan if is_nan else float(value)  # NaN is kept as 0 and is_nan
    return [StoredRun(run_id, status, int(start), artifact_uri, params[run_id], tags[run_id], metrics[run_id])
            for run_id, status, start, artifact_uri in runs]


def read_plan(uri: str, run: StoredRun) -> Optional[PlanRecord]:
    """The plan an invocation recorded on its parent run (None before plans were recorded, or if its file is gone):
    from the local artifact folder where the store keeps one, else through MLflow."""
    folder = local_folder(run.artifact_uri) if sqlite_path(uri) is not None else None
    if folder is not None:
        path = folder / PLAN_ARTIFACT
        return PlanRecord.from_json(path.read_text()) if path.is_file() else None
    return Tracker(uri).planned(run.run_id)
