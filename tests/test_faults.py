"""The fault suite: crashes, kills, bad flags and stores, against the real CLI, a real local Ray and a
real MLflow (nothing mocked).  The README's table lists what it checks.

Kills are timed by what the store shows, never by sleeping: a trial is killed once MLflow has its
loss at a step after a checkpoint, so the test means the same on a slow and on a fast machine.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import psutil
import pytest

from tests.sweep_helpers import CLI, ENV, MlflowServer, children, cli, client, free_port, one_line_error, parents, runs
from tests.sweep_helpers import sqlite_uri, write_spec

LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
INTERRUPTED = "sobolev.interrupted"
RESTORED = "sobolev.restored_from_step"
RAY_SESSIONS = Path(tempfile.gettempdir()) / "ray" / "session_2*"
"""Every Ray started on this machine leaves a session folder here."""


# -- helpers -------------------------------------------------------------------------------------

class Command:
    """A CLI command started in the background, its output going to files: a pipe that nobody reads until the
    end fills up (64 KB of Ray's and Tune's messages) and stalls the sweep writing to it."""

    def __init__(self, args, cwd, env=None):
        self.out = tempfile.NamedTemporaryFile("w+", dir=cwd, prefix="cli-", suffix=".out", delete=False)
        self.err = tempfile.NamedTemporaryFile("w+", dir=cwd, prefix="cli-", suffix=".err", delete=False)
        self.process = subprocess.Popen([*CLI, *args], cwd=cwd, env=env or ENV, stdout=self.out, stderr=self.err,
                                        text=True, start_new_session=True)
        self.pid = self.process.pid

    @property
    def returncode(self):
        return self.process.returncode

    def poll(self):
        return self.process.poll()

    def kill(self):
        self.process.kill()

    def send_signal(self, sig):
        self.process.send_signal(sig)

    def wait(self, timeout=None):
        return self.process.wait(timeout=timeout)

    def communicate(self, timeout=None):
        """Wait for the end; (stdout, stderr) as text."""
        self.process.wait(timeout=timeout)
        return Path(self.out.name).read_text(), Path(self.err.name).read_text()


def _start(args, cwd, env=None) -> Command:
    return Command(args, cwd, env)


def _wait_for(predicate, timeout, what, every=0.2, process=None):
    """Poll ``predicate`` until it returns something; ``process``: the command being watched, whose end before
    that (or the timeout) fails the test at once with its output."""
    end = time.time() + timeout
    while time.time() < end:
        try:
            found = predicate()
            if found:
                return found
        except Exception:  # the store or a process may not be there yet
            pass
        if process is not None and process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"the command ended (exit {process.returncode}) before {what}:\n{out[-2000:]}\n"
                                 f"{err[-4000:]}")
        time.sleep(every)
    if process is not None:
        process.kill()
        out, err = process.communicate(timeout=30)
        raise AssertionError(f"timed out waiting for {what}:\n{out[-2000:]}\n{err[-4000:]}")
    raise AssertionError(f"timed out waiting for {what}")


def _statuses(uri, name="tiny"):
    return [r.info.status for r in children(runs(uri, name))]


STEPS = 1500


def _interruptible_spec(tmp_path, **changes):
    """Two trials, one at a time, long enough (1500 steps, 4–9 s here) that a kill lands inside one; losses every
    25 steps, held-out metrics every 100."""
    return write_spec(tmp_path, trial__steps=STEPS, run__max_concurrent=1, run__checkpoint_every=50,
                      run__report_every=25, trial__log_every=25, trial__eval_every=100, **changes)


def _last_step(uri, run):
    return max((m.step for m in client(uri).get_metric_history(run.info.run_id, "loss")), default=0)


def _checkpointed_and_running(uri, past=0):
    """One trial FINISHED, and a RUNNING one whose loss MLflow has past its first checkpoint (step 50) and past
    ``past`` (a continued trial: past where it was before)."""
    kids = children(runs(uri, "tiny"))
    if not any(r.info.status == "FINISHED" for r in kids):
        return None
    for run in kids:
        if run.info.status == "RUNNING" and max(75, past + 50) <= _last_step(uri, run) < STEPS - 200:
            return run
    return None


def _family(pid):
    """The driver and everything it started (the keeper of the local Ray and Ray's processes under it)."""
    proc = psutil.Process(pid)
    return [proc, *proc.children(recursive=True)]


def _assert_all_gone(family, timeout=30):
    _, alive = psutil.wait_procs(family, timeout=timeout)
    alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, [p.name() for p in alive]


def _assert_every_trial_once_and_finished(uri, expected, name="tiny", parent_ends=("FINISHED", "KILLED")):
    all_runs = runs(uri, name)
    keys = [r.data.tags["sobolev.trial_key"] for r in children(all_runs)]
    assert len(keys) == expected and len(set(keys)) == expected, keys
    assert all(r.info.status in parent_ends for r in parents(all_runs))
    assert all(r.info.status == "FINISHED" for r in children(all_runs)), [
        (r.info.run_name, r.info.status) for r in children(all_runs)]
    assert not [r for r in all_runs if r.info.status == "RUNNING"]


def _kill_mid_sweep(tmp_path):
    """Start the interruptible sweep, SIGKILL its driver inside a checkpointed trial; returns what was there."""
    path, uri = _interruptible_spec(tmp_path), sqlite_uri(tmp_path)
    driver = _start(["run", str(path), "--no-live"], tmp_path)
    victim = _wait_for(lambda: _checkpointed_and_running(uri), 300, "a checkpointed running trial", process=driver)
    family = _family(driver.pid)
    listeners = [c for c in psutil.net_connections("inet")
                 if c.status == psutil.CONN_LISTEN and c.pid in {p.pid for p in family}]
    os.kill(driver.pid, signal.SIGKILL)
    driver.communicate(timeout=30)
    return path, uri, victim, family, listeners


# -- crashes -------------------------------------------------------------------------------------

@pytest.mark.slow
def test_sigkill_mid_sweep_then_resume_then_sigkill_again_then_run_continues_in_the_same_run(tmp_path):
    path, uri, victim, family, listeners = _kill_mid_sweep(tmp_path)
    # a local sweep listens on loopback only (the driver, the keeper, Ray's GCS, raylet and workers)
    assert listeners and {c.laddr.ip for c in listeners} <= LOOPBACK, listeners
    _assert_all_gone(family[1:])  # no Ray process outlives the driver
    assert "RUNNING" in _statuses(uri)  # what the kill left
    killed_at = _last_step(uri, victim)

    # `resume` continues the interrupted trial from its checkpoint in the same parent and run ...
    resumed = _start(["resume", str(path), "--no-live"], tmp_path)
    again = _wait_for(lambda: _checkpointed_and_running(uri, past=killed_at), 300, "the resumed trial going on",
                      process=resumed)
    assert again.info.run_id == victim.info.run_id and int(again.data.tags[RESTORED]) >= 50
    family = _family(resumed.pid)
    os.kill(resumed.pid, signal.SIGKILL)  # ... and is killed too
    resumed.communicate(timeout=30)
    _assert_all_gone(family[1:])

    proc = cli("run", str(path), "--no-live", cwd=tmp_path)  # what most users do after a crash
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "reconciled" in proc.stdout
    _assert_every_trial_once_and_finished(uri, 2)
    dead, new = sorted(parents(runs(uri, "tiny")), key=lambda r: r.info.start_time)
    assert dead.info.status == "KILLED" and "ended without closing it" in dead.data.tags[INTERRUPTED]
    continued = client(uri).get_run(victim.info.run_id)  # the same run, moved under the new invocation
    assert continued.info.status == "FINISHED" and continued.data.tags["mlflow.parentRunId"] == new.info.run_id
    assert int(continued.data.tags[RESTORED]) > killed_at  # from its latest checkpoint, not from step 0
    history = client(uri).get_metric_history(victim.info.run_id, "loss")
    assert len(history) == len({m.step for m in history}) == STEPS // 25  # no step logged twice


@pytest.mark.slow
def test_sigkill_as_ray_starts_leaves_no_process_then_run_finishes(tmp_path):
    path, uri = write_spec(tmp_path), sqlite_uri(tmp_path)
    driver = _start(["run", str(path), "--no-live"], tmp_path)

    def ray_starting():
        family = _family(driver.pid)
        return family if any(p.name() in ("gcs_server", "raylet") for p in family) else None

    family = _wait_for(ray_starting, 120, "Ray's first processes", every=0.05)
    os.kill(driver.pid, signal.SIGKILL)
    driver.communicate(timeout=30)
    _assert_all_gone(family[1:] + [p for p in psutil.process_iter() if _started_by(p, family)])
    proc = cli("run", str(path), "--no-live", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_every_trial_once_and_finished(uri, 2)


def _started_by(proc, family):
    """A process started after the snapshot by one of ``family`` (Ray was still starting processes)."""
    try:
        return any(a.pid in {p.pid for p in family} for a in proc.parents()) and proc not in family
    except psutil.Error:
        return False


@pytest.mark.slow
def test_driver_gone_during_collection_then_run_closes_its_parent(tmp_path):
    """The state a kill between the last trial and the parent's end leaves: every trial FINISHED, the parent
    RUNNING with a driver that is gone (a real process, started and ended for this)."""
    path, uri = write_spec(tmp_path), sqlite_uri(tmp_path)
    assert cli("run", str(path), "--no-live", cwd=tmp_path).returncode == 0
    (parent,) = parents(runs(uri, "tiny"))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    c = client(uri)
    c.update_run(parent.info.run_id, status="RUNNING")
    c.set_tag(parent.info.run_id, "sobolev.driver", f"{socket.gethostname()} {gone.pid} 1.000")
    proc = cli("run", str(path), "--no-live", cwd=tmp_path)
    assert proc.returncode == 0 and "nothing to run" in proc.stdout, proc.stdout + proc.stderr[-2000:]
    assert c.get_run(parent.info.run_id).info.status == "FINISHED"
    assert len(runs(uri, "tiny")) == 3


@pytest.mark.slow
def test_sigkill_of_a_worker_is_retried_from_its_checkpoint_then_sigterm_then_resume_finishes(tmp_path):
    """SIGTERM (what a batch scheduler sends) ends the driver the way Ctrl-C does (``runners.engine.signals``)."""
    path, uri = _interruptible_spec(tmp_path), sqlite_uri(tmp_path)
    driver = _start(["run", str(path), "--no-live"], tmp_path)
    victim = _wait_for(lambda: _checkpointed_and_running(uri), 300, "a checkpointed running trial", process=driver)
    killed_at = _last_step(uri, victim)
    workers = [p for p in _family(driver.pid) if p.name().startswith("ray::ImplicitFunc")]
    assert workers
    for worker in workers:
        worker.kill()
    # Tune retries the trial from its checkpoint, in the same run
    retried = _wait_for(lambda: _checkpointed_and_running(uri, past=killed_at), 300, "the retried trial going on",
                        process=driver)
    assert retried.info.run_id == victim.info.run_id and 50 <= int(retried.data.tags[RESTORED]) <= killed_at
    driver.send_signal(signal.SIGTERM)
    out, err = driver.communicate(timeout=120)
    assert driver.returncode == 143 and "Traceback" not in err, err[-3000:]
    assert "INTERRUPTED" in out and "resume with" in out
    statuses = _statuses(uri)
    assert "FINISHED" in statuses and "KILLED" in statuses and "RUNNING" not in statuses
    proc = cli("resume", str(path), "--no-live", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_every_trial_once_and_finished(uri, 2)


@pytest.mark.slow
def test_one_invocation_per_sweep_and_store_the_next_refused_or_waiting_another_sweep_beside(tmp_path):
    """Two *different* sweeps started at once into one fresh store both run (the store created once, under its
    lock); a second ``run`` or ``resume`` of the running sweep is one line naming its driver, with nothing started;
    with ``--wait`` it waits for the first to end and then has nothing to run.  Every trial once."""
    path, uri = _interruptible_spec(tmp_path), sqlite_uri(tmp_path)
    first = _start(["run", str(path), "--no-live"], tmp_path)
    other = _start(["run", str(write_spec(tmp_path, name="other")), "--no-live"], tmp_path)
    _wait_for(lambda: "RUNNING" in _statuses(uri), 300, "a running trial", process=first)
    for command in ("run", "resume"):
        line = one_line_error(cli(command, str(path), "--no-live", cwd=tmp_path))
        assert "sweep 'tiny' is being run into" in line and f" {first.pid} " in line and "--wait" in line, line
    waiting = _start(["run", str(path), "--no-live", "--wait"], tmp_path)
    for driver, name in ((first, "tiny"), (other, "other")):
        out, err = driver.communicate(timeout=600)
        assert driver.returncode == 0, err[-3000:]
        _assert_every_trial_once_and_finished(uri, 2, name)
    out, err = waiting.communicate(timeout=300)
    assert waiting.returncode == 0 and "nothing to run" in out, out[-2000:] + err[-3000:]
    _assert_every_trial_once_and_finished(uri, 2)
    assert len(parents(runs(uri, "tiny"))) == 1  # the waiting invocation found everything done: no run of its own


@pytest.mark.slow
def test_data_changed_during_a_sweep_fails_its_later_trials_then_run_trains_the_new_data(tmp_path):
    """The image file is replaced while the first of two trials trains: the second (on the new content) fails
    with the reason instead of being recorded under the old data's key; the next ``run`` plans the new data's
    keys and trains both."""
    from PIL import Image

    from runners.plan.planner import plan_sweep
    from runners.spec.load import load_spec

    picture = tmp_path / "picture.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(picture)
    path, uri = _interruptible_spec(tmp_path, grid__datasets=[str(picture)]), sqlite_uri(tmp_path)
    old_keys = {t.key for t in plan_sweep(load_spec(path), str(path)).trials}
    driver = _start(["run", str(path), "--no-live"], tmp_path)
    _wait_for(lambda: any(r.info.status == "RUNNING" and _last_step(uri, r) >= 25 for r in children(runs(uri, "tiny"))),
              300, "the first trial training", process=driver)
    Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8)).save(picture)  # now grayscale
    out, err = driver.communicate(timeout=600)
    assert driver.returncode == 1 and "1 finished, 1 failed" in out, out[-2000:] + err[-3000:]
    (failed,) = [r for r in children(runs(uri, "tiny")) if r.info.status == "FAILED"]
    assert "data changed since the sweep was planned" in failed.data.tags["sobolev.failure"]
    assert "test_psnr" not in failed.data.metrics
    new_keys = {t.key for t in plan_sweep(load_spec(path), str(path)).trials}
    assert not new_keys & old_keys  # the keys name the data
    proc = cli("run", str(path), "--no-live", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    finished = {r.data.tags["sobolev.trial_key"] for r in children(runs(uri, "tiny")) if r.info.status == "FINISHED"}
    assert new_keys <= finished


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MB tmpfs mounted for the test (root only), and a file filling all but ``free``."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.fail("the full-disk test mounts a tmpfs: run it as root")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(mount: Path, free: int) -> Path:
    filler = mount / "filler"
    size = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize - free
    filler.write_bytes(b"\0" * max(0, size))
    return filler


@pytest.mark.slow
def test_a_full_disk_is_one_line_exit_1_every_run_ended_with_the_cause_then_run_recovers(tmp_path, small_disk):
    """``--storage`` on a disk that fills up mid-sweep: exit 1 (not 130), no traceback, the cause in the summary
    (or the driver's one line, where the driver hits it first), no run left RUNNING, each unfinished run FAILED
    with the cause; once space is freed, ``run`` trains every trial again (the earlier invocation's retries do
    not count against it), each once, and no FINISHED run keeps the old failure."""
    path, uri = _interruptible_spec(tmp_path), sqlite_uri(tmp_path)
    filler = _fill(small_disk, 500_000)  # Tune's state fits, no trial's checkpoint (2.4 MB) does
    proc = cli("run", str(path), "--storage", str(small_disk / "state"), "--no-live", cwd=tmp_path, timeout=600)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    # where the driver hits the full disk: its one line; where the trials do: each FAILED with the cause, and
    # the summary says so
    error = [line for line in proc.stderr.splitlines() if line.startswith("sobolev-sweep: error: ")]
    assert len(error) <= 1 and "No space left" in (error or [proc.stdout])[0], proc.stdout + proc.stderr
    every = runs(uri, "tiny")
    assert not [r for r in every if r.info.status == "RUNNING"]
    for run in children(every):
        if run.info.status != "FINISHED":
            assert "No space left on device" in run.data.tags["sobolev.failure"]
    filler.unlink()
    again = cli("run", str(path), "--storage", str(small_disk / "state"), "--no-live", cwd=tmp_path, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    _assert_every_trial_once_and_finished(uri, 2, parent_ends=("FINISHED", "FAILED"))  # the first one FAILED
    assert not [r for r in children(runs(uri, "tiny")) if "sobolev.failure" in r.data.tags]


@pytest.mark.slow
def test_tracking_server_down_for_30_s_mid_sweep_costs_nothing(tmp_path):
    """A real ``mlflow server`` over HTTP, stopped for 30 s while trials log, then started again."""
    server = MlflowServer(tmp_path).start()
    try:
        work = tmp_path / "work"
        work.mkdir()
        # two values-only trials; MLflow's client retries with its backoff factor at 1 (default 2) to be back sooner
        env = {**ENV, "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
        driver = _start(["run", str(_interruptible_spec(work, grid__supervision=["val"], grid__seeds=[0, 1])),
                         "--tracking-uri", server.uri, "--no-live"], work, env)
        _wait_for(lambda: _checkpointed_and_running(server.uri), 300, "a checkpointed running trial")
        server.stop()
        time.sleep(30)
        server.start()
        out, err = driver.communicate(timeout=600)
        assert driver.returncode == 0, err[-3000:]
        _assert_every_trial_once_and_finished(server.uri, 2)
        for run in children(runs(server.uri, "tiny")):
            steps = [m.step for m in client(server.uri).get_metric_history(run.info.run_id, "loss")]
            assert sorted(steps) == list(range(25, STEPS + 1, 25))  # nothing lost, nothing twice
            artifacts = {a.path for a in client(server.uri).list_artifacts(run.info.run_id)}
            assert {"prediction.png", "gradients.png", "config.yaml"} <= artifacts
        assert any((tmp_path / "server-artifacts").rglob("prediction.png"))  # stored by the server, over HTTP
        assert not list(work.rglob("mlflow.db")) and not (work / "mlruns").exists()  # nothing scattered locally
    finally:
        server.stop()


# -- the MLflow UI -------------------------------------------------------------------------------

def test_ctrl_c_then_a_closed_terminal_end_the_sweep_interrupted_then_run_finishes(tmp_path):
    """Ctrl-C (SIGINT to the driver) inside a checkpointed trial: Tune stops the trials, their runs end KILLED, the
    summary says INTERRUPTED, exit 130, nothing RUNNING and no process of the driver's left.  ``resume`` goes on
    from the checkpoint; SIGHUP (a closed terminal) inside it: exit 129, the same.  ``run`` then finishes every
    trial once.  (One sweep for both signals: CI runs it.)"""
    path, uri = _interruptible_spec(tmp_path), sqlite_uri(tmp_path)
    past = 0
    for command, sig, code in (("run", signal.SIGINT, 130), ("resume", signal.SIGHUP, 129)):
        driver = _start([command, str(path), "--no-live"], tmp_path)
        victim = _wait_for(lambda: _checkpointed_and_running(uri, past=past), 300, "a checkpointed running trial",
                           process=driver)
        past = _last_step(uri, victim)
        family = _family(driver.pid)
        driver.send_signal(sig)
        out, err = driver.communicate(timeout=120)
        assert driver.returncode == code and "Traceback" not in err, (sig, driver.returncode, err[-3000:])
        assert "INTERRUPTED" in out and "resume with" in out
        statuses = _statuses(uri)
        assert "KILLED" in statuses and "RUNNING" not in statuses, statuses
        assert [r.info.status for r in parents(runs(uri, "tiny"))] == ["KILLED"]
        _assert_all_gone(family[1:])
    proc = cli("run", str(path), "--no-live", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_every_trial_once_and_finished(uri, 2)


def _opened_without_trials(uri):
    """The invocation's parent run is RUNNING and no trial run is open yet: the driver is opening the sweep."""
    all_runs = runs(uri, "tiny")
    return bool(parents(all_runs)) and all(r.info.status == "RUNNING" for r in parents(all_runs)) \
        and not children(all_runs)


@pytest.mark.slow  # not in CI: it failed once in a clean-clone CI run (exit 0, the signal lost): an open bug
def test_ctrl_c_while_the_sweep_opens_ends_what_it_left_killed(tmp_path):
    """SIGINT once the parent run exists and before Tune has opened a trial run (outside Tune's own handling,
    ``runners.engine.sweep.interrupted``): exit 130, the parent KILLED, nothing RUNNING; ``run`` then finishes
    every trial once.  The window is a second or two: a try that misses it (a trial run already open) is made
    again in a fresh folder."""
    for attempt in range(3):
        folder = tmp_path / f"try{attempt}"
        folder.mkdir()
        path, uri = _interruptible_spec(folder), sqlite_uri(folder)
        driver = _start(["run", str(path), "--no-live"], folder)
        _wait_for(lambda: runs(uri, "tiny") and parents(runs(uri, "tiny")), 300, "the parent run", every=0.02,
                  process=driver)
        driver.send_signal(signal.SIGINT)
        opening = _opened_without_trials(uri)
        out, err = driver.communicate(timeout=120)
        assert driver.returncode == 130 and "Traceback" not in err, (driver.returncode, err[-3000:])
        all_runs = runs(uri, "tiny")
        assert not [r for r in all_runs if r.info.status == "RUNNING"]
        assert [r.info.status for r in parents(all_runs)] == ["KILLED"]
        if opening and not children(all_runs):
            break
    else:
        pytest.fail("three tries missed the window between the parent run and the first trial run")
    proc = cli("run", str(path), "--no-live", cwd=folder)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_every_trial_once_and_finished(uri, 2)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_ui_stops_its_server_on_a_signal(tmp_path, sig):
    port = free_port()
    ui = subprocess.Popen([*CLI, "ui", "--tracking-uri", sqlite_uri(tmp_path), "--port", str(port)], env=ENV,
                          cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def answers():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return r.status == 200

    _wait_for(answers, 90, "the MLflow UI", every=0.5)
    family = _family(ui.pid)
    ui.send_signal(sig)
    assert ui.wait(timeout=30) == 128 + sig
    _assert_all_gone(family[1:])
    assert not [c for c in psutil.net_connections("inet") if c.status == psutil.CONN_LISTEN and c.laddr.port == port]


# -- refused before anything starts --------------------------------------------------------------

@pytest.mark.parametrize("args,message", [
    (["--dry-run", "--resume"], "--dry-run and --resume cannot be used together"),
    (["--resume", "--rerun"], "--rerun and --resume cannot be used together"),
    (["--max-concurrent", "0"], "--max-concurrent: 0 is not in the range x>=1"),
    (["--max-concurrent", "-3"], "--max-concurrent: -3 is not in the range x>=1"),
])
def test_conflicting_or_impossible_flags_are_refused(tmp_path, args, message):
    line = one_line_error(cli("run", str(write_spec(tmp_path)), *args, cwd=tmp_path))
    assert message in line.replace("'", ""), line
    assert not (tmp_path / "mlflow.db").exists()


def test_storage_that_is_a_file_is_refused_before_any_run(tmp_path):
    (tmp_path / "occupied").write_text("not a folder")
    line = one_line_error(cli("run", str(write_spec(tmp_path)), "--storage", str(tmp_path / "occupied"), cwd=tmp_path))
    assert "--storage: " in line and "is a file" in line
    assert not (tmp_path / "mlflow.db").exists()


def test_tracking_uri_naming_a_file_that_is_not_sqlite_is_refused_and_left_alone(tmp_path):
    junk = tmp_path / "notes.db"
    junk.write_text("my notes, not a database\n")
    line = one_line_error(cli("run", str(write_spec(tmp_path)), "--tracking-uri", f"sqlite:///{junk}", cwd=tmp_path))
    assert "--tracking-uri: " in line and "is not an SQLite database" in line
    assert junk.read_text() == "my notes, not a database\n"


def test_ray_address_in_the_environment_is_the_address_and_checked(tmp_path):
    port = free_port()  # nothing listens there
    proc = cli("run", str(write_spec(tmp_path)), cwd=tmp_path, timeout=60,
               env={**ENV, "RAY_ADDRESS": f"127.0.0.1:{port}"})
    line = one_line_error(proc)
    assert f"--address 127.0.0.1:{port}: cannot reach the Ray cluster" in line
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("changes,where", [
    ({"resources__cpu": 4096}, "resources.cpu: 4096 CPU per trial requested, this machine has"),
    ({"resources__gpu": 64}, "resources.gpu: 64 GPU per trial requested, but this machine has"),
    ({"trial__device": "cuda", "resources__gpu": 0}, "cuda"),
])
def test_what_this_machine_cannot_run_is_refused_at_plan_time(tmp_path, changes, where):
    sessions = set(RAY_SESSIONS.parent.glob(RAY_SESSIONS.name))
    line = one_line_error(cli("run", str(write_spec(tmp_path, **changes)), cwd=tmp_path))
    assert where in line, line
    assert set(RAY_SESSIONS.parent.glob(RAY_SESSIONS.name)) == sessions  # no Ray was started
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / ".sobolev").exists()
