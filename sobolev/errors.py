"""The two ways a trial can refuse to go on.

``ConfigError`` is bad input (a name, a value, a file): the command line turns it into a
one-line message and exit code 2.  ``TrialDiverged`` is a trial whose loss stopped being
finite: it is a failure with a reason, never a metric.
"""


class SobolevError(Exception):
    """Base class of the errors that the command line reports in one line, exit code 2."""


class ConfigError(SobolevError, ValueError):
    """A configuration value, name or input file that cannot be used."""


class TrialDiverged(SobolevError, RuntimeError):
    """The training loss became NaN or infinite."""

    def __init__(self, step: int, loss: float) -> None:
        self.step = step
        self.loss = loss
        super().__init__(f"trial diverged at step {step}: loss is {loss}")
