"""Defaults that fit the recording: sample-rate defaults and n_fft auto find the interior optimum
(checked against grid searches), diagnostics, and results independent of the signal's scale.

Real recordings come from ``../shared/data`` beside the repository (or ``$DSTFT_SHARED_DATA``);
the tests that need them are skipped with a message when it is absent.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dstft_cli import recipes
from dstft_cli.config import RECIPES, override
from dstft_cli.core import dstft

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DSTFT_SHARED_DATA", ROOT.parent / "shared" / "data"))


def shared_file(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"real recordings not available ({path} is absent)")
    return path


def read_mono(path: Path) -> tuple[torch.Tensor, float]:
    import soundfile as sf

    data, rate = sf.read(path, dtype="float32", always_2d=True)
    return torch.from_numpy(data.mean(axis=1)), float(rate)


def grid_optimum(x: torch.Tensor, config, around: float, spread: float = 0.15,
                 points: int = 61) -> float:
    """θ of the smallest loss on a grid of ``points`` lengths within ±spread of ``around``."""
    top = float(config.n_fft if config.max_length is None else config.max_length)
    lengths = np.linspace(max(config.min_length, around * (1 - spread)),
                          min(top, around * (1 + spread)), points)
    return recipes.scan(x, config, list(lengths)).best_length


def no_bound_warning(result) -> bool:
    return not any("bound" in w for w in result.warnings)


# --------------------------------------------------------------------------------------------
# synthetic recordings at 8 to 48 kHz: linear chirps whose optimum needs a larger n_fft


def chirp(rate: float, seconds: float = 1.0, sweep_hz_per_s: float = 100.0) -> torch.Tensor:
    t = np.arange(int(seconds * rate)) / rate
    return torch.from_numpy(np.cos(2 * np.pi * (0.1 * rate * t + 0.5 * sweep_hz_per_s * t * t))
                            ).to(torch.float32)


def check_defaults_find_the_optimum(rate: float) -> None:
    x = chirp(rate)
    result = recipes.run(x, RECIPES["constant"], sample_rate=rate)
    theta = float(result.window_length)
    # the optimum lies beyond the default n_fft (128 ms): auto doubled it
    assert result.n_fft > 0.128 * rate and "doubled" in result.n_fft_reason
    assert result.hop == int(2 ** math.floor(math.log2(0.128 * rate))) // 8
    best = grid_optimum(x, result.config, theta)
    assert theta == pytest.approx(best, rel=0.01)
    assert result.config.min_length < 0.9 * theta and theta < 0.9 * result.n_fft  # interior
    assert no_bound_warning(result), result.warnings
    # the initial loss is measured at the n_fft used: comparable with the final one
    assert result.loss_final < result.loss_initial
    start = recipes.objective_value(x, result.config, window_length=result.n_fft / 2)
    assert result.loss_initial == pytest.approx(start, rel=1e-5)


def test_defaults_find_the_interior_optimum_at_8_khz():
    check_defaults_find_the_optimum(8000)


@pytest.mark.slow
@pytest.mark.parametrize("rate", [16000, 44100, 48000])
def test_defaults_find_the_interior_optimum_at_16_to_48_khz(rate):
    check_defaults_find_the_optimum(rate)


def test_a_fixed_n_fft_reports_the_bound():
    x = chirp(8000)
    result = recipes.run(x, override(RECIPES["constant"], n_fft=1024), sample_rate=8000)
    assert result.n_fft == 1024 and result.n_fft_reason == "given"
    assert float(result.window_length) >= 0.99 * 1024
    assert any("upper bound" in w for w in result.warnings), result.warnings


# --------------------------------------------------------------------------------------------
# the speech recording and FSDD


@pytest.mark.slow
def test_speech_recording_defaults_find_the_shannon_optimum():
    x, rate = read_mono(shared_file("real", "jfk.flac"))
    assert rate == 44100
    result = recipes.run(x, RECIPES["constant"], sample_rate=rate)
    theta = float(result.window_length)
    assert result.n_fft == 4096 and result.hop == 512
    assert 2100 < theta < 2450  # about 51 ms
    assert theta == pytest.approx(grid_optimum(x, result.config, theta, 0.1, 41), rel=0.01)
    assert result.converged and result.warnings == []


def test_fsdd_digit_with_two_minima():
    x, rate = read_mono(shared_file("fsdd", "recordings", "3_nicolas_36.wav"))
    # defaults: only windows that cover the signal (θ ≥ hop): the ≈ 350-sample basin
    default = recipes.run(x, RECIPES["constant"], sample_rate=rate)
    assert default.hop == 128 and float(default.window_length) >= 128
    assert 300 < float(default.window_length) < 400
    assert not any("cover" in w for w in default.warnings), default.warnings
    # an explicit --min-length below the hop finds the ≈ 24-sample windows, which leave gaps
    short = recipes.run(x, override(RECIPES["constant"], min_length=16.0), sample_rate=rate)
    assert 20 < float(short.window_length) < 30
    gaps = [w for w in short.warnings if "cover" in w]
    assert len(gaps) == 1 and "< hop 128" in gaps[0]
    share = float(gaps[0].split("cover ")[1].split(" %")[0])
    assert 10 < share < 30
    minima = [m["window_length"] for m in short.scan_minima]
    assert any(20 < t < 30 for t in minima) and any(300 < t < 400 for t in minima)
    near = [w for w in short.warnings if "near-equal minima" in w]
    assert len(near) == 1 and "loss" in near[0]
    losses = [m["loss"] for m in short.scan_minima]
    assert losses == sorted(losses) and (losses[-1] - losses[0]) <= 0.01 * abs(losses[0])


# --------------------------------------------------------------------------------------------
# other diagnostics


def test_stopped_by_iters_while_improving_is_not_converged():
    x = chirp(8000, 0.5)
    config = override(RECIPES["time"], n_fft=256, hop=64, iters=2, init="fixed")
    result = recipes.run(x, config, sample_rate=8000)
    assert result.converged is False
    assert any(w.startswith("not converged") for w in result.warnings), result.warnings


def test_per_frame_lengths_at_a_bound_are_reported():
    x = chirp(8000, 0.5, sweep_hz_per_s=5.0)  # nearly a tone: every θₙ wants to be long
    config = override(RECIPES["time"], n_fft=128, hop=32, iters=40, init="fixed")
    result = recipes.run(x, config, sample_rate=8000)
    theta = result.window_length
    share = float((theta >= 0.99 * 128).double().mean())
    assert share > 0.1
    assert any("% of the window lengths are at the upper bound" in w for w in result.warnings)


@pytest.mark.slow
def test_per_frame_lengths_at_the_auto_bound_grow_n_fft():
    rate = 8000
    t = np.arange(2 * rate) / rate
    # a fast chirp (short windows) then a steady tone (windows as long as allowed)
    x = np.where(t < 0.8, np.cos(2 * np.pi * (500 * t + 3000 * t * t)),
                 np.cos(2 * np.pi * 1500 * t))
    config = override(RECIPES["time"], iters=60)
    result = recipes.run(torch.from_numpy(x).to(torch.float32), config, sample_rate=rate)
    assert result.n_fft > 1024 and "% of the time lengths at n_fft = 1024: doubled" in (
        result.n_fft_reason)
    theta = result.window_length
    assert float(theta.max()) > 1024  # the tone's windows use the room
    assert float((theta >= 0.99 * result.n_fft).double().mean()) <= 0.1 or any(
        "upper bound" in w for w in result.warnings)
    assert sum(w.startswith("not converged") for w in result.warnings) <= 1


def test_covered_share_counts_the_ends():
    positions = torch.tensor([0.0, 100.0, 200.0], dtype=torch.float64)
    assert recipes.covered_share(positions, torch.full((3,), 100.0, dtype=torch.float64),
                                 250) == pytest.approx(1.0)
    assert recipes.covered_share(positions, torch.full((3,), 20.0, dtype=torch.float64),
                                 250) == pytest.approx(50 / 250)


# --------------------------------------------------------------------------------------------
# scale


def _signal(seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    t = np.arange(1500) / 4000
    x = np.cos(2 * np.pi * (300 * t + 4000 * t * t)) + 0.3 * rng.standard_normal(t.size)
    return torch.from_numpy(x)


SMALL = override(RECIPES["constant"], n_fft=128, hop=16, min_length=8.0, init_scan=8, iters=20)


@functools.lru_cache
def _reference(seed: int):
    return recipes.run(_signal(seed).to(torch.float32), SMALL)


@settings(max_examples=10, deadline=None)
@given(exponent=st.integers(-30, 30), seed=st.integers(0, 1))
def test_float32_results_do_not_depend_on_the_scale(exponent, seed):
    x = _signal(seed)
    reference = _reference(seed)
    scale = 10.0 ** exponent
    scaled = (x * scale).to(torch.float32)
    result = recipes.run(scaled, SMALL)
    # x·10^k rounds differently from x in float32, so the line search may end a little
    # elsewhere; without the normalisation 1e-30 gives θ 27 % off and non-finite steps
    assert float(result.window_length) == pytest.approx(float(reference.window_length),
                                                        rel=2e-3)
    assert result.loss_final == pytest.approx(reference.loss_final, rel=1e-5)
    assert result.events == []
    assert result.scale == 2.0 ** math.frexp(float(scaled.abs().max()))[1]
    # the saved magnitude is |S| of the signal as given, not of the normalised one
    exact = dstft(scaled.to(torch.float64), n_fft=128, window_length=result.window_length,
                  hop_length=16).abs().to(torch.float32)
    assert torch.allclose(result.magnitude, exact, rtol=1e-4, atol=1e-6 * float(exact.max()))


def test_degenerate_signals_are_refused():
    lone = torch.zeros(2000, dtype=torch.float64)
    lone[700] = 1e-300
    with pytest.raises(ValueError, match="single non-zero sample"):
        recipes.run(lone, SMALL)
    with pytest.raises(ValueError, match="all zeros"):
        recipes.run(torch.zeros(2000), SMALL)
    # a tiny signal with structure is a signal: normalised, it gives the result at scale 1
    x = _signal(0)
    tiny = recipes.run(x * 1e-300, SMALL)
    assert float(tiny.window_length) == pytest.approx(
        float(recipes.run(x, SMALL).window_length), rel=2e-3)
