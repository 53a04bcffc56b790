"""Ridge tracking (Sec. VI-C): the Viterbi ridge, peak refinement, the whole tracker."""

import numpy as np
import pytest
import torch

from dstft_cli.core import dstft
from dstft_cli.tasks.tracking import (
    TrackConfig,
    entropy_constant_theta,
    frequency_mse,
    refine_peaks,
    track_frequency,
    viterbi_ridge,
)

SR = 4000.0


def chirp(f0=300.0, f1=900.0, duration=1.0, sr=SR):
    t = np.arange(int(duration * sr)) / sr
    f = f0 + (f1 - f0) * t / duration
    return t, np.cos(2 * np.pi * np.cumsum(f) / sr), f


def test_viterbi_recovers_clean_chirp_within_one_bin():
    t, x, f = chirp()
    n_fft, hop = 256, 32
    mag = dstft(torch.tensor(x), n_fft=n_fft, window_length=128.0, hop_length=hop).abs().numpy()
    bins = viterbi_ridge(np.log(mag + 1e-9), smoothness=0.05)
    centres = np.arange(mag.shape[1]) * hop
    inside = (centres >= n_fft // 2) & (centres < len(x) - n_fft // 2)
    expected = np.interp(centres / SR, t, f) / (SR / n_fft)
    assert np.max(np.abs(bins[inside] - expected[inside])) <= 1.0


def test_viterbi_smoothness_bridges_a_gap_and_band_limits():
    score = np.zeros((20, 30))
    score[5, :] = 1.0
    score[5, 10:13] = 0.0
    score[15, 10:13] = 1.5  # a brief stronger distractor far away
    assert np.all(viterbi_ridge(score, smoothness=1.0) == 5)
    # without any penalty the path jumps to the distractor
    assert np.all(viterbi_ridge(score, smoothness=0.0)[10:13] == 15)
    # the band keeps the path inside it
    path = viterbi_ridge(score, smoothness=1.0, band=(8, 19))
    assert path.min() >= 8 and path.max() <= 19


def test_refine_peaks_finds_parabola_vertex():
    m = np.arange(10.0)
    log_mag = -(m[:, None] - 4.3) ** 2 * np.ones((1, 3))
    out = refine_peaks(log_mag, np.array([4, 4, 4]))
    np.testing.assert_allclose(out, 4.3, atol=1e-12)


@pytest.mark.parametrize("mode", ["constant", "time"])
def test_track_frequency_chirp_and_harmonic(mode):
    t, x, f = chirp(150.0, 250.0)
    # add a 3rd harmonic and track it: f3 / 3 must give the fundamental back
    x = 0.3 * x + np.cos(3 * 2 * np.pi * np.cumsum(f) / SR)
    cfg = TrackConfig(mode=mode, n_fft=256, hop_length=32, harmonic=3, fmin=120, fmax=280,
                      grid_points=6, iters=5)
    r = track_frequency(x, SR, cfg)
    assert r.frequency.shape == r.times.shape
    df = SR / 256
    mse = frequency_mse(r.times, r.frequency, t, f, margin_s=128 / SR)
    assert mse < (df / 3) ** 2  # within one bin of the 3rd harmonic, divided by 3
    if mode == "time":
        assert r.window_length.shape == r.times.shape
        assert r.entropy_final <= r.entropy_constant + 1e-9
    else:
        assert r.window_length.ndim == 0


def test_entropy_constant_theta_beats_its_grid():
    t, x, _ = chirp()
    xt = torch.tensor(x)
    theta, h = entropy_constant_theta(xt, n_fft=256, hop=64, min_length=16, grid_points=8)
    from dstft_cli.core.losses import shannon_entropy

    for g in np.geomspace(16, 256, 8):
        hg = float(shannon_entropy(dstft(xt, n_fft=256, window_length=float(g), hop_length=64).abs()))
        assert h <= hg + 1e-12
    assert 16 <= theta <= 256


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mode": "tf"}, "mode"),
        ({"harmonic": 0}, "harmonic"),
        ({"fmin": 100, "fmax": 50}, "fmax"),
        ({"n_fft": 7}, "n_fft"),
    ],
)
def test_track_config_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrackConfig(**kwargs)


def test_track_rejects_silence_and_short_signals():
    cfg = TrackConfig(mode="constant", n_fft=64, grid_points=4)
    with pytest.raises(ValueError, match="all zeros"):
        track_frequency(np.zeros(1000), SR, cfg)
    with pytest.raises(ValueError, match="shorter than n_fft"):
        track_frequency(np.ones(10), SR, cfg)


@pytest.mark.slow
def test_tasks_import_neither_click_nor_matplotlib():
    import subprocess
    import sys

    code = ("import sys, dstft_cli.tasks.tracking, dstft_cli.tasks.fit_window, "
            "dstft_cli.tasks.classify; "
            "print(sorted(m for m in ('click', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_harmonic_comb_follows_the_kth_harmonic_past_stronger_lower_ones():
    # a 5th harmonic 20 dB below the fundamental, searched over the whole spectrum: the plain
    # ridge would follow the fundamental (and report f0/5); the comb puts it on the 5th harmonic
    t, x1, f = chirp(150.0, 250.0)
    phase = 2 * np.pi * np.cumsum(f) / SR
    x = sum(a * np.cos(k * phase) for k, a in zip(range(1, 6), (1.0, 0.6, 0.4, 0.3, 0.1), strict=True))
    cfg = TrackConfig(mode="constant", n_fft=256, hop_length=32, harmonic=5, grid_points=6)
    r = track_frequency(x, SR, cfg)
    mse = frequency_mse(r.times, r.frequency, t, f, margin_s=128 / SR)
    assert mse < (SR / 256 / 5) ** 2  # within one bin of the 5th harmonic, divided by 5


def test_harmonic_comb_of_one_harmonic_is_the_log_magnitude():
    from dstft_cli.tasks.tracking import harmonic_comb

    log_mag = np.random.default_rng(0).normal(size=(33, 7))
    assert harmonic_comb(log_mag, 1) is log_mag
    comb = harmonic_comb(log_mag, 2)
    # bin 2 of the 2nd harmonic: mean of bin 1 (the fundamental) and bin 2
    np.testing.assert_allclose(comb[2], 0.5 * (log_mag[1] + log_mag[2]))
    np.testing.assert_allclose(comb[3], 0.5 * (0.5 * (log_mag[1] + log_mag[2]) + log_mag[3]))


@pytest.mark.slow
def test_readme_track_example_follows_the_tenth_harmonic(tmp_path):
    """`dstft track sample_data/harmonics.wav --harmonic 10` with no other option (README)."""
    import json
    import shutil
    from pathlib import Path

    from click.testing import CliRunner

    from dstft_cli.cli import main

    root = Path(__file__).resolve().parents[2]
    for name in ("harmonics.wav", "harmonics_truth.csv"):
        shutil.copy(root / "sample_data" / name, tmp_path / name)
    res = CliRunner().invoke(main, ["track", str(tmp_path / "harmonics.wav"), "--harmonic", "10",
                                    "--out", str(tmp_path / "out"), "--quiet"])
    assert res.exit_code == 0, res.output
    params = json.loads(next((tmp_path / "out").rglob("params.json")).read_text())
    # one bin of the 10th harmonic is sr / n_fft / 10 = 0.78 Hz of the fundamental; the tracker
    # is within that (an RMS error of half a bin, 0.19 Hz², when measured)
    bin_hz = params["sample_rate"] / params["n_fft"] / 10
    assert params["mse_hz2"] < (0.75 * bin_hz) ** 2
    estimate = np.loadtxt(next((tmp_path / "out").rglob("frequency.csv")), delimiter=",", skiprows=1)
    assert 120 < np.median(estimate[:, 1]) < 200  # the fundamental, not a tenth of it
