"""Losses and optimisers: known values, finiteness, reaching the grid-search optimum."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dstft_cli import DSTFT, dstft, losses, optimise

F64 = torch.float64


def test_entropy_known_values():
    delta = torch.zeros(1, 4, 4, dtype=F64)
    delta[0, 1, 2] = 3.0
    assert float(losses.shannon_entropy(delta)) == pytest.approx(0.0, abs=1e-12)
    flat = torch.ones(4, 4, dtype=F64)
    assert float(losses.shannon_entropy(flat)) == pytest.approx(math.log(16))
    assert float(losses.renyi_entropy(flat, 3.0)) == pytest.approx(math.log(16))
    assert float(losses.renyi_entropy(flat, 1.0)) == pytest.approx(math.log(16))


def _entropy_by_autograd(magnitude):
    # Eq. (26) written out with plain torch ops: the reference for the fused autograd node.
    total = magnitude.sum(dim=(-2, -1), keepdim=True)
    p = magnitude / torch.where(total > 0, total, torch.ones_like(total))
    return (-(p * torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))).sum(dim=(-2, -1))).mean()


@pytest.mark.parametrize("case", ["positive", "sparse", "silent", "batched"])
def test_fused_entropy_gradient_equals_autograd_and_finite_differences(case):
    gen = torch.Generator().manual_seed(3)
    mag = torch.rand(6, 9, dtype=F64, generator=gen) + 0.05
    if case == "sparse":
        mag = mag * (torch.rand(6, 9, dtype=F64, generator=gen) > 0.6)
    elif case == "silent":
        mag = torch.zeros(6, 9, dtype=F64)
    elif case == "batched":
        mag = torch.rand(2, 3, 6, 9, dtype=F64, generator=gen)
        mag[1, 2] = 0.0
    a = mag.clone().requires_grad_()
    b = mag.clone().requires_grad_()
    value, ref = losses.shannon_entropy(a), _entropy_by_autograd(b)
    (ga,) = torch.autograd.grad(value, a)
    (gb,) = torch.autograd.grad(ref, b)
    assert float(value) == pytest.approx(float(ref), abs=1e-14)
    assert torch.allclose(ga, gb, rtol=1e-12, atol=1e-12)
    if case == "positive":
        assert torch.autograd.gradcheck(losses.shannon_entropy, (a,))


def test_losses_have_finite_gradients_on_silence():
    mag = torch.zeros(5, 7, dtype=F64, requires_grad=True)
    for value in (losses.shannon_entropy(mag), losses.renyi_entropy(mag, 0.5),
                  losses.renyi_entropy(mag, 3.0), losses.kurtosis(mag)):
        (g,) = torch.autograd.grad(value, mag)
        assert torch.isfinite(value) and torch.isfinite(g).all()
    theta = torch.full((5, 7), 3.0, dtype=F64, requires_grad=True)
    tv = losses.total_variation(theta)
    (g,) = torch.autograd.grad(tv, theta)
    assert float(tv) == 0.0 and torch.isfinite(g).all()


def test_kurtosis_of_a_line_spectrum_is_large():
    line = torch.zeros(101, 3, dtype=F64)
    line[10] = 1.0
    flat = torch.ones(101, 3, dtype=F64)
    assert float(losses.kurtosis(line)) == pytest.approx(101.0)
    assert float(losses.kurtosis(flat)) == pytest.approx(1.0)


def test_total_variation_counts_steps():
    theta = torch.tensor([[1.0, 1.0, 4.0]], dtype=F64)
    assert float(losses.total_variation(theta)) == pytest.approx(3.0, abs=1e-5)


def test_coverage_is_one_for_covering_frames_and_less_with_gaps():
    t = torch.arange(0, 1001, 100, dtype=F64)
    full = losses.coverage(t, torch.tensor(200.0, dtype=F64), 1000)
    gaps = losses.coverage(t, torch.tensor(50.0, dtype=F64), 1000)
    assert float(full) == pytest.approx(1.0)
    assert float(gaps) == pytest.approx(0.5)


def _test_signal(n=4000, sr=4000.0):
    t = torch.arange(n, dtype=F64) / sr
    x = torch.sin(2 * math.pi * (400 * t + 150 * torch.sin(2 * math.pi * 1.5 * t)))
    x = x + 0.8 * torch.sin(2 * math.pi * 700 * t)
    x[2000:2030] += 2.0 * torch.hann_window(30, dtype=F64)
    return x


def _grid_argmin(x, n_fft, hop):
    grid = torch.arange(16, n_fft + 1, 2, dtype=F64)
    values = [float(losses.shannon_entropy(dstft(x, n_fft=n_fft, window_length=g,
                                                 hop_length=hop).abs())) for g in grid]
    return float(grid[int(torch.tensor(values).argmin())]), min(values)


@pytest.mark.parametrize("method,lr,init", [("scalar", 1.0, 128.0), ("scalar", 1.0, 20.0),
                                            ("adam", 4.0, 128.0)])
def test_optimisers_reach_the_grid_optimum(method, lr, init):
    x = _test_signal()
    best_theta, best_loss = _grid_argmin(x, 256, 32)
    layer = DSTFT(n_fft=256, hop_length=32, init_length=init, dtype=F64)
    result = optimise(layer.parameters(), lambda: losses.shannon_entropy(layer.spectrogram(x)),
                      method=method, lr=lr, max_iter=400, tol=1e-6 if method == "adam" else 1e-4,
                      patience=30, bounds=(2.0, 256.0), project=layer.project_)
    theta = float(layer.window_length)
    assert abs(theta - best_theta) <= 0.01 * best_theta + 1.0  # grid step is 2 samples
    assert result.best_loss <= best_loss + 1e-9
    assert result.loss_history[0] >= result.best_loss
    if method == "scalar":
        assert result.evaluations <= 30


def test_non_finite_steps_are_undone_and_recorded():
    p = torch.tensor([3.0], dtype=F64, requires_grad=True)
    calls = {"n": 0}

    def closure():
        calls["n"] += 1
        if calls["n"] in (2, 3):
            return p.sum() * float("nan")
        return ((p - 1.0) ** 2).sum()

    result = optimise([p], closure, method="adam", lr=0.5, max_iter=100, patience=20)
    assert torch.isfinite(p).all()
    assert [e["event"] for e in result.events[:2]] == ["non-finite loss", "non-finite loss"]
    assert result.events[1]["lr"] == pytest.approx(0.125)
    assert all(math.isfinite(v) for v in result.loss_history)
    assert abs(float(p) - 1.0) < 0.05


def test_optimise_argument_errors():
    p = torch.tensor(1.0, requires_grad=True)
    with pytest.raises(ValueError, match="bounds"):
        optimise([p], lambda: p**2, method="scalar")
    with pytest.raises(ValueError, match="method"):
        optimise([p], lambda: p**2, method="sgd")
    with pytest.raises(ValueError, match="requires grad"):
        optimise([torch.tensor(1.0)], lambda: p**2)


def test_lr_end_decays_the_adam_step_geometrically():
    # a linear loss has a constant gradient: each Adam step moves by ≈ the current step size
    p = torch.nn.Parameter(torch.tensor(0.0, dtype=torch.float64))
    seen = []
    optimise([p], lambda: p * 1.0, method="adam", lr=1.0, lr_end=0.01, max_iter=11,
             tol=0.0, patience=100, callback=lambda i, v: seen.append(-v))
    steps = np.diff(seen)
    np.testing.assert_allclose(steps, 0.01 ** (np.arange(10) / 10), rtol=1e-6)
    with pytest.raises(ValueError, match="lr_end"):
        optimise([p], lambda: p * 1.0, lr=1.0, lr_end=2.0)


def test_param_tol_stops_when_the_parameters_stall_not_the_loss():
    # the loss keeps falling by a large relative amount, but the step is tiny: only the
    # parameter rule can call it converged
    p = torch.nn.Parameter(torch.tensor(1.0, dtype=torch.float64))
    r = optimise([p], lambda: -1e9 * p, method="adam", lr=1e-4, max_iter=500, patience=5,
                 param_tol=1e-3)
    assert r.converged and r.iterations == 6
    assert float(p) == pytest.approx(1.0 + 5e-4, rel=1e-6)  # the best (last) point is kept
    loose = optimise([p], lambda: -1e9 * p, method="adam", lr=1e-4, max_iter=50, patience=5)
    assert not loose.converged and loose.iterations == 50
