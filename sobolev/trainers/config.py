"""The settings every regression task shares; task configs extend it (and the config is the factory).

Task configs redeclare a field only to change its default (the paper's per-task setting).  A
value is checked where it is declared (a field validator, a type, a bound), so a bad one is
refused when the config is built, with its key path, and never again afterwards.
"""

from __future__ import annotations

from typing import Any, ClassVar, List, Literal, Mapping, Optional, Union

from pydantic import Field, field_validator, model_validator

from sobolev.config import Integer, Number, Seed, Settings
from sobolev.errors import ConfigError
from sobolev.finite_differences import check_operator
from sobolev.jacobian import DERIVATIVE_IMPLS
from sobolev.losses import SUPERVISIONS
from sobolev.models import MLPConfig
from sobolev.precision import PRECISIONS
from sobolev.sampling import Sampling

DERIVATIVE_SOURCES: List[str] = ["full", "subsampled"]
DEVICES: List[str] = ["cpu", "cuda"]
COMPILE_AUTO_POINT_STEPS = 10_000_000
"""``compile: auto`` compiles a trial whose steps × training points per step reach this.  Measured by
``benchmarks/bench_compile.py`` (2-core AMD EPYC, torch 2.13, sine 5×256, colour): the first compiled step
of a fresh process costs ~12 s; compiling then saves 4.1 µs/point/step for ``val_der`` at 64², 4.9 at 128²,
10.8 at 256², so it repays itself after 1.1–2.9 M point-steps (``val``: ~7–8 M; at 64² never).  10 M is past
every measured break-even: the paper's 50 000 steps compile, the short CPU sweeps (≤ 1 M) do not."""
CompileSetting = Union[bool, Literal["auto"]]


def one_of(kind: str, value: str, allowed: List[str]) -> str:
    """``value`` if it is one of ``allowed``, else a :class:`ConfigError` that lists them."""
    if value not in allowed:
        raise ConfigError(f"unknown {kind} {value!r}; known: {', '.join(allowed)}")
    return value


class RegressionConfig(Settings):
    """One Sobolev regression trial: sampling, model, supervision, optimisation, logging."""

    max_factor: ClassVar[int] = 8
    """Largest grid factor of the task."""
    data_field: ClassVar[str] = ""
    """The field that names the signal (``image``, ``audio``, ``scene``): a sweep's dataset axis."""

    factor: Integer = 4
    """Train on every ``factor``-th sample along each axis (the paper's grid)."""
    ratio: Optional[Number] = None
    """Train on a seeded random fraction of the samples instead of the grid, in (0, 1]."""
    model: MLPConfig = Field(default_factory=MLPConfig)
    """The coordinate MLP (relu, relu_pe, sine — the paper's — finer, gauss, wire, relu_ff, …)."""
    supervision: str = "val_der"
    """``val``, ``der`` or ``val_der``."""
    lambda_der: Number = Field(1.0, ge=0)
    """Weight λ of the derivative term in ``val_der``."""
    operator: str = "sobel"
    """Finite-difference operator of the derivative targets: ``sobel`` or ``diff``."""
    derivative_source: str = "full"
    """``full``: targets from the full signal (the paper); ``subsampled``: from the training samples alone."""
    steps: Integer = Field(50_000, ge=1)
    """Adam steps, full batch."""
    budget_flops: Optional[Number] = Field(None, gt=0)
    """Give the training budget in FLOPs instead of steps: the trial trains ``floor(budget_flops / FLOPs of a
    step)`` steps, a step's FLOPs counted on the trial's own step (``sobolev.flops``), so that every arm of a
    comparison gets the same compute (``val`` about 3× the steps of ``val_der``).  Exclusive with ``steps``."""
    lr: Number = Field(1e-4, gt=0)
    """Constant learning rate."""
    seed: Seed = 0
    """Seeds the init (and a random ``ratio`` subset)."""
    log_every: Integer = Field(0, ge=0)
    """Loss history / callback interval in steps; 0: every 1 % of the steps."""
    eval_every: Integer = Field(0, ge=0)
    """Held-out metrics (and the compute spent) every N steps, whatever ``log_every``; 0: only at the end."""
    device: str = "cpu"
    """``cpu`` or ``cuda`` (``cuda:N``)."""
    derivative_impl: str = "auto"
    """Network derivative: ``autograd`` (the paper's formulation), ``forward`` (analytic tangents), ``auto``."""
    precision: str = "fp32"
    """The matrix products after the first layer: ``fp32`` (the paper's), ``tf32`` (CUDA's tensor cores) or ``bf16``
    (operands in bfloat16); the first layer, activations, loss, metrics, derivative targets, parameters and Adam's
    state stay fp32 (``sobolev.precision``).  ``tf32`` needs CUDA; ``bf16`` has no complex type (wire)."""
    compile: CompileSetting = "auto"
    """``torch.compile`` the loss (fused kernels; CUDA graphs on GPU) on the forward path and for ``val``; the
    first step pays the compilation.  ``auto``: only trials long enough to repay it (``COMPILE_AUTO_POINT_STEPS``
    steps × training points; ``plan`` shows which); ``true``/``false`` force it.  The autograd path stays eager
    (its double backward cannot be compiled).  ``auto`` replaced ``false`` as the default and hashes as it: no
    trial key changed."""

    identity_aliases: ClassVar[Mapping[str, Mapping[Any, Any]]] = {"compile": {"auto": False}}
    added_fields = frozenset({"budget_flops", "precision"})

    @field_validator("compile", mode="before")
    @classmethod
    def _compile_setting(cls, value: Any) -> CompileSetting:
        if isinstance(value, bool) or value == "auto":
            return value
        text = str(value).strip().lower()
        if text in ("true", "false"):  # a command-line option, an MLflow param
            return text == "true"
        raise ConfigError(f"{value!r} is not one of true, false, auto")

    def compiles(self, points: int) -> bool:
        """Whether a trial of ``points`` training points per step asks for ``torch.compile`` (``auto``: when its
        steps × points reach :data:`COMPILE_AUTO_POINT_STEPS`)."""
        if self.compile == "auto":
            return self.steps * points >= COMPILE_AUTO_POINT_STEPS
        return self.compile

    @property
    def sampling(self) -> Sampling:
        return Sampling(factor=self.factor, ratio=self.ratio, seed=self.seed, max_factor=self.max_factor)

    @property
    def data(self) -> str:
        """The signal this trial fits (the value of :attr:`data_field`)."""
        return getattr(self, self.data_field)

    def applies(self, path: str) -> bool:
        """Whether the setting at ``path`` changes this trial's result: λ only weighs ``val_der``'s terms, and a
        model knob matters only to the network that reads it (a search does not tune what does not apply)."""
        if path == "lambda_der":
            return SUPERVISIONS.get(self.supervision).weighted
        head, _, rest = path.partition(".")
        if head == "model" and rest:
            return self.model.reads(rest)
        return True

    def setup(self):  # pragma: no cover - abstract
        """The config is the factory: the trainer of this trial."""
        raise NotImplementedError

    # -- checks of single values ------------------------------------------------------------
    @field_validator("factor")
    @classmethod
    def _factor(cls, factor: int) -> int:
        Sampling(factor=factor, max_factor=cls.max_factor).validate()
        return factor

    @field_validator("ratio")
    @classmethod
    def _ratio(cls, ratio: Optional[float]) -> Optional[float]:
        if ratio is not None:
            Sampling(ratio=ratio).validate()
        return ratio

    @field_validator("supervision")
    @classmethod
    def _supervision(cls, name: str) -> str:
        return SUPERVISIONS.get(name).name

    @field_validator("operator")
    @classmethod
    def _operator(cls, name: str) -> str:
        return check_operator(name)

    @field_validator("derivative_source")
    @classmethod
    def _derivative_source(cls, source: str) -> str:
        return one_of("derivative_source", source, DERIVATIVE_SOURCES)

    @field_validator("derivative_impl")
    @classmethod
    def _derivative_impl(cls, impl: str) -> str:
        return one_of("derivative_impl", impl, DERIVATIVE_IMPLS)

    @field_validator("precision")
    @classmethod
    def _precision(cls, name: str) -> str:
        PRECISIONS.get(name)
        return name

    @field_validator("device")
    @classmethod
    def _device(cls, device: str) -> str:
        return device if device.startswith("cuda:") else one_of("device", device, DEVICES)

    # -- checks across values ---------------------------------------------------------------
    @model_validator(mode="after")
    def _subsampled_targets_need_a_grid(self) -> "RegressionConfig":
        if self.derivative_source == "subsampled" and self.ratio is not None:
            raise ConfigError("derivative_source 'subsampled' needs grid sampling (factor), not a random ratio",
                              path=("derivative_source",))
        return self

    @model_validator(mode="after")
    def _precision_runs_here(self) -> "RegressionConfig":
        try:
            PRECISIONS.get(self.precision).check(self.device, self.model.complex_layers)
        except ConfigError as exc:
            raise ConfigError(exc.message, path=("precision",)) from None
        return self

    @model_validator(mode="after")
    def _derivatives_need_the_true_derivative(self) -> "RegressionConfig":
        if self.model.detach_scale and SUPERVISIONS.get(self.supervision).uses_derivatives:
            raise ConfigError(f"detach_scale trains FINER on values only (its derivative is not the network's); "
                              f"refused with supervision {self.supervision!r}: use val, or leave detach_scale off",
                              path=("model", "detach_scale"))
        return self
