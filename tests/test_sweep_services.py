"""The sweep on a real two-node Ray cluster (an `mlflow server` over HTTP and its outage are in test_faults.py, the
MLflow UI in a browser in test_ui_browser.py)."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.sweep_helpers import ENV, children, cli, free_port, runs, write_spec

pytestmark = pytest.mark.slow
RAY = str(Path(sys.executable).parent / "ray")


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
