"""Helpers for the end-to-end sweep tests: write specs, run the real CLI, read the real MLflow."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import yaml

CLI = [sys.executable, "-m", "runners.cli"]
ENV = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "RAY_USAGE_STATS_ENABLED": "0"}


def fail_once_at(step: int) -> Dict[str, str]:
    """The environment of a sweep whose every Tune trial raises once on reaching ``step`` (tests/README.md)."""
    return {**ENV, "SOBOLEV_TEST_FAIL_ONCE_AT_STEP": str(step)}


def write_spec(directory: Path, name: str = "tiny", **changes) -> Path:
    """A tiny image sweep (2 trials of 32² images) with ``changes`` merged in (dotted keys)."""
    spec = {
        "name": name,
        "task": "image",
        "grid": {
            "datasets": ["astronaut"],
            "activations": ["sine"],
            "supervision": ["val", "val_der"],
            "sampling": {"factors": [4]},
            "seeds": [0],
        },
        "trial": {"size": 32, "steps": 40, "log_every": 10, "eval_every": 20},
        "resources": {"cpu": 1},
        "run": {"report_every": 10, "checkpoint_every": 20},
    }
    for dotted, value in changes.items():
        node = spec
        keys = dotted.split("__")
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def cli(*args: str, cwd: Path, timeout: float = 300, env: Dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env or ENV)


def client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def sqlite_uri(directory: Path) -> str:
    return f"sqlite:///{directory / 'mlflow.db'}"


def runs(uri: str, experiment: str) -> List:
    c = client(uri)
    exp = c.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r} in {uri}"
    return list(c.search_runs([exp.experiment_id], max_results=1000))


def children(all_runs: List) -> List:
    return [r for r in all_runs if "mlflow.parentRunId" in r.data.tags]


def parents(all_runs: List) -> List:
    return [r for r in all_runs if "mlflow.parentRunId" not in r.data.tags]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("sobolev-sweep: error: "), proc.stderr
    return lines[0]
