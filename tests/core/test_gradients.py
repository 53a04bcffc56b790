"""Gradients: window derivatives, gradcheck of every parameterisation, custom vs plain autograd."""

from __future__ import annotations

import itertools
import math
from unittest import mock

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_transform import direct_dstft
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


@settings(max_examples=40, deadline=None)
@given(
    n_fft=st.sampled_from([8, 16, 32]),
    hop=st.integers(1, 40),
    first=st.integers(-12, 40),
    length=st.integers(8, 150),
    per_frame=st.booleans(),
    cotangent_like_output=st.booleans(),
    use_c_module=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_property_integer_grid_engine_matches_direct_sum_and_autograd(
    n_fft, hop, first, length, per_frame, cotangent_like_output, use_c_module, seed
):
    # Integer grids tₙ = t₀ + n·H take the rotated-frame engine (no phase factor, θ-gradient in
    # the frequency domain): values against Eq. (6) summed directly, gradients against autograd,
    # for cotangents laid out like S (what a loss gives) and transposed; with the C frames
    # module (when built) and with the PyTorch path.
    from dstft_cli.core.engines import native
    from dstft_cli.core.engines.grid import grid_geometry as _grid_geometry
    with mock.patch.object(native, "MODULE", native.MODULE if use_c_module else None):
        _check_integer_grid(n_fft, hop, first, length, per_frame, cotangent_like_output, seed)
    if first >= -n_fft // 2 - 1 and n_fft // math.gcd(hop, n_fft) <= 64:
        assert _grid_geometry(first, hop, 1 + length // hop, n_fft) is not None  # rotated engine


def _check_integer_grid(n_fft, hop, first, length, per_frame, cotangent_like_output, seed):
    gen = torch.Generator().manual_seed(seed)
    n_frames = 1 + length // hop
    positions = first + hop * torch.arange(n_frames)
    n_bins = n_fft // 2 + 1
    theta0 = (1.0 + (n_fft - 1) * torch.rand(n_frames if per_frame else (), dtype=F64,
                                             generator=gen))
    x0 = torch.randn(2, length, dtype=F64, generator=gen)
    g = torch.randn(2, n_bins, n_frames, dtype=torch.complex128, generator=gen)
    if cotangent_like_output:
        g = g.transpose(-1, -2).contiguous().transpose(-1, -2)
    grads, specs = {}, {}
    for engine in ("fused", "autograd"):
        x, theta = x0.clone().requires_grad_(), theta0.clone().requires_grad_()
        spec = dstft(x, n_fft=n_fft, window_length=theta, frame_positions=positions, engine=engine)
        spec.backward(g)
        specs[engine], grads[engine] = spec.detach(), (x.grad, theta.grad)
    ref = direct_dstft(x0, n_fft, theta0, positions.to(F64))
    assert float((specs["fused"] - ref).abs().max()) <= 1e-9 * float(ref.abs().max()) + 1e-300
    for a, b in zip(grads["fused"], grads["autograd"], strict=True):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)


def test_grid_engine_per_frame_gradient_without_the_forward_product():
    # The per-frame θ gradient recomputed in the backward pass (when the forward pass ran
    # without keeping S_{∂θω}) equals the kept one.
    from dstft_cli.core.engines.grid import GridEngine
    from dstft_cli.core.windows import get_window

    gen = torch.Generator().manual_seed(12)
    x = torch.randn(1, 300, dtype=F64, generator=gen)
    grid = (0, 8, 1 + 300 // 8)
    theta = (5 + 25 * torch.rand(1 + 300 // 8, dtype=F64, generator=gen)).requires_grad_()
    g = torch.randn(1, 17, theta.shape[0], dtype=torch.complex128, generator=gen)
    results = []
    for keep in (True, False):
        theta.grad = None
        GridEngine.apply(x, theta, get_window("hann"), 32, grid, keep).backward(g)
        results.append(theta.grad.clone())
    assert torch.allclose(results[0], results[1], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("batch", [1, 2])  # one signal: the rfft writes each block in place
@pytest.mark.parametrize("keep_limit", [None, 0])
@pytest.mark.parametrize("per_frame", [False, True])
def test_grid_engine_in_blocks_of_frames_equals_one_block(per_frame, keep_limit, batch,
                                                          monkeypatch):
    # Long signals run the grid engine block by block (memory); 5-frame blocks must give the
    # same spectrum and gradients as the plain autograd engine — with S_{∂θω} kept from the
    # forward pass and, past the size limit, recomputed in the backward pass in 3-frame blocks.
    from dstft_cli.core.engines import grid

    monkeypatch.setattr(grid, "GRID_BLOCK_ELEMENTS", 5 * 32)
    monkeypatch.setattr(grid, "RECOMPUTE_BLOCK_ELEMENTS", 3 * 32)
    if keep_limit is not None:
        monkeypatch.setattr(grid, "KEPT_SPECTRUM_BYTES", (keep_limit, keep_limit))
    gen = torch.Generator().manual_seed(13)
    x0 = torch.randn(batch, 400, dtype=F64, generator=gen)
    n_frames = 1 + 400 // 12
    theta0 = 4 + 28 * torch.rand(n_frames if per_frame else (), dtype=F64, generator=gen)
    g = torch.randn(batch, 17, n_frames, dtype=torch.complex128, generator=gen)
    out = {}
    for engine in ("fused", "autograd"):
        x, theta = x0.clone().requires_grad_(), theta0.clone().requires_grad_()
        spec = dstft(x, n_fft=32, window_length=theta, hop_length=12, engine=engine)
        spec.backward(g)
        out[engine] = (spec.detach(), x.grad, theta.grad)
    for a, b in zip(out["fused"], out["autograd"], strict=True):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
