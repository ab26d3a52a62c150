"""Reports from a real MLflow store with known numbers, checked against hand computations."""

import json
import math
import re
import shutil
import statistics
import subprocess

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from analysis.collect import collect
from analysis.report import ReportOptions, make_report
from runners.store.tracker import Tracker
from sobolev.errors import ConfigError
from tests.sweep_helpers import cli, one_line_error, sqlite_uri

DATASETS = {"alpha": 20.0, "beta": 30.0}
MODELS = {"relu": 0.0, "sine": 2.0}
SUPS = {"val": 0.0, "val_der": 1.0}
FACTORS = {2: 3.0, 4: 0.0}
SEEDS = [0, 1, 2]
MISSING = ("beta", "relu", "val_der", 4)  # planned, never run
FAILED = ("alpha", "sine", "val", 4, 2)  # ran and failed: no metric


def psnr(dataset, model, sup, factor, seed):
    # val_der helps sine more than relu; seeds spread by (seed - 1) · 0.2 · (1 + model bonus)
    return DATASETS[dataset] + MODELS[model] + SUPS[sup] * (1 + MODELS[model]) + FACTORS[factor] \
        + (seed - 1) * 0.2 * (1 + MODELS[model]) + (0.05 * seed if sup == "val_der" else 0.0)


def ssim(dataset, model, sup, factor, seed):
    return psnr(dataset, model, sup, factor, seed) / 100.0


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """An experiment laid out exactly as the sweep engine lays it out."""
    root = tmp_path_factory.mktemp("store")
    uri = sqlite_uri(root)
    tracker = Tracker(uri)
    shape = {"task": "image", "axes": ["dataset", "activation", "supervision", "sampling", "seed"]}
    exp = tracker.ensure_experiment("known", shape)
    parent = tracker.create_parent(exp, "known-1", {"task": "image"}, {})
    png = root / "prediction.png"
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(png)
    for d in DATASETS:
        for m in MODELS:
            for s in SUPS:
                for f in FACTORS:
                    for seed in SEEDS:
                        if (d, m, s, f) == MISSING:
                            continue
                        key = f"{d}-{m}-{s}-{f}-{seed}"
                        params = {"axis.dataset": d, "axis.activation": m, "axis.supervision": s, "axis.factor": f,
                                  "axis.seed": seed, "image": "astronaut", "size": 16, "factor": f, "ratio": None}
                        run, _ = tracker.open_child(exp, parent, key, key, params, {})
                        if (d, m, s, f, seed) == FAILED:
                            tracker.set_tags(run.info.run_id,
                                             {"sobolev.failure": "trial diverged at step 3: loss is nan"})
                            tracker.finish(run.info.run_id, "FAILED")
                            continue
                        tracker.log_metrics(run.info.run_id, [{"step": 10, "test_psnr": psnr(d, m, s, f, seed),
                                                               "test_ssim": ssim(d, m, s, f, seed)}], 0)
                        tracker.client.log_artifact(run.info.run_id, str(png))
                        tracker.finish(run.info.run_id)
    tracker.finish(parent)
    return root, uri


@pytest.fixture(scope="module")
def report(store, tmp_path_factory):
    root, uri = store
    out = tmp_path_factory.mktemp("report")
    return make_report("known", ReportOptions(out=out, tracking_uri=uri)), out, uri


def test_collect_counts_every_trial_and_status(store):
    _, uri = store
    results = collect("known", uri)
    # 2 datasets × 2 models × 2 supervisions × 2 factors × 3 seeds, minus the 3 never run
    assert len(results.frame) == 45
    assert results.status_counts() == {"FINISHED": 44, "FAILED": 1}
    assert set(results.frame["fraction"]) == {0.25, 0.0625}


def cell_stats(dataset, model, sup, factor=4):
    values = [psnr(dataset, model, sup, factor, s) for s in SEEDS if (dataset, model, sup, factor, s) != FAILED]
    return statistics.mean(values), statistics.stdev(values), len(values)


def test_table_csv_numbers_match_hand_computation(report):
    _, out, _ = report
    import pandas as pd

    csv = pd.read_csv(out / "table_test_psnr.csv", index_col="dataset")
    for d in DATASETS:
        for m in MODELS:
            for s in SUPS:
                if (d, m, s, 4) == MISSING:
                    assert math.isnan(csv.loc[d, f"{m}/{s}/mean"]) and csv.loc[d, f"{m}/{s}/n"] == 0
                    continue
                mean, std, n = cell_stats(d, m, s)
                assert csv.loc[d, f"{m}/{s}/mean"] == pytest.approx(mean, abs=1e-5)
                assert csv.loc[d, f"{m}/{s}/std"] == pytest.approx(std, abs=1e-5)
                assert csv.loc[d, f"{m}/{s}/n"] == n
    # mean row: per seed, the mean over the datasets with that seed; then mean ± std over seeds
    per_seed = [statistics.mean(psnr(d, "sine", "val_der", 4, s) for d in DATASETS) for s in SEEDS]
    assert csv.loc["Mean", "sine/val_der/mean"] == pytest.approx(statistics.mean(per_seed), abs=1e-5)
    assert csv.loc["Mean", "sine/val_der/std"] == pytest.approx(statistics.stdev(per_seed), abs=1e-5)
    # sine/val at alpha lost seed 2 (failed): its mean is over seeds 0 and 1 only
    assert csv.loc["alpha", "sine/val/n"] == 2


def test_latex_bolds_the_best_cell_marks_the_missing_one_and_has_booktabs(report):
    result, out, _ = report
    tex = (out / "table_test_psnr.tex").read_text()
    assert tex == result.latex["test_psnr"]
    for token in ("\\toprule", "\\midrule", "\\bottomrule", "\\multicolumn{2}{c}{relu}", "\\multicolumn{2}{c}{sine}",
                  "val\\_der",
                  "\\caption{Sweep known: held-out PSNR (dB) at factor 4, mean $\\pm$ sample std (n $-$ 1) over 3 "
                  "seeds"):
        assert token in tex, token
    assert "siunitx" not in tex and "\\num{" not in tex
    lines = tex.splitlines()
    header = next(i for i, line in enumerate(lines) if "\\multicolumn" in line)
    assert lines[header + 1] == "\\cmidrule(lr){2-3} \\cmidrule(lr){4-5}"  # a rule under each model's columns
    rows = {line.split(" & ")[0]: line for line in tex.splitlines() if " & " in line and "\\\\" in line}
    mean, std, _ = cell_stats("alpha", "sine", "val_der")
    assert f"\\textbf{{{mean:.2f} $\\pm$ {std:.2f}}}" in rows["alpha"]  # the best of its row
    assert rows["alpha"].count("\\textbf") == 1
    assert rows["beta"].split(" & ")[2].strip() == "--"  # relu/val_der missing at beta
    md = (out / "table_test_psnr.md").read_text()
    assert "| beta | " in md and " — " in md


def test_significance_matches_scipy_on_the_same_pairs(report):
    _, out, _ = report
    import pandas as pd

    sig = pd.read_csv(out / "significance_test_psnr.csv").set_index("model")
    pairs = [(d, s) for d in DATASETS for s in SEEDS if (d, "sine", "val", 4, s) != FAILED]
    diff = np.array([psnr(d, "sine", "val_der", 4, s) - psnr(d, "sine", "val", 4, s) for d, s in pairs])
    assert sig.loc["sine", "n"] == len(diff) == 5
    assert sig.loc["sine", "mean_diff"] == pytest.approx(diff.mean(), abs=1e-6)
    half = stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / math.sqrt(len(diff))
    assert sig.loc["sine", "ci_low"] == pytest.approx(diff.mean() - half, abs=1e-6)
    a = [psnr(d, "sine", "val_der", 4, s) for d, s in pairs]
    b = [psnr(d, "sine", "val", 4, s) for d, s in pairs]
    assert sig.loc["sine", "t_p"] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-6)
    assert math.isnan(sig.loc["sine", "wilcoxon_p"]) and "n too small" in sig.loc["sine", "note"]  # 5 < 6
    # relu: beta's relu/val_der never ran, so 3 pairs remain (alpha × 3 seeds)
    assert sig.loc["relu", "n"] == 3


def test_figures_are_written_and_logged_to_the_parent_run(report):
    result, out, uri = report
    for name in ("curve_test_psnr.png", "curve_test_psnr.pdf", "curve_test_ssim_alpha.png", "pictures_alpha.png"):
        assert (out / name).stat().st_size > 5000, name
    assert "FAILED" in (out / "report.md").read_text() and "trial diverged" in (out / "report.md").read_text()
    client = Tracker(uri).client
    logged = {a.path for a in client.list_artifacts(collect("known", uri).latest_parent, "report")}
    assert "report/table_test_psnr.tex" in logged and "report/curve_test_psnr.png" in logged


def test_bad_requests_are_refused(store, tmp_path):
    _, uri = store
    with pytest.raises(ConfigError, match="experiment 'nope' does not exist"):
        collect("nope", uri)
    with pytest.raises(ConfigError,
                       match="--metric 'test_lpips': no run of 'known' has it; known: test_psnr, test_ssim"):
        make_report("known", ReportOptions(out=tmp_path, tracking_uri=uri, metrics=["test_lpips"]))
    with pytest.raises(ConfigError, match="sampling level 'factor 8' has no finished run; known: factor 2, factor 4"):
        make_report("known", ReportOptions(out=tmp_path, tracking_uri=uri, factor=8))
    line = one_line_error(cli("report", "nope", "--tracking-uri", uri, "--out", str(tmp_path), cwd=tmp_path))
    assert "experiment 'nope' does not exist" in line


def test_experiment_without_finished_runs_exits_2(tmp_path):
    uri = sqlite_uri(tmp_path)
    tracker = Tracker(uri)
    exp = tracker.ensure_experiment("empty", {"task": "image", "axes": ["dataset"]})
    parent = tracker.create_parent(exp, "p", {}, {})
    run, _ = tracker.open_child(exp, parent, "k", "k", {"axis.dataset": "a", "axis.factor": 4}, {})
    tracker.finish(run.info.run_id, "FAILED")
    line = one_line_error(cli("report", "empty", "--tracking-uri", uri, cwd=tmp_path))
    assert "has no finished runs (FAILED 1)" in line
    assert json.loads(json.dumps({"ok": True}))  # the store stays readable
    assert re.search("empty", line)


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed (.ci/run installs it)")
def test_latex_tables_compile_with_pdflatex(report, tmp_path):
    _, out, _ = report
    body = "\n".join((out / name).read_text() for name in ("table_test_psnr.tex", "table_test_ssim.tex",
                                                          "significance_test_psnr.tex"))
    doc = tmp_path / "paper.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n" + body + "\\end{document}\n")
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert (tmp_path / "paper.pdf").stat().st_size > 1000


def test_primary_test_pairs_datasets_with_bootstrap_and_holm(report):
    """The dataset level: seeds averaged within each dataset, then paired; Holm across the models."""
    import pandas as pd

    from analysis.significance import hierarchical_bootstrap, holm, paired_differences

    _, out, _ = report
    sig = pd.read_csv(out / "significance_test_psnr.csv").set_index("model")
    # sine at factor 4: alpha has seeds 0, 1 (seed 2 failed), beta 0, 1, 2
    per_dataset = []
    for d in DATASETS:
        seeds = [s for s in SEEDS if (d, "sine", "val", 4, s) != FAILED]
        per_dataset.append(statistics.mean(psnr(d, "sine", "val_der", 4, s) - psnr(d, "sine", "val", 4, s)
                                           for s in seeds))
    assert sig.loc["sine", "datasets"] == 2
    assert sig.loc["sine", "dataset_mean_diff"] == pytest.approx(statistics.mean(per_dataset), abs=1e-9)
    assert math.isnan(sig.loc["sine", "dataset_t_p"])  # 2 datasets < 3: no test ...
    assert "does not generalise across images" in sig.loc["sine", "note"]  # ... and the table says why
    # Holm by hand: p-values 0.01, 0.04, 0.03, NaN → sorted 0.01 × 3, 0.03 × 2, 0.04 × 1 (monotone)
    assert holm([0.01, 0.04, 0.03, math.nan])[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(holm([0.01, 0.04, 0.03, math.nan])[3])
    within = sig.loc[["relu", "sine"], "t_p"].tolist()
    assert sig.loc[["relu", "sine"], "t_p_holm"].tolist() == pytest.approx(holm(within))
    # the hierarchical bootstrap: reproducible, and around the dataset-level mean
    finished = collect("known", report[2]).finished
    at4 = finished[finished["sampling"] == "factor 4"]
    diff = paired_differences(at4, "test_psnr", "sine")
    low, high = hierarchical_bootstrap(diff)
    assert (low, high) == hierarchical_bootstrap(diff)
    assert low <= statistics.mean(per_dataset) <= high
    assert (sig.loc["sine", "boot_ci_low"], sig.loc["sine", "boot_ci_high"]) == pytest.approx((low, high))


def test_dataset_level_test_matches_scipy_on_dataset_means():
    import numpy as np
    import pandas as pd

    from analysis.significance import significance_table

    rows = []
    rng = np.random.default_rng(1)
    for d in range(4):
        for s in range(3):
            base = 20 + 3 * d + rng.normal(0, 0.2)
            rows += [{"dataset": f"d{d}", "seed": s, "activation": "sine", "supervision": "val", "test_psnr": base},
                     {"dataset": f"d{d}", "seed": s, "activation": "sine", "supervision": "val_der",
                      "test_psnr": base + 0.5 + 0.3 * d + rng.normal(0, 0.1)}]
    frame = pd.DataFrame(rows)
    table = significance_table(frame, "test_psnr", ["sine"]).set_index("model")
    wide = frame.pivot_table(index=["dataset", "seed"], columns="supervision", values="test_psnr")
    means = wide.groupby(level=0).mean()
    assert table.loc["sine", "datasets"] == 4 and table.loc["sine", "n"] == 12
    assert table.loc["sine", "dataset_t_p"] == pytest.approx(stats.ttest_rel(means["val_der"], means["val"]).pvalue)
    assert table.loc["sine", "dataset_t_p_holm"] == pytest.approx(table.loc["sine", "dataset_t_p"])  # one model
    assert "generalise" not in table.loc["sine", "note"]
    # the dataset-level interval is wider than the within-image one: 4 datasets, not 12 independent pairs
    assert (table.loc["sine", "dataset_ci_high"] - table.loc["sine", "dataset_ci_low"]
            > table.loc["sine", "ci_high"] - table.loc["sine", "ci_low"])
