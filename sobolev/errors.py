"""The two ways a trial can refuse to go on.

``ConfigError`` is bad input (a name, a value, a file): the command line turns it into a
one-line message and exit code 2.  It carries *where* the bad value is as data — the file it
came from and the key path inside it — so one formatter prints every error the same way,
``sweeps/x.yaml: grid.activations[1]: unknown activation 'tanh'; known: …``.
``TrialDiverged`` is a trial whose loss stopped being finite: a failure with a reason, never a
metric.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

KeyPath = Tuple[Union[str, int], ...]


class SobolevError(Exception):
    """Base class of the errors that the command line reports in one line, with :attr:`exit_code`."""

    exit_code = 2
    """2: bad input (the default); 1: the machine refused (a full disk, ``runners.engine.failures``)."""


def last_line(exc: BaseException, limit: int = 500) -> str:
    """The last line of an exception's message (where a traceback-carrying error says what went wrong), at most
    ``limit`` characters; its type's name when it has no message."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:limit]


def format_key_path(path: Sequence[Union[str, int]]) -> str:
    """``("grid", "activations", 1)`` → ``grid.activations[1]``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


class ConfigError(SobolevError, ValueError):
    """A configuration value, name or input file that cannot be used.

    ``message`` says what is wrong (and, where there is a list, the allowed values); ``path``
    is the key path of the bad value (``("trial", "steps")``) and ``source`` the file or
    option it came from.  ``str()`` joins them: ``source: key.path: message``.
    """

    def __init__(self, message: str, *, path: Sequence[Union[str, int]] = (), source: Optional[str] = None) -> None:
        self.message = message
        self.path: KeyPath = tuple(path)
        self.source = source
        super().__init__(message)

    def at(self, *prefix: Union[str, int]) -> "ConfigError":
        """This error located under ``prefix`` (the caller knows where the failing part sits)."""
        return type(self)(self.message, path=(*prefix, *self.path), source=self.source)

    def in_source(self, source: str) -> "ConfigError":
        """This error attributed to ``source`` (a spec file), unless it names a source already."""
        return self if self.source else type(self)(self.message, path=self.path, source=str(source))

    def __str__(self) -> str:
        parts = [p for p in (self.source, format_key_path(self.path)) if p]
        return ": ".join([*parts, self.message])

    def __reduce__(self):  # picklable across Ray workers with its location
        return (_rebuild, (type(self), self.message, self.path, self.source))


def _rebuild(cls, message: str, path: KeyPath, source: Optional[str]) -> ConfigError:
    return cls(message, path=path, source=source)


class TrialDiverged(SobolevError, RuntimeError):
    """The training loss became NaN or infinite."""

    def __init__(self, step: int, loss: float) -> None:
        self.step = step
        self.loss = loss
        super().__init__(f"trial diverged at step {step}: loss is {loss}")

    def __reduce__(self):
        return (TrialDiverged, (self.step, self.loss))
