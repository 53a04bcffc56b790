"""dstft_cli.synth: the paper's test signals match their ground truth, SNR and seeds."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dstft_cli import synth


def peak_frequency(x: np.ndarray, fs: float, pad: int = 8) -> float:
    """Frequency (Hz) of the largest Hann-windowed, zero-padded FFT peak."""
    n = x.size * pad
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size), n))
    return float(np.argmax(spec) * fs / n)


@pytest.mark.parametrize("name", sorted(synth.SIGNALS))
def test_registry_shared_signature_and_determinism(name):
    make = synth.SIGNALS[name]
    a, fs, truth = make(duration=0.5, sample_rate=4000, seed=3, snr_db=15)
    b, _, _ = make(duration=0.5, sample_rate=4000, seed=3, snr_db=15)
    c, _, _ = make(duration=0.5, sample_rate=4000, seed=4, snr_db=15)
    assert fs == 4000.0
    assert a.shape == (2000,) and a.dtype == np.float64
    assert np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    cols = synth.truth_columns(truth)
    assert list(cols)[0] == "time_s"
    np.testing.assert_allclose(cols["time_s"], np.arange(2000) / 4000)
    assert all(v.shape == (2000,) for v in cols.values())
    meta = synth.truth_metadata(truth)
    assert not set(meta) & set(cols)
    json.dumps(meta, allow_nan=False)                      # JSON-friendly


@pytest.mark.parametrize("name", sorted(synth.SIGNALS))
def test_noise_gives_exact_snr_and_same_components(name):
    make = synth.SIGNALS[name]
    clean, _, t1 = make(seed=7, snr_db=None)
    noisy, _, t2 = make(seed=7, snr_db=12.5)
    assert synth.snr_db(clean, noisy) == pytest.approx(12.5, abs=1e-9)
    residual = noisy - clean
    assert abs(residual.mean()) < 1e-12
    # white: flat spectrum (no octave band has more than twice its share of the power)
    power = np.abs(np.fft.rfft(residual)) ** 2
    bands = np.array_split(power[1:], 8)
    shares = np.array([b.sum() for b in bands]) / power[1:].sum()
    assert shares.max() < 2 / 8
    assert synth.truth_metadata(t1).keys() == synth.truth_metadata(t2).keys()


def test_shocks_default_snr_is_20_db():
    clean, fs, truth = synth.shocks(snr_db=None, seed=0)
    noisy, _, _ = synth.shocks(seed=0)
    assert truth["snr_db"] is None
    assert synth.snr_db(clean, noisy) == pytest.approx(20.0, abs=1e-9)
    noise = noisy - clean
    rms = np.sqrt(np.mean(noise**2))
    assert rms == pytest.approx(np.sqrt(np.mean(clean**2)) / 10, rel=1e-9)


def test_shocks_truth_matches_signal():
    fs = 8000.0
    clean, _, truth = synth.shocks(snr_db=None, seed=2)
    onsets, freqs = np.array(truth["onsets_s"]), np.array(truth["freqs_hz"])
    assert len(onsets) == len(freqs) == 6
    assert np.all(np.diff(onsets) > 0) and onsets[0] >= 0.05 and onsets[-1] <= 0.85 + 1e-12
    gaps = np.diff(onsets)
    assert gaps.max() / gaps.min() > 1.3                      # irregular times
    assert np.ptp(truth["durations_s"]) > 0.005               # varying durations
    assert freqs.min() > 0.05 * fs and freqs.max() < 0.47 * fs
    # nothing before the first shock
    assert np.all(clean[: int(onsets[0] * fs) - 1] == 0)
    for t0, f, tau in zip(onsets, freqs, truth["decays_s"], strict=True):
        i0 = int(np.ceil(t0 * fs))
        seg = clean[i0:i0 + max(64, int(2 * tau * fs))]
        assert peak_frequency(seg, fs) == pytest.approx(f, abs=0.01 * fs)
        # decays: the envelope 3 τ later is ~ e^-3 of the start (ignore overlaps)
        per_sample = truth["freq_hz"][i0:i0 + 5]
        assert np.all(np.isfinite(per_sample))


def test_three_components_structure():
    x, fs, truth = synth.three_components(snr_db=None, seed=0)
    t = truth["time_s"]
    fm, tone = truth["fm_hz"], truth["tone_hz"]
    # the FM component comes within 150 Hz of the tone around T/4 and is far from it elsewhere
    gap = np.abs(fm - tone)
    assert gap.min() < 150
    assert t[np.argmin(gap)] == pytest.approx(0.25, abs=0.02)
    assert np.median(gap) > 400
    # the spectrum of a long window around T/2 shows the tone and FM well apart;
    near_half = x[int(0.45 * fs): int(0.55 * fs)]
    assert peak_frequency(near_half, fs) in (pytest.approx(2000, abs=20),
                                             pytest.approx(fm[int(0.5 * fs)], abs=60))
    # the transient: energy near 3 kHz lives in its 5 ms burst only
    comp = truth["components"][2]
    i0, n = round(comp["onset_s"] * fs), round(comp["duration_s"] * fs)
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(x.size, 1 / fs)
    spec[(f < 2600) | (f > 3400)] = 0
    band = np.fft.irfft(spec, x.size) ** 2
    inside = band[max(0, i0 - 40): i0 + n + 40].sum()
    assert inside / band.sum() > 0.9
    assert np.all(np.isnan(truth["transient_hz"][:i0]))
    assert np.all(truth["transient_hz"][i0:i0 + n] == 3000)


def test_three_components_fm_truth_is_the_phase_derivative():
    """The FM truth is the IF of the signal: remove tone and burst, demodulate, compare."""
    x, fs, truth = synth.three_components(snr_db=None, seed=5)
    fm_hz = truth["fm_hz"]
    # analytic signal of the FM part: band-pass 1000–1950 Hz away from the tone and burst
    seg = slice(int(0.55 * fs), int(0.95 * fs))          # FM below 1600 Hz here, burst before
    spec = np.fft.fft(x)
    f = np.fft.fftfreq(x.size, 1 / fs)
    spec[(f < 1000) | (f > 1750)] = 0
    analytic = np.fft.ifft(2 * spec)
    inst = np.diff(np.unwrap(np.angle(analytic))) * fs / (2 * np.pi)
    err = inst[seg] - fm_hz[seg]
    assert np.sqrt(np.mean(err ** 2)) < 15


def test_harmonics_truth():
    fs = 8000.0
    x, _, truth = synth.harmonics(snr_db=None, seed=0)
    f0 = truth["f0_hz"]
    assert x.shape == f0.shape == (16000,)
    assert truth["n_harmonics"] == 10
    assert f0.min() > 45 and 10 * f0.max() < 0.45 * fs
    slope = np.diff(f0) * fs                               # Hz/s
    assert np.abs(slope).max() > 5 * np.median(np.abs(slope))  # some rapid variations
    # spectral peaks at multiples of f0 in a short window
    for centre in (0.1, 1.0, 1.9):
        i = int(centre * fs)
        seg = x[i - 400: i + 400]
        mean_f0 = f0[i - 400: i + 400].mean()
        n = seg.size * 16
        spec = np.abs(np.fft.rfft(seg * np.hanning(seg.size), n))
        freqs = np.fft.rfftfreq(n, 1 / fs)
        for k in (1, 2, 5, 10):
            band = (freqs > (k - 0.4) * mean_f0) & (freqs < (k + 0.4) * mean_f0)
            peak = freqs[band][np.argmax(spec[band])]
            assert peak == pytest.approx(k * mean_f0, rel=0.03), (centre, k)
    noisy, _, _ = synth.harmonics(seed=0)
    assert synth.snr_db(x, noisy) == pytest.approx(20, abs=1e-9)


def test_harmonics_rejects_aliasing():
    with pytest.raises(ValueError, match="exceed"):
        synth.harmonics(sample_rate=1000, n_harmonics=10, f0_range=(60, 100))
    x, fs, truth = synth.harmonics(duration=1, sample_rate=2000, n_harmonics=3,
                                   f0_range=(20, 40))
    assert 18 < truth["f0_hz"].min() and truth["f0_hz"].max() < 50


def test_variable_period_sines():
    data = synth.variable_period_sines(n_signals=5, duration=0.5, sample_rate=4000, seed=1,
                                       snr_db=None)
    assert len(data) == 5
    for x, f in data:
        assert x.shape == f.shape == (2000,)
        assert np.ptp(f) > 0                                # the period varies
        # the truth is the IF: demodulate the analytic signal
        spec = np.fft.fft(x)
        spec[np.fft.fftfreq(x.size) < 0] = 0
        inst = np.diff(np.unwrap(np.angle(np.fft.ifft(2 * spec)))) * 4000 / (2 * np.pi)
        core = slice(100, 1900)
        assert np.sqrt(np.mean((inst[core] - f[core]) ** 2)) < 10
    again = synth.variable_period_sines(n_signals=5, duration=0.5, sample_rate=4000, seed=1,
                                        snr_db=None)
    for (a, fa), (b, fb) in zip(data, again, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(fa, fb)
    noisy = synth.variable_period_sines(n_signals=5, duration=0.5, sample_rate=4000, seed=1,
                                        snr_db=5)
    for (clean, _), (y, _) in zip(data, noisy, strict=True):
        assert synth.snr_db(clean, y) == pytest.approx(5, abs=1e-9)
    # the first signals do not depend on how many are drawn
    fewer = synth.variable_period_sines(n_signals=2, duration=0.5, sample_rate=4000, seed=1,
                                        snr_db=None)
    np.testing.assert_array_equal(fewer[1][0], data[1][0])


@pytest.mark.parametrize("kwargs", [{"duration": 0}, {"sample_rate": -1},
                                    {"duration": 1e-5}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        synth.three_components(**kwargs)
