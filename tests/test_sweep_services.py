"""The sweep on a real two-node Ray cluster, and many short trials through a real `mlflow server` on a real
PostgreSQL (an `mlflow server`'s outage is in test_faults.py, the MLflow UI in a browser in test_ui_browser.py)."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.sweep_helpers import ENV, MlflowServer, PostgresServer, children, cli, client, free_port, parents, runs
from tests.sweep_helpers import write_spec

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


def test_200_short_trials_8_at_once_log_through_mlflow_server_on_postgresql_every_record_once(tmp_path):
    """The cluster recipe's tracking server (docs/cluster.md): ``mlflow server`` with 4 workers on PostgreSQL.
    200 trials of a few steps, 8 at a time, in chains: every run and every metric arrives, none twice."""
    import time

    import psycopg2

    postgres = PostgresServer().start()
    server = None
    try:
        server = MlflowServer(tmp_path, backend=postgres.uri, workers=4).start()
        path = write_spec(tmp_path, grid__activations=["relu", "sine"], grid__seeds=list(range(50)),
                          trial__size=24, trial__steps=20, trial__log_every=10, trial__eval_every=20,
                          trial__model={"hidden_features": 16}, resources__cpu=0.25, run__max_concurrent=8,
                          run__report_every=10, run__checkpoint_every=20)
        t0 = time.perf_counter()
        proc = cli("run", str(path), "--tracking-uri", server.uri, "--no-live", cwd=tmp_path, timeout=900)
        seconds = time.perf_counter() - t0
        assert proc.returncode == 0, proc.stderr[-3000:]
        print(f"200 trials through mlflow server (4 workers) on PostgreSQL: {seconds:.1f} s, "
              f"{200 / seconds:.2f} trials/s")
        every = runs(server.uri, "tiny")
        kids = children(every)
        keys = [r.data.tags["sobolev.trial_key"] for r in kids]
        assert len(keys) == len(set(keys)) == 200 and all(r.info.status == "FINISHED" for r in kids)
        (parent,) = parents(every)
        assert parent.data.metrics["trials_finished"] == 200
        assert max(int(r.data.tags["sobolev.chain_size"]) for r in kids) > 1  # short trials chained
        assert all("test_psnr" in r.data.metrics for r in kids)
        with psycopg2.connect(postgres.dsn) as db, db.cursor() as cur:  # the backend itself, not MLflow's view
            cur.execute("SELECT count(*), count(DISTINCT (run_uuid, step)) FROM metrics WHERE key = 'loss'")
            assert cur.fetchone() == (400, 400)  # steps 10 and 20 of every trial, once
            cur.execute("SELECT key, run_uuid, step, count(*) FROM metrics GROUP BY key, run_uuid, step, timestamp, "
                        "value HAVING count(*) > 1")
            assert cur.fetchall() == []  # no record twice
            cur.execute("SELECT count(*) FROM runs WHERE status = 'FINISHED'")
            assert cur.fetchone()[0] == 201
        history = client(server.uri).get_metric_history(kids[0].info.run_id, "test_psnr")
        assert [m.step for m in history] == [20]
    finally:
        if server is not None:
            server.stop()
        postgres.stop()
