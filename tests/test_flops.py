"""Equal compute: FLOPs counted per trial, budgets in FLOPs, and the report at equal compute."""

import pytest
from torch.utils.flop_counter import FlopCounterMode

from runners.plan.planner import plan_sweep
from runners.spec.load import load_spec
from sobolev.models import MLPConfig
from sobolev.trainers import ImageRegressionConfig, PackedTrainer
from tests.sweep_helpers import DROP, children, cli, one_line_error, runs, sqlite_uri, write_spec


class _NoModuleHooks:
    """FlopCounterMode's per-module tracker hooks the backward pass, which ``torch.autograd.grad`` (the autograd
    derivative path) refuses; the total needs none of it."""

    parents = ("Global",)

    def __enter__(self):
        return self

    def __exit__(self, *args):
        return None


def counted_by_the_test(config) -> int:
    """FLOPs of one training step of ``config``, counted here: the loss of a fresh trainer and its backward."""
    trainer = config.setup()
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _NoModuleHooks()
    with counter:
        trainer.loss_parts()[0].backward()
    return counter.get_total_flops()


@pytest.mark.parametrize("supervision,impl", [("val", "auto"), ("val_der", "forward"), ("val_der", "autograd")])
def test_a_trial_counts_its_own_step(supervision, impl):
    config = ImageRegressionConfig(image="astronaut", size=32, factor=4, steps=3, supervision=supervision,
                                   derivative_impl=impl)
    trainer = config.setup()
    before = [p.detach().clone() for p in trainer.model.parameters()]
    assert trainer.measure_flops() == counted_by_the_test(config) > 0
    assert all((p == q).all() for p, q in zip(before, trainer.model.parameters()))  # counting changes nothing
    assert all(p.grad is None for p in trainer.model.parameters())
    result = trainer.fit()
    assert result.step_flops == counted_by_the_test(config) and result.summary()["train_flops"] == 3 * result.step_flops


def test_a_derivative_step_costs_about_three_value_steps():
    val, der = (counted_by_the_test(ImageRegressionConfig(image="astronaut", size=32, steps=1, supervision=s))
                for s in ("val", "val_der"))
    assert 2.5 < der / val < 3.5, der / val


def test_packed_members_count_what_they_count_alone():
    configs = [ImageRegressionConfig(image=img, size=32, factor=4, steps=2, supervision="val_der", seed=i)
               for i, img in enumerate(("astronaut", "coffee"))]
    trainers = [c.setup() for c in configs]
    PackedTrainer(trainers).fit()
    assert [t.step_flops for t in trainers] == [counted_by_the_test(c) for c in configs]


def test_a_budget_in_flops_gives_every_arm_the_same_compute_within_one_step(tmp_path):
    path = write_spec(tmp_path, grid__activations=["relu", "sine", "relu_pe"], trial__budget_flops=4.0e9,
                      trial__steps=DROP)
    plan = plan_sweep(load_spec(path), str(path))
    steps = {}
    for t in plan.trials:
        fps = counted_by_the_test(t.config.model_copy(update={"budget_flops": None}))
        assert t.step_flops == fps
        assert t.config.steps * fps <= 4.0e9 < (t.config.steps + 1) * fps  # the same FLOPs, within one step
        steps[(t.axes["activation"], t.axes["supervision"])] = t.config.steps
    assert 2.5 < steps[("sine", "val")] / steps[("sine", "val_der")] < 3.5  # val trains ~3x the steps of val_der
    assert steps[("relu_pe", "val_der")] <= steps[("sine", "val_der")]  # its encoding costs a little more


@pytest.mark.parametrize("changes,message", [
    ({"trial__budget_flops": 1e9, "trial__steps": 40}, "trial.budget_flops: give the training budget as steps or "
                                                       "as budget_flops, not both"),
    ({"trial__budget_flops": 0}, "trial.budget_flops: Input should be greater than 0"),
    ({"trial__budget_flops": -1e9}, "trial.budget_flops: Input should be greater than 0"),
    ({"trial__budget_flops": 1e3}, "FLOPs is less than one step of this trial"),
])
def test_bad_budgets_are_one_line_errors_and_write_nothing(tmp_path, changes, message):
    path = write_spec(tmp_path, **{"trial__steps": DROP, **changes})
    line = one_line_error(cli("plan", str(path), cwd=tmp_path, timeout=120))
    assert message in line, line
    assert not (tmp_path / "mlflow.db").exists()


def test_train_refuses_steps_and_a_budget_together(tmp_path):
    line = one_line_error(cli("train", "image", "--size", "16", "--steps", "10", "--budget-flops", "1e9",
                              cwd=tmp_path, timeout=120))
    assert "give the training budget as steps or as budget_flops, not both" in line


def test_an_equal_compute_sweep_logs_flops_and_reports_at_equal_compute(tmp_path):
    """val and val_der of two networks on the same FLOPs: each run logs its FLOPs per step (as the test counts
    them) and spends its budget within one step; the report compares the arms against compute."""
    path = write_spec(tmp_path, name="ec", grid__activations=["relu", "sine"], grid__seeds=[0, 1],
                      trial__budget_flops=2.0e9, trial__eval_every=5, trial__log_every=5, trial__steps=DROP)
    proc = cli("run", str(path), "--no-live", cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    uri = sqlite_uri(tmp_path)
    plan = {t.key: t for t in plan_sweep(load_spec(path), str(path)).trials}
    for run in children(runs(uri, "ec")):
        trial = plan[run.data.tags["sobolev.trial_key"]]
        fps = int(run.data.params["flops_per_step"])
        assert fps == counted_by_the_test(trial.config)
        spent = run.data.metrics["train_flops"]
        assert spent == trial.config.steps * fps and 2.0e9 - fps < spent <= 2.0e9
        assert "sobolev.evaluations" in run.data.tags
    report = cli("report", "ec", "--out", str(tmp_path / "r"), "--no-mlflow", cwd=tmp_path, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    out = tmp_path / "r"
    compute = (out / "compute_test_psnr.md").read_text()
    assert "FLOPs (seconds on this machine) the mean curve of each arm needed" in compute
    assert "val_der − val at factor 4 at equal compute" in compute
    for name in ("compute_test_psnr_flops.png", "compute_test_psnr_seconds.png", "equal_compute_test_psnr.tex",
                 "significance_equal_compute_test_psnr.tex", "time_to_target_test_psnr.csv"):
        assert (out / name).is_file(), name
    assert "test_psnr against compute" in (out / "report.md").read_text()


def test_every_network_counts_a_step():
    for name in ("relu", "relu_pe", "relu_ff", "sine", "finer", "gauss", "wire"):
        config = ImageRegressionConfig(image="astronaut", size=16, factor=4, steps=1, supervision="val_der",
                                       model=MLPConfig(name))
        assert config.setup().measure_flops() == counted_by_the_test(config) > 0, name


def test_a_search_budgeted_in_flops_gives_a_dearer_arm_fewer_steps_and_stops_once_spent(tmp_path):
    """``search.budget_flops``: each arm's budget in steps is the same FLOPs over its own step (val_der's step
    costs ~3 val steps: ~1/3 the steps), and Tune's stopper ends an arm's search once the latest ``train_flops``
    of its configurations (plus what earlier attempts spent) reach the budget."""
    import yaml

    from runners.engine.invocation import SweepOptions
    from runners.engine.search_phase import MAX_CONFIGURATIONS, FlopBudget, configurations
    from runners.engine.sweep import preview

    spec = yaml.safe_load(write_spec(tmp_path).read_text())
    spec["search"] = {"space": {"lr": {"loguniform": [1.0e-4, 1.0e-2]}}, "datasets": ["chelsea"],
                      "per": ["activation", "supervision"], "budget_flops": 2.0e10}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec))
    view = preview(str(path), SweepOptions(tracking_uri=sqlite_uri(tmp_path)))
    steps = {line.arm.label.split("/")[-1] if "/" in line.arm.label else line.arm.label: line.budget_steps
             for line in view.arms}
    (val,) = [s for label, s in steps.items() if label.endswith("val")]
    (der,) = [s for label, s in steps.items() if label.endswith("val_der")]
    assert 2.5 < val / der < 3.5, steps
    assert configurations(view.search) == MAX_CONFIGURATIONS  # the budget decides how many, not `samples`
    assert not (tmp_path / "mlflow.db").exists()  # plan writes nothing

    stop = FlopBudget(10e9, spent=2e9)
    stop("a", {"train_flops": 3e9})
    stop("b", {"train_flops": 4e9})
    assert not stop.stop_all()  # 2 + 3 + 4 < 10
    stop("a", {"train_flops": 3.5e9})  # a configuration's latest report counts, not the sum of its reports
    assert not stop.stop_all()
    stop("c", {"train_flops": 0.6e9})
    assert stop.stop_all()
