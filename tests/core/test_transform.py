"""The DSTFT against torch.stft and a direct float64 summation of Eq. (6)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dstft_cli import dstft
from dstft_cli.core import evaluate_window, get_window
from dstft_cli.core.transform import frame_count

F64 = torch.float64


def direct_dstft(x, n_fft, theta, positions, window="hann"):
    """Eq. (6) summed literally over every sample of the signal, in float64."""
    x = x.to(F64)
    win = get_window(window)
    n_bins, n_frames = n_fft // 2 + 1, len(positions)
    theta = torch.as_tensor(theta, dtype=F64)
    if theta.dim() == 1:
        theta = theta[None, :]
    theta = theta.expand(n_bins, n_frames)
    k = torch.arange(x.shape[-1], dtype=F64)
    m = torch.arange(n_bins, dtype=F64)
    # e^{-j2πkm/L} with km reduced mod L exactly (k, m integers)
    km = torch.remainder(torch.arange(x.shape[-1])[None, :] * torch.arange(n_bins)[:, None], n_fft)
    kernel = torch.exp(-2j * math.pi * km.to(F64) / n_fft)  # (M, Ls)
    out = torch.zeros(*x.shape[:-1], n_bins, n_frames, dtype=torch.complex128)
    for n in range(n_frames):
        xk = (k - float(positions[n]))[None, :]
        th = theta[:, n, None]
        inside = (xk > -th / 2) & (xk <= th / 2)
        if window == "hann":  # Eq. (4), written out independently of the package
            w = (1 + torch.cos(2 * math.pi * xk / th)) / (2 * th) * inside
        elif window == "gaussian":  # Eq. (5), σ = θ/6
            sigma = th / 6
            w = torch.exp(-math.pi * (xk / sigma) ** 2) / sigma * inside
        else:
            w, _, _ = evaluate_window(win, xk, th)
        out[..., :, n] = ((w * kernel) * x[..., None, :]).sum(-1)
    del m
    return out


def rel_err(a, b):
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("n_fft,hop,length", [(64, 16, 1000), (256, 64, 3001), (1024, 256, 16000)])
def test_matches_torch_stft_at_full_length(n_fft, hop, length):
    x = torch.randn(2, length, dtype=F64, generator=torch.Generator().manual_seed(1))
    spec = dstft(x, n_fft=n_fft, window_length=n_fft, hop_length=hop)
    ref = torch.stft(
        x, n_fft, hop, window=torch.hann_window(n_fft, periodic=True, dtype=F64), center=True,
        pad_mode="constant", return_complex=True,
    ) / n_fft
    assert spec.shape == ref.shape == (2, n_fft // 2 + 1, frame_count(length, hop))
    assert rel_err(spec.abs(), ref.abs()) < 1e-9


@pytest.mark.parametrize("name,torch_window", [
    ("hann", torch.hann_window), ("hamming", torch.hamming_window),
    ("blackman", torch.blackman_window)])
def test_full_length_windows_are_the_periodic_windows(name, torch_window):
    n_fft = 64
    j = torch.arange(-n_fft // 2 + 1, n_fft // 2 + 1, dtype=F64)
    w, _, _ = evaluate_window(get_window(name), j, torch.tensor(float(n_fft), dtype=F64))
    ref = torch_window(n_fft, periodic=True, dtype=F64)[torch.remainder(j.long() + n_fft // 2,
                                                                         n_fft)]
    assert torch.allclose(n_fft * w, ref, rtol=0, atol=1e-14)


def test_blackman_matches_torch_stft():
    x = torch.randn(3000, dtype=F64, generator=torch.Generator().manual_seed(2))
    spec = dstft(x, n_fft=128, window_length=128, hop_length=32, window="blackman")
    ref = torch.stft(x, 128, 32, window=torch.blackman_window(128, periodic=True, dtype=F64),
                     center=True, pad_mode="constant", return_complex=True) / 128
    assert rel_err(spec.abs(), ref.abs()) < 1e-9


def _theta(kind, n_bins, n_frames, gen, lo, hi):
    shape = {"constant": (), "frame": (n_frames,), "bin": (n_bins, 1), "tf": (n_bins, n_frames)}[kind]
    return lo + (hi - lo) * torch.rand(shape, dtype=F64, generator=gen)


@pytest.mark.parametrize("window", ["hann", "gaussian", "blackman", "hamming"])
@pytest.mark.parametrize("kind", ["constant", "frame", "bin", "tf"])
def test_fractional_parameters_match_direct_summation(kind, window):
    gen = torch.Generator().manual_seed(3)
    n_fft, length = 32, 240
    x = torch.randn(2, length, dtype=F64, generator=gen)
    # distinct fractional offsets per frame, frames before, inside and past the signal
    positions = torch.tensor([-9.6, 0.3, 10.7, 55.5, 100.0, 150.25, 199.9, 238.01, 251.5], dtype=F64)
    theta = _theta(kind, n_fft // 2 + 1, len(positions), gen, 3.0, 32.0)
    ref = direct_dstft(x, n_fft, theta, positions, window)
    for engine in ("fused", "autograd"):
        spec = dstft(x, n_fft=n_fft, window_length=theta, frame_positions=positions,
                     window=window, engine=engine)
        assert rel_err(spec, ref) < 1e-9, engine


@settings(max_examples=25, deadline=None)
@given(
    n_fft=st.sampled_from([8, 16, 34]),
    length=st.integers(5, 120),
    hop=st.floats(1.5, 40.0),
    offset=st.floats(-10.0, 10.0),
    kind=st.sampled_from(["constant", "frame", "bin", "tf"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_property_any_grid_matches_direct_summation(n_fft, length, hop, offset, kind, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(length, dtype=F64, generator=gen)
    n_frames = frame_count(length, hop)
    positions = offset + hop * torch.arange(n_frames, dtype=F64)
    theta = _theta(kind, n_fft // 2 + 1, n_frames, gen, 1.0, float(n_fft))
    spec = dstft(x, n_fft=n_fft, window_length=theta, frame_positions=positions, chunk_size=3)
    ref = direct_dstft(x, n_fft, theta, positions)
    scale = ref.abs().max().clamp_min(1e-300)
    assert float((spec - ref).abs().max() / scale) < 1e-9


def test_non_integer_hop_default_grid_shifts_every_frame():
    # the default grid with H = 100.5 has a fractional offset on every other frame
    x = torch.randn(2000, dtype=F64, generator=torch.Generator().manual_seed(4))
    spec = dstft(x, n_fft=64, window_length=50.0, hop_length=100.5)
    positions = 100.5 * torch.arange(frame_count(2000, 100.5), dtype=F64)
    assert rel_err(spec, direct_dstft(x, 64, 50.0, positions)) < 1e-9


def test_batch_equals_items():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 500, dtype=F64, generator=gen)
    theta = 5 + 27 * torch.rand(17, frame_count(500, 25), dtype=F64, generator=gen)
    batch = dstft(x, n_fft=32, window_length=theta, hop_length=25)
    assert batch.shape == (2, 3, 17, frame_count(500, 25))
    for i in range(2):
        for c in range(3):
            one = dstft(x[i, c], n_fft=32, window_length=theta, hop_length=25)
            assert torch.allclose(batch[i, c], one, rtol=0, atol=1e-14)


def test_float32_long_signal_within_1e5_of_float64():
    # 10⁷ samples: ⌊tₙ⌋·m reaches 5·10⁹, the phase must come from integer arithmetic
    gen = torch.Generator().manual_seed(6)
    length = 10_000_000
    x64 = torch.randn(length, dtype=F64, generator=gen)
    positions = torch.arange(0, length, 4099, dtype=torch.int64)
    s64 = dstft(x64, n_fft=512, window_length=300.0, frame_positions=positions)
    s32 = dstft(x64.float(), n_fft=512, window_length=300.0, frame_positions=positions)
    mag64 = s64.abs()
    assert float((s32.abs().double() - mag64).norm() / mag64.norm()) < 1e-5
    # the complex values (phase included) agree too, far along the signal
    assert float((s32[:, -5:].to(torch.complex128) - s64[:, -5:]).abs().max()
                 / s64[:, -5:].abs().max()) < 1e-5


@pytest.mark.parametrize("per_frame", [False, True])
def test_float32_long_signal_on_the_default_grid_within_1e5_of_float64(per_frame):
    # The grid engine (and, where built, the C frames module with its single-precision window
    # evaluation) on 10⁷ samples: float32 against float64, constant and per-frame θ.
    gen = torch.Generator().manual_seed(7)
    length, n_fft, hop = 10_000_000, 512, 256
    x64 = torch.randn(length, dtype=F64, generator=gen)
    n_frames = frame_count(length, hop)
    theta = (20 + 490 * torch.rand(n_frames, dtype=F64, generator=gen)) if per_frame else 300.5
    s64 = dstft(x64, n_fft=n_fft, window_length=theta, hop_length=hop)
    theta32 = theta.float() if per_frame else theta
    s32 = dstft(x64.float(), n_fft=n_fft, window_length=theta32, hop_length=hop)
    mag64 = s64.abs()
    assert float((s32.abs().double() - mag64).norm() / mag64.norm()) < 1e-5
    assert float((s32[:, -5:].to(torch.complex128) - s64[:, -5:]).abs().max()
                 / s64[:, -5:].abs().max()) < 1e-5


def test_half_precision_is_rejected_clearly():
    with pytest.raises(TypeError, match="float32 and float64"):
        dstft(torch.randn(100, dtype=torch.float16), n_fft=16, window_length=8.0)
    with pytest.raises(TypeError, match="float32 and float64"):
        dstft(torch.randn(100, dtype=torch.bfloat16), n_fft=16, window_length=8.0)


@pytest.mark.parametrize("kwargs,match", [
    ({"n_fft": 15, "window_length": 8.0}, "even integer"),
    ({"n_fft": 16, "window_length": 0.0}, r"\(0, n_fft=16\]"),
    ({"n_fft": 16, "window_length": 16.5}, r"\(0, n_fft=16\]"),
    ({"n_fft": 16, "window_length": float("nan")}, "non-finite"),
    ({"n_fft": 16, "window_length": torch.ones(3, 3) * 8}, "shape"),
    ({"n_fft": 16, "window_length": 8.0, "window": "kaiser"}, "unknown window"),
    ({"n_fft": 16, "window_length": 8.0, "hop_length": 0}, "hop_length"),
])
def test_bad_arguments_raise_named_errors(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        dstft(torch.randn(100, dtype=F64), **kwargs)


def test_theta_shapes_are_classified():
    x = torch.randn(200, dtype=F64)
    n_frames = frame_count(200, 4)
    for theta in (torch.tensor(8.0), torch.full((n_frames,), 8.0), torch.full((9, 1), 8.0),
                  torch.full((9, n_frames), 8.0), 8):
        spec = dstft(x, n_fft=16, window_length=theta, hop_length=4)
        assert spec.shape == (9, n_frames)
    # all four parameterisations agree when θ is the same everywhere
    ref = dstft(x, n_fft=16, window_length=8.0, hop_length=4)
    tf = dstft(x, n_fft=16, window_length=torch.full((9, n_frames), 8.0, dtype=F64), hop_length=4)
    assert rel_err(tf, ref) < 1e-12


@pytest.mark.parametrize("kind", ["constant", "frame", "bin", "tf"])
def test_integer_positions_match_direct_summation(kind):
    # integer positions take the fast paths (unfold views, grid phase tables, per-bin GEMM)
    gen = torch.Generator().manual_seed(10)
    x = torch.randn(2, 333, dtype=F64, generator=gen)
    for positions in (torch.arange(0, 340, 12), torch.tensor([-20, 3, 50, 51, 200, 330, 360])):
        theta = _theta(kind, 33, len(positions), gen, 3.0, 64.0)
        spec = dstft(x, n_fft=64, window_length=theta, frame_positions=positions)
        ref = direct_dstft(x, 64, theta, positions.to(F64))
        assert rel_err(spec, ref) < 1e-9
