"""A kill at any moment: SIGKILL the driver of one small sweep at evenly spaced moments from process start to
exit, then continue it — ``resume`` and ``run`` in turn — and check that nothing was lost, duplicated or left
behind.  The fault tests (``test_faults.py``) kill at chosen moments; these moments are the clock's, so they
land in the windows nobody chose: Ray starting, a fresh store being created, Tune writing its first state, a
trial opening its run, a checkpoint, the final collection, a search changing phase.

Each moment gets a fresh folder (store and storage), so it sees the sweep from its very start.  The table of
moments (what was on disk, how the continuation ended) is printed; run with ``-s`` to see it.
"""

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import yaml

from tests.sweep_helpers import CLI, ENV, children, client, parents, runs, sqlite_uri, write_spec

MOMENTS = 12
SEARCH_MOMENTS = 4


def _tiny(folder: Path) -> Path:
    return write_spec(folder, name="kill", trial__steps=60, trial__size=16, trial__log_every=10,
                      trial__eval_every=20, run__report_every=10, run__checkpoint_every=20, run__max_concurrent=1)


def _tiny_search(folder: Path) -> Path:
    spec = yaml.safe_load(_tiny(folder).read_text())
    spec["search"] = {"space": {"lr": {"loguniform": [1.0e-4, 1.0e-2]}}, "datasets": ["chelsea"], "samples": 2,
                      "per": ["activation", "supervision"]}
    path = folder / "kill.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _start(args, folder: Path) -> subprocess.Popen:
    path = folder / f"{args[0]}-{time.time_ns()}.log"
    with path.open("w") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen([*CLI, *args, "--no-live"], cwd=folder, env=ENV, stdout=out,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
    proc.log_path = path
    return proc


def _log(proc: subprocess.Popen) -> str:
    return proc.log_path.read_text()


def _on_disk(folder: Path) -> str:
    """What the kill left: the store, the resume state, Tune's experiment state, runs by status."""
    seen = []
    if (folder / "mlflow.db").exists():
        seen.append("store")
    storage = folder / ".sobolev" / "kill"
    if (storage / "latest.json").exists():
        seen.append("state")
    if any(storage.glob("*/tuner.pkl")) or any(storage.glob("*/tune-*/tuner.pkl")):
        whole = any(storage.glob("*/experiment_state-*.json")) or any(storage.glob("*/tune-*/experiment_state-*"))
        seen.append("tune" if whole else "tuner.pkl only")
    try:  # (a client on a missing store would create it)
        statuses = [r.info.status for r in runs(sqlite_uri(folder), "kill")] if (folder / "mlflow.db").exists() else []
        for status in ("RUNNING", "FINISHED", "KILLED", "FAILED"):
            if statuses.count(status):
                seen.append(f"{statuses.count(status)} {status}")
    except Exception:  # no store, or no experiment yet
        pass
    return ", ".join(seen) or "nothing"


def _leftovers(pids) -> list:
    """Processes of the killed driver's family still alive (Ray, the keeper)."""
    _, alive = psutil.wait_procs([p for p in pids if p.is_running()], timeout=30)
    return [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def _check_store(folder: Path, trials: int) -> str:
    """One FINISHED run per key, nothing RUNNING, no step logged twice; returns what failed, or empty."""
    uri = sqlite_uri(folder)
    all_runs = runs(uri, "kill")
    kids = [r for r in children(all_runs) if r.data.tags.get("sobolev.kind") == "trial"]
    keys = [r.data.tags["sobolev.trial_key"] for r in kids]
    problems = []
    if len(keys) != trials or len(set(keys)) != trials:
        problems.append(f"{len(keys)} trial runs for {len(set(keys))} keys (expected {trials})")
    if any(r.info.status != "FINISHED" for r in kids):
        problems.append("trial runs " + ", ".join(sorted(r.info.status for r in kids)))
    if any(r.info.status == "RUNNING" for r in all_runs):
        problems.append("RUNNING runs left")
    if any(r.info.status not in ("FINISHED", "KILLED") for r in parents(all_runs)):
        problems.append("a parent not closed")
    for run in kids:
        history = client(uri).get_metric_history(run.info.run_id, "loss")
        if len(history) != len({m.step for m in history}):
            problems.append(f"{run.info.run_name}: a step logged twice")
    return "; ".join(problems)


def _kill_and_continue(folder: Path, spec: Path, moment: float, command: str, trials: int):
    """Kill ``run`` at ``moment`` s, then continue with ``command``: (what the kill left, problem or empty)."""
    driver = _start(["run", str(spec)], folder)
    start = time.monotonic()
    family = [psutil.Process(driver.pid)]
    while time.monotonic() - start < moment and driver.poll() is None:  # the family as it grows
        try:
            family += [p for p in family[0].children(recursive=True) if p not in family]
        except psutil.Error:
            pass
        time.sleep(0.05)
    ended_first = driver.poll() is not None
    if not ended_first:
        os.kill(driver.pid, signal.SIGKILL)
    driver.wait(timeout=60)
    left = _leftovers(family[1:])
    on_disk = "(ended first)" if ended_first else _on_disk(folder)
    proc = _start([command, str(spec)], folder)
    code = proc.wait(timeout=600)
    log = _log(proc)
    problems = []
    if code != 0:
        problems.append(f"exit {code}: {log[-1500:]}")
    if "Traceback" in log:
        problems.append("a traceback: " + log[log.index("Traceback"):][:1500])
    if left:
        problems.append(f"left alive: {[p.name() for p in left]}")
    problems.append(_check_store(folder, trials))
    return on_disk, "; ".join(p for p in problems if p)


def _kill_time_sweep(tmp_path: Path, make_spec, moments: int, trials: int):
    """Two moments at a time (on two cores a sweep of one trial at a time leaves the other core to the other)."""
    from concurrent.futures import ThreadPoolExecutor

    def clean(k: int) -> float:  # how long the sweep takes, process start to exit, two at a time as below
        folder = tmp_path / f"clean{k}"
        folder.mkdir()
        t0 = time.monotonic()
        proc = _start(["run", str(make_spec(folder))], folder)
        assert proc.wait(timeout=600) == 0, _log(proc)[-3000:]
        shutil.rmtree(folder)
        return time.monotonic() - t0

    def one(i: int):
        folder = tmp_path / f"m{i:02d}"
        folder.mkdir()
        moment = duration * (i + 0.5) / moments
        command = "resume" if i % 2 == 0 else "run"
        on_disk, problem = _kill_and_continue(folder, make_spec(folder), moment, command, trials)
        shutil.rmtree(folder, ignore_errors=True)
        return moment, on_disk, command, problem

    with ThreadPoolExecutor(2) as pool:
        duration = max(pool.map(clean, range(2)))
        rows = list(pool.map(one, range(moments)))
    print(f"\nkill-time sweep: {moments} moments over a {duration:.1f}-s run (two at a time)")
    print("| moment | on disk at the kill | then | outcome |\n|---|---|---|---|")
    for moment, on_disk, command, problem in rows:
        print(f"| {moment:5.1f} s | {on_disk} | {command} | {'ok' if not problem else problem[:200]} |")
    failures = [f"moment {m:.1f} s ({d}), then {c}: {p}" for m, d, c, p in rows if p]
    assert not failures, "\n".join(failures)


@pytest.mark.slow
def test_a_kill_at_any_moment_of_a_sweep_is_continued_by_resume_or_run(tmp_path):
    _kill_time_sweep(tmp_path, _tiny, MOMENTS, trials=2)


@pytest.mark.slow
def test_a_kill_at_any_moment_of_a_tuned_comparison_is_continued(tmp_path):
    _kill_time_sweep(tmp_path, _tiny_search, SEARCH_MOMENTS, trials=2)
