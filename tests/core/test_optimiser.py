"""Optimisers: reaching the grid-search optimum, undoing non-finite steps (the losses are in
tests/core/test_losses.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dstft_cli import DSTFT, dstft, losses, optimise
from dstft_cli.core.optimiser import Adam

F64 = torch.float64


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


def test_relative_adam_steps_are_a_fraction_of_each_value():
    # a constant gradient: each relative step shrinks every element by the factor (1 − lr),
    # whatever its scale, where an absolute step would move each by lr
    p = torch.nn.Parameter(torch.tensor([10.0, 1000.0, 8192.0], dtype=torch.float64))
    start = p.detach().clone()
    optimise([p], lambda: p.sum(), method="adam", lr=0.05, max_iter=11, tol=0.0, patience=100,
             relative=True)
    # the best (last) point is restored: ten steps were taken
    torch.testing.assert_close(p.detach() / start, torch.full((3,), 0.95**10, dtype=torch.float64),
                               rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match="relative"):
        optimise([p], lambda: p.sum(), method="lbfgs", relative=True)


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


def test_a_non_finite_gradient_at_a_finite_loss_is_undone_and_recorded():
    # √|p| is finite at 0 but its derivative is not: every step from there is refused, the step
    # halves until it is negligible, and the parameters stay where they were
    p = torch.tensor([0.0, 2.0], dtype=F64, requires_grad=True)
    result = optimise([p], lambda: p.abs().sqrt().sum(), method="adam", lr=1.0, max_iter=100)
    assert torch.equal(p.detach(), torch.tensor([0.0, 2.0], dtype=F64))
    assert {e["event"] for e in result.events[:-1]} == {"non-finite gradient"}
    assert result.events[-1]["event"] == "step too small, stopped"
    assert result.events[-2]["lr"] < 1e-6 and result.loss_history == []


@settings(max_examples=25, deadline=None)
@given(shape=st.sampled_from([(1,), (7,), (3, 5)]), lr=st.floats(1e-3, 10.0),
       steps=st.integers(1, 40), seed=st.integers(0, 2**16), skip=st.booleans())
def test_adam_follows_torch_optim_adam_exactly(shape, lr, steps, seed, skip):
    # the own Adam exists only to avoid torch.optim's import cost: its iterates must be
    # torch.optim.Adam's, including a parameter without a gradient and a restart of the moments
    gen = torch.Generator().manual_seed(seed)
    start = [torch.randn(shape, dtype=F64, generator=gen) for _ in range(2)]
    ours = [s.clone().requires_grad_() for s in start]
    theirs = [s.clone().requires_grad_() for s in start]
    a, b = Adam(ours, lr=lr), torch.optim.Adam(theirs, lr=lr)
    for step in range(steps):
        for params, opt in ((ours, a), (theirs, b)):
            opt.zero_grad(set_to_none=True)
            used = params[:1] if skip and step % 3 == 0 else params
            sum(((p - 0.3) ** 4 + torch.sin(3 * p)).sum() for p in used).backward()
            opt.step()
        if step == steps // 2:
            a.state.clear()
            b.state.clear()
    for p, q in zip(ours, theirs, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)
    assert not torch.equal(ours[0], start[0])
