"""What the driver hands the Ray Tune trials: a typed contract, built once by the driver.

Every planned trial of the invocation, typed config included, and the :class:`TrialContext`
they run in travel together as one :class:`SweepTrials`, put into Ray's object store once
(``tune.with_parameters``).  Tune's own ``param_space`` stays plain data — each Tune trial's
config is ``{"chain": [[trial keys], …]}``: the packs it trains one after the other (a chain of short
trials, ``runners.plan.chains``), each pack the members trained as one batched network (one, unless
``run.pack`` > 1) —
so Tune can save, show and restore it as it is.  The worker (``runners.worker.trial``) looks its
members up and trains their configs unchanged; the driver's Tune events (``runners.engine.tune_events``)
read the keys.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence

from runners.plan.arms import Arm
from runners.plan.trials import PlannedTrial

CHAIN = "chain"
"""The key of Tune's ``param_space`` (and of each Tune trial's config): its packs of member trial keys, in the
order it trains them."""


@dataclass(frozen=True)
class TrialContext:
    """Where and how often a trial reports: the same for every trial of one sweep invocation."""

    tracking_uri: str
    """Absolute MLflow tracking URI (a worker on any node logs to the same store)."""
    experiment_id: str
    parent_run_id: str
    """The invocation's parent run: every trial's child run hangs under it."""
    report_every: int
    """Steps between reports to Tune and MLflow."""
    checkpoint_every: int
    """Steps between checkpoints."""
    cpus: float
    """CPUs Ray gives each Tune trial: torch uses as many threads."""
    max_failures: int = 2
    """Retries of a failing pack (``run.max_failures``); a chain goes on past a pack that used them up."""


@dataclass(frozen=True)
class SweepTrials:
    """The planned trials of one invocation by key, and their context."""

    context: TrialContext
    by_key: Mapping[str, PlannedTrial]
    checkpoints: Mapping[str, str] = field(default_factory=dict)
    """trial key → the latest checkpoint file an earlier invocation left (``runners.worker.checkpoints``)."""

    @classmethod
    def of(cls, trials: Sequence[PlannedTrial], context: TrialContext,
           checkpoints: Optional[Mapping[str, str]] = None) -> "SweepTrials":
        return cls(context, {t.key: t for t in trials}, dict(checkpoints or {}))

    def packs(self, tune_config: Dict[str, Any]) -> List[List[PlannedTrial]]:
        """The packs of planned trials one Tune trial trains, in order."""
        return [[self.by_key[key] for key in pack] for pack in tune_config[CHAIN]]


def pack_keys(tune_config: Dict[str, Any]) -> List[str]:
    """Every member key of a Tune trial's config (all its packs)."""
    return [key for pack in tune_config[CHAIN] for key in pack]


def pack_dirname(tune_config: Dict[str, Any]) -> str:
    """A Tune trial's folder: its one member's key, or a hash of its members' keys."""
    keys = pack_keys(tune_config)
    return keys[0] if len(keys) == 1 else "chain-" + hashlib.sha256(",".join(keys).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PackNames:
    """Tune's ``trial_name_creator``: a Tune trial is called by its first member and how many more."""

    names: Mapping[str, str]

    def __call__(self, trial) -> str:
        keys = pack_keys(trial.config)
        return self.names.get(keys[0], keys[0]) + (f" +{len(keys) - 1}" if len(keys) > 1 else "")


@dataclass(frozen=True)
class TuningArm:
    """One arm of a search and its context, handed to each of the arm's Tune trials (``tune.with_parameters``);
    a Tune trial's config is the sampled values (``Arm.param_space``)."""

    context: TrialContext
    arm: Arm
    metric: str
    """The held-out metric whose mean over the arm's members is the objective."""

    def run_key(self, trial_id: str) -> str:
        """The tuning run of one configuration: the arm's search key and Tune's trial id."""
        return f"{self.arm.key}/{trial_id}"
