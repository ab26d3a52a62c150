"""What keeps a sweep of thousands of trials cheap: one query for dedup, planning that builds what trials share once."""

import pytest

from runners.plan.planner import plan_sweep
from runners.spec.load import load_spec
from runners.store.tracker import Tracker, _sqlite_trial_runs
from runners.store.uri import sqlite_path
from tests.sweep_helpers import sqlite_uri, write_spec


def test_one_sql_query_of_trial_runs_equals_mlflows_search(tmp_path):
    """The SQLite fast path of ``Tracker.trial_runs`` reads MLflow's own tables; it must give what MLflow's search
    gives: every sweep-trial run (not tuning runs, not deleted ones) with its status, divergence and parent."""
    uri = sqlite_uri(tmp_path)
    tracker = Tracker(uri)
    exp = tracker.ensure_experiment("dedup", {"task": "image", "axes": []})
    parent = tracker.create_parent(exp, "p", {}, {})
    made = {}
    for key, status, tags in [("a", "FINISHED", {}), ("b", "KILLED", {}), ("c", "FAILED", {"sobolev.diverged": "true"}),
                              ("d", "RUNNING", {}), ("e", "FAILED", {})]:
        run, _ = tracker.open_child(exp, parent, key, key, {"x": 1}, tags)
        if status != "RUNNING":
            tracker.finish(run.info.run_id, status)
        made[key] = run.info.run_id
    tuning, _ = tracker.open_child(exp, parent, "arm/t1", "t", {}, {}, kind="tuning")
    gone, _ = tracker.open_child(exp, parent, "f", "f", {}, {})
    tracker.client.delete_run(gone.info.run_id)
    again, _ = tracker.open_child(exp, tracker.create_parent(exp, "p2", {}, {}), "b", "b", {}, {})  # a newer run of b

    fast = sorted(_sqlite_trial_runs(sqlite_path(uri), exp), key=lambda r: r.run_id)
    searched = sorted(tracker.searched_trial_runs(exp), key=lambda r: r.run_id)
    assert fast == searched
    runs = tracker.trial_runs(exp)
    assert runs.finished == {"a": made["a"]}
    assert set(runs.unfinished) == {"b", "c", "d", "e"} and runs.unfinished["b"].run_id == again.info.run_id
    assert runs.unfinished["c"].diverged and not runs.unfinished["e"].diverged
    assert runs.unfinished["d"].status == "RUNNING" and runs.unfinished["d"].parent == parent
    assert tuning.info.run_id not in {r.run_id for r in fast}


def test_planning_builds_each_grid_point_once_not_each_seed(tmp_path):
    """A grid point's config is validated, its data opened and its identity taken once; its seeds are copies of
    that config (sharing its validated parts).  Their keys are what validating each trial gives (the keys of
    earlier versions are pinned in test_trial_keys.py)."""
    path = write_spec(tmp_path, grid__seeds=list(range(100)))
    plan = plan_sweep(load_spec(path), str(path))
    assert len(plan.trials) == 200 and len({t.key for t in plan.trials}) == 200
    by_point = {}
    for t in plan.trials:
        by_point.setdefault(t.config.supervision, []).append(t)
    for trials in by_point.values():  # one validated model config per grid point, shared by its 100 seeds
        assert len({id(t.config.model) for t in trials}) == 1 and len({t.config.seed for t in trials}) == 100
    for t in plan.trials[::37]:  # each as if it were validated on its own
        alone = plan.spec.trial.with_changes({"image": "astronaut", "supervision": t.config.supervision,
                                              "seed": t.config.seed, "model.activation": "sine", "factor": 4,
                                              "ratio": None})
        assert t.config == alone and t.config.identity() == alone.identity()


@pytest.mark.parametrize("seeds", [[3, 0]])
def test_a_seed_copy_keeps_the_other_settings(tmp_path, seeds):
    path = write_spec(tmp_path, grid__seeds=seeds, trial__lr=3e-4)
    plan = plan_sweep(load_spec(path), str(path))
    assert [t.config.seed for t in plan.trials] == [3, 0, 3, 0] and {t.config.lr for t in plan.trials} == {3e-4}
