"""Components cut from a DSTFT and resynthesised: full-band accuracy, bands, time ranges, ridges."""

import math

import numpy as np
import pytest
import torch

from dstft_cli.tasks.extract import (
    TransformParams,
    band_mask,
    check_band,
    extract_component,
    resynthesis_snr_db,
    ridge_mask,
    ridge_on_frames,
    snr_db,
)

FS, N_FFT, HOP, LENGTH = 8000.0, 128, 32, 2400


def _params(kind, dtype=torch.float64, seed=0):
    rng = np.random.default_rng(seed)
    n_frames, n_bins = 1 + LENGTH // HOP, N_FFT // 2 + 1
    theta = {
        "constant": torch.tensor(100.0),
        "frame": torch.tensor(rng.uniform(60, 128, n_frames)),
        "bin": torch.linspace(128, 60, n_bins)[:, None],
        "tf": torch.tensor(rng.uniform(90, 128, (n_bins, n_frames))),
    }[kind].to(dtype)
    return TransformParams(N_FFT, theta, torch.arange(n_frames) * HOP, FS)


def _signal(dtype=torch.float64):
    t = torch.arange(LENGTH, dtype=torch.float64) / FS
    low = torch.cos(2 * math.pi * 600 * t)
    high = 0.5 * torch.cos(2 * math.pi * (2200 * t + 500 * t * t) + 0.4)
    noise = 0.01 * torch.randn(LENGTH, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return (low + high + noise).to(dtype), low.to(dtype), high.to(dtype)


@pytest.mark.parametrize("kind", ["constant", "frame", "bin", "tf"])
def test_full_band_inverse_resynthesis_is_accurate_in_float64(kind):
    x, _, _ = _signal()
    assert resynthesis_snr_db(x, _params(kind)) >= 60


@pytest.mark.parametrize("kind", ["constant", "frame"])
def test_full_band_resynthesis_float32_and_from_the_synchrosqueezed_transform(kind):
    x, _, _ = _signal()
    assert resynthesis_snr_db(x, _params(kind), method="sst") >= 60
    x32 = x.float()
    params32 = _params(kind, torch.float32)
    assert resynthesis_snr_db(x32, params32) >= 90
    assert resynthesis_snr_db(x32, params32, method="sst") >= 90
    assert extract_component(x32, params32, None).signal.dtype == torch.float32


@pytest.mark.parametrize("method", ["inverse", "sst"])
@pytest.mark.parametrize("kind", ["constant", "frame"])
def test_band_extracts_one_component(method, kind):
    x, low, high = _signal()
    params = _params(kind)
    mask = band_mask(params.freqs, params.times, (1500.0, 4000.0))
    part = extract_component(x, params, mask, method=method)
    inner = slice(N_FFT, -N_FFT)
    assert snr_db(high[inner], part.signal[inner]) > 25
    assert 0.15 < part.energy_fraction < 0.25  # 0.5² / (1 + 0.5²) = 0.2


def test_time_range_silences_the_rest():
    x, low, _ = _signal()
    params = _params("constant")
    mask = band_mask(params.freqs, params.times, (0.0, 1200.0), time_range=(0.1, 0.2))
    part = extract_component(x, params, mask).signal
    t = np.arange(LENGTH) / FS
    inside = torch.from_numpy((t > 0.11) & (t < 0.19))
    outside = torch.from_numpy((t < 0.08) | (t > 0.22))
    assert snr_db(low[inside], part[inside]) > 25
    assert part[outside].abs().max() < 1e-3


def test_ridge_and_width_extract_a_chirp():
    x, _, high = _signal()
    params = _params("constant")
    ridge_t = np.linspace(0, LENGTH / FS, 50)
    ridge = ridge_on_frames(ridge_t, 2200 + 1000 * ridge_t, params.times, FS)
    part = extract_component(x, params, ridge_mask(params.freqs, ridge, 250.0)).signal
    inner = slice(N_FFT, -N_FFT)
    assert snr_db(high[inner], part[inner]) > 25
    narrow = ridge_mask(params.freqs, ridge, 0.0)
    assert (narrow.sum(0) == 1).all()


def test_batched_channels_match_one_by_one():
    x, low, high = _signal()
    both = torch.stack([x, low])
    params = _params("frame")
    mask = band_mask(params.freqs, params.times, (0.0, 1200.0))
    together = extract_component(both, params, mask, method="sst").signal
    alone = extract_component(low, params, mask, method="sst").signal
    assert torch.allclose(together[1], alone, atol=1e-12)


@pytest.mark.parametrize("band, message", [
    ((-1.0, 100.0), "outside 0…4000"), ((100.0, 4001.0), "outside"), ((300.0, 300.0), "empty"),
    ((500.0, 100.0), "empty"), ((math.nan, 100.0), "not finite"),
])
def test_bad_bands_are_refused(band, message):
    with pytest.raises(ValueError, match=message):
        check_band(*band, FS)


def test_band_and_time_range_without_bins_or_frames_are_refused():
    params = _params("constant")
    with pytest.raises(ValueError, match="holds no frequency bin"):
        band_mask(params.freqs, params.times, (10.0, 20.0))
    with pytest.raises(ValueError, match="holds no frame"):
        band_mask(params.freqs, params.times, (0.0, 4000.0), time_range=(5.0, 6.0))


@pytest.mark.parametrize("times, freqs, message", [
    (np.linspace(0, 0.1, 10), np.full(10, 500.0), "another recording"),
    (np.linspace(0, 0.3, 10), np.full(10, 5000.0), "another sample rate"),
    (np.array([0.0, 0.2, 0.1]), np.full(3, 500.0), "not increasing"),
    (np.array([0.0]), np.array([500.0]), "at least two"),
])
def test_ridges_of_another_recording_are_refused(times, freqs, message):
    params = _params("constant")
    with pytest.raises(ValueError, match=message):
        ridge_on_frames(times, freqs, params.times, FS)


def test_mask_of_another_grid_is_refused():
    x, _, _ = _signal()
    with pytest.raises(ValueError, match="mask has shape"):
        extract_component(x, _params("constant"), np.ones((10, 10), dtype=bool))
