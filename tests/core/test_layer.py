"""The DSTFT module: exact parameters, bounds, frame counts, inverse, device handling, layering."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dstft_cli import DSTFT, dstft, idstft
from dstft_cli.core.transform import frame_count

F64 = torch.float64


@pytest.mark.parametrize("bounds", ["project", "sigmoid"])
def test_integer_lengths_and_hops_come_back_exactly(bounds):
    layer = DSTFT(n_fft=1024, hop_length=128, signal_length=16000, init_length=1024.0,
                  position_mode="hop", bounds=bounds)
    assert float(layer.window_length.detach()) == 1024.0
    assert torch.equal(layer.frame_positions, 128.0 * torch.arange(frame_count(16000, 128),
                                                                  dtype=F64))
    layer.project_()
    assert float(layer.window_length.detach()) == 1024.0
    assert float(layer.hop.detach()) == 128.0
    tf = DSTFT(n_fft=256, hop_length=64, signal_length=4000, length_mode="tf", init_length=200.0,
               bounds=bounds)
    assert torch.all(tf.window_length == 200.0)


def test_bounds_are_the_ones_asked_for():
    layer = DSTFT(n_fft=512, signal_length=4000, length_mode="frame", min_length=37.5,
                  max_length=400.0, position_mode="frame", init_length=100.0)
    with torch.no_grad():
        layer.theta[:3] = torch.tensor([-5.0, 1e6, 200.0])
        layer.positions[1] = 1e9
        layer.positions[2] = -1e9
    layer.project_()
    assert layer.theta[:3].tolist() == [37.5, 400.0, 200.0]
    t = layer.frame_positions
    assert float(t.min()) >= -256 and float(t.max()) <= 4000 + 256
    assert bool((t[1:] >= t[:-1]).all())
    sig = DSTFT(n_fft=512, min_length=37.5, max_length=400.0, init_length=100.0, bounds="sigmoid")
    with torch.no_grad():
        sig.theta_offset.fill_(100.0)
    assert 399.0 < float(sig.window_length) <= 400.0
    with torch.no_grad():
        sig.theta_offset.fill_(-100.0)
    assert 37.5 <= float(sig.window_length) < 38.0


def test_learnable_hop_keeps_frame_count():
    layer = DSTFT(n_fft=64, hop_length=16, signal_length=1000, position_mode="hop",
                  dtype=F64)
    x = torch.randn(1000, dtype=F64)
    n0 = layer(x).shape[-1]
    with torch.no_grad():
        layer.hop.fill_(37.25)
    assert layer(x).shape[-1] == n0 == frame_count(1000, 16)


def test_overlap_mode_follows_window_lengths():
    layer = DSTFT(n_fft=64, signal_length=1000, length_mode="frame", position_mode="overlap",
                  overlap=0.5, init_length=40.0, min_length=10.0, dtype=F64)
    assert layer.n_frames == 1 + 1000 // 5
    t = layer.frame_positions
    assert torch.allclose(t[:4], torch.tensor([0.0, 20.0, 40.0, 60.0], dtype=F64))
    # frames past the end read zero padding and are reported inactive
    active = layer.active_frames()
    assert int(active.sum()) == 51
    spec = layer(torch.randn(1000, dtype=F64))
    assert float(spec[:, ~active].abs().max()) == 0.0


def test_bad_module_arguments():
    with pytest.raises(ValueError, match="signal_length is required"):
        DSTFT(n_fft=64, length_mode="tf")
    with pytest.raises(ValueError, match="min_length"):
        DSTFT(n_fft=64, min_length=100.0)
    with pytest.raises(ValueError, match="init_length"):
        DSTFT(n_fft=64, init_length=1.0, min_length=4.0)
    with pytest.raises(ValueError, match="length_mode"):
        DSTFT(n_fft=64, length_mode="time")


@settings(max_examples=12, deadline=None)
@given(kind=st.sampled_from(["constant", "frame", "bin", "tf"]), seed=st.integers(0, 10_000),
       hop=st.floats(3.0, 12.0), length=st.integers(40, 200))
def test_inverse_reconstructs_random_signals(kind, seed, hop, length):
    gen = torch.Generator().manual_seed(seed)
    n_fft = 32
    x = torch.randn(2, length, dtype=F64, generator=gen)
    n_frames = frame_count(length, hop)
    positions = hop * torch.arange(n_frames, dtype=F64) + 0.5 * torch.rand(1, dtype=F64,
                                                                            generator=gen)
    positions[0] = 0.0  # the first sample must lie strictly inside a window
    shape = {"constant": (), "frame": (n_frames,), "bin": (17, 1), "tf": (17, n_frames)}[kind]
    theta = 26 + 6 * torch.rand(shape, dtype=F64, generator=gen)
    spec = dstft(x, n_fft=n_fft, window_length=theta, frame_positions=positions)
    rec = idstft(spec, n_fft=n_fft, window_length=theta, frame_positions=positions,
                 signal_length=length)
    assert float((rec - x).norm() / x.norm()) < 1e-6


def test_inverse_reports_uncovered_samples():
    x = torch.randn(400, dtype=F64)
    positions = torch.tensor([0.0, 100.0, 300.0], dtype=F64)
    spec = dstft(x, n_fft=64, window_length=60.0, frame_positions=positions)
    with pytest.raises(ValueError, match="not covered"):
        idstft(spec, n_fft=64, window_length=60.0, frame_positions=positions, signal_length=400)


def test_core_imports_torch_only():
    code = ("import sys, dstft_cli.core; "
            # torch itself imports tqdm, so tqdm is not checked
            "bad = [m for m in ('click', 'matplotlib', 'soundfile', 'scipy') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    x = torch.randn(2, 5000, dtype=F64)
    theta = torch.full((33, frame_count(5000, 16)), 40.0, dtype=F64)
    cpu = dstft(x, n_fft=64, window_length=theta, hop_length=16)
    gpu = dstft(x.cuda(), n_fft=64, window_length=theta.cuda(), hop_length=16)
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-12)


def test_module_moves_between_dtypes_and_devices():
    layer = DSTFT(n_fft=64, hop_length=16, signal_length=500, length_mode="frame")
    layer = layer.to(torch.float64)
    assert layer.theta.dtype == F64
    spec = layer(torch.randn(500, dtype=F64))
    assert spec.dtype == torch.complex128


def _readme_python_block(marker: str) -> str:
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if marker in b]
    assert len(blocks) == 1, f"expected one README python block containing {marker!r}"
    return blocks[0]


@pytest.mark.parametrize("seed", range(5))
def test_readme_layer_example_runs_and_inverts_for_any_seed(seed):
    code = _readme_python_block("layer = DSTFT(")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(8000, dtype=F64, generator=gen)
    namespace = {"torch": torch, "x": x}
    exec(compile(code, "README.md", "exec"), namespace)
    layer = namespace["layer"]
    t = layer.frame_positions.detach()
    theta = layer.frame_window_lengths().detach().double()
    # float32 θ: the bound holds to its rounding
    assert bool(((t[1:] - t[:-1]) <= 0.75 * (1 + 1e-6) * torch.minimum(theta[1:], theta[:-1])).all())
    assert torch.allclose(namespace["x_back"].double(), x, atol=1e-4)


def test_max_hop_ratio_lengthens_windows_and_bounds_the_hop():
    layer = DSTFT(n_fft=256, hop_length=64, signal_length=2000, length_mode="frame",
                  position_mode="hop", init_length=100.0, min_length=8.0, max_hop_ratio=0.5, dtype=F64)
    with torch.no_grad():
        layer.theta.fill_(10.0)
        layer.theta[3] = 250.0
        layer.hop.fill_(90.0)
    layer.project_()
    assert float(layer.hop) == 90.0
    assert float(layer.theta[0]) == 180.0 and float(layer.theta[3]) == 250.0
    with torch.no_grad():
        layer.hop.fill_(1000.0)
    layer.project_()
    assert float(layer.hop) == 128.0 and bool((layer.theta == 256.0).all())
    with torch.no_grad():
        layer.hop.fill_(1.0)  # too short for 1 + 2000 // 64 frames to reach the end
    layer.project_()
    n = layer.n_frames
    assert (n - 1) * float(layer.hop) + 0.5 * float(layer.theta[-1]) >= 2000 - 1e-9
    tf = DSTFT(n_fft=256, hop_length=64, signal_length=2000, length_mode="tf", init_length=20.0,
               max_hop_ratio=0.5)
    tf.project_()
    assert bool((tf.theta == 128.0).all())
    with pytest.raises(ValueError, match="max_hop_ratio"):
        DSTFT(n_fft=64, max_hop_ratio=1.5)
    with pytest.raises(ValueError, match="max_hop_ratio"):
        DSTFT(n_fft=64, bounds="sigmoid", max_hop_ratio=0.5)
