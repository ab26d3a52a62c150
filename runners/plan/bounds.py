"""What a spec may ask of this machine: refused at plan time, in one line, before anything is allocated.

A spec must not be able to exhaust the machine that plans or runs it.  Three bounds, each derived from this
machine's memory (``psutil.virtual_memory().total``) and documented in docs/faults.md:

1. **Data** (checked before the planner opens it): a signal whose size the config fixes (an image's ``size``)
   must fit its decoded copies — pixels, derivative targets, coordinates, predictions — in
   :data:`DATA_SHARE` of the memory.  ``size: 100000`` asks for ~1.3 TB.
2. **Network** (before any data): its parameters with their gradient and Adam's two moments (4 copies) must
   fit the same share.  ``model.hidden_features: 10**8`` asks for ~4·10^17 bytes.
3. **Training** (after planning, for trials this machine runs; ``runners.plan.estimate.TrainingBound``):
   parameters, plus what a full-batch step keeps for its backward pass — every layer's activations for every
   training point and each input tangent of the derivative supervision — plus one evaluation chunk, for as many
   trials as run at once, within :data:`RUN_SHARE` of the memory.

Steps do not take memory; they take time: ``runners.engine`` refuses an estimated wall time beyond
:data:`MAX_WALL_HOURS` unless the user says ``--yes``.
"""

from __future__ import annotations

import math
from typing import Optional

from sobolev.errors import ConfigError

FLOAT = 4
"""Bytes of a float32."""
DATA_SHARE = 0.5
"""Share of this machine's memory one signal may take while it is planned (and trained)."""
RUN_SHARE = 0.8
"""Share of this machine's memory the trials running at once may take together."""
DATA_COPIES = 32
"""Floats kept per sample and channel of a signal: pixels, derivative targets (2 per channel), coordinates,
training subsets, predictions and gradient maps, resize buffers (counted from ``sobolev.trainers.image``, with
room)."""
SAVED_PER_UNIT = 6
"""Floats a training step keeps per hidden unit and point for the backward pass (pre-activation, activation,
their derivative; doubled for the second backward of the autograd path)."""
EVAL_CHUNK = 16384
"""Points evaluated at once (``RegressionTrainer.eval_chunk``)."""
MAX_WALL_HOURS = 24.0
"""Estimated wall time on this machine above which ``run`` and ``plan`` ask for ``--yes``."""


def machine_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().total)


def gigabytes(n: float) -> str:
    return f"{n / 1e9:.3g} GB"


def network_parameters(config) -> int:
    """Parameters of the config's MLP: input (or encoding) layer, hidden layers, output layer."""
    m = config.model
    width, layers = int(m.hidden_features), int(m.hidden_layers)
    encoded = 2 * int(m.ff_features) if m.ff_features else 64  # Fourier features, or a positional encoding
    return encoded * width + layers * width * (width + 1) + width * 4


def check_network(config, budget: Optional[int] = None) -> None:
    """Bound 2: the network and its optimiser state fit in :data:`DATA_SHARE` of the memory."""
    budget = budget or int(machine_memory() * DATA_SHARE)
    needed = network_parameters(config) * FLOAT * 4
    if needed > budget:
        width = int(math.sqrt(budget / FLOAT / 4 / max(1, int(config.model.hidden_layers))))
        raise ConfigError(f"{config.model.hidden_features} units per layer need {gigabytes(needed)} for the network "
                          f"and Adam's state, over {gigabytes(budget)} ({DATA_SHARE:.0%} of this machine's memory); "
                          f"allowed here: at most ~{width}", path=("model", "hidden_features"))


def check_data(samples: int, channels: int, field: str, budget: Optional[int] = None) -> None:
    """Bound 1: a signal of ``samples`` × ``channels`` fits in :data:`DATA_SHARE` of the memory (``field``: the
    setting that fixed its size)."""
    budget = budget or int(machine_memory() * DATA_SHARE)
    needed = samples * channels * FLOAT * DATA_COPIES
    if needed > budget:
        side = int(math.sqrt(budget / (channels * FLOAT * DATA_COPIES)))
        raise ConfigError(f"{samples} samples × {channels} channels need ~{gigabytes(needed)} decoded, over "
                          f"{gigabytes(budget)} ({DATA_SHARE:.0%} of this machine's memory); allowed here: a side "
                          f"of at most ~{side}",
                          path=(field,))
