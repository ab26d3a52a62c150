"""One invocation per sweep and store at a time: a driver holds an exclusive claim while it runs.

A claim is an exclusive ``flock`` on a lock file beside the sweep's storage (``<storage>/<sweep>/.driver.lock``)
and, for a SQLite store, beside the database (``<folder>/.<database>.<sweep>.lock``), so two invocations of one
sweep meet whichever of the two they share.  The kernel releases a lock when its process ends, however it ends
(SIGKILL included): a dead driver never leaves a stale claim behind.  On a cluster the storage is a folder every
node sees (NFS keeps ``flock`` locks across hosts; a crashed host's lock lapses with its lease).  The file holds
the holder's identity (``host pid start-time``), which the refusal names.  Two *different* sweeps (names) into
one store claim different files and run side by side.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from typing import Callable, Iterator, List, Optional

from runners.store.drivers import driver_identity
from runners.store.uri import sqlite_path
from sobolev.errors import ConfigError

LOCK_NAME = ".driver.lock"
WAIT_NOTE_SECONDS = 30.0


def lock_files(storage_root: Path, uri: str, sweep: str) -> List[Path]:
    """The lock files of a sweep's claim, in the order they are taken."""
    files = [storage_root / LOCK_NAME]
    db = sqlite_path(uri)
    if db is not None:
        files.insert(0, db.parent / f".{db.name}.{sweep}.lock")
    return files


def _holder(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 512).decode(errors="replace").strip() or "a driver that has not written its name yet"


@contextlib.contextmanager
def claimed(storage_root: Path, uri: str, sweep: str, source: str, wait: bool = False,
            note: Optional[Callable[[str], None]] = None) -> Iterator[None]:
    """Hold the sweep's claim for the block; without ``wait`` a live holder is a one-line refusal naming it, with
    ``wait`` this blocks until it ends (saying so every half minute)."""
    storage_root.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as held:
        for path in lock_files(storage_root, uri, sweep):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            held.callback(os.close, fd)
            _take(fd, sweep, uri, source, wait, note)
            os.ftruncate(fd, 0)
            os.pwrite(fd, (driver_identity() + "\n").encode(), 0)
        yield


def _take(fd: int, sweep: str, uri: str, source: str, wait: bool, note: Optional[Callable[[str], None]]) -> None:
    said = 0.0
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            holder = _holder(fd)
            if not wait:
                raise ConfigError(f"sweep {sweep!r} is being run into {uri} by another invocation (driver "
                                  f"{holder}); wait for it to end (--wait), or stop it", source=source) from None
            if note is not None and time.monotonic() - said > WAIT_NOTE_SECONDS:
                note(f"waiting for the invocation of {sweep!r} that holds {uri} (driver {holder}) to end")
                said = time.monotonic()
            time.sleep(0.5)
