"""The settings every regression task shares; task configs extend it (and the config is the factory).

Task configs redeclare a field only to change its default (the paper's per-task setting).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, List, Optional

from sobolev.errors import ConfigError
from sobolev.finite_differences import check_operator
from sobolev.jacobian import DERIVATIVE_IMPLS
from sobolev.losses import SUPERVISIONS
from sobolev.models import MLPConfig
from sobolev.sampling import Sampling

DERIVATIVE_SOURCES: List[str] = ["full", "subsampled"]


@dataclass
class RegressionConfig:
    """One Sobolev regression trial: sampling, model, supervision, optimisation, logging."""

    max_factor: ClassVar[int] = 8

    factor: int = 4
    """Train on every ``factor``-th sample along each axis (the paper's grid)."""
    ratio: Optional[float] = None
    """Train on a seeded random fraction of the samples instead of the grid."""
    model: MLPConfig = field(default_factory=MLPConfig)
    """The coordinate MLP (activation ``sine``, ``relu``, ``relu_pe``)."""
    supervision: str = "val_der"
    """``val``, ``der`` or ``val_der``."""
    lambda_der: float = 1.0
    """Weight λ of the derivative term in ``val_der``."""
    operator: str = "sobel"
    """Finite-difference operator of the derivative targets: ``sobel`` or ``diff``."""
    derivative_source: str = "full"
    """``full``: targets from the full signal (the paper); ``subsampled``: from the training samples alone."""
    steps: int = 50_000
    """Adam steps, full batch."""
    lr: float = 1e-4
    """Constant learning rate."""
    seed: int = 0
    """Seeds the init (and a random ``ratio`` subset)."""
    log_every: int = 0
    """Loss history / callback interval in steps; 0: every 1 % of the steps."""
    eval_every: int = 0
    """Held-out metrics interval in steps; 0: only at the end."""
    device: str = "cpu"
    """``cpu`` or ``cuda``."""
    derivative_impl: str = "auto"
    """Network derivative: ``autograd`` (the paper's formulation), ``forward`` (analytic tangents), ``auto``."""
    compile: bool = False
    """``torch.compile`` the loss (fused kernels; CUDA graphs on GPU) on the forward path and for ``val``; the
    first step pays the compilation.  The autograd path stays eager (its double backward cannot be compiled)."""

    @property
    def sampling(self) -> Sampling:
        return Sampling(factor=self.factor, ratio=self.ratio, seed=self.seed, max_factor=self.max_factor)

    def validate(self) -> None:
        """Every value against its allowed ones; raises :class:`ConfigError` naming the bad one."""
        self.sampling.validate()
        check_operator(self.operator)
        SUPERVISIONS.get(self.supervision)
        self.model.validate()
        if self.derivative_source not in DERIVATIVE_SOURCES:
            raise ConfigError(
                f"unknown derivative_source {self.derivative_source!r}; known: {', '.join(DERIVATIVE_SOURCES)}"
            )
        if self.derivative_source == "subsampled" and self.ratio is not None:
            raise ConfigError("derivative_source 'subsampled' needs grid sampling (factor), not a random ratio")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ConfigError(f"steps must be an integer >= 1, got {self.steps!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ConfigError(f"lr must be > 0, got {self.lr!r}")
        if not (isinstance(self.lambda_der, (int, float)) and self.lambda_der >= 0):
            raise ConfigError(f"lambda_der must be >= 0, got {self.lambda_der!r}")
        if self.log_every < 0 or self.eval_every < 0:
            raise ConfigError("log_every and eval_every must be >= 0")
        if self.derivative_impl not in DERIVATIVE_IMPLS:
            raise ConfigError(
                f"unknown derivative_impl {self.derivative_impl!r}; known: {', '.join(DERIVATIVE_IMPLS)}")
        if self.device not in ("cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise ConfigError(f"unknown device {self.device!r}; known: cpu, cuda")
