"""A local Ray for one sweep: loopback only, token-authenticated, and gone with its driver.

The driver does not start Ray in its own process.  It starts a *keeper* (``python -m
runners.engine.local_ray``), which:
  1. makes itself the Linux child subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``), so every process
     Ray starts, even one whose parent dies, stays its descendant and never escapes to PID 1;
  2. starts the head in-process (``ray.init``) on 127.0.0.1 only: with
     ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` Ray binds its GCS, raylet, object manager and workers
     to the loopback address, with no dashboard; ``RAY_AUTH_MODE=token`` and a fresh random token
     refuse any other local user's client;
  3. prints the GCS address on stdout and waits for EOF on stdin: the driver holds the only
     write end of that pipe, so EOF comes when the driver closes it *or dies, however it dies*
     (SIGKILL included, at any moment);
  4. a driver that ends well writes ``stop`` first: Ray is shut down, then whatever of its
     descendants is still alive is ended (SIGTERM, then SIGKILL after a grace period).  EOF without
     ``stop`` means the driver died: its trials are ended at once (nothing can report them any
     more, and one that trained on would log steps that a resume then has to skip).

The driver connects with ``ray.init(address=...)`` (:func:`start_local_ray`).  The keeper lives in
its own session, so Ctrl-C in the terminal reaches only the driver, which then ends the keeper
through the pipe.  Joining a cluster with ``--address`` does not use any of this (see the README:
such clusters keep Ray's token authentication).
"""

from __future__ import annotations

import ctypes
import os
import secrets
import signal
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass
from typing import Deque, Dict

LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
"""Ray resolves its node address to the loopback one when clusters are "not enabled"."""
START_TIMEOUT_SECONDS = 120.0
GRACE_SECONDS = 5.0
STOP_TIMEOUT_SECONDS = 60.0
SHUTDOWN_SECONDS = 30.0
"""The keeper's own bound on ``ray.shutdown()``: past it, Ray's processes are ended directly."""
PR_SET_CHILD_SUBREAPER = 36


STOP_WORD = "stop"
"""What a driver that ends well writes to its keeper before closing the pipe."""


def local_ray_env() -> Dict[str, str]:
    """The environment of a local sweep's Ray, for the keeper and the driver alike: loopback, a fresh token."""
    return {**LOOPBACK_ENV, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}


@dataclass
class LocalRay:
    """A running keeper: its process and the GCS address the driver connects to."""

    process: subprocess.Popen
    address: str

    def stop(self) -> None:
        """End the keeper (``stop``, then EOF on its stdin) and wait until it has shut Ray down; a keeper that
        does not end in time is killed with its whole session."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            try:
                self.process.stdin.write(STOP_WORD + "\n")
                self.process.stdin.close()
            except OSError:  # a keeper that already ended
                pass
        try:
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:  # pragma: no cover - a keeper stuck in Ray's shutdown
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def start_local_ray(num_cpus: int, num_gpus: int, object_store_bytes: int) -> LocalRay:
    """Start a keeper and set this process's environment to reach it (call before importing ``ray``)."""
    if "ray" in sys.modules and os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") != "0":
        raise RuntimeError("runners.engine.local_ray must set up the environment before the driver imports ray")
    env = local_ray_env()
    os.environ.update(env)
    os.environ.pop("RAY_ADDRESS", None)  # the keeper's own head, nothing found in the environment
    process = subprocess.Popen(
        [sys.executable, "-m", "runners.engine.local_ray", str(num_cpus), str(num_gpus), str(object_store_bytes)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # inherits the environment set above
    )
    chatter: Deque[str] = deque(maxlen=20)
    threading.Thread(target=lambda: chatter.extend(process.stderr), daemon=True).start()  # drained, never blocking
    line = _first_line(process, START_TIMEOUT_SECONDS)
    if not line.startswith("address "):
        LocalRay(process, "").stop()  # the keeper ends what Ray had started; killed with its session if it hangs
        detail = line[len("error "):] if line.startswith("error ") else (
            [c.strip() for c in chatter if c.strip()] or [f"no answer in {START_TIMEOUT_SECONDS:g} s"])[-1]
        raise RuntimeError(f"the local Ray did not start: {detail}")
    return LocalRay(process, line.split(" ", 1)[1])


def _first_line(process: subprocess.Popen, timeout: float) -> str:
    result = [""]
    reader = threading.Thread(target=lambda: result.__setitem__(0, process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return result[0].strip()


def _become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:  # pragma: no cover - Linux before 3.4
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def _end_descendants() -> None:
    """SIGTERM every descendant, SIGKILL those still alive after the grace period, reap them all."""
    import psutil

    me = psutil.Process()
    for _ in range(3):  # a dying process may start another: look again
        family = me.children(recursive=True)
        if not family:
            return
        for proc in family:
            try:
                proc.terminate()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(family, timeout=GRACE_SECONDS)
        for proc in alive:
            try:
                proc.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=GRACE_SECONDS)


class _Stop(Exception):
    """SIGTERM to the keeper: end Ray as on EOF."""


def _stop(*_) -> None:
    raise _Stop


def keep(num_cpus: int, num_gpus: int, object_store_bytes: int) -> None:
    """The keeper's life: steps 1–4 of the module docstring."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop)
    _become_subreaper()
    try:
        import ray

        ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR", object_store_memory=object_store_bytes)
        print(f"address {ray.get_runtime_context().gcs_address}", flush=True)
        try:
            told = sys.stdin.read()
        except _Stop:
            told = STOP_WORD  # SIGTERM: an orderly end, as from a driver that ends well
        if told.strip() != STOP_WORD:  # 4. the driver died: its trials end now (the finally below)
            return
        signal.signal(signal.SIGALRM, _stop)  # a shutdown that hangs is cut short: the finally ends everything
        signal.alarm(int(SHUTDOWN_SECONDS))
        ray.shutdown()
    except _Stop:
        pass
    except Exception as exc:  # the driver shows this line (if it is still there to read it)
        try:
            print(f"error {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}", flush=True)
        except OSError:
            pass
    finally:
        _end_descendants()


if __name__ == "__main__":  # pragma: no cover - run as a process
    try:
        keep(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
    finally:  # Ray's exit handlers would wait for a cluster that is gone: nothing is left to flush
        os._exit(0)
