"""Spec validation and planning (no Ray): key paths, did-you-mean, overrides, include/exclude."""

from pathlib import Path

import pytest

from runners.plan.planner import plan_sweep
from runners.spec.load import load_spec
from sobolev.errors import ConfigError
from tests.sweep_helpers import cli, one_line_error, write_spec

SWEEPS = Path(__file__).resolve().parents[1] / "sweeps"


@pytest.mark.parametrize("name", ["smoke", "data_efficiency", "audio_regression", "inverse_rendering_cpu"])
def test_shipped_specs_plan(name):
    spec = load_spec(SWEEPS / f"{name}.yaml")
    plan = plan_sweep(spec, str(SWEEPS / f"{name}.yaml"))
    assert plan.trials and len({t.key for t in plan.trials}) == len(plan.trials)


def test_data_efficiency_grid_size():
    plan = plan_sweep(load_spec(SWEEPS / "data_efficiency.yaml"), "de")
    # 3 images × 3 models × 2 supervisions × 3 factors × 3 seeds
    assert len(plan.trials) == 3 * 3 * 2 * 3 * 3
    assert {t.axes["activation"] for t in plan.trials} == {"relu", "relu_pe", "sine"}


def test_image_regression_spec_points_at_set5_and_explains(tmp_path):
    with pytest.raises(ConfigError, match=r"grid.datasets\[0\]: image 'data/Set5' not found"):
        plan_sweep(load_spec(SWEEPS / "image_regression.yaml"), "image_regression.yaml")


def test_inverse_rendering_spec_points_at_llff_scenes():
    with pytest.raises(ConfigError,
                       match=r"grid.datasets\[0\]: scene 'data/nerf_llff_data/fern' is not an LLFF folder"):
        plan_sweep(load_spec(SWEEPS / "inverse_rendering.yaml"), "inverse_rendering.yaml")


def test_trial_key_is_stable_and_depends_on_every_setting(tmp_path):
    path = write_spec(tmp_path)
    a = plan_sweep(load_spec(path), str(path))
    b = plan_sweep(load_spec(path), str(path))
    c = plan_sweep(load_spec(path, ["trial.lr=0.001"]), str(path))
    assert [t.key for t in a.trials] == [t.key for t in b.trials]
    assert not {t.key for t in a.trials} & {t.key for t in c.trials}


def test_overrides_include_exclude_and_extra_axes(tmp_path):
    path = write_spec(tmp_path, grid__activations=["relu", "sine"], grid__extra={"lambda_der": [0.1, 1.0]},
                      exclude=[{"activation": "relu", "supervision": "val_der"}])
    plan = plan_sweep(load_spec(path, ["grid.seeds=[0, 1]"]), str(path))
    # 2 acts × 2 sups × 2 λ × 2 seeds = 16, minus relu+val_der (2 λ × 2 seeds = 4)
    assert len(plan.trials) == 12 and plan.dropped == 4
    assert {t.config.lambda_der for t in plan.trials} == {0.1, 1.0}
    only = plan_sweep(load_spec(path, ["include=[{activation: sine, seed: 0}]"]), str(path))
    assert {(t.axes["activation"], t.axes["seed"]) for t in only.trials} == {("sine", 0)}


@pytest.mark.parametrize(
    "override,message",
    [
        ("grid.activaton=[sine]", "grid.activaton: unknown key (did you mean 'activations'?)"),
        ("grid.activations=[sine, tanh]", "grid.activations[1]: unknown activation 'tanh'; known: finer, finer_ff"),
        ("grid.supervision=[]", "grid.supervision: List should have at least 1 item"),
        ("trial.stpes=5", "trial.stpes: unknown image trial setting (did you mean 'steps'?)"),
        ("trial.steps=many", "trial.steps: Input should be a valid integer"),
        ("trial.operator=scharr", "unknown operator 'scharr'; known: diff, sobel"),
        ("grid.sampling.factors=[9]", "grid.sampling.factors[0]: factor must be in 1..8, got 9"),
        ("grid.sampling.ratios=[1.5]", "grid.sampling.ratios[0]: ratio must be in (0, 1], got 1.5"),
        ("grid.datasets=[nope]", "grid.datasets[0]: image 'nope' not found"),
        ("resources.gpu=-1", "resources.gpu: Input should be greater than or equal to 0"),
        ("exclude=[{model: relu}]", "exclude[0]: unknown axis 'model'"),
        ("task=video", "task: Input should be 'image', 'audio' or 'nerf'"),
    ],
)
def test_bad_specs_name_file_and_key_path(tmp_path, override, message):
    path = write_spec(tmp_path)
    with pytest.raises(ConfigError) as info:
        plan_sweep(load_spec(path, [override]), str(path))
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def test_cli_bad_spec_is_one_line_exit_2_and_writes_nothing(tmp_path):
    path = write_spec(tmp_path)
    for args, message in [
        (["run", str(path), "--set", "grid.activaton=[sine]"], "did you mean 'activations'"),
        (["plan", str(path), "--set", "trial.size=30"], "not a multiple of factor 4"),
        (["run", str(tmp_path / "missing.yaml")], "cannot read spec"),
        (["run", str(path), "--tracking-uri", "http://127.0.0.1:9"], "cannot reach tracking server http://127.0.0.1:9"),
        (["run", str(path), "--tracking-uri", "./mlruns"], "MLflow 3 refuses the ./mlruns file store"),
        (["run", str(path), "--address", "127.0.0.1:9"], "cannot reach the Ray cluster"),
    ]:
        assert message in one_line_error(cli(*args, cwd=tmp_path, timeout=60))
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / ".sobolev").exists()


def test_plan_prints_trials_count_and_cost(tmp_path):
    path = write_spec(tmp_path)
    proc = cli("plan", str(path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "astronaut/sine/val_der/f4/s0" in proc.stdout and "2 trials" in proc.stdout
    assert "Estimated cost on this machine" in proc.stdout
    assert not (tmp_path / "mlflow.db").exists()  # planning reads MLflow, never creates a store


def test_name_colliding_with_another_experiment_shape_is_refused(tmp_path):
    import json

    from tests.sweep_helpers import client, sqlite_uri

    uri = sqlite_uri(tmp_path)
    c = client(uri, create=True)  # a store made by someone else, before any sweep
    c.create_experiment("tiny", tags={"sobolev.shape": json.dumps({"task": "audio", "axes": ["dataset"]})})
    c.create_experiment("foreign")
    path = write_spec(tmp_path)
    line = one_line_error(cli("run", str(path), cwd=tmp_path))
    assert f"{path}: name: experiment 'tiny'" in line and "rename the sweep" in line
    line = one_line_error(cli("run", str(write_spec(tmp_path, name="foreign")), cwd=tmp_path))
    assert "was not made by sobolev-sweep" in line
    assert len(c.search_runs([c.get_experiment_by_name("tiny").experiment_id])) == 0
