"""Tuned comparisons end to end: a real search on a real Ray (Optuna + ASHA), real MLflow, then the report."""

import os
import signal
import time

import pytest
import yaml

from runners.plan.planner import plan_sweep
from runners.spec.load import load_spec
from sobolev.errors import ConfigError
from tests.sweep_helpers import CLI, ENV, cli, client, one_line_error, runs, sqlite_uri

SEARCH = {
    "space": {"lr": {"loguniform": [1.0e-4, 1.0e-2]}, "lambda_der": {"loguniform": [0.1, 10.0]}},
    "datasets": ["chelsea", "coffee"],
    "samples": 4,
    "scheduler": {"asha": {"grace_steps": 10, "reduction_factor": 2}},
}


def tuned_spec(directory, steps=30, **search):
    spec = {
        "name": "tuned", "task": "image",
        "grid": {"datasets": ["astronaut"], "activations": ["sine"], "supervision": ["val", "val_der"],
                 "sampling": {"factors": [4]}, "seeds": [0, 1]},
        "trial": {"size": 16, "steps": steps, "log_every": 10, "eval_every": 10},
        "run": {"report_every": 10, "checkpoint_every": 10},
        "search": {**SEARCH, **search},
    }
    path = directory / "tuned.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def tuning_runs(uri):
    return [r for r in runs(uri, "tuned") if r.data.tags.get("sobolev.kind") == "tuning"]


def evaluation_runs(uri):
    return [r for r in runs(uri, "tuned") if r.data.tags.get("sobolev.kind") == "trial"]


def best_by_hand(tuning):
    """Each arm's best configuration, recomputed from MLflow: the highest objective among the runs that
    trained every step (not stopped by ASHA)."""
    best = {}
    for run in tuning:
        if run.info.status != "FINISHED" or "sobolev.stopped_at_step" in run.data.tags:
            continue
        arm = run.data.tags["sobolev.arm"]
        if arm not in best or run.data.metrics["objective"] > best[arm].data.metrics["objective"]:
            best[arm] = run
    return {arm: {k[len("search."):]: float(v) for k, v in run.data.params.items() if k.startswith("search.")}
            for arm, run in best.items()}


def assert_search_and_evaluation(uri, asha=True, interrupted=0):
    """``interrupted``: at most how many configurations a killed driver may leave KILLED (one it was running
    that the resumed search could not continue)."""
    tuning = tuning_runs(uri)
    killed = [r for r in tuning if r.info.status == "KILLED"]
    assert len(killed) <= interrupted and all("sobolev.interrupted" in r.data.tags for r in killed)
    tuning = [r for r in tuning if r.info.status != "KILLED"]
    by_arm = {}
    for run in tuning:
        by_arm.setdefault(run.data.tags["sobolev.arm"], []).append(run)
    assert sorted(by_arm) == ["sine/val", "sine/val_der"]
    for arm, arm_runs in by_arm.items():
        assert len(arm_runs) == SEARCH["samples"], arm  # exactly its budget, no duplicate after a resume
        assert all(r.info.status in ("FINISHED", "FAILED") for r in arm_runs)
        assert len({r.data.tags["sobolev.trial_key"] for r in arm_runs}) == len(arm_runs)
        # no configuration drawn twice (a rebuilt searcher does not start its stream again)
        drawn = [tuple(sorted((k, v) for k, v in r.data.params.items() if k.startswith("search."))) for r in arm_runs]
        assert len(set(drawn)) == len(drawn), arm
        # λ applies to val_der only: val is not searched over it
        assert ("search.lambda_der" in arm_runs[0].data.params) == (arm == "sine/val_der")
    # ASHA stopped some configurations (and never failed them); without it, all train every step
    assert any("sobolev.stopped_at_step" in r.data.tags for r in tuning) == asha
    best = best_by_hand(tuning)
    evaluation = evaluation_runs(uri)
    assert len(evaluation) == 4 and len({r.data.tags["sobolev.trial_key"] for r in evaluation}) == 4
    for run in evaluation:
        assert run.info.status == "FINISHED" and run.data.tags["sobolev.phase"] == "evaluate"
        values = best[run.data.tags["sobolev.arm"]]
        for field, value in values.items():
            assert float(run.data.params[field]) == pytest.approx(value, rel=1e-12), field
        assert run.data.params["image"] == "astronaut"  # evaluated on the grid's data, not the tuning data
    return best


@pytest.mark.slow
def test_search_tunes_every_arm_with_its_budget_then_evaluates_the_best(tmp_path):
    path = tuned_spec(tmp_path)
    proc = cli("run", str(path), "--no-live", cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "search: every arm tuned with 4 configurations" in proc.stdout
    uri = sqlite_uri(tmp_path)
    best = assert_search_and_evaluation(uri)
    # the report: the tuned values per arm, the budgets, and captions that say the arms were tuned
    report = cli("report", "tuned", "--out", str(tmp_path / "report"), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    tuned = (tmp_path / "report" / "tuned.md").read_text()
    assert "| sine/val |" in tuned and "| sine/val_der |" in tuned and "configurations" in tuned
    assert f"{best['sine/val_der']['lr']:.4g}" in tuned
    assert "every arm tuned with an equal budget" in (tmp_path / "report" / "table_test_psnr.md").read_text()
    # the spec planned again with --set (here a no-op override) plans its evaluation trials with the tuned values
    # the searches recorded: the four trials that ran, none MISSING (without them, all four would be)
    again = cli("report", str(path), "--set", "grid.seeds=[0, 1]", "--out", str(tmp_path / "again"), "--no-mlflow",
                cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    index = (tmp_path / "again" / "report.md").read_text()
    assert "Trials: 4 FINISHED." in index and "MISSING" not in index, index
    # again: the searches and the evaluation are found in MLflow, nothing runs
    before = len(runs(uri, "tuned"))
    again = cli("run", str(path), "--no-live", cwd=tmp_path, timeout=300)
    assert again.returncode == 0 and "nothing to run" in again.stdout, again.stdout + again.stderr[-2000:]
    assert len(runs(uri, "tuned")) == before


@pytest.mark.slow
@pytest.mark.parametrize("searcher_state", ["saved", "lost"])
def test_driver_killed_during_the_search_then_resumed_leaves_no_duplicates(tmp_path, searcher_state):
    """SIGKILL while an arm's search runs, then resume.  "lost": Tune writes its experiment state before its
    searcher's, and a driver killed between the two leaves no searcher state (seen on CI); that is made
    certain here, and the resume rebuilds the search from MLflow instead of restoring it."""
    import subprocess

    from runners.engine.search_phase import tune_state_is_whole

    path = tuned_spec(tmp_path, steps=120, samples=4, scheduler=None)
    uri = sqlite_uri(tmp_path)
    driver = subprocess.Popen([*CLI, "run", str(path), "--no-live"], cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, text=True, start_new_session=True)

    def running_past_a_checkpoint():
        """A configuration RUNNING past its first checkpoint (step 10), another one FINISHED."""
        tuning = tuning_runs(uri)
        if not any(r.info.status == "FINISHED" for r in tuning):
            return None
        for run in tuning:
            steps = [m.step for m in client(uri).get_metric_history(run.info.run_id, "objective")]
            if run.info.status == "RUNNING" and 20 <= max(steps, default=0) <= 100:
                return run
        return None

    deadline, victim = time.time() + 300, None
    while victim is None and time.time() < deadline and driver.poll() is None:
        try:
            victim = running_past_a_checkpoint()
        except Exception:  # the store is not there yet
            pass
        time.sleep(0.2)
    assert victim is not None, "the search did not get going"
    os.kill(driver.pid, signal.SIGKILL)  # its trials end with it (the keeper ends them at once)
    driver.communicate(timeout=60)
    (state,) = (tmp_path / ".sobolev" / "tuned").glob(f"*/tune-{victim.data.tags['sobolev.search_key']}")
    if searcher_state == "lost":
        for f in [*state.glob("searcher-state-*.pkl"), *state.glob("search_gen_state-*.json")]:
            f.unlink()
    restorable = tune_state_is_whole(state)
    assert not (restorable and searcher_state == "lost")
    proc = cli("resume", str(path), "--no-live", cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # restored: the interrupted configurations (two run at once) go on in their own runs (unless Tune had not
    # saved them yet); rebuilt: they stay KILLED, the budget is spent on configurations not drawn before, and
    # Tune's incomplete state is kept aside
    assert_search_and_evaluation(uri, asha=False, interrupted=2)
    assert state.with_name(f"{state.name}.incomplete-1").is_dir() == (not restorable)
    assert all(r.info.status == "FINISHED" for r in runs(uri, "tuned") if r.data.tags.get("sobolev.kind") == "sweep")


@pytest.mark.parametrize("override,message", [
    ("search.datasets=[chelsea, astronaut]", "search.datasets[1]: 'astronaut' is also an evaluation dataset"),
    ("search.space.lrr={uniform: [0.1, 1]}", "search.space.lrr: unknown image trial setting (did you mean 'lr'?)"),
    ("search.space.lr={loguniform: [0.01, 0.001]}", "search.space.lr.loguniform: bounds must be increasing"),
    ("search.space.lr={loguniform: [0, 0.01]}", "search.space.lr.loguniform: a log scale needs positive bounds"),
    ("search.per=[activation, seed]", "search.per[1]: unknown axis 'seed'"),
    ("search.per=[activation]", "search.per: the grid varies supervision (val, val_der): add it to search.per"),
    ("search.samples=0", "search.samples: Input should be greater than or equal to 1"),
    ("search.scheduler.asha.grace_steps=100", "search.scheduler.asha.grace_steps: 100 is more than the trial's 30"),
    ("search.space.model.w0={uniform: [0, 60]}", "search.space.model.w0: uniform value 0.0: Input should be greater"),
])
def test_bad_search_blocks_are_refused_before_ray(tmp_path, override, message):
    path = tuned_spec(tmp_path)
    with pytest.raises(ConfigError) as info:
        plan_sweep(load_spec(path, [override]), str(path))
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


def test_bad_search_blocks_are_one_line_errors_and_write_nothing(tmp_path):
    path = tuned_spec(tmp_path)
    for override, message in [("search.datasets=[chelsea, astronaut]", "'astronaut' is also an evaluation dataset"),
                              ("search.samples=0", "search.samples: Input should be greater than or equal to 1")]:
        line = one_line_error(cli("run", str(path), "--set", override, cwd=tmp_path, timeout=120))
        assert message in line
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / ".sobolev").exists()


def test_arms_search_only_what_applies_to_them(tmp_path):
    path = tuned_spec(tmp_path, space={"lr": {"loguniform": [1e-4, 1e-2]}, "lambda_der": {"uniform": [0.1, 2]},
                                       "model.w0": {"uniform": [10, 60]}, "model.s0": {"choice": [10, 30]}})
    plan = plan_sweep(load_spec(path, ["grid.activations=[sine, relu, gauss]"]), str(path))
    spaces = {arm.label: sorted(arm.space) for arm in plan.arms}
    assert spaces == {"sine/val": ["lr", "model.w0"], "sine/val_der": ["lambda_der", "lr", "model.w0"],
                      "relu/val": ["lr"], "relu/val_der": ["lambda_der", "lr"],
                      "gauss/val": ["lr", "model.s0"], "gauss/val_der": ["lambda_der", "lr", "model.s0"]}
    members = plan.arms[0].members
    assert [m.axes["dataset"] for m in members] == ["chelsea", "coffee"] and members[0].config.factor == 4
    assert len({arm.key for arm in plan.arms}) == 6
