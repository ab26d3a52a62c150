"""Helpers for the end-to-end sweep tests: write specs, run the real CLI, read the real MLflow."""

from __future__ import annotations

import functools
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


DROP = object()
"""A value of :func:`write_spec` that removes its key (``trial__steps=DROP``)."""


def write_spec(directory: Path, name: str = "tiny", **changes) -> Path:
    """A tiny image sweep (2 trials of 32² images) with ``changes`` merged in (``__`` between keys; ``DROP``
    removes one)."""
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
        if value is DROP:
            node.pop(keys[-1], None)
        else:
            node[keys[-1]] = value
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def cli(*args: str, cwd: Path, timeout: float = 300, env: Dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env or ENV)


@functools.lru_cache(maxsize=None)
def client(uri: str):
    """One client per store (a client per call would open a database engine per call)."""
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


class MlflowServer:
    """A real ``mlflow server`` on 127.0.0.1 over a sqlite store in ``folder``; it can be stopped and started
    again on the same port (a tracking server that goes away and comes back)."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process = None

    def start(self, timeout: float = 90) -> "MlflowServer":
        import time
        import urllib.request

        log = open(self.folder / "server.log", "a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{self.folder / 'server.db'}",
             "--artifacts-destination", str(self.folder / "server-artifacts"), "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "1"],
            env={**ENV, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}, cwd=self.folder, stdout=log, stderr=log,
            start_new_session=True,
        )
        deadline = time.time() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                if time.time() > deadline or self.process.poll() is not None:
                    raise AssertionError((self.folder / "server.log").read_text()[-2000:]) from None
                time.sleep(0.5)

    def stop(self) -> None:
        import signal

        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
