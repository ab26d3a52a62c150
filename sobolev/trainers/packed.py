"""Packed trials: K trials of one architecture and point count trained as one batched network.

A sweep is thousands of small trials; one small trial leaves a GPU mostly idle and pays the
per-step overhead (Python, kernel launches) K times.  A pack keeps K ordinary trainers — each
with its own data, seed, supervision, λ, learning rate, Adam state, history, checkpoints and
metrics — and only batches their arithmetic.

Algorithm (one step of the pack):
  1. Stack the active members' parameters (``torch.stack``: every member keeps its own leaf
     tensors, so its gradient and its own ``torch.optim.Adam`` are exactly the solo ones).
  2. One batched forward pass — and input Jacobian, if any member's supervision needs it — over
     the ``(K, N, D)`` training coordinates (``CoordinateMLP.forward_with``).
  3. Per-member losses (``sobolev.losses``, reduced per member), combined by each member's own
     supervision and λ.
  4. A member whose loss is NaN/inf leaves the pack with :class:`~sobolev.errors.TrialDiverged`
     before the backward pass (as a solo trial would); the others: backward of the sum of their
     losses (member k's gradient is the gradient of its own loss) and each member's Adam step.
  5. Each member logs, evaluates and calls back on its own schedule
     (:meth:`RegressionTrainer.record_step`); it leaves the pack when it reaches its steps.

A packed trial's result equals the same trial run alone within float tolerance (batched
matrix products round differently from single ones).  A pack of one is the solo trainer.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch

from sobolev.errors import ConfigError, TrialDiverged
from sobolev.jacobian import mlp_value_and_jacobian, value_and_input_jacobian
from sobolev.losses import SUPERVISIONS, derivative_loss, value_loss
from sobolev.models import CoordinateMLP, stack_tensors
from sobolev.trainers.base import Progress, RegressionTrainer, TrialResult

Outcome = Union[TrialResult, TrialDiverged]


@dataclass
class MemberEvent:
    """What a pack's callback sees: member ``index`` logged ``progress``."""

    index: int
    progress: Progress


PackCallback = Callable[[List[MemberEvent]], None]
"""Called once per step at which any member logged, with every member that did."""
EndCallback = Callable[[int, Outcome], None]
"""Called when member ``index`` ends: its :class:`TrialResult`, or the :class:`TrialDiverged`."""


def pack_signature(trainer: RegressionTrainer) -> Dict[str, object]:
    """What must be equal for trainers to share a pack: task, shapes, architecture, device, derivative path."""
    if type(trainer).training_step is not RegressionTrainer.training_step or not isinstance(trainer.model,
                                                                                              CoordinateMLP):
        raise ConfigError(f"{type(trainer).__name__} cannot be packed: it has its own training step or network")
    model = trainer.model
    enc = model.encoding
    return {
        "task": type(trainer.config).__name__,
        "training points": tuple(trainer.train_coords.shape),
        "channels": trainer.train_values.shape[1],
        "parameter shapes": tuple(tuple(p.shape) for p in model.parameters()),
        "activation": tuple((type(a).__name__, a.extra_repr()) for a in model.activations),
        "encoding": (type(enc).__name__, enc.extra_repr(), tuple(tuple(t.shape) for t in model.tensors().encoding)),
        "coordinates": type(model.coordinates).__name__,
        "device": str(trainer.device),
        "derivative_impl": trainer.derivative_impl,
        "precision": trainer.config.precision,
    }


def check_packable(trainers: Sequence[RegressionTrainer]) -> None:
    """Every member has the first one's :func:`pack_signature`; the error names what differs."""
    if not trainers:
        raise ConfigError("a pack needs at least one trial")
    first = pack_signature(trainers[0])
    for i, t in enumerate(trainers[1:], start=1):
        other = pack_signature(t)
        for key, value in first.items():
            if other[key] != value:
                raise ConfigError(f"trials cannot share a pack: member {i} differs in {key} ({other[key]} vs {value})")


def split_into_packs(trainers: Sequence[RegressionTrainer]) -> List[List[int]]:
    """Indices of ``trainers`` grouped by :func:`pack_signature`, in first-seen order; a trainer that
    cannot be packed (NeRF) is a group of its own."""
    groups: Dict[str, List[int]] = {}
    for i, t in enumerate(trainers):
        try:
            key = repr(sorted(pack_signature(t).items()))
        except ConfigError:
            key = f"alone-{i}"
        groups.setdefault(key, []).append(i)
    return list(groups.values())


class PackedTrainer:
    """K :class:`RegressionTrainer` of one :func:`pack_signature`, trained as one batched network."""

    def __init__(self, members: Sequence[RegressionTrainer]) -> None:
        self.members = list(members)
        if len(self.members) == 1:  # a pack of one is the solo trainer (any task)
            return
        check_packable(members)
        self.supervisions = [SUPERVISIONS.get(m.config.supervision) for m in self.members]
        first = self.members[0]
        n, c, d = first.train_coords.shape[0], first.train_values.shape[1], first.train_coords.shape[1]
        self.coords = torch.stack([m.train_coords for m in self.members])  # (K, N, D)
        self.values = torch.stack([m.train_values for m in self.members])  # (K, N, C)
        zeros = first.train_values.new_zeros(n, c, d)  # a value-only member has no derivative target
        self.jacobians = torch.stack([m.train_jacobian if m.train_jacobian is not None else zeros
                                      for m in self.members])  # (K, N, C, D)
        self._batch: Tuple = ()

    def _active_data(self, active: List[int]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The active members' coordinates, values and derivative targets, re-gathered only when the
        active set changes (a member ended)."""
        if not self._batch or self._batch[0] != active:
            index = torch.tensor(active, device=self.coords.device)
            self._batch = (list(active), self.coords[index], self.values[index], self.jacobians[index])
        return self._batch[1:]

    # -- one step -------------------------------------------------------------------------
    def training_step(self, active: List[int]) -> Tuple[Dict[int, Dict[str, float]], Dict[int, TrialDiverged]]:
        """Steps 1–4 for the ``active`` members: their losses, and the members that diverged."""
        members = [self.members[i] for i in active]
        for m in members:
            m.optimizer.zero_grad(set_to_none=True)
        coords, values, targets = self._active_data(active)
        tensors = stack_tensors([m.model for m in members])  # 1.
        model = members[0].model
        sups = [self.supervisions[i] for i in active]
        jac = None
        if any(s.uses_derivatives for s in sups):  # 2.
            if members[0].derivative_impl == "forward":
                pred, jac = mlp_value_and_jacobian(model, coords, tensors)
            else:
                pred, jac = value_and_input_jacobian(lambda x: model.forward_with(tensors, x), coords)
        else:
            pred = model.forward_with(tensors, coords)
        val = value_loss(pred, values)  # 3. (K,)
        der = derivative_loss(jac, targets) if jac is not None else None
        totals = torch.stack([
            s.combine(val[j], der[j] if der is not None else None, m.config.lambda_der)
            for j, (s, m) in enumerate(zip(sups, members))
        ])
        parts = torch.stack((totals, val, der if der is not None else val), dim=1).detach()
        rows = parts.tolist()  # 4. one synchronisation for the whole pack
        losses: Dict[int, Dict[str, float]] = {}
        diverged: Dict[int, TrialDiverged] = {}
        for i, s, m, (total, v, dv) in zip(active, sups, members, rows):
            if not math.isfinite(total):
                diverged[i] = TrialDiverged(m.step + 1, total)
                continue
            losses[i] = {"loss": total, "val_loss": v, **({"der_loss": dv} if s.uses_derivatives else {})}
        keep = [j for j, i in enumerate(active) if i in losses]
        if keep:
            totals[keep].sum().backward()
        for j in keep:
            members[j].optimizer.step()
        return losses, diverged

    # -- the loop -------------------------------------------------------------------------
    def fit(self, callback: Optional[PackCallback] = None, on_end: Optional[EndCallback] = None) -> List[Outcome]:
        """Train every member to its own ``steps`` (from wherever it was restored); step 5."""
        outcomes: Dict[int, Outcome] = {}

        def end(i: int, outcome: Outcome) -> None:
            outcomes[i] = outcome
            if on_end is not None:
                on_end(i, outcome)

        if len(self.members) == 1:  # a pack of one is the solo trainer, to the bit
            member = self.members[0]
            try:
                result = member.fit(_for_member(callback, 0))
            except TrialDiverged as exc:
                end(0, exc)
            else:
                end(0, result)
            return [outcomes[0]]

        for m in self.members:  # each member's own step, counted as if alone (a batched step costs K of them)
            m.measure_flops()
        for i, m in enumerate(self.members):  # restored past its last step: only evaluate
            if m.done:
                end(i, m.finish(_for_member(callback, i)))
        active = [i for i, m in enumerate(self.members) if not m.done]
        while active:
            t0 = time.perf_counter()
            losses, diverged = self.training_step(active)
            share = (time.perf_counter() - t0) / len(active)  # each member's share of the step's time
            for i, exc in diverged.items():
                end(i, exc)
            events: List[MemberEvent] = []
            collect = events.append
            for i in losses:
                self.members[i].record_step(losses[i], share, lambda p, i=i: collect(MemberEvent(i, p)))
            if events and callback is not None:
                callback(events)
            for i in losses:
                if self.members[i].done:
                    end(i, self.members[i].finish(_for_member(callback, i)))
            active = [i for i in active if i not in outcomes]
        return [outcomes[i] for i in range(len(self.members))]


def _for_member(callback: Optional[PackCallback], index: int):
    if callback is None:
        return None
    return lambda p: callback([MemberEvent(index, p)])
