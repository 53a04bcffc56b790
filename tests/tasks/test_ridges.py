"""Several ridges keep their identity through a crossing."""

import numpy as np
import pytest
import torch

from dstft_cli.core import dstft
from dstft_cli.tasks.ridges import relink_crossings, ridge_candidates, track_ridges

FS, N_FFT, HOP = 8000.0, 256, 32


def _crossing_chirps():
    """A rising and a falling chirp crossing at 0.5 s; each is the louder one for half the time,
    so the strongest path alone turns at the crossing."""
    t = np.arange(8000) / FS
    rising = np.linspace(1.0, 0.8, t.size) * np.cos(2 * np.pi * (500 * t + 1500 * t * t))
    falling = np.linspace(0.8, 1.0, t.size) * np.cos(2 * np.pi * (3500 * t - 1500 * t * t))
    mag = dstft(torch.tensor(rising + falling), n_fft=N_FFT, window_length=256.0,
                hop_length=HOP).abs().numpy()
    frame_t = np.arange(mag.shape[1]) * HOP / FS
    truth = np.stack([500 + 3000 * frame_t, 3500 - 3000 * frame_t]) * N_FFT / FS
    return mag, truth


def test_crossing_chirps_keep_their_identity():
    mag, truth = _crossing_chirps()
    ridges = track_ridges(mag, 2)
    inner = slice(8, -8)  # frames whose window lies inside the signal
    for ridge, want in zip(ridges, truth, strict=True):
        err = np.abs(ridge - want)[inner]
        away = np.abs(truth[0] - truth[1])[inner] > 4  # outside the few merged frames
        assert err[away].max() < 0.3  # bins (31 Hz each)
        assert np.median(err) < 0.05


def test_without_relinking_the_strongest_path_turns_at_the_crossing():
    mag, truth = _crossing_chirps()
    ridges = track_ridges(mag, 2, contact=-1.0)  # no contact is ever found
    late = slice(-60, -8)
    # the first ridge started on the rising chirp and ends on the falling one
    assert np.abs(ridges[0, 8:60] - truth[0, 8:60]).max() < 0.3
    assert np.abs(ridges[0, late] - truth[1, late]).max() < 0.3
    assert np.array_equal(relink_crossings(ridges)[0, late].round(6), ridges[1, late].round(6))


def test_relink_exchanges_tails_only_when_that_keeps_the_slopes():
    n = np.arange(100, dtype=np.float64)
    crossed = np.stack([50 + 0.3 * (n - 50), 50 - 0.3 * (n - 50), 80 + 0 * n])
    assert np.array_equal(relink_crossings(crossed), crossed)
    turned = crossed.copy()
    turned[:2, 51:] = turned[1::-1, 51:]  # each ridge bounces off the other (a V and a Λ)
    assert np.allclose(relink_crossings(turned), crossed)


def test_candidates_are_the_largest_peaks_refined_to_fractions_of_a_bin():
    m = np.arange(64, dtype=np.float64)[:, None]
    mag = np.exp(-0.5 * (m - 20.3) ** 2) + 0.5 * np.exp(-0.5 * (m - 40.0) ** 2) + np.zeros((1, 3))
    found = ridge_candidates(mag, 3)
    assert found.bins[0][:2].tolist() == [20, 40]
    assert abs(found.freqs[0, 0] - 20.3) < 0.05
    assert abs(found.freqs[0, 1] - 40.0) < 1e-9
    only = ridge_candidates(mag, 3, band=(30, 63))
    assert only.bins[0, 0] == 40
    assert ridge_candidates(mag, 1, band=(0, 30)).bins[0, 0] == 20


@pytest.mark.parametrize("kwargs, message", [
    ({"count": 0}, "number of ridges"), ({"count": 1, "slope_penalty": -1.0}, "slope_penalty"),
    ({"count": 1, "band": (10, 200)}, "band"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        track_ridges(np.ones((129, 10)), **kwargs)
