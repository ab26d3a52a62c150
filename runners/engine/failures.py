"""Failures of the machine, not of the input: a full disk, a read-only or immutable file, a store that cannot be
written.  They end an invocation in one line naming the path and the cause, exit 1 — not a traceback, and not
"interrupted" — with this invocation's runs ended FAILED with that reason, as far as the store still takes writes
(what it does not take, the next invocation reconciles).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Iterable, Iterator, Optional

from sobolev.errors import SobolevError

DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}
STORE_MESSAGES = ("database or disk is full", "attempt to write a readonly database", "disk i/o error",
                  "unable to open database file", "no space left on device", "read-only file system")


class MachineFailure(SobolevError):
    """The machine would not take a write: one line, exit 1."""

    exit_code = 1


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def machine_failure(exc: BaseException, store: str = "") -> Optional[str]:
    """The one line for ``exc`` if it (or what caused it) is the machine refusing a write; None otherwise."""
    for cause in _chain(exc):
        if isinstance(cause, OSError) and cause.errno in DISK_ERRNOS:
            where = cause.filename or "a file"
            return f"cannot write {where}: {cause.strerror or cause}"
        text = str(cause).lower()
        hit = next((m for m in STORE_MESSAGES if m in text), None)
        if hit is not None:
            return f"cannot write {'the store ' + store if store else 'a file'}: {hit}"
    return None


FULL_BYTES = 1 << 20
"""A filesystem with less than this free is full for a sweep's purposes."""


def full_or_read_only(paths: Iterable[Path]) -> Optional[str]:
    """The first of ``paths`` (or its nearest existing parent) on a full or read-only filesystem, as one line.
    Tune reports a full disk under ``--storage`` as whatever failed to read back what it could not write (a
    truncated pickle), so the disk itself is looked at."""
    for path in paths:
        at = Path(path)
        while not at.exists() and at != at.parent:
            at = at.parent
        try:
            fs = os.statvfs(at)
        except OSError:
            continue
        if fs.f_bavail * fs.f_frsize < FULL_BYTES:
            return f"cannot write {path}: No space left on device ({fs.f_bavail * fs.f_frsize} bytes free)"
        if fs.f_flag & os.ST_RDONLY:
            return f"cannot write {path}: Read-only file system"
    return None
