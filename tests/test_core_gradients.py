"""Gradients: window derivatives, gradcheck of every parameterisation, custom vs plain autograd."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import functional_call

from dstft_cli import DSTFT, dstft
from dstft_cli.core import available_windows, evaluate_window, get_window

F64 = torch.float64


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(available_windows()), theta=st.floats(2.0, 500.0),
       u=st.floats(-0.49, 0.49))
def test_window_derivatives_match_finite_differences(name, theta, u):
    win = get_window(name)
    x = torch.tensor(u * theta, dtype=F64)
    th = torch.tensor(theta, dtype=F64)
    _, d_theta, d_x = evaluate_window(win, x, th, d_theta=True, d_x=True)
    h = 1e-6 * theta
    def w(xv, tv):
        return evaluate_window(win, xv, tv)[0]
    fd_theta = (w(x, th + h) - w(x, th - h)) / (2 * h)
    fd_x = (w(x + h, th) - w(x - h, th)) / (2 * h)
    scale = float(w(x, th).abs()) / theta + 1e-12
    assert abs(float(d_theta - fd_theta)) < 1e-5 * scale * 10 + 1e-10
    assert abs(float(d_x - fd_x)) < 1e-5 * scale * 10 + 1e-10


@pytest.mark.parametrize("name", available_windows())
def test_window_l1_norm_does_not_depend_on_theta(name):
    win = get_window(name)
    norms = []
    for theta in (50.0, 200.0, 800.0):
        x = torch.linspace(-theta / 2, theta / 2, 200001, dtype=F64)
        w, _, _ = evaluate_window(win, x, torch.tensor(theta, dtype=F64))
        norms.append(float(torch.trapezoid(w, x)))
    assert max(norms) - min(norms) < 1e-6 * max(norms)


LENGTH_MODES = ["constant", "frame", "bin", "tf"]
POSITION_MODES = ["fixed", "frame", "hop", "hops"]


@pytest.mark.parametrize("length_mode,position_mode",
                         list(itertools.product(LENGTH_MODES, POSITION_MODES))
                         + [("constant", "overlap"), ("frame", "overlap")])
@pytest.mark.parametrize("bounds", ["project", "sigmoid"])
def test_gradcheck_every_parameterisation(length_mode, position_mode, bounds):
    gen = torch.Generator().manual_seed(7)
    n_fft, length = 16, 60
    layer = DSTFT(n_fft=n_fft, hop_length=7, signal_length=length, length_mode=length_mode,
                  position_mode=position_mode, init_length=9.3, min_length=4.0, bounds=bounds,
                  dtype=F64)
    with torch.no_grad():  # move off the initial integer grid and off uniform lengths
        for p in layer.parameters():
            p.add_(0.3 * torch.rand(p.shape, dtype=F64, generator=gen) + 0.11)
    x = torch.randn(2, length, dtype=F64, generator=gen, requires_grad=True)
    names = [n for n, _ in layer.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for _, p in layer.named_parameters())

    def f(x, *ps):
        return functional_call(layer, dict(zip(names, ps, strict=True)), (x,))

    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("kind", ["constant", "frame", "bin", "tf"])
def test_fused_backward_equals_plain_autograd(kind):
    gen = torch.Generator().manual_seed(8)
    n_fft, length = 64, 700
    positions = (torch.arange(0, 700, 30, dtype=F64) + torch.rand(24, dtype=F64, generator=gen))
    shape = {"constant": (), "frame": (24,), "bin": (33, 1), "tf": (33, 24)}[kind]
    theta0 = 10 + 50 * torch.rand(shape, dtype=F64, generator=gen)
    x0 = torch.randn(3, length, dtype=F64, generator=gen)
    weights = torch.randn(3, 33, 24, dtype=F64, generator=gen)
    grads = {}
    for engine in ("fused", "autograd"):
        x = x0.clone().requires_grad_()
        theta = theta0.clone().requires_grad_()
        t = positions.clone().requires_grad_()
        spec = dstft(x, n_fft=n_fft, window_length=theta, frame_positions=t, engine=engine,
                     chunk_size=5)
        loss = (spec.abs() * weights).sum() + (spec.real**2).sum() * 1e-3
        loss.backward()
        grads[engine] = (x.grad, theta.grad, t.grad)
    for a, b in zip(grads["fused"], grads["autograd"], strict=True):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)


def test_gradient_of_constant_theta_matches_eq_23():
    # ∂L/∂θ = Σ Re(conj(∂L/∂S) · S_{∂θω}), S_{∂θω} being the transform with ∂θω as window.
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(500, dtype=F64, generator=gen)
    theta = torch.tensor(37.3, dtype=F64, requires_grad=True)
    spec = dstft(x, n_fft=64, window_length=theta, hop_length=16)
    spec.abs().sum().backward()
    h = 1e-5
    with torch.no_grad():
        plus = dstft(x, n_fft=64, window_length=37.3 + h, hop_length=16).abs().sum()
        minus = dstft(x, n_fft=64, window_length=37.3 - h, hop_length=16).abs().sum()
    assert abs(float(theta.grad) - float(plus - minus) / (2 * h)) < 1e-7 * abs(float(theta.grad))
