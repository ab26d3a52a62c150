"""The MLflow UI as a user sees it: a real sweep, ``sobolev-sweep ui`` on 127.0.0.1, pages rendered by a real
headless Chromium (Debian's ``chromium``: ``apt-get install chromium``), assertions on what the pages show.
Marked slow: ``python -m pytest -m slow`` runs it, CI does not yet."""

import re
import shutil
import signal
import subprocess
import time
import urllib.request

import pytest

from tests.sweep_helpers import CLI, ENV, children, cli, free_port, parents, runs, sqlite_uri, write_spec

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def rendered_text(url: str) -> str:
    """The page's visible text once its scripts have run (``--dump-dom`` after a virtual-time budget)."""
    assert CHROMIUM, "Debian's chromium is needed for the UI test (apt-get install chromium)"
    proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=20000",
                           "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", proc.stdout, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text))


@pytest.mark.slow
def test_a_sweep_in_the_mlflow_ui_opens_in_the_training_view_with_descriptions_data_and_images(tmp_path):
    path = write_spec(tmp_path)
    assert cli("run", str(path), "--no-live", cwd=tmp_path).returncode == 0
    uri = sqlite_uri(tmp_path)
    all_runs = runs(uri, "tiny")
    (parent,), kid = parents(all_runs), children(all_runs)[0]
    port = free_port()
    ui = subprocess.Popen([*CLI, "ui", "--tracking-uri", uri, "--port", str(port)], env=ENV, cwd=tmp_path,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(180):
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2):
                    break
            except OSError:
                assert ui.poll() is None, ui.stderr.read()[-2000:]
                time.sleep(0.5)
        exp = kid.info.experiment_id
        view = "workflowType=machine_learning"
        experiments = rendered_text(f"{base}/#/experiments?{view}")
        assert "Model training" in experiments and "tiny" in experiments
        table = rendered_text(f"{base}/#/experiments/{exp}/runs?{view}")
        assert parent.info.run_name in table and "3 matching runs" in table  # the parent, its 2 children in it
        page = rendered_text(f"{base}/#/experiments/{exp}/runs/{kid.info.run_id}?{view}")
        assert kid.info.run_name in page  # astronaut/sine/val…/f4/s0
        assert "sine network trained on the values" in page and "of astronaut (factor 4, seed 0)" in page
        assert "astronaut" in page.split("Datasets", 1)[1][:200]  # the dataset input, in its section
        assert "time/train_seconds" in page and "test_psnr" in page
        artifacts = rendered_text(f"{base}/#/experiments/{exp}/runs/{kid.info.run_id}/artifacts?{view}")
        assert "images" in artifacts and "prediction.png" in artifacts
    finally:
        ui.send_signal(signal.SIGTERM)
        ui.wait(timeout=30)
