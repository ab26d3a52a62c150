"""Trainer behaviour on real data, real torch: learning, resume, divergence, callbacks."""

import numpy as np
import pytest
import scipy.io.wavfile
import torch

from sobolev.errors import ConfigError, TrialDiverged
from sobolev.models import MLPConfig
from sobolev.trainers import AudioRegressionConfig, ImageRegressionConfig, load_checkpoint, save_checkpoint


def image_config(**kw) -> ImageRegressionConfig:
    base = dict(image="chelsea", size=64, factor=2, supervision="val", steps=300, seed=0)
    base.update(kw)
    activation = base.pop("activation", "sine")
    return ImageRegressionConfig(model=MLPConfig(activation), **base)


# Measured on the 2-core CI machine (chelsea 64², factor 2, 300 steps, lr 1e-4, seed 0):
# sine 27.4 dB, relu_pe 25.4 dB, relu 22.7 dB held-out PSNR.
def test_sine_and_relu_pe_learn_a_small_builtin_image():
    results = {act: image_config(activation=act).setup().fit().metrics for act in ("sine", "relu_pe", "relu")}
    assert results["sine"]["test_psnr"] > 26.5
    assert results["relu_pe"]["test_psnr"] > 24.5
    assert results["sine"]["test_psnr"] > results["relu"]["test_psnr"] + 3
    assert results["relu_pe"]["test_psnr"] > results["relu"]["test_psnr"] + 1.5
    assert results["sine"]["train_psnr"] > 50  # the training grid is fitted almost exactly


def test_derivative_supervision_beats_values_only_on_held_out_pixels():
    # measured: val 23.0 dB, val_der 25.5 dB (chelsea 64², factor 4, 300 steps)
    val = image_config(factor=4, supervision="val").setup().fit()
    val_der = image_config(factor=4, supervision="val_der").setup().fit()
    assert val_der.metrics["test_psnr"] > val.metrics["test_psnr"] + 1.5
    assert val_der.network_gradient.shape == (3, 2, 64, 64)
    # the network derivative follows the Sobel targets better with derivative supervision (measured: 0.54×)
    err = lambda r: float(((r.network_gradient - r.target_gradient) ** 2).mean())  # noqa: E731
    assert err(val_der) < 0.7 * err(val)


def test_same_seed_same_result_and_other_seed_differs():
    a = image_config(steps=20).setup().fit()
    b = image_config(steps=20).setup().fit()
    c = image_config(steps=20, seed=1).setup().fit()
    assert a.metrics == b.metrics
    assert torch.equal(a.prediction, b.prediction)
    assert a.metrics["test_psnr"] != c.metrics["test_psnr"]


def test_resume_from_checkpoint_equals_uninterrupted_run(tmp_path):
    cfg = image_config(steps=40, supervision="val_der", log_every=10, size=32, factor=4)
    straight = cfg.setup().fit()

    first = cfg.setup()
    saved = []

    def stop_at_20(progress):
        if progress.step == 20:
            saved.append(save_checkpoint(progress.state_dict(), tmp_path / "ckpt.pt"))
            raise KeyboardInterrupt  # the trial is interrupted here

    with pytest.raises(KeyboardInterrupt):
        first.fit(stop_at_20)
    resumed = cfg.setup()
    resumed.load_state_dict(load_checkpoint(saved[0]))
    assert resumed.step == 20
    result = resumed.fit()
    assert result.steps == 40
    assert result.metrics == straight.metrics
    assert torch.equal(result.prediction, straight.prediction)
    assert [h["loss"] for h in result.history] == [h["loss"] for h in straight.history]


def test_checkpoint_of_another_trial_is_refused(tmp_path):
    state = image_config(steps=5, size=32).setup().state_dict()
    other = image_config(steps=5, size=32, lr=1e-3).setup()
    with pytest.raises(ConfigError, match="differs in: lr"):
        other.load_state_dict(state)


def test_callback_sees_every_log_interval_and_the_end():
    seen = []
    trainer = image_config(steps=30, log_every=10, size=32, eval_every=15).setup()
    trainer.fit(lambda p: seen.append((p.step, p.final, dict(p.metrics))))
    assert [(s, f) for s, f, _ in seen] == [(10, False), (15, False), (20, False), (30, True)]  # 15: eval_every
    assert "test_psnr" in seen[-1][2] and "loss" in seen[0][2]
    assert "test_psnr" in seen[1][2] and "test_psnr" not in seen[0][2] and "test_psnr" not in seen[2][2]


def test_diverging_trial_raises_instead_of_reporting_metrics():
    with pytest.raises(TrialDiverged, match="diverged at step"):
        image_config(activation="relu", lr=1e9, steps=50, size=32).setup().fit()


def test_random_ratio_and_subsampled_targets():
    r = image_config(factor=4, ratio=0.25, steps=30, size=32, supervision="val_der").setup()
    assert int(r.train_mask.sum()) == 256
    full = image_config(factor=4, steps=1, size=32, supervision="val_der").setup()
    sub = image_config(factor=4, steps=1, size=32, supervision="val_der", derivative_source="subsampled").setup()
    assert full.train_jacobian.shape == sub.train_jacobian.shape == (64, 3, 2)
    assert not torch.allclose(full.train_jacobian, sub.train_jacobian)
    with pytest.raises(ConfigError, match="needs grid sampling"):
        image_config(ratio=0.5, derivative_source="subsampled").setup()


def test_image_size_must_be_a_multiple_of_the_factor():
    with pytest.raises(ConfigError, match="not a multiple of factor 4"):
        image_config(size=66, factor=4).setup()


def test_audio_regression_learns_and_derivatives_help(tmp_path):
    t = np.arange(4000) / 4000
    wave = 0.6 * np.sin(2 * np.pi * 220 * t) + 0.3 * np.sin(2 * np.pi * 517 * t)
    scipy.io.wavfile.write(tmp_path / "tone.wav", 4000, wave.astype(np.float32))
    common = dict(audio=str(tmp_path / "tone.wav"), steps=150, lr=1e-4)
    val = AudioRegressionConfig(supervision="val", **common).setup().fit()
    val_der = AudioRegressionConfig(supervision="val_der", **common).setup().fit()
    assert val.prediction.shape == (1, 4000) and val_der.network_gradient.shape == (1, 1, 4000)
    assert val.metrics["train_psnr"] > 30
    assert val_der.metrics["test_psnr"] > val.metrics["test_psnr"]


@pytest.mark.parametrize("log_every", [25, 7])
def test_evaluations_on_every_eval_every_step_whatever_the_log_interval(log_every):
    """eval_every 20 with log_every 25 (or 7): held-out metrics at 20 and 40, the end at 60, and the losses still at
    every log_every step; a pack of two trains its members the same way (the same records, to the bit)."""
    from sobolev.trainers.packed import PackedTrainer

    def trainer(supervision):
        return image_config(size=16, steps=60, log_every=log_every, eval_every=20, supervision=supervision).setup()

    solo = trainer("val").fit()
    evaluated = [int(r["step"]) for r in solo.history if "test_psnr" in r]
    assert evaluated == [20, 40, 60]
    logged = [int(r["step"]) for r in solo.history]
    assert set(range(log_every, 60, log_every)) | {20, 40, 60} == set(logged)
    assert all("train_flops" in r and "train_seconds" in r for r in solo.history if "test_psnr" in r)
    pack = PackedTrainer([trainer("val"), trainer("val_der")]).fit()
    assert [int(r["step"]) for r in pack[0].history if "test_psnr" in r] == [20, 40, 60]
    assert [int(r["step"]) for r in pack[1].history if "test_psnr" in r] == [20, 40, 60]
    strip = lambda h: [{k: v for k, v in r.items() if "seconds" not in k} for r in h]  # noqa: E731
    assert strip(pack[0].history) == strip(solo.history)
