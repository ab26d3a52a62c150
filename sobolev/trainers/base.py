"""The training loop that image, audio and (later) NeRF regression share.

Algorithm (docs/protocol.md, "Common to every task"):
  1. Fix the seed, build the network with the paper's init and Adam with a constant lr.
  2. Every step, on every training point (full batch): predict the values and, if the
     supervision needs them, the input Jacobian ``∂f/∂x`` with respect to the raw coordinate.
  3. Loss: ``val``, ``der`` or ``val + λ der`` (``sobolev.losses``); a NaN/inf loss stops the
     trial with :class:`~sobolev.errors.TrialDiverged`.
  4. Every ``log_every`` steps: append the losses to the history and call the callback, which may
     checkpoint the trainer; every ``eval_every`` steps (whether or not a ``log_every`` step) the same with
     held-out metrics added.
  5. At the end: predict the whole signal and its derivatives, compute the paper's metrics.

The trainer knows nothing of Ray or MLflow: runners plug in through the callback.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from sobolev.errors import ConfigError, TrialDiverged
from sobolev.flops import count_flops, random_state_kept
from sobolev.jacobian import choose_impl, mlp_value_and_jacobian, value_and_input_jacobian
from sobolev.losses import SUPERVISIONS, LossTerms, sobolev_loss
from sobolev.numerics import flush_denormals
from sobolev.precision import PRECISIONS

CHECKPOINT_FORMAT = 1
# Fields that may change between a checkpoint and its resumption (train longer, log differently).
RESUMABLE_FIELDS = frozenset({"steps", "log_every", "eval_every", "device", "compile"})


def _cxx_compiler() -> bool:
    """Whether inductor finds a C++ compiler (what ``torch.compile`` needs on a CPU)."""
    return any(shutil.which(c) for c in (os.environ.get("CXX", ""), "g++", "clang++", "c++") if c)


@dataclass
class TrialResult:
    """What a trial produced: final metrics, loss history, and the fitted signal.

    Shape (image / audio):
        - prediction, target: ``(C, H, W)`` / ``(1, N)`` in [-1, 1]
        - network_gradient, target_gradient: ``(C, 2, H, W)`` / ``(1, 1, N)`` per-sample units
        - train_mask: ``(H, W)`` / ``(N,)`` bool
    """

    config: Any
    """The trial's typed config (a :class:`~sobolev.trainers.config.RegressionConfig`)."""
    metrics: Dict[str, float]
    history: List[Dict[str, float]]
    steps: int
    train_seconds: float
    prediction: torch.Tensor
    target: torch.Tensor
    network_gradient: torch.Tensor
    target_gradient: torch.Tensor
    train_mask: torch.Tensor
    extras: Dict[str, Any] = field(default_factory=dict)
    eval_seconds: float = 0.0
    """Time spent evaluating (periodic held-out metrics and the final evaluation), not training."""
    step_flops: int = 0
    """FLOPs of one training step (``sobolev.flops``); ``steps × step_flops`` were spent training."""

    @property
    def task(self) -> str:
        """The name of the trial's task."""
        from sobolev.tasks import task_of

        return task_of(self.config).name

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.train_seconds if self.train_seconds > 0 else float("nan")

    def summary(self) -> Dict[str, Any]:
        """JSON-ready: the metrics plus ``steps``, ``train_seconds``, ``steps_per_second``, config."""
        return {
            "task": self.task,
            **self.metrics,
            "steps": self.steps,
            "train_seconds": self.train_seconds,
            "eval_seconds": self.eval_seconds,
            "steps_per_second": self.steps_per_second,
            "flops_per_step": self.step_flops,
            "train_flops": self.steps * self.step_flops,
            "config": self.config.model_dump(),
        }


@dataclass
class Progress:
    """What the callback sees every ``log_every`` steps (and once at the end)."""

    step: int
    total_steps: int
    metrics: Dict[str, float]
    train_seconds: float
    trainer: "RegressionTrainer"
    final: bool = False

    def state_dict(self) -> Dict[str, Any]:
        """A checkpoint of the trainer at this step (model, optimiser, step, history)."""
        return self.trainer.state_dict()


Callback = Callable[[Progress], None]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def check_device(device: str) -> None:
    """A CUDA device must exist where the trial runs (checked on the worker, not the planner)."""
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but no CUDA device is available; known: cpu")


class RegressionTrainer:
    """Full-batch Sobolev regression of a coordinate MLP to values and derivatives.

    Subclasses set the data up (``self.train_coords``, ``self.train_values``,
    ``self.train_jacobian``, ``self.model``) and implement :meth:`evaluate`.
    """

    eval_chunk = 16384

    def __init__(self, config: Any) -> None:
        check_device(config.device)
        self.config = config
        self.device = torch.device(config.device)
        if self.device.type == "cpu":  # before any parallel op creates this thread's pool (sobolev.numerics)
            flush_denormals()
        self.supervision = SUPERVISIONS.get(config.supervision)
        self.step = 0
        self.train_seconds = 0.0
        self.eval_seconds = 0.0
        self.history: List[Dict[str, float]] = []
        self.step_flops: Optional[int] = None
        """FLOPs of one training step, once :meth:`measure_flops` has counted them."""
        self.evaluation_flops: Optional[int] = None
        """FLOPs of one periodic evaluation, counted on the first one."""
        self.last_evaluation: Optional[TrialResult] = None
        """The latest evaluation: a periodic one (``eval_every``, no derivatives) or the final one (``finish``)."""
        seed_everything(config.seed)
        self.setup()  # subclass: data, targets, model (seeded)
        self.model.to(self.device)
        self.model.precision = PRECISIONS.get(config.precision)  # the products after the first layer
        self.model.precision.prepare(self.device)
        self.train_coords = self.train_coords.to(self.device)
        self.train_values = self.train_values.to(self.device)
        if self.train_jacobian is not None:
            self.train_jacobian = self.train_jacobian.to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        out_features = self.train_values.shape[1]
        self.derivative_impl = choose_impl(config.derivative_impl, self.model, out_features,
                                           self.train_coords.shape[1])
        # compile: the forward path and value-only training; autograd's double backward cannot be compiled
        # (and for one output channel eager autograd beats compiled tangents), so it stays eager.  `auto`
        # compiles long trials only (config.compiles), and without a C++ compiler on a CPU stays eager
        self.compiled = config.compiles(self.train_coords.shape[0]) and not (
            self.supervision.uses_derivatives and self.derivative_impl == "autograd")
        self._loss = self.loss_parts
        if self.compiled and self.device.type == "cpu" and not _cxx_compiler():
            if config.compile is True:
                raise ConfigError("compile on a CPU needs a C++ compiler (g++ or clang++, or $CXX); install one "
                                  "or leave compile off")
            self.compiled = False
        if self.compiled:
            # CUDA: also CUDA graphs, for these small fixed-shape steps; CPU: fused C++ kernels
            mode = "reduce-overhead" if self.device.type == "cuda" else None
            self._loss = torch.compile(self.loss_parts, mode=mode, dynamic=False)

    def value_and_jacobian(self, coords: torch.Tensor, create_graph: bool = True):
        """The network's values and input Jacobian with the chosen implementation (same results)."""
        if self.derivative_impl == "forward":
            if create_graph:
                return mlp_value_and_jacobian(self.model, coords)
            with torch.no_grad():
                return mlp_value_and_jacobian(self.model, coords)
        return value_and_input_jacobian(self.model, coords, create_graph=create_graph)

    # -- hooks for subclasses -------------------------------------------------------------
    model: nn.Module
    train_coords: torch.Tensor
    train_values: torch.Tensor
    train_jacobian: Optional[torch.Tensor]

    def setup(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    target: torch.Tensor
    target_gradient: torch.Tensor
    train_mask: torch.Tensor
    coords: torch.Tensor

    def to_signal(self, values: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """``(N, C)`` network values at ``self.coords`` → the signal's own layout."""
        raise NotImplementedError

    def to_gradient_maps(self, jacobian: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """``(N, C, D)`` Jacobians at ``self.coords`` → the layout of ``self.target_gradient``."""
        raise NotImplementedError

    def signal_metrics(self, prediction: torch.Tensor) -> Dict[str, float]:  # pragma: no cover - abstract
        """The task's metrics of a prediction (held-out and training)."""
        raise NotImplementedError

    def extras(self) -> Dict[str, Any]:
        return {}

    def evaluate(self, with_gradients: bool = True) -> TrialResult:
        """Step 5: predict the whole signal (and its derivatives) and compute the task's metrics."""
        if with_gradients:
            values, jac = self.predict_with_jacobian(self.coords)
            network_gradient = self.to_gradient_maps(jac)
        else:
            values, network_gradient = self.predict(self.coords), torch.empty(0)
        prediction = self.to_signal(values)
        return self.make_result(
            self.signal_metrics(prediction),
            prediction=prediction,
            target=self.target,
            network_gradient=network_gradient,
            target_gradient=self.target_gradient,
            train_mask=self.train_mask,
            extras=self.extras(),
        )

    # -- the loop -------------------------------------------------------------------------
    @property
    def log_every(self) -> int:
        return self.config.log_every or max(1, self.config.steps // 100)

    def training_step(self) -> Dict[str, float]:
        """Steps 2–3: one full-batch Adam step; returns the losses as floats."""
        self.optimizer.zero_grad(set_to_none=True)
        total, value, derivative = self._loss()
        return self.optimise(LossTerms(total, value, derivative))

    def loss_parts(self) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """Steps 2–3 as a pure function of the parameters (what ``compile`` compiles): the total loss,
        the value term and the derivative term (None without derivative supervision)."""
        if self.supervision.uses_derivatives:
            pred, jac = self.value_and_jacobian(self.train_coords, create_graph=True)
        else:
            pred, jac = self.model(self.train_coords), None
        terms = sobolev_loss(
            self.config.supervision,
            pred,
            self.train_values,
            jac,
            self.train_jacobian if jac is not None else None,
            self.config.lambda_der,
        )
        return terms.total, terms.value, terms.derivative

    def compute_spent(self) -> Dict[str, float]:
        """What the training so far cost, recorded beside every held-out evaluation (so a chart can put the
        metric against compute): FLOPs (:attr:`train_flops`) and seconds."""
        return {"train_flops": float(self.train_flops), "train_seconds": self.train_seconds}

    def step_loss(self) -> torch.Tensor:
        """The total loss of one training step, computed eagerly (what :meth:`measure_flops` counts)."""
        return self.loss_parts()[0]

    def measure_flops(self) -> int:
        """FLOPs of one training step, counted on this trial's own step (``sobolev.flops``): its loss and backward
        pass run eagerly, and its parameters, gradients and random streams are left as they were.  Counted once;
        an evaluation's FLOPs are counted on the first periodic evaluation (:attr:`evaluation_flops`)."""
        if self.step_flops is None:
            with random_state_kept(self.device):
                self.step_flops = count_flops(lambda: self.step_loss().backward())
            for p in self.model.parameters():
                p.grad = None
        return self.step_flops

    @property
    def train_flops(self) -> int:
        """Training FLOPs spent so far: every step costs the same."""
        return self.step * self.measure_flops()

    def optimise(self, terms) -> Dict[str, float]:
        """Step 3: stop on a NaN/inf loss, else one Adam step; returns the losses as floats."""
        loss = float(terms.total.detach())
        if not np.isfinite(loss):
            raise TrialDiverged(self.step + 1, loss)
        terms.total.backward()
        self.optimizer.step()
        return terms.as_floats()

    def fit(self, callback: Optional[Callback] = None) -> TrialResult:
        """Train until ``config.steps`` (continuing from a restored step) and evaluate."""
        self.measure_flops()
        while not self.done:
            t0 = time.perf_counter()
            losses = self.training_step()
            self.record_step(losses, time.perf_counter() - t0, callback)
        return self.finish(callback)

    @property
    def done(self) -> bool:
        return self.step >= self.config.steps

    def record_step(self, losses: Dict[str, float], seconds: float, callback: Optional[Callback] = None) -> None:
        """Step 4, after one training step: count it; every ``log_every`` steps log and call back, every
        ``eval_every`` steps also evaluate (and log and call back)."""
        total, eval_every = self.config.steps, self.config.eval_every
        self.train_seconds += seconds
        self.step += 1
        evaluate = bool(eval_every) and self.step % eval_every == 0 and self.step < total  # the last step: finish()
        if self.step % self.log_every == 0 or self.step == total or evaluate:  # an evaluation is never skipped
            record = {"step": float(self.step), **losses}
            if evaluate:
                t0 = time.perf_counter()
                if self.evaluation_flops is None:
                    self.evaluation_flops = count_flops(lambda: setattr(self, "last_evaluation",
                                                                        self.evaluate(with_gradients=False)))
                else:
                    self.last_evaluation = self.evaluate(with_gradients=False)
                record.update(self.last_evaluation.metrics)
                record.update(self.compute_spent())
                self.eval_seconds += time.perf_counter() - t0
            self.history.append(record)
            if callback is not None and self.step < total:
                callback(Progress(self.step, total, record, self.train_seconds, self))

    def finish(self, callback: Optional[Callback] = None) -> TrialResult:
        """Step 5: evaluate with derivatives, once (the last logged step's record gets its metrics); the
        callback sees the final metrics."""
        t0 = time.perf_counter()
        result = self.evaluate(with_gradients=True)
        self.eval_seconds += time.perf_counter() - t0
        result.eval_seconds = self.eval_seconds
        self.last_evaluation = result
        if self.config.eval_every and self.history and self.history[-1]["step"] == self.step:
            self.history[-1].update({**result.metrics, **self.compute_spent()})  # the result's history: the same
        if callback is not None:
            last = self.history[-1] if self.history else {"step": float(self.step)}
            callback(Progress(self.step, self.config.steps, {**last, **result.metrics, **self.compute_spent()},
                              self.train_seconds, self, final=True))
        return result

    # -- evaluation helpers ---------------------------------------------------------------
    def make_result(self, metrics: Dict[str, float], **signals: Any) -> TrialResult:
        """A :class:`TrialResult` of the trainer's current state with the evaluated signals."""
        return TrialResult(
            config=self.config,
            metrics=metrics,
            history=list(self.history),
            steps=self.step,
            train_seconds=self.train_seconds,
            step_flops=self.step_flops or 0,
            **signals,
        )

    @torch.no_grad()
    def predict(self, coords: torch.Tensor) -> torch.Tensor:
        """Network values at ``coords`` in chunks. Shape: ``(N, D) -> (N, C)``."""
        self.model.eval()
        out = [self.model(c.to(self.device)).cpu() for c in coords.split(self.eval_chunk)]
        self.model.train()
        return torch.cat(out)

    def predict_with_jacobian(self, coords: torch.Tensor):
        """Values and input Jacobians in chunks. Shape: ``(N, D) -> (N, C), (N, C, D)``."""
        values, jacs = [], []
        for c in coords.split(self.eval_chunk):
            v, j = self.value_and_jacobian(c.to(self.device), create_graph=False)
            values.append(v.cpu())
            jacs.append(j.cpu())
        return torch.cat(values), torch.cat(jacs)

    # -- checkpoints ----------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.model_dump(),
            "step": self.step,
            "train_seconds": self.train_seconds,
            "eval_seconds": self.eval_seconds,
            "history": list(self.history),
            "model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore a checkpoint of the same trial: the model, optimiser, step and history."""
        if not is_checkpoint(state):
            raise ConfigError(f"not a sobolev-sweep checkpoint of format {CHECKPOINT_FORMAT}")
        try:  # the saved config read as this trial's kind, so settings added since have their defaults
            theirs = type(self.config).parse(state["config"]).identity()
        except ConfigError as exc:
            raise ConfigError(f"checkpoint belongs to another kind of trial ({exc})") from None
        ours = self.config.identity()
        diff = sorted(k for k in ours if k not in RESUMABLE_FIELDS and theirs.get(k) != ours[k])
        if diff:
            raise ConfigError(f"checkpoint belongs to another trial (differs in: {', '.join(diff)})")
        if int(state["step"]) > self.config.steps:
            raise ConfigError(f"checkpoint is at step {state['step']}, past steps={self.config.steps}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.train_seconds = float(state["train_seconds"])
        self.eval_seconds = float(state.get("eval_seconds", 0.0))
        self.history = list(state["history"])
        torch.set_rng_state(state["torch_rng"])


def save_checkpoint(state: Dict[str, Any], path: os.PathLike) -> Path:
    """Write a checkpoint atomically (temporary file, then rename): a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def is_checkpoint(state: Any) -> bool:
    """Whether ``state`` is what :meth:`RegressionTrainer.state_dict` returns (of this format)."""
    return isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT and "config" in state


def load_checkpoint(path: os.PathLike) -> Dict[str, Any]:
    """The checkpoint :func:`save_checkpoint` wrote to ``path``; a one-line :class:`ConfigError` naming the file if
    it cannot be read or holds anything else (random bytes, text, another program's torch file)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except OSError as exc:
        raise ConfigError(f"cannot read checkpoint: {exc.strerror or exc}", source=str(path)) from None
    except Exception as exc:  # whatever unpickling a foreign file raises, it is not a checkpoint of ours
        reason = str(exc).strip().partition("\n")[0]
        raise ConfigError(f"not a sobolev-sweep checkpoint: torch.load fails ({type(exc).__name__}: {reason})",
                          source=str(path)) from None
    if not is_checkpoint(state):
        raise ConfigError(f"not a sobolev-sweep checkpoint of format {CHECKPOINT_FORMAT} (it holds a "
                          f"{type(state).__name__})", source=str(path))
    return state
