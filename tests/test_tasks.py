"""A task added from this file alone: fitting a 1-D analytic function, through `plan` and a real sweep.

Everything a task needs — its typed config, its trainer, its data, its pictures — is defined
below and registered with ``TASKS.register``; no other module learns of it.  The driver finds it
in the registry; the Ray worker gets it with the planned trials (pickled by reference: the worker
imports this module).
"""

import math
from pathlib import Path
from typing import ClassVar, List

import numpy as np
import pytest
import torch
from pydantic import Field

from analysis.collect import collect
from runners.engine.invocation import SweepOptions
from runners.engine.sweep import run_sweep
from runners.plan.planner import plan_sweep
from runners.spec.schema import parse_spec
from sobolev.config import Integer
from sobolev.errors import ConfigError
from sobolev.metrics import audio_psnr, held_out_mask
from sobolev.models import AffineCoordinates
from sobolev.tasks import TASKS, Dataset, SignalInfo, Task
from sobolev.trainers.base import RegressionTrainer
from sobolev.trainers.config import RegressionConfig
from tests.sweep_helpers import children, client, runs, sqlite_uri

FUNCTIONS = {
    # value and derivative of f(u), u in [0, 1]
    "wave": (lambda u: torch.sin(6 * math.pi * u), lambda u: 6 * math.pi * torch.cos(6 * math.pi * u)),
    "chirp": (lambda u: torch.sin(2 * math.pi * (2 * u + 4 * u**2)),
              lambda u: 2 * math.pi * (2 + 8 * u) * torch.cos(2 * math.pi * (2 * u + 4 * u**2))),
}


class FunctionFitConfig(RegressionConfig):
    """Fit an analytic 1-D function from every FACTOR-th of its samples."""

    setting_noun: ClassVar[str] = "toy trial setting"
    max_factor: ClassVar[int] = 16
    data_field: ClassVar[str] = "function"

    function: str = "wave"
    """wave or chirp."""
    samples: Integer = Field(256, ge=8)
    """Samples of the function on [0, 1]."""
    lr: float = 1e-4

    def setup(self) -> "FunctionFitTrainer":
        return FunctionFitTrainer(self)


class FunctionFitTrainer(RegressionTrainer):
    def setup(self) -> None:
        cfg = self.config
        n = cfg.samples
        t = torch.arange(n, dtype=torch.float32)
        value, slope = FUNCTIONS[cfg.function]
        self.target = value(t / (n - 1))[None]  # (1, N)
        self.target_gradient = (slope(t / (n - 1)) / (n - 1))[None, None]  # per sample: (1, 1, N)
        self.sampling = cfg.sampling
        self.train_mask = self.sampling.mask((n,))
        self.coords = t[:, None]
        self.train_coords = self.coords[self.train_mask]
        self.train_values = self.target.t()[self.train_mask]
        self.train_jacobian = (self.target_gradient.permute(2, 0, 1)[self.train_mask]
                               if self.supervision.uses_derivatives else None)
        self.model = cfg.model.build(1, 1, AffineCoordinates((2.0 / (n - 1),), (-1.0,)),
                                     samples_per_axis=self.sampling.samples_per_axis((n,)))

    def to_signal(self, values):
        return values.t().contiguous()

    def to_gradient_maps(self, jacobian):
        return jacobian.permute(1, 2, 0).contiguous()

    def signal_metrics(self, prediction):
        return {"test_psnr": audio_psnr(prediction, self.target, held_out_mask(self.train_mask)),
                "train_psnr": audio_psnr(prediction, self.target, self.train_mask)}


class FunctionFitTask(Task):
    """Fit a 1-D analytic function (the toy task of the tests)."""

    name: ClassVar[str] = "toy"
    config_class = FunctionFitConfig
    dimensions: ClassVar[int] = 1

    def resolve_dataset(self, entry: str) -> List[Dataset]:
        if entry not in FUNCTIONS:
            raise ConfigError(f"unknown function {entry!r}; known: {', '.join(sorted(FUNCTIONS))}")
        return [Dataset(entry, entry, f"builtin:{entry}")]

    def inspect(self, config: FunctionFitConfig) -> SignalInfo:
        return SignalInfo(shape=(config.samples,), channels=1)

    def save_artifacts(self, result, out_dir: Path) -> List[Path]:
        path = Path(out_dir) / "prediction.npy"
        np.save(path, result.prediction.numpy())
        return [path]


@pytest.fixture(autouse=True)
def toy_task():
    """The toy task is registered while this file's tests run (other tests list the built-in tasks)."""
    task = TASKS.register(FunctionFitTask.name)(FunctionFitTask())
    yield task
    TASKS.unregister(FunctionFitTask.name)


SPEC = {
    "name": "toy", "task": "toy",
    "grid": {"datasets": ["wave", "chirp"], "activations": ["sine"], "supervision": ["val", "val_der"],
             "sampling": {"factors": [4, 16]}, "seeds": [0]},
    "trial": {"samples": 128, "steps": 30, "log_every": 10},
    "run": {"report_every": 10, "checkpoint_every": 10},
}


def spec(**changes):
    return parse_spec({**SPEC, **changes})


def test_the_toy_task_plans_like_the_built_in_ones():
    plan = plan_sweep(spec(), "toy.yaml")
    assert len(plan.trials) == 2 * 2 * 2
    trial = next(t for t in plan.trials if t.name == "chirp/sine/val_der/f16/s0")
    assert isinstance(trial.config, FunctionFitConfig) and trial.task is TASKS.get("toy")
    assert (trial.config.function, trial.config.samples, trial.config.factor) == ("chirp", 128, 16)
    assert trial.points == 8 and trial.samples == 128  # ::16 of 128 samples
    assert plan_sweep(spec(), "toy.yaml").trials[0].key == plan.trials[0].key
    with pytest.raises(ConfigError, match=r"^trial.stpes: unknown toy trial setting \(did you mean 'steps'"):
        parse_spec({**SPEC, "trial": {"stpes": 3}})
    with pytest.raises(ConfigError, match=r"^toy.yaml: grid.datasets\[1\]: unknown function 'square'; known: chirp"):
        plan_sweep(spec(grid={**SPEC["grid"], "datasets": ["wave", "square"]}), "toy.yaml")
    with pytest.raises(ConfigError, match=r"grid.sampling.factors\[0\]: factor must be in 1..16, got 32"):
        spec(grid={**SPEC["grid"], "sampling": {"factors": [32]}})
    with pytest.raises(ConfigError, match="trial.function: set by the grid axes"):
        spec(trial={"function": "wave"})


@pytest.mark.slow
def test_a_real_one_trial_sweep_of_the_toy_task(tmp_path):
    path = tmp_path / "toy.yaml"
    import yaml

    one = {**SPEC, "include": [{"dataset": "chirp", "supervision": "val_der", "factor": 4}]}
    path.write_text(yaml.safe_dump(one))
    uri = sqlite_uri(tmp_path)
    outcome = run_sweep(str(path), SweepOptions(tracking_uri=uri, storage=str(tmp_path / "state"), live=False))
    assert outcome.planned == 1 and outcome.count("FINISHED") == 1, outcome.rows
    (run,) = children(runs(uri, "toy"))
    assert run.info.status == "FINISHED"
    assert run.data.params["task"] == "toy" and run.data.params["function"] == "chirp"
    assert run.data.metrics["test_psnr"] > 0
    assert sorted(m.step for m in client(uri).get_metric_history(run.info.run_id, "loss")) == [10, 20, 30]
    assert {a.path for a in client(uri).list_artifacts(run.info.run_id)} == {"prediction.npy", "config.yaml"}
    # the analysis reads the run's params, which read back into the toy config
    results = collect("toy", uri)
    (params,) = results.finished["params"]
    config = FunctionFitConfig.from_params(params)
    assert config == plan_sweep(parse_spec(one), "x").trials[0].config
    assert results.task.name == "toy" and results.task.dimensions == 1  # recorded with the experiment
    assert list(results.frame["fraction"]) == [0.25]
