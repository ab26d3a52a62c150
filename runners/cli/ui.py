"""``sobolev-sweep ui``: the MLflow UI on a store, on 127.0.0.1, stopped with everything it started.

``mlflow ui`` runs a server with worker processes.  It is started in its own process group, and
SIGTERM, SIGINT or SIGHUP (a closed terminal) to ``sobolev-sweep ui`` ends that whole group (SIGTERM, then SIGKILL
after a grace period): nothing is left listening after the command has ended.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

from sobolev.errors import ConfigError

GRACE_SECONDS = 10.0


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def check_port_free(port: int, host: str = "127.0.0.1") -> None:
    """A port the UI can listen on; one line (exit 2) naming it when another program has it."""
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"{host}:{port} is in use ({exc.strerror or exc}); allowed: a free port, e.g. "
                              f"--port {port + 1}", source="--port") from None


def serve_ui(tracking_uri: str, port: int) -> int:
    """Run ``mlflow ui`` until it exits or this process is told to stop; returns the exit code."""
    check_port_free(port)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri, "--host", "127.0.0.1",
           "--port", str(port)]
    from runners.store.layout import ui_page

    print(" ".join(cmd[1:]).replace("-m mlflow", "mlflow"), file=sys.stderr, flush=True)
    print(f"open {ui_page(f'http://127.0.0.1:{port}')}  (the model-training view)", file=sys.stderr, flush=True)
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(cmd, env=env, start_new_session=True)
    stopped = []

    def stop(signum, _frame) -> None:
        stopped.append(signum)
        _signal_group(server.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        code = server.wait()
        if stopped:
            try:
                server.wait(timeout=GRACE_SECONDS)
            except subprocess.TimeoutExpired:  # pragma: no cover - a worker that ignores SIGTERM
                pass
        return 128 + stopped[0] if stopped else code
    finally:
        _signal_group(server.pid, signal.SIGKILL)  # the server's workers, whatever the server did
        for sig, handler in previous.items():
            signal.signal(sig, handler)
