"""SIGTERM (what a batch scheduler sends) and SIGHUP (a closed terminal) end the driver as Ctrl-C does: Tune
stops the trials, their runs end KILLED (``resume`` continues them), the summary says INTERRUPTED, and the exit
code is 128 + the signal's number.

Ray's core worker in the driver installs its own SIGTERM handler, which aborts the process (exit 134, the runs
left RUNNING): :func:`as_interrupt` is entered after ``ray.init`` and replaces it for the invocation.
"""

from __future__ import annotations

import contextlib
import signal
from typing import Iterator, List, Optional

AS_CTRL_C = (signal.SIGTERM, signal.SIGHUP)


class Received:
    """The signal that interrupted the invocation, if one did (``None``: Ctrl-C or none)."""

    signum: Optional[int] = None


def _forward(signum, _frame) -> None:
    Received.signum = Received.signum or signum
    signal.raise_signal(signal.SIGINT)  # handled as Ctrl-C: by Tune inside ``fit``, as KeyboardInterrupt elsewhere


@contextlib.contextmanager
def as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP handled as Ctrl-C while the block runs (the previous handlers restored after)."""
    previous: List = [(sig, signal.signal(sig, _forward)) for sig in AS_CTRL_C]
    try:
        yield
    finally:
        for sig, handler in previous:
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
