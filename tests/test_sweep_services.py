"""The sweep against real services: an `mlflow server` over HTTP and a two-node Ray cluster."""

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.sweep_helpers import ENV, children, cli, client, free_port, runs, write_spec

pytestmark = pytest.mark.slow
RAY = str(Path(sys.executable).parent / "ray")


@pytest.fixture
def mlflow_server(tmp_path):
    port = free_port()
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        env={**ENV, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}, cwd=tmp_path, stdout=log, stderr=log,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise AssertionError((tmp_path / "server.log").read_text()[-2000:])
                time.sleep(0.5)
        yield uri
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


def test_trials_log_to_a_real_mlflow_server_over_http(tmp_path, mlflow_server):
    work = tmp_path / "work"
    work.mkdir()
    path = write_spec(work)
    proc = cli("run", str(path), "--tracking-uri", mlflow_server, cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    all_runs = runs(mlflow_server, "tiny")
    kids = children(all_runs)
    assert len(kids) == 2 and all(r.info.status == "FINISHED" for r in all_runs)
    c = client(mlflow_server)
    for run in kids:
        assert {"prediction.png", "gradients.png", "config.yaml"} <= {a.path for a in c.list_artifacts(run.info.run_id)}
    assert any((tmp_path / "server-artifacts").rglob("prediction.png"))  # stored by the server
    assert not list(work.rglob("mlflow.db")) and not (work / "mlruns").exists()  # nothing scattered locally


@pytest.fixture
def two_node_cluster(tmp_path):
    """A Ray head on 127.0.0.1 and a second node on 127.0.0.2, both with token auth."""
    port = free_port()
    env = {**ENV, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "sobolev-sweep-test-" + "0123456789abcdef" * 2}
    common = ["--num-cpus=1", "--memory=3000000000", "--object-store-memory=200000000", "--disable-usage-stats"]
    try:
        subprocess.run([RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                        "--include-dashboard=false", *common], env=env, check=True, capture_output=True, timeout=120)
        subprocess.run([RAY, "start", f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.2", *common],
                       env=env, check=True, capture_output=True, timeout=120)
        yield f"127.0.0.1:{port}", env
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)


def test_smoke_sweep_runs_on_both_nodes_of_a_cluster(tmp_path, two_node_cluster):
    address, env = two_node_cluster
    path = write_spec(tmp_path, trial__steps=150)
    proc = cli("run", str(path), "--address", address, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    kids = children(runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "tiny"))
    assert [r.info.status for r in kids] == ["FINISHED", "FINISHED"]
    nodes = {r.data.tags["sobolev.node_ip"] for r in kids}
    assert len(nodes) == 2 and "127.0.0.2" in nodes  # one trial on each node (1 CPU per node)


def test_ui_serves_the_configured_store_on_loopback(tmp_path):
    from tests.sweep_helpers import CLI

    port = free_port()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client(uri).create_experiment("seen-in-ui")
    ui = subprocess.Popen([*CLI, "ui", "--tracking-uri", uri, "--port", str(port)], env=ENV, cwd=tmp_path,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert time.time() < deadline and ui.poll() is None, "mlflow ui did not come up"
                time.sleep(0.5)
        assert [e.name for e in client(f"http://127.0.0.1:{port}").search_experiments()].count("seen-in-ui") == 1
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)
