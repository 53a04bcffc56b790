"""Reassignment operators and synchrosqueezing against direct summation of Eq. (6) and the classic
localisation properties (Dirac in time, tone in frequency, linear chirp on its IF)."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dstft_cli.core import dstft
from dstft_cli.core.reassign import (
    derivative_window,
    reassigned_spectrogram,
    reassignment_operators,
    reassignment_spectra,
    synchrosqueeze,
    synchrosqueezed_inverse,
    synchrosqueezed_sample_positions,
    time_weighted_window,
)

BASES = {
    "hann": lambda u: 0.5 + 0.5 * np.cos(2 * np.pi * u),
    "blackman": lambda u: 0.42 + 0.5 * np.cos(2 * np.pi * u) + 0.08 * np.cos(4 * np.pi * u),
    "gaussian": lambda u: 6.0 * np.exp(-36 * np.pi * u * u),
}


def _reference_spectra(signal, n_fft, theta, positions, base, step=1e-5):
    """Direct summation of S, S_tω, S_ω′ in numpy; ∂ₓω by central differences of the smooth
    window g(x/θ)/θ, then restricted to the support (−θ/2, θ/2]."""
    n_bins = n_fft // 2 + 1
    theta = np.broadcast_to(np.asarray(theta, dtype=np.float64), (n_bins, len(positions)))
    j = np.arange(-n_fft // 2 + 1, n_fft // 2 + 1)
    m = np.arange(n_bins)
    out = np.zeros((3, n_bins, len(positions)), dtype=np.complex128)
    for n, t in enumerate(positions):
        k = int(np.floor(t)) + j
        samples = np.where((k >= 0) & (k < len(signal)), signal[np.clip(k, 0, len(signal) - 1)], 0.0)
        x = k - t
        th = theta[:, n][:, None]

        def smooth(arg, th=th):
            return base(arg / th) / th

        inside = (x > -th / 2) & (x <= th / 2)
        w = np.where(inside, smooth(x), 0.0)
        dw = np.where(inside, (smooth(x + step) - smooth(x - step)) / (2 * step), 0.0)
        phase = np.exp(-2j * np.pi * ((k[None, :] * m[:, None]) % n_fft) / n_fft)
        for i, win in enumerate((w, x * w, dw)):
            out[i, :, n] = (win * samples * phase).sum(-1)
    return out


def _theta(kind, n_fft, n_bins, n_frames, rng):
    if kind == "constant":
        return torch.tensor(float(n_fft), dtype=torch.float64)
    if kind == "frame":
        return torch.tensor(rng.uniform(0.3, 1.0, n_frames) * n_fft)
    if kind == "bin":
        return torch.tensor(rng.uniform(0.3, 1.0, (n_bins, 1)) * n_fft)
    return torch.tensor(rng.uniform(0.3, 1.0, (n_bins, n_frames)) * n_fft)


@pytest.mark.parametrize("window", sorted(BASES))
def test_spectra_at_theta_n_fft_match_direct_summation(window):
    rng = np.random.default_rng(1)
    n_fft, length = 64, 400
    signal = rng.standard_normal(length)
    positions = np.arange(0, length + 1, 16)
    spec, spec_t, spec_d = reassignment_spectra(
        torch.tensor(signal), n_fft=n_fft, window_length=float(n_fft), hop_length=16, window=window)
    ref = _reference_spectra(signal, n_fft, float(n_fft), positions, BASES[window])
    for got, want in zip((spec, spec_t, spec_d), ref, strict=True):
        scale = np.abs(want).max()
        assert np.abs(got.numpy() - want).max() <= 1e-6 * scale


@pytest.mark.parametrize("kind", ["constant", "frame", "bin", "tf"])
@pytest.mark.parametrize("window", ["hann", "gaussian"])
def test_operators_for_every_parameterisation_match_direct_summation(kind, window):
    rng = np.random.default_rng(2)
    n_fft, length = 32, 200
    signal = rng.standard_normal(length)
    positions = np.sort(rng.uniform(-5, length + 5, 15))  # fractional, unordered spacing
    n_bins = n_fft // 2 + 1
    theta = _theta(kind, n_fft, n_bins, len(positions), rng)
    ops = reassignment_operators(
        torch.tensor(signal), n_fft=n_fft, window_length=theta,
        frame_positions=torch.tensor(positions), window=window, threshold=1e-6)
    theta_np = theta.numpy() if kind != "frame" else theta.numpy()[None, :]
    spec, spec_t, spec_d = _reference_spectra(signal, n_fft, theta_np, positions, BASES[window])
    scale = np.abs(spec).max()
    assert np.abs(ops.spec.numpy() - spec).max() <= 1e-9 * scale
    power = np.abs(spec) ** 2
    moved = power > 1e-6 * power.max()
    assert np.array_equal(ops.moved.numpy(), moved)
    want_t = positions[None, :] + (spec_t * spec.conj()).real / power
    want_f = np.arange(n_bins)[:, None] - n_fft / (2 * np.pi) * (spec_d * spec.conj()).imag / power
    assert np.abs(ops.times.numpy() - want_t)[moved].max() <= 1e-6
    assert np.abs(ops.freqs.numpy() - want_f)[moved].max() <= 1e-6
    assert np.array_equal(ops.times.numpy()[~moved], np.broadcast_to(positions, moved.shape)[~moved])


def test_derivative_spectrum_is_minus_the_position_derivative_of_eq6():
    # ∂S/∂tₙ = −S_ω′: finite differences of the DSTFT itself, per-TF θ, fractional positions.
    rng = np.random.default_rng(3)
    n_fft, length = 32, 180
    x = torch.tensor(rng.standard_normal(length))
    positions = torch.tensor(np.sort(rng.uniform(10, length - 10, 9)))
    theta = _theta("tf", n_fft, n_fft // 2 + 1, 9, rng)
    _, _, spec_d = reassignment_spectra(x, n_fft=n_fft, window_length=theta,
                                        frame_positions=positions)
    h = 1e-6
    plus = dstft(x, n_fft=n_fft, window_length=theta, frame_positions=positions + h)
    minus = dstft(x, n_fft=n_fft, window_length=theta, frame_positions=positions - h)
    fd = (plus - minus) / (2 * h)
    assert (fd + spec_d).abs().max() <= 1e-6 * spec_d.abs().max()


@pytest.mark.parametrize("kind", ["frame", "tf"])
def test_operators_are_differentiable_in_theta_and_learned_positions(kind):
    rng = np.random.default_rng(4)
    n_fft, length = 16, 60
    x = torch.tensor(rng.standard_normal(length))
    positions = torch.tensor([10.3, 22.0, 31.7, 45.2], dtype=torch.float64, requires_grad=True)
    theta = _theta(kind, n_fft, n_fft // 2 + 1, 4, rng).requires_grad_(True)

    def operators(th, pos):
        ops = reassignment_operators(x, n_fft=n_fft, window_length=th, frame_positions=pos,
                                     threshold=0.0)
        return ops.times, ops.freqs

    assert torch.autograd.gradcheck(operators, (theta, positions), eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", ["constant", "frame", "tf"])
def test_dirac_is_reassigned_to_its_sample(kind):
    rng = np.random.default_rng(5)
    n_fft, length, k0 = 128, 1024, 517
    x = torch.zeros(length, dtype=torch.float64)
    x[k0] = 1.0
    positions = torch.arange(0, length, 16, dtype=torch.float64) + 0.25
    theta = _theta(kind, n_fft, n_fft // 2 + 1, len(positions), rng)
    ops = reassignment_operators(x, n_fft=n_fft, window_length=theta, frame_positions=positions)
    assert int(ops.moved.sum()) > 100
    assert (ops.times[ops.moved] - k0).abs().max() < 1e-8


@pytest.mark.parametrize("window", ["hann", "blackman", "gaussian"])
def test_tone_is_reassigned_to_its_frequency(window):
    rng = np.random.default_rng(6)
    n_fft, length, nu0 = 256, 4096, 0.1234  # ν₀·L = 31.59 bins, between two bins
    n = torch.arange(length, dtype=torch.float64)
    x = torch.cos(2 * math.pi * nu0 * n + 0.3)
    theta = _theta("tf", n_fft, n_fft // 2 + 1, 1 + length // 64, rng)
    ops = reassignment_operators(x, n_fft=n_fft, window_length=theta, hop_length=64, window=window)
    inner = slice(4, -4)  # frames entirely inside the signal
    near = slice(30, 34)  # the bins holding most of the tone's energy
    err = (ops.freqs[near, inner] - nu0 * n_fft).abs().max()
    assert err < 5e-3  # what remains is the tone's negative-frequency twin leaking in
    plain = torch.arange(30, 34, dtype=torch.float64)[:, None] - nu0 * n_fft
    assert plain.abs().max() > 1.5  # the fixed grid is off by up to 2.4 bins there


def test_linear_chirp_is_reassigned_onto_its_instantaneous_frequency():
    fs, n_fft, length = 8000.0, 256, 8000
    f0, rate = 500.0, 2000.0  # IF f(t) = f0 + rate·t (Hz)
    t = torch.arange(length, dtype=torch.float64) / fs
    x = torch.cos(2 * math.pi * (f0 * t + 0.5 * rate * t * t))
    theta = torch.linspace(120.0, 256.0, 1 + length // 32, dtype=torch.float64)
    ops = reassignment_operators(x, n_fft=n_fft, window_length=theta, hop_length=32,
                                 window="gaussian")
    power = ops.spec.abs() ** 2
    ridge = power.argmax(0)
    frames = torch.arange(10, power.shape[1] - 10)
    f_hat = ops.freqs[ridge[frames], frames] * fs / n_fft
    t_hat = ops.times[ridge[frames], frames] / fs
    truth = f0 + rate * t_hat
    assert (f_hat - truth).abs().max() < 0.5  # Hz; one bin is 31 Hz
    grid_error = (ridge[frames].double() * fs / n_fft - (f0 + rate * frames * 32 / fs)).abs()
    assert grid_error.max() > 5.0


def test_reassigned_spectrogram_concentrates_a_tone_and_keeps_its_energy():
    n_fft, length, nu0 = 256, 4096, 0.1234
    n = torch.arange(length, dtype=torch.float64)
    x = torch.cos(2 * math.pi * nu0 * n)
    reassigned, ops = reassigned_spectrogram(x, n_fft=n_fft, window_length=200.0, hop_length=64)
    power = ops.spec.abs() ** 2
    row = round(nu0 * n_fft)
    inner = slice(4, -4)
    assert power[row, inner].sum() / power[:, inner].sum() < 0.5
    assert reassigned[row, inner].sum() / reassigned[:, inner].sum() > 0.99
    # only the little energy of the lowest bins, moved below 0 Hz, leaves the grid
    assert torch.allclose(reassigned.sum(), power.sum(), rtol=1e-3)


def test_reassigned_spectrogram_drops_energy_moved_off_the_grid():
    x = torch.zeros(512, dtype=torch.float64)
    x[3] = 1.0  # seen only by the frame at 34, more than half a hop (8) before it
    reassigned, ops = reassigned_spectrogram(
        x, n_fft=64, window_length=64.0, frame_positions=torch.arange(34, 500, 16))
    assert int(ops.moved.sum()) > 10
    assert (ops.times[ops.moved] - 3).abs().max() < 1e-9
    assert float(reassigned.sum()) == 0.0


def test_moved_times_land_on_the_nearest_frame_for_unordered_positions():
    x = torch.zeros(600, dtype=torch.float64)
    x[290] = 1.0
    positions = torch.tensor([300.0, 100.0, 200.0, 400.0, 500.0])  # 290 is nearest to 300
    reassigned, _ = reassigned_spectrogram(x, n_fft=128, window_length=128.0,
                                           frame_positions=positions)
    per_frame = reassigned.sum(0)
    assert per_frame[0] == per_frame.sum() > 0


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), per_frame=st.booleans(),
       window=st.sampled_from(["hann", "gaussian", "hamming"]))
def test_synchrosqueezed_transform_inverts_exactly_for_constant_and_per_frame_theta(
        seed, per_frame, window):
    rng = np.random.default_rng(seed)
    n_fft, length = 32, 150
    x = torch.tensor(rng.standard_normal(length))
    positions = torch.arange(length, dtype=torch.float64) + (rng.uniform() if seed % 2 else 0.0)
    theta = (torch.tensor(rng.uniform(0.4, 1.0, length)) if per_frame
             else torch.tensor(rng.uniform(0.4, 1.0))) * n_fft
    sst, _ = synchrosqueeze(x, n_fft=n_fft, window_length=theta, frame_positions=positions,
                            window=window)
    samples = synchrosqueezed_sample_positions(positions)
    inside = samples < length
    rebuilt = synchrosqueezed_inverse(sst)[inside]
    assert (rebuilt - x[samples[inside]]).abs().max() <= 1e-10 * x.abs().max()


def test_synchrosqueezed_transform_float32_and_per_bin_theta():
    fs, length, n_fft = 8000.0, 4000, 256
    t = torch.arange(length, dtype=torch.float64) / fs
    x = torch.cos(2 * math.pi * (300 * t + 400 * t * t)) + 0.5 * torch.cos(2 * math.pi * 2500 * t)
    sst32, _ = synchrosqueeze(x.float(), n_fft=n_fft, window_length=200.0, hop_length=1)
    assert sst32.dtype == torch.complex64
    err32 = (synchrosqueezed_inverse(sst32)[:length].double() - x).abs().max()
    assert err32 < 1e-5
    theta_bin = torch.linspace(256.0, 128.0, n_fft // 2 + 1, dtype=torch.float64)[:, None]
    sst, _ = synchrosqueeze(x, n_fft=n_fft, window_length=theta_bin, hop_length=1)
    rebuilt = synchrosqueezed_inverse(sst)[:length]
    inner = slice(n_fft, length - n_fft)
    snr = 10 * torch.log10(x[inner].square().sum() / (rebuilt[inner] - x[inner]).square().sum())
    assert snr > 30  # approximate for per-bin θ: θ varies slowly across each component's bins
    # squeezing concentrates: the tone's energy sits in one or two rows
    row = round(2500 * n_fft / fs)
    tone_rows = sst[row - 1:row + 2, inner].abs().square().sum()
    assert tone_rows / sst[row - 8:row + 9, inner].abs().square().sum() > 0.99


def test_band_inverse_extracts_one_component():
    fs, length, n_fft = 8000.0, 3000, 256
    t = torch.arange(length, dtype=torch.float64) / fs
    low = torch.cos(2 * math.pi * 500 * t)
    high = 0.7 * torch.cos(2 * math.pi * 2000 * t + 1.0)
    sst, _ = synchrosqueeze(low + high, n_fft=n_fft, window_length=256.0, hop_length=1)
    edge = round(1200 * n_fft / fs)
    rebuilt = synchrosqueezed_inverse(sst, bins=slice(edge, None))[:length]
    inner = slice(n_fft, length - n_fft)
    snr = 10 * torch.log10(high[inner].square().sum() / (rebuilt[inner] - high[inner]).square().sum())
    assert snr > 40
    mask = torch.zeros(n_fft // 2 + 1, dtype=torch.bool)
    mask[edge:] = True
    assert torch.allclose(synchrosqueezed_inverse(sst, bins=mask), synchrosqueezed_inverse(
        sst, bins=slice(edge, None)), rtol=0, atol=1e-12)


def test_float32_inputs_give_float32_outputs():
    x = torch.randn(2, 300)
    ops = reassignment_operators(x, n_fft=64, window_length=torch.full((300 // 16 + 1,), 50.0),
                                 hop_length=16)
    assert ops.spec.dtype == torch.complex64
    assert ops.times.dtype == ops.freqs.dtype == torch.float32
    assert ops.times.shape == (2, 33, 300 // 16 + 1)
    reassigned, _ = reassigned_spectrogram(x, n_fft=64, window_length=50.0, hop_length=16)
    assert reassigned.dtype == torch.float32
    # batch items one by one equal the batch
    single = reassignment_operators(x[1], n_fft=64, window_length=torch.full((19,), 50.0),
                                    hop_length=16)
    assert torch.equal(single.freqs, ops.freqs[1])


def test_derived_windows_are_cached_and_named():
    assert time_weighted_window("hann") is time_weighted_window("hann")
    assert derivative_window("gaussian").name == "gaussian′"
