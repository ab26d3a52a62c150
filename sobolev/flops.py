"""The cost of a trial in floating-point operations, counted, not estimated: ``torch.utils.flop_counter``.

A trial's FLOPs per training step depend on its network, supervision, derivative path and point count; a
``val_der`` step costs 2.5–3× a ``val`` step (forward-mode tangents, or a double backward).  Rather than a hand
formula, the trainer counts them on its own first step (``RegressionTrainer.measure_flops``): one step's loss and
backward pass run eagerly under :class:`FlopCounterMode`, with the parameters, their gradients and the random
state left as they were, so the count is machine-independent and the trial unchanged.

Counted as ``torch.utils.flop_counter`` counts: matrix products (2 FLOPs per multiply-add), convolutions and
attention; element-wise work (activations, Adam's update) is not counted.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterable, Iterator, Optional

import torch
from torch.utils.flop_counter import FlopCounterMode

from sobolev.errors import ConfigError


class _GlobalOnly:
    """Stands in for FlopCounterMode's per-module tracker, whose backward hooks break ``torch.autograd.grad`` (the
    autograd derivative path); every count goes to the total."""

    parents = ("Global",)

    def __enter__(self) -> "_GlobalOnly":
        return self

    def __exit__(self, *args) -> None:
        return None


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of what ``fn`` computes (its own autograd calls included)."""
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _GlobalOnly()
    with counter:
        fn()
    return int(counter.get_total_flops())


@contextlib.contextmanager
def random_state_kept(device: torch.device) -> Iterator[None]:
    """Whatever the block draws, the random streams go on afterwards as if it had not run."""
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    try:
        yield
    finally:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda, device)


def steps_for_budget(config, step_flops: Optional[int] = None):
    """The config of a trial whose budget is given in FLOPs (``budget_flops``), with its steps: ``floor(budget /
    FLOPs of a step)``, the step counted on a trainer of this config unless ``step_flops`` is known (the same
    count: it depends on the network, supervision, derivative path and points, not on the data's values).  A
    config without a budget is returned as it is; a budget below one step is a :class:`ConfigError`."""
    if getattr(config, "budget_flops", None) is None:
        return config
    if step_flops is None:
        step_flops = config.model_copy(update={"steps": 1}).setup().measure_flops()
    steps = int(config.budget_flops // step_flops)
    if steps < 1:
        raise ConfigError(f"{config.budget_flops:g} FLOPs is less than one step of this trial ({step_flops} FLOPs); "
                          f"allowed: at least {step_flops}", path=("budget_flops",))
    return config.model_copy(update={"steps": steps})


def check_budget_given_once(given: Iterable[str]) -> None:
    """``steps`` and ``budget_flops`` are two ways to give one budget: refused together (``given``: the settings
    given)."""
    if {"steps", "budget_flops"} <= set(given):
        raise ConfigError("give the training budget as steps or as budget_flops, not both", path=("budget_flops",))
