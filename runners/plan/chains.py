"""Chains: short trials in sequence inside one Tune trial.

A Tune trial costs a few hundred milliseconds of its own (scheduling, the actor's reset, the driver's state), which
dominate a sweep of trials that each train for less than a second.  The packs of such trials (``pack_trials``)
are grouped into chains: one Tune trial trains the packs of a chain one after the other, each trial still with its
own MLflow run, key, checkpoint, retries and failure.  How the trials are grouped never enters a key.

Algorithm (``chain_packs``):
  1. A pack whose estimated seconds (the longest member's training, ``runners.plan.estimate``) reach
     :data:`SHORT_SECONDS` stays a chain of its own.
  2. The short packs, in plan order, are dealt into ``n`` chains, ``n`` the larger of the estimated time over
     ``target`` seconds and ``CHAINS_PER_SLOT`` chains per concurrent slot (so the slots finish together), and at
     most one chain per pack.
"""

from __future__ import annotations

import math
from typing import Callable, List

from runners.plan.trials import PlannedTrial

SHORT_SECONDS = 3.0
"""A trial estimated to train for less than this is chained."""
CHAINS_PER_SLOT = 4
"""At least this many chains per concurrent slot (the last chains to finish are short)."""

Pack = List[PlannedTrial]


def chain_packs(packs: List[Pack], seconds: Callable[[PlannedTrial], float], slots: int,
                target: float) -> List[List[Pack]]:
    """Steps 1–2; ``target``: a chain's estimated seconds (``run.chain_seconds``; 0: no chains)."""
    if target <= 0:
        return [[p] for p in packs]
    cost = [max(seconds(t) for t in p) for p in packs]
    alone = [[p] for p, c in zip(packs, cost) if c >= SHORT_SECONDS]  # 1.
    short = [(p, c) for p, c in zip(packs, cost) if c < SHORT_SECONDS]
    if not short:
        return alone
    n = min(len(short), max(math.ceil(sum(c for _, c in short) / target), CHAINS_PER_SLOT * max(1, slots)))  # 2.
    chains: List[List[Pack]] = [[] for _ in range(n)]
    for i, (p, _) in enumerate(short):
        chains[i * n // len(short)].append(p)
    return alone + chains
