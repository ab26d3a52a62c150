"""Watchdog that removes a local Ray cluster's processes once its driver is gone.

Ray's DashboardAgent and RuntimeEnvAgent outlive a driver killed with SIGKILL (they are
re-parented to init).  The driver starts this watchdog before ``ray.init``; it remembers every
descendant of the driver and, when the driver exits for any reason, terminates the ones still
alive (checking their start time, so a recycled PID is never hit).

Usage: ``python -m runners.reaper DRIVER_PID``
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Dict, Tuple

import psutil

POLL_SECONDS = 0.5


def _descendants(driver: psutil.Process) -> Dict[int, Tuple[float, psutil.Process]]:
    try:
        return {p.pid: (p.create_time(), p) for p in driver.children(recursive=True)}
    except psutil.Error:
        return {}


def watch(driver_pid: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the terminal is the driver's to handle
    try:
        driver = psutil.Process(driver_pid)
    except psutil.NoSuchProcess:
        return
    known: Dict[int, Tuple[float, psutil.Process]] = {}
    while driver.is_running() and driver.status() != psutil.STATUS_ZOMBIE:
        known.update(_descendants(driver))
        for pid, (_, proc) in list(known.items()):
            known.update({c.pid: (c.create_time(), c) for c in _safe_children(proc)})
        time.sleep(POLL_SECONDS)
    alive = []
    for pid, (created, proc) in known.items():
        try:
            if proc.is_running() and proc.create_time() == created and pid != os.getpid():
                proc.terminate()
                alive.append(proc)
        except psutil.Error:
            pass
    _, still = psutil.wait_procs(alive, timeout=3)
    for proc in still:
        try:
            proc.kill()
        except psutil.Error:
            pass


def _safe_children(proc: psutil.Process):
    try:
        return proc.children(recursive=True)
    except psutil.Error:
        return []


def start_reaper() -> subprocess.Popen:
    """Start the watchdog for the current process, detached from the terminal's Ctrl-C."""
    return subprocess.Popen(
        [sys.executable, "-m", "runners.reaper", str(os.getpid())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


if __name__ == "__main__":  # pragma: no cover - run as a process
    watch(int(sys.argv[1]))
