"""A sweep's plan: its grid trials (``runners.plan.trials``) and, with a ``search`` block, its arms
(``runners.plan.arms``); or, once the arms are tuned, its evaluation trials.

Every failure is a :class:`~sobolev.errors.ConfigError` naming the spec file and the key path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Mapping, Optional, Sequence

from runners.plan.arms import Arm, plan_search
from runners.plan.trials import PlannedTrial, StepBudgets, TunedValues, expand_grid, resolve_datasets
from runners.spec.schema import SweepSpec
from runners.store.records import SearchResult
from sobolev.tasks import Dataset
from sobolev.errors import ConfigError


@dataclass
class SweepPlan:
    """What a sweep may train: its trials, and the arms of its search (none without a ``search`` block, and none
    once the arms are tuned: the trials are then the evaluation trials)."""

    spec: SweepSpec
    spec_path: str
    trials: List[PlannedTrial]
    dropped: int = 0
    """Combinations removed by include/exclude."""
    arms: List[Arm] = field(default_factory=list)
    """The arms of ``spec.search``, planned over these (untuned) trials."""
    datasets: List[Dataset] = field(default_factory=list)
    """The grid's datasets, resolved and digested once (a tuned plan reuses them)."""

    def every_trial(self) -> List[PlannedTrial]:
        """The trials and every arm's tuning members: everything the sweep may train."""
        return [*self.trials, *searched_members(self.arms)]


def searched_members(arms: Sequence[Arm]) -> List[PlannedTrial]:
    """The tuning members of ``arms`` (each trains on the tuning data × search seeds)."""
    return [m for arm in arms for m in arm.members]


def plan_sweep(spec: SweepSpec, spec_path: str, tuned: Optional[TunedValues] = None,
               datasets: Optional[List[Dataset]] = None) -> SweepPlan:
    """Expand the grid into typed, keyed trials (datasets opened here); errors name ``spec_path``.

    With a ``search``: without ``tuned``, the grid as specified and its arms (``SweepPlan.arms``);
    with ``tuned`` (arm label → the best values of its search), the evaluation trials: every grid
    trial with its arm's tuned values, keyed by its tuned config.  ``datasets``: the grid's, resolved before (a
    plan's own, when it is planned again with tuned values).
    """
    try:
        budgets = StepBudgets()
        datasets = datasets if datasets is not None else resolve_datasets(spec)  # 1. once per sweep
        trials, dropped = expand_grid(spec, datasets, tuned, budgets)
        plan = SweepPlan(spec, spec_path, trials, dropped, datasets=datasets)
        if spec.search is not None and tuned is None:
            plan.arms = plan_search(spec, plan.trials, datasets, budgets)
        return plan
    except ConfigError as exc:
        raise exc.in_source(spec_path) from None


def tuned_values(arms: Sequence[Arm], results: Mapping[str, SearchResult]) -> TunedValues:
    """Arm label → its best values (what the evaluation trials apply), from each arm's search result (by key)."""
    return {arm.label: results[arm.key].values for arm in arms}

