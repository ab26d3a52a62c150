"""Who drives an invocation: ``host pid start-time`` on its parent run (tag ``sobolev.driver``), so that a later
invocation can tell whether that driver is still alive (with the start time a recycled PID is never mistaken
for it)."""

from __future__ import annotations

import os
import socket
from typing import Optional


def driver_identity() -> str:
    """This process as ``host pid start-time``."""
    import psutil

    return f"{socket.gethostname()} {os.getpid()} {psutil.Process().create_time():.3f}"


def driver_gone(identity: Optional[str]) -> Optional[bool]:
    """Whether the driver named by a parent run's tag is gone: True or False on this host, None (cannot tell)
    for another host's driver or a run without the tag."""
    import psutil

    try:
        host, pid, started = (identity or "").split(" ")
        if host != socket.gethostname():
            return None
        return abs(psutil.Process(int(pid)).create_time() - float(started)) > 0.01
    except psutil.NoSuchProcess:
        return True
    except (ValueError, psutil.Error):
        return None
