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
    """``sobolev-sweep ARGS`` in a process of its own, run in ``cwd``: its exit code, stdout and stderr.

    The process is forked from a server that has imported the CLI once (``multiprocessing``'s forkserver, which
    never computes anything, so no thread pool is forked): the same code, exit codes, streams, signals and exit
    handlers as ``python -m runners.cli``, without paying torch's, MLflow's and Ray's imports (~4 s) per call.
    ``SOBOLEV_TEST_FRESH_PROCESSES=1`` runs every call as a fresh interpreter instead."""
    if os.environ.get("SOBOLEV_TEST_FRESH_PROCESSES") == "1":
        return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              env=env or ENV)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="cli-") as streams:
        out, err = Path(streams) / "stdout", Path(streams) / "stderr"
        proc = _forkserver().Process(target=_cli_child, args=(list(args), str(cwd), dict(env or ENV), str(out),
                                                              str(err)))
        proc.start()
        proc.join(timeout)
        if proc.is_alive():
            proc.kill()
            proc.join()
            raise subprocess.TimeoutExpired([*CLI, *args], timeout, out.read_text(), err.read_text())
        return subprocess.CompletedProcess([*CLI, *args], proc.exitcode, out.read_text(), err.read_text())


@functools.lru_cache(maxsize=None)
def _forkserver():
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["runners.cli.commands"])
    return context


def _cli_child(argv: List[str], cwd: str, env: Dict[str, str], out: str, err: str) -> None:
    """In the forked process: the environment, folder and streams of ``subprocess.run``, then the CLI's ``main``
    and, as an interpreter's exit does, the exit handlers (multiprocessing's children skip them)."""
    import atexit

    for fd, path in ((1, out), (2, err)):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    from runners.cli.commands import main

    code = 0
    try:
        main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # what an interpreter prints of an uncaught exception
        import traceback

        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@functools.lru_cache(maxsize=None)
def client(uri: str, create: bool = False):
    """One client per store (a client per call would open a database engine per call).  A SQLite store the sweep
    has not made yet is an error unless ``create``: MLflow would create and migrate the file itself, racing the
    drivers that are making it (two drivers and a test polling for their runs failed with ``table
    _alembic_tmp_experiments already exists``)."""
    from mlflow.tracking import MlflowClient

    from runners.store.uri import sqlite_path

    db = sqlite_path(uri)
    if db is not None and not db.exists() and not create:
        raise FileNotFoundError(f"no store at {db} yet")
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
    """A real ``mlflow server`` on 127.0.0.1 over a sqlite store in ``folder`` (or ``backend``, e.g. a
    PostgreSQL URI) with ``workers`` processes; it can be stopped and started again on the same port (a tracking
    server that goes away and comes back)."""

    def __init__(self, folder: Path, backend: str = "", workers: int = 1) -> None:
        self.folder, self.port = folder, free_port()
        self.backend = backend or f"sqlite:///{folder / 'server.db'}"
        self.workers = workers
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process = None

    def start(self, timeout: float = 90) -> "MlflowServer":
        import time
        import urllib.request

        log = open(self.folder / "server.log", "a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend,
             "--artifacts-destination", str(self.folder / "server-artifacts"), "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", str(self.workers)],
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


class PostgresServer:
    """A real PostgreSQL (Debian's ``postgresql`` package) in a fresh folder, on 127.0.0.1 at a free port, run as the
    ``postgres`` user when started by root; ``uri`` names its database ``mlflow`` (psycopg2)."""

    def __init__(self) -> None:
        import glob
        import tempfile

        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        assert found, "PostgreSQL is not installed: apt-get install postgresql (.ci/run does)"
        self.bin = Path(found[-1]).parent
        # a folder of its own the postgres user can reach (pytest's tmp_path is private to root)
        self.folder = Path(tempfile.mkdtemp(prefix="sobolev-postgres-"))
        self.folder.chmod(0o755)
        self.data, self.port = self.folder / "data", free_port()
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/mlflow"  # for psycopg2 itself
        self.uri = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/mlflow"  # SQLAlchemy's: the driver named

    def _as_postgres(self, *args: str, **kw) -> subprocess.CompletedProcess:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return subprocess.run([*prefix, *args], check=True, capture_output=True, text=True, timeout=120, **kw)

    def start(self) -> "PostgresServer":
        import shutil

        self.data.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.data, "postgres", "postgres")
        self._as_postgres(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                          "--encoding=UTF8", "--locale=C")
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.data} -c max_connections=200"
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-w", "-l",
                          str(self.data / "server.log"), "start")
        self._as_postgres(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                          "mlflow")
        return self

    def stop(self) -> None:
        import shutil

        try:
            self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
