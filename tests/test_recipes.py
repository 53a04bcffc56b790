"""Recipes (paper Sec. VI): tensors in, results out — checked against grid search and Eq. (6)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dstft_cli import DSTFT, recipes
from dstft_cli.config import RECIPES, override
from dstft_cli.core import dstft, losses
from dstft_cli.core.transform import frame_count


def fm_signal(n: int = 2000, seed: int = 0) -> torch.Tensor:
    """A sinusoidal-FM component, a close tone and a transient in light noise (float64).

    Its entropy has an interior optimum in constant θ (about 80 samples at n_fft 128, hop 16).
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n) / n
    x = np.sin(2 * np.pi * (300 * t + 15 * np.sin(2 * np.pi * 4 * t)))
    x += 0.8 * np.sin(2 * np.pi * 250 * t)
    x[n // 2:n // 2 + 8] += 4 * np.hanning(10)[1:9]
    return torch.from_numpy(x + 0.05 * rng.standard_normal(n))


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return fm_signal()


def small(mode: str, **kw):
    return override(RECIPES[mode], **{"n_fft": 128, "hop": 16, "min_length": 8.0, **kw})


def grid_argmin(x, cfg) -> float:
    grid = recipes.scan(x, cfg, list(range(int(cfg.min_length), cfg.n_fft + 1)))
    return grid.best_length


@pytest.fixture(scope="module")
def grid_optimum(x) -> float:
    return grid_argmin(x, small("constant"))


@pytest.mark.parametrize("optimizer, lr", [("scalar", 1.0), ("adam", 1.0), ("adam", 4.0)])
def test_constant_lands_on_the_grid_search_optimum(x, grid_optimum, optimizer, lr):
    cfg = small("constant", optimizer=optimizer, lr=lr)
    result = recipes.run(x, cfg)
    theta = float(result.window_length)
    assert abs(theta - grid_optimum) <= 0.01 * grid_optimum, (theta, grid_optimum)
    assert 20 < grid_optimum < 120  # an interior optimum, not a bound
    # and its loss is at least as good as the best integer θ
    best = recipes.scan(x, cfg, [grid_optimum]).losses[0]
    assert result.loss_final <= best + 1e-4 * abs(best)


def test_constant_from_a_far_start_without_scan(x, grid_optimum):
    cfg = small("constant", init_length=20.0, init_scan=0)
    result = recipes.run(x, cfg)
    assert abs(float(result.window_length) - grid_optimum) <= 0.01 * grid_optimum
    assert result.loss_final < result.loss_initial


def test_start_candidates_include_the_n_fft_over_k_cusps():
    cands = recipes.start_candidates(small("constant"))
    assert {128.0, 64.0, 32.0, 16.0} <= set(cands)
    assert min(cands) >= 8.0 and max(cands) <= 128.0 and cands == sorted(cands)


def check_result(x, cfg, result):
    """Shapes, finiteness, and |S| exactly the transform of the returned parameters."""
    M = cfg.n_fft // 2 + 1
    N = frame_count(x.shape[-1], cfg.hop)
    assert result.magnitude.shape == (*x.shape[:-1], M, N)
    assert result.frame_positions.shape == (N,)
    expected_theta_shape = {"constant": (), "time": (N,), "freq": (M, 1), "tf": (M, N),
                            "hop": (N,)}[cfg.mode]
    assert tuple(result.window_length.shape) == expected_theta_shape
    grid = result.window_length_grid
    assert grid.dim() == 2 and np.broadcast_shapes(tuple(grid.shape), (M, N)) == (M, N)
    theta = result.window_length
    assert torch.isfinite(theta).all() and torch.isfinite(result.magnitude).all()
    assert theta.min() >= cfg.min_length - 1e-9 and theta.max() <= cfg.n_fft + 1e-9
    recomputed = dstft(x, n_fft=cfg.n_fft, window_length=theta,
                       frame_positions=result.frame_positions, window=cfg.window).abs()
    torch.testing.assert_close(result.magnitude, recomputed, rtol=1e-12, atol=1e-12)
    assert all(math.isfinite(v) for v in result.loss_history)
    assert result.loss_history[0] == result.loss_initial
    assert result.iterations >= 1
    # the reported losses are the objective (with its penalties) at the nominal start and at the
    # returned parameters, whichever engine computed them
    probe = DSTFT(n_fft=cfg.n_fft, hop_length=cfg.hop, signal_length=x.shape[-1],
                  window=cfg.window, length_mode=recipes.LENGTH_MODE[cfg.mode],
                  init_length=cfg.n_fft / 2 if cfg.init_length is None else cfg.init_length,
                  min_length=cfg.min_length, max_length=cfg.max_length, dtype=x.dtype)
    if cfg.mode != "hop":
        with torch.no_grad():
            start = float(recipes._objective(probe, x, cfg)())
            probe.theta.copy_(theta.to(probe.theta.dtype).reshape(probe.theta.shape))
            end = float(recipes._objective(probe, x, cfg)())
        assert result.loss_initial == pytest.approx(start, rel=1e-5)
        assert result.loss_final == pytest.approx(end, rel=1e-5)


@pytest.mark.parametrize("mode", ["time", "freq", "tf", "hop"])
def test_every_mode_improves_its_loss(x, mode):
    cfg = small(mode, iters=12, hop=32)
    result = recipes.run(x, cfg)
    check_result(x, cfg, result)
    assert result.loss_final < result.loss_initial
    assert result.mode == mode and result.loss == cfg.loss


def test_tf_with_init_constant_starts_from_the_constant_optimum(x, grid_optimum):
    cfg = small("tf", iters=1, patience=1, init="constant")
    result = recipes.run(x, cfg)
    # one relative Adam step (lr · θ) away from the constant optimum at most
    theta = result.window_length
    assert (theta - grid_optimum).abs().max() <= (0.01 + 1.01 * cfg.lr) * grid_optimum


def test_tf_starts_where_the_time_stage_ends(x):
    # θₙ copied to every bin is a tf point with the time stage's objective (entropy + λ·TV):
    # the tf stage's first value is the time stage's best, and tf only improves on it
    cfg = small("tf", iters=6, dtype="float64")
    assert cfg.init == "time"
    result = recipes.run(x, cfg)
    starts = dict(result.stage_starts)
    assert list(starts) == ["constant", "time", "tf"]
    history = result.loss_history
    time_part = history[starts["time"]:starts["tf"]]
    tf_part = history[starts["tf"]:]
    assert len(time_part) > 1 and len(tf_part) == 6
    assert tf_part[0] == pytest.approx(min(time_part), rel=1e-9)
    assert result.loss_final <= min(time_part) + 1e-9
    assert min(time_part) < history[starts["time"]]  # the time stage did move

    time_only = recipes.run(x, replace(cfg, mode="time", init="constant", iters=150))
    own = time_only.loss_history[dict(time_only.stage_starts)["time"]:]
    assert time_part == pytest.approx(own, rel=1e-9)


def test_hop_mode_learns_positions_with_the_coverage_penalty(x):
    cfg = small("hop", iters=15, hop=32)
    result = recipes.run(x, cfg)
    positions = result.frame_positions
    assert positions.dtype == torch.float64
    assert not torch.equal(positions, torch.arange(positions.numel(), dtype=torch.float64) * 32)
    assert (positions[1:] >= positions[:-1]).all()
    cover = losses.coverage(positions, result.window_length, x.shape[-1])
    assert float(cover) > 0.9


def test_renyi_and_kurtosis_losses(x):
    for loss in ("renyi:3", "kurtosis"):
        cfg = small("constant", loss=loss, iters=10)
        result = recipes.run(x, cfg)
        assert result.loss == loss and result.loss_final <= result.loss_initial
    # kurtosis is maximised: the recorded (minimised) loss is its negative
    k = recipes.objective_value(x, small("constant", loss="kurtosis"), window_length=64.0)
    assert k < 0


def test_multichannel_signals_share_the_parameters(x):
    stereo = torch.stack([x, 0.5 * x.flip(0)])
    cfg = small("time", iters=5, hop=32)
    result = recipes.run(stereo, cfg)
    check_result(stereo, cfg, result)


def test_non_finite_losses_are_stepped_back_and_recorded(x, monkeypatch):
    real = losses.shannon_entropy
    calls = {"n": 0}

    def flaky(mag):
        calls["n"] += 1
        value = real(mag)
        return value * float("nan") if calls["n"] in (4, 5) else value

    monkeypatch.setattr(losses, "shannon_entropy", flaky)
    cfg = small("constant", optimizer="adam", init_scan=0, init_length=40.0, iters=30)
    result = recipes.run(x, cfg)
    assert result.events and result.events[0]["event"].startswith("non-finite")
    assert result.events[0]["stage"] == "constant"
    assert math.isfinite(result.loss_final) and math.isfinite(float(result.window_length))
    assert torch.isfinite(result.magnitude).all()


def test_always_non_finite_raises_a_recipe_error(x, monkeypatch):
    monkeypatch.setattr(losses, "shannon_entropy", lambda spec: spec.abs().sum() * float("nan"))
    with pytest.raises(recipes.RecipeError, match="non-finite"):
        recipes.run(x, small("time", iters=3, init="fixed"))


def test_scan_matches_direct_entropies(x):
    cfg = small("constant")
    result = recipes.scan(x, cfg, [16, 64.5, 128])
    for theta, value in zip(result.lengths, result.losses, strict=True):
        mag = dstft(x.float(), n_fft=128, window_length=theta, hop_length=16).abs()
        assert value == pytest.approx(float(losses.shannon_entropy(mag)), rel=1e-6)
    assert result.best_length in result.lengths


def test_bad_inputs():
    with pytest.raises(ValueError, match="shape"):
        recipes.run(torch.zeros(2, 2, 100), small("constant"))
    with pytest.raises(TypeError):
        recipes.run(np.zeros(100), small("constant"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mode"):
        recipes.run(torch.zeros(100), dataclasses.replace(small("constant"), mode="nope"))


def test_recipes_are_deterministic(x):
    cfg = small("time", iters=5, hop=32)
    a, b = recipes.run(x, cfg), recipes.run(x, cfg)
    assert torch.equal(a.window_length, b.window_length)
    assert a.loss_history == b.loss_history


@settings(max_examples=8, deadline=None)
@given(
    seed=st.integers(0, 2 ** 16),
    n=st.integers(300, 900),
    mode=st.sampled_from(["constant", "time", "hop"]),
    n_fft=st.sampled_from([32, 64]),
    loss=st.sampled_from(["shannon", "renyi:2", "kurtosis"]),
    scale=st.floats(1e-3, 1e3),
)
def test_random_signals_give_finite_exact_results(seed, n, mode, n_fft, loss, scale):
    rng = np.random.default_rng(seed)
    signal = torch.from_numpy(scale * rng.standard_normal(n))
    cfg = override(RECIPES[mode], n_fft=n_fft, hop=n_fft // 4, min_length=4.0, iters=4,
                   loss=loss)
    result = recipes.run(signal, cfg)
    check_result(signal, cfg, result)
    assert result.loss_final <= result.loss_initial + 1e-6 * abs(result.loss_initial) or (
        cfg.mode == "hop")


@pytest.mark.slow
def test_recipes_module_imports_no_click():
    import subprocess
    import sys

    code = "import sys, dstft_cli.recipes; print('click' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("kind", ["constant", "frame", "bin", "tf"])
@pytest.mark.parametrize("integer_positions", [True, False])
def test_final_spectrogram_in_blocks_equals_one_transform(x, kind, integer_positions, monkeypatch):
    # The recipes' final |S| is computed in blocks of frames (memory); every frame of Eq. (6) is
    # independent, so blocks of 7 frames must give exactly the one-shot transform.
    monkeypatch.setattr(recipes, "_FINAL_BLOCK_FRAMES", 7)
    config = small("constant")
    gen = torch.Generator().manual_seed(5)
    n_frames = frame_count(x.shape[-1], 16)
    positions = 16 * torch.arange(n_frames)
    if not integer_positions:
        positions = positions + torch.rand(n_frames, dtype=torch.float64, generator=gen)
    shape = {"constant": (), "frame": (n_frames,), "bin": (65, 1), "tf": (65, n_frames)}[kind]
    theta = 8 + 120 * torch.rand(shape, dtype=torch.float64, generator=gen)
    batch = torch.stack([x, x.flip(0)])
    blocks = recipes.final_magnitude(batch, config, theta, positions)
    whole = dstft(batch, n_fft=128, window_length=theta, frame_positions=positions).abs()
    assert blocks.shape == whole.shape == (2, 65, n_frames)
    assert torch.allclose(blocks, whole, rtol=1e-12, atol=1e-15)


def test_progress_reports_every_iteration_with_the_theta_range(x):
    seen = []

    def progress(stage, iteration, loss, theta):
        seen.append((stage, iteration, loss, f"{theta}"))

    cfg = small("time", iters=4, patience=10, hop=32)
    result = recipes.run(x, cfg, progress=progress)
    stages = [s for s, *_ in seen]
    assert stages == ["constant"] * stages.count("constant") + ["time"] * 4
    assert [v for s, _, v, _ in seen if s == "time"] == result.loss_history[-4:]
    constant = [t for s, *_, t in seen if s == "constant"]
    assert all(t.startswith("θ=") and cfg.min_length <= float(t[2:]) <= 128 for t in constant)
    for text in (t for s, *_, t in seen if s == "time"):
        low, high = (float(v) for v in text.removeprefix("θ∈[").removesuffix("]").split(","))
        assert cfg.min_length - 0.5 <= low <= high <= 128.5
