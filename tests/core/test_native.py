"""The optional C module of the grid engine against the PyTorch path it replaces."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dstft_cli.core.transform as transform
from dstft_cli import dstft
from dstft_cli.core.engines import bins, common, native
from dstft_cli.core.engines import grid as grid_engine
from dstft_cli.core.windows import evaluate_window, get_window

pytestmark = pytest.mark.skipif(not transform.native_frames_available(),
                                reason="the C frames module was not built (no C compiler)")


@pytest.fixture(autouse=True, params=["one thread", "split over threads"])
def row_split(request):
    """Every test twice: the module's small-job path on the calling thread, then with every job,
    however small, split over PyTorch's OpenMP threads (3 of them, so that the ranges are
    uneven and a thread may get none)."""
    if request.param == "one thread":
        yield
        return
    threads = torch.get_num_threads()
    previous = native.set_parallel_threshold(0)
    torch.set_num_threads(3)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        native.set_parallel_threshold(previous)


def pytorch_frames(x, theta, window, n_fft, grid):
    """Rotated frames with ω and ∂θω by the PyTorch path (padded blocks, strided pieces)."""
    w, dw, first = grid_engine.grid_windows(window, theta, n_fft, x, d_theta=True)
    geometry = grid_engine.grid_geometry(*grid, n_fft)
    xb = grid_engine.signal_blocks(x, n_fft, geometry[3])
    return [grid_engine.rotated_product(xb, t, geometry, n_fft, grid[2], first) for t in (w, dw)]


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    window=st.sampled_from(["hann", "hamming", "blackman", "gaussian"]),
    n_fft=st.sampled_from([4, 8, 16, 32, 64]),
    hop=st.integers(1, 40),
    t0=st.integers(-20, 30),
    length=st.integers(1, 200),
    per_frame=st.booleans(),
    integer_theta=st.booleans(),
    double=st.booleans(),
    batch=st.integers(1, 3),
    seed=st.integers(0, 2**31 - 1),
)
def test_native_frames_equal_the_pytorch_path(window, n_fft, hop, t0, length, per_frame,
                                               integer_theta, double, batch, seed):
    # Every frame, including frames reaching past either end of the signal, with ω and ∂θω:
    # cosine-sum windows evaluated inside the module (per frame or shared), the Gaussian from a
    # table; even integer θ puts a sample exactly on the half-open support edge.
    gen = torch.Generator().manual_seed(seed)
    dtype = torch.float64 if double else torch.float32
    n_frames = 1 + length // hop
    if grid_engine.grid_geometry(t0, hop, n_frames, n_fft) is None:
        return  # the grid engine does not take this grid
    shape = (n_frames,) if per_frame else ()
    theta = 1 + (n_fft - 1) * torch.rand(shape, dtype=torch.float64, generator=gen)
    if integer_theta:
        theta = theta.round()
    theta = theta.to(dtype)
    x = torch.randn(batch, length, dtype=dtype, generator=gen)
    win = get_window(window)
    grid = (t0, hop, n_frames)
    source = grid_engine.grid_source(win, theta, n_fft, x, d_theta=True)
    native = grid_engine.native_frames(x, source, t0, hop, 0, n_frames, n_fft, True, True)[:2]
    reference = pytorch_frames(x, theta, win, n_fft, grid)
    # Relative to the largest value ω·s or ∂θω·s can take (|g| ≤ 6, |g + u·g'| < 250 for these
    # windows): where the true value is 0 a float32 evaluation may leave rounding residue.
    tol = 1e-12 if double else 2e-6
    theta_min = float(theta.min())
    bound = float(x.abs().max()) * (6 / theta_min + 250 / theta_min**2)
    for got, want in zip(native, reference, strict=True):
        assert float((got - want).abs().max()) <= tol * bound


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layout", ["like_output", "bins_outer", "conjugate_view"])
def test_native_frame_dots_equal_torch(dtype, layout):
    gen = torch.Generator().manual_seed(3)
    complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    batch, n_frames, n_bins = 2, 7, 9
    spec = torch.randn(batch, n_frames, n_bins, dtype=complex_dtype, generator=gen)
    g = torch.randn(batch, n_bins, n_frames, dtype=complex_dtype, generator=gen)
    if layout == "like_output":
        g = g.transpose(-1, -2).contiguous().transpose(-1, -2)
    elif layout == "conjugate_view":
        g = g.conj()
    want = (g.transpose(-1, -2).resolve_conj().conj() * spec).real.sum(dim=(0, 2))
    got = grid_engine.spectral_dot(g, spec, per_frame=True)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert torch.allclose(got, want, rtol=tol, atol=tol)
    assert torch.allclose(grid_engine.spectral_dot(g, spec, per_frame=False), want.sum(),
                          rtol=tol, atol=tol)


@pytest.mark.parametrize("signal_grad", [True, False])
@pytest.mark.parametrize("per_frame", [False, True])
@pytest.mark.parametrize("window", ["hann", "blackman", "gaussian"])
def test_grid_engine_with_and_without_the_module(per_frame, window, signal_grad, monkeypatch):
    # The same spectrum and the same gradients (θ, and the signal when it asks), float64.
    gen = torch.Generator().manual_seed(5)
    x0 = torch.randn(2, 700, dtype=torch.float64, generator=gen)
    n_frames = 1 + 700 // 24
    theta0 = 6 + 58 * torch.rand(n_frames if per_frame else (), dtype=torch.float64,
                                 generator=gen)
    g = torch.randn(2, 33, n_frames, dtype=torch.complex128, generator=gen)
    results = []
    for module in (native.MODULE, None):
        monkeypatch.setattr(native, "MODULE", module)
        x, theta = x0.clone().requires_grad_(signal_grad), theta0.clone().requires_grad_()
        spec = dstft(x, n_fft=64, window_length=theta, hop_length=24, window=window)
        spec.backward(g)
        results.append((spec.detach(), x.grad, theta.grad))
    (spec_c, x_grad_c, theta_grad_c), (spec_t, x_grad_t, theta_grad_t) = results
    assert torch.allclose(spec_c, spec_t, rtol=1e-11, atol=1e-13)
    assert torch.allclose(theta_grad_c, theta_grad_t, rtol=1e-11, atol=1e-13)
    if signal_grad:
        assert torch.allclose(x_grad_c, x_grad_t, rtol=1e-11, atol=1e-13)
    else:
        assert x_grad_c is None and x_grad_t is None


@pytest.mark.parametrize("window", ["hamming", "hann"])
@pytest.mark.parametrize("per_frame", [False, True])
def test_native_frames_on_the_support_edge(window, per_frame):
    # θ = 8: the sample at x = −θ/2 is outside the half-open support (−θ/2, θ/2], the one at
    # +θ/2 inside; for Hamming (not zero at its edges) the two differ.
    x = torch.randn(1, 60, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    n_frames = 1 + 60 // 4
    theta = torch.full((n_frames,) if per_frame else (), 8.0, dtype=torch.float64)
    win = get_window(window)
    source = grid_engine.grid_source(win, theta, 16, x, d_theta=True)
    native = grid_engine.native_frames(x, source, 0, 4, 0, n_frames, 16, True, True)[:2]
    reference = pytorch_frames(x, theta, win, 16, (0, 4, n_frames))
    for got, want in zip(native, reference, strict=True):
        assert torch.allclose(got, want, rtol=1e-13, atol=1e-15)
    # frame 5 (t = 20) reads s[16] at x = −4 (outside) and s[24] at x = +4 (inside)
    w_edge = float(get_window(window).g(torch.tensor(0.5, dtype=torch.float64))) / 8
    row = native[0][0, 5]
    assert float(row[16 % 16]) == 0.0
    assert math.isclose(float(row[24 % 16]), w_edge * float(x[0, 24]), rel_tol=1e-12, abs_tol=1e-15)


@pytest.mark.parametrize("window", ["hann", "hamming"])
@pytest.mark.parametrize("n_fft", [1024, 16384])
def test_native_float32_windows_stay_close_to_float64(window, n_fft):
    # float32 two-term windows rotate in single precision with restarts from a double-precision
    # anchor: the error must not grow with the window length (without the restarts it reached
    # 6e-6 of the peak at n_fft 16384).
    n_frames = 8
    x = torch.ones(1, 12 * n_fft, dtype=torch.float64)
    theta = torch.linspace(3.3, n_fft, n_frames, dtype=torch.float64)
    win = get_window(window)
    frames = {}
    for dtype in (torch.float32, torch.float64):
        source = grid_engine.grid_source(win, theta.to(dtype), n_fft, x.to(dtype), d_theta=True)
        frames[dtype] = grid_engine.native_frames(x.to(dtype), source, 2 * n_fft, n_fft, 0,
                                                 n_frames, n_fft, True, True)[:2]
    for single, double in zip(frames[torch.float32], frames[torch.float64], strict=True):
        peak = double.abs().amax(-1)
        assert float(((single.double() - double).abs().amax(-1) / peak).max()) < 1e-6


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    window=st.sampled_from(["hann", "hamming", "blackman"]),
    n_fft=st.sampled_from([8, 16, 64]),
    n_frames=st.integers(1, 12),
    per_frame=st.booleans(),
    fractional=st.booleans(),
    double=st.booleans(),
    batch=st.integers(1, 2),
    seed=st.integers(0, 2**31 - 1),
)
def test_position_engine_equals_the_pytorch_engine(window, n_fft, n_frames, per_frame,
                                                   fractional, double, batch, seed):
    # Learnable positions go through the C module's rotated frames at the integer bases (no
    # phase factor) and its fused derivative sums: spectrum and gradients w.r.t. signal, θ and
    # tₙ against the PyTorch FFT engine (phase per frame), positions unsorted and reaching past
    # both ends of the signal, integer positions off any regular grid included.
    gen = torch.Generator().manual_seed(seed)
    dtype = torch.float64 if double else torch.float32
    length = 3 * n_fft
    x0 = torch.randn(batch, length, dtype=dtype, generator=gen)
    positions0 = torch.rand(n_frames, dtype=torch.float64, generator=gen) * (length + 2 * n_fft)
    positions0 = positions0 - n_fft
    if not fractional:
        positions0 = positions0.round().long()
    theta0 = 1.5 + (n_fft - 1.5) * torch.rand(n_frames if per_frame else (), dtype=torch.float64,
                                             generator=gen)
    g = torch.randn(batch, n_fft // 2 + 1, n_frames, dtype=torch.complex128, generator=gen)
    results = []
    for module in (native.MODULE, None):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(native, "MODULE", module)
            x = x0.clone().requires_grad_()
            theta = theta0.to(dtype).requires_grad_()
            positions = positions0.clone().requires_grad_() if fractional else positions0
            spec = dstft(x, n_fft=n_fft, window_length=theta, frame_positions=positions,
                         window=window)
            spec.backward(g.to(spec.dtype))
            results.append((spec.detach(), x.grad, theta.grad,
                            positions.grad if fractional else None))
    tol = 1e-11 if double else 2e-4
    for got, want in zip(*results, strict=True):
        if want is None:
            assert got is None
            continue
        # relative, with unit-scale inputs setting the floor (a gradient that cancels to ~1e-18
        # is compared absolutely)
        scale = max(float(want.abs().max()), 1.0)
        assert float((got - want).abs().max()) <= tol * scale


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_threads_change_no_bit_of_the_result(threads, dtype):
    # At the benchmark's size (far above the threshold) every row is computed as on one thread,
    # whichever thread writes it: the spectrum and all gradients agree bit for bit.
    gen = torch.Generator().manual_seed(11)
    x0 = torch.randn(2, 40_000, dtype=dtype, generator=gen)
    n_frames = 1 + 40_000 // 256
    positions0 = torch.arange(n_frames, dtype=torch.float64) * 256 + 0.3
    cases = {
        "constant": (torch.tensor(600.5, dtype=dtype), None),
        "per frame": (600.5 + torch.rand(n_frames, dtype=dtype, generator=gen), None),
        "positions": (torch.rand(n_frames, dtype=dtype, generator=gen) * 900 + 10, positions0),
    }
    cotangent = torch.randn(2, 513, n_frames, dtype=torch.complex128, generator=gen)
    saved = torch.get_num_threads()
    results = {}
    try:
        for count in (1, threads):
            torch.set_num_threads(count)
            for name, (theta0, pos0) in cases.items():
                theta = theta0.clone().requires_grad_()
                pos = None if pos0 is None else pos0.clone().requires_grad_()
                spec = dstft(x0, n_fft=1024, window_length=theta, frame_positions=pos,
                             hop_length=256)
                spec.backward(cotangent.to(spec.dtype))  # (a loss's own ops may round
                # differently with the thread count: torch's, not ours)
                results[count, name] = [spec.detach(), theta.grad,
                                        None if pos is None else pos.grad]
    finally:
        torch.set_num_threads(saved)
    for name in cases:
        for one, many in zip(results[1, name], results[threads, name], strict=True):
            if one is not None:
                assert torch.equal(one, many), name


def _compile_without_openmp(tmp_path):
    import importlib.machinery
    import importlib.util
    import shutil
    import subprocess
    import sysconfig
    from pathlib import Path

    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler")
    source = Path(native.__file__).parent.parent / "_frames.c"
    target = tmp_path / ("_frames" + sysconfig.get_config_var("EXT_SUFFIX"))
    subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-I", sysconfig.get_paths()["include"],
                    str(source), "-o", str(target), "-lm"], check=True, capture_output=True)
    loader = importlib.machinery.ExtensionFileLoader("dstft_cli.core._frames", str(target))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


@pytest.mark.slow
def test_module_built_without_openmp_gives_the_same_bits(tmp_path, monkeypatch):
    # A compiler without OpenMP builds the module with every loop on the calling thread
    # (setup.py drops -fopenmp when it cannot link it): same spectrum and gradients, bit for bit.
    single = _compile_without_openmp(tmp_path)
    assert single.OPENMP == 0
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(1, 20_000, generator=gen)
    n_frames = 1 + 20_000 // 128
    positions0 = torch.arange(n_frames, dtype=torch.float64) * 128 + 0.25
    theta0 = 100 + 400 * torch.rand(n_frames, generator=gen)
    g = torch.randn(1, 257, n_frames, dtype=torch.complex64, generator=gen)
    results = []
    for module in (native.MODULE, single):
        monkeypatch.setattr(native, "MODULE", module)
        for pos0 in (None, positions0):
            theta = theta0.clone().requires_grad_()
            pos = None if pos0 is None else pos0.clone().requires_grad_()
            spec = dstft(x, n_fft=512, window_length=theta, frame_positions=pos, hop_length=128)
            spec.backward(g)
            results.append([spec.detach(), theta.grad] + ([] if pos is None else [pos.grad]))
    for threaded, alone in zip(results[:2], results[2:], strict=True):
        for a, b in zip(threaded, alone, strict=True):
            assert torch.equal(a, b)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    window=st.sampled_from(["hann", "hamming", "blackman"]),
    n_fft=st.sampled_from([4, 16, 64]),
    n_frames=st.integers(1, 6),
    fractional=st.booleans(),
    integer_theta=st.booleans(),
    double=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_native_window_blocks_equal_evaluate_window(window, n_fft, n_frames, fractional,
                                                    integer_theta, double, seed):
    # The per-bin / per-TF-bin engine's window blocks (every bin × frame × column of the
    # support slice) from the C recurrences against windows.evaluate_window: ω, ∂θω, ∂xω, with
    # samples on the half-open support edge when θ is an even integer and the offsets integer.
    gen = torch.Generator().manual_seed(seed)
    dtype = torch.float64 if double else torch.float32
    n_bins = n_fft // 2 + 1
    theta = 1 + (n_fft - 1) * torch.rand(n_bins, n_frames, dtype=torch.float64, generator=gen)
    if integer_theta:
        theta = theta.round()
    theta = theta.to(dtype)
    frac = torch.rand(n_frames + 2, dtype=dtype, generator=gen) if fractional else None
    win = get_window(window)
    cols = bins.support_slice(theta, n_fft)
    got = bins.native_block_windows(win, frac, theta, 1 if fractional else 0,
                                          n_frames + (1 if fractional else 0), cols, n_fft,
                                          dtype, value=True, d_theta=True, d_x=True)
    j = common.offsets(n_fft, "cpu", dtype)[cols]
    x_arg = j if frac is None else j[None, :] - frac[1:n_frames + 1, None]
    want = evaluate_window(win, x_arg, theta[:, :, None], value=True, d_theta=True, d_x=True)
    # relative to each output's largest possible magnitude (|g| ≤ 1, |g + u·g'| < 7, |g'| < 40)
    theta_min = float(theta.min())
    tol = 1e-12 if double else 1e-6
    for (g, w), bound in zip(zip(got, want, strict=True), (1, 7 / theta_min, 40 / theta_min),
                             strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype
        assert float((g - w).abs().max()) <= tol * bound / theta_min


def _adapter_calls():
    """(name, call) pairs of well-formed adapter calls, each taking keyword overrides."""
    x = torch.randn(2, 300)
    f64 = torch.float64

    def cosine_frames(**k):
        a = {"signal": x, "frames": torch.empty(2, 5, 16), "dframes": None, "start0": -7,
             "hop": 4, "theta": torch.full((5,), 9.0, dtype=f64), "coefficients": (0.5, 0.5),
             "vanishes": True} | k
        native.cosine_frames(a.pop("signal"), a.pop("frames"), a.pop("dframes"), **a)

    def table_frames(**k):
        a = {"signal": x, "frames": torch.empty(2, 5, 16), "start0": -7, "hop": 4,
             "table": torch.ones(1, 10), "first": 3} | k
        native.table_frames(a.pop("signal"), a.pop("frames"), **a)

    def frame_dots(**k):
        a = {"grad": torch.randn(2, 5, 9, dtype=torch.complex64),
             "spec": torch.randn(2, 5, 9, dtype=torch.complex64), "out": torch.empty(5)} | k
        native.frame_dots(a["grad"], a["spec"], a["out"])

    def position_frames(**k):
        a = {"signal": x, "frames": torch.empty(2, 5, 16), "bases": torch.arange(5) * 30,
             "frac": torch.rand(5, dtype=f64), "theta": torch.full((1,), 9.0, dtype=f64),
             "coefficients": (0.5, 0.5)} | k
        native.position_frames(a.pop("signal"), a.pop("frames"), **a)

    def position_dots(**k):
        a = {"signal": x, "adjoint": torch.randn(2, 5, 16), "bases": torch.arange(5) * 30,
             "frac": None, "theta": torch.full((5,), 9.0, dtype=f64),
             "coefficients": (0.5, 0.5), "out_theta": torch.empty(5, dtype=f64),
             "out_x": None} | k
        native.position_dots(a.pop("signal"), a.pop("adjoint"), **a)

    def cosine_block(**k):
        a = {"theta": torch.full((9, 4), 9.0, dtype=f64), "frac": None, "n_fft": 16, "first": 2,
             "coefficients": (0.5, 0.5), "w": torch.empty(9, 4, 12), "dth": None,
             "dx": None} | k
        native.cosine_block(a.pop("theta"), a.pop("frac"), **a)

    spec = torch.randn(2, 9, 5, dtype=torch.complex64)
    theta_map = torch.rand(4, 6)

    def entropy_moments(**k):
        a = {"x": spec, "e": 0.5, "promote": False, "beta": 3.0} | k
        native.entropy_moments(a.pop("x"), a.pop("e"), **a)

    def entropy_grad(**k):
        a = {"x": spec, "e": 1.0, "promote": False, "coef": torch.zeros(2, 6, dtype=f64),
             "exponent": 2.0, "out": torch.empty_like(spec)} | k
        native.entropy_grad(a.pop("x"), a.pop("e"), **a)

    def kurtosis_grad(**k):
        a = {"x": spec, "stats": torch.ones(2, 5, 3, dtype=f64),
             "coef": torch.zeros(2, 5, 2, dtype=f64), "out": torch.empty_like(spec)} | k
        native.kurtosis_grad(a["x"], a["stats"], a["coef"], a["out"])

    def total_variation_grad(**k):
        a = {"theta": torch.rand(4, 6, dtype=f64), "eps": 1e-6, "scale": 1.0,
             "out": torch.empty(4, 6, dtype=f64)} | k
        native.total_variation_grad(a["theta"], a["eps"], a["scale"], a["out"])

    return {"cosine_frames": cosine_frames, "table_frames": table_frames,
            "frame_dots": frame_dots, "position_frames": position_frames,
            "position_dots": position_dots, "cosine_block": cosine_block,
            "entropy_moments": entropy_moments, "entropy_grad": entropy_grad,
            "kurtosis_stats": lambda x=spec: native.kurtosis_stats(x),
            "kurtosis_grad": kurtosis_grad,
            "total_variation": lambda theta=theta_map: native.total_variation(theta, 1e-6),
            "total_variation_grad": total_variation_grad}


_WRONG_CALLS = [
    # (function, argument overrides, expected exception)
    ("cosine_frames", {"signal": torch.randn(2, 300, dtype=torch.float64)}, TypeError),
    ("cosine_frames", {"signal": torch.randn(300, 2).T}, ValueError),
    ("cosine_frames", {"signal": torch.randn(2, 300, device="meta")}, ValueError),
    ("cosine_frames", {"signal": [[0.0] * 300] * 2}, TypeError),
    ("cosine_frames", {"frames": torch.empty(3, 5, 16)}, ValueError),
    ("cosine_frames", {"frames": None}, ValueError),
    ("cosine_frames", {"frames": torch.empty(2, 5, 15)}, ValueError),
    ("cosine_frames", {"theta": torch.full((5,), 9.0)}, TypeError),
    ("cosine_frames", {"theta": torch.full((4,), 9.0, dtype=torch.float64)}, ValueError),
    ("cosine_frames", {"hop": 0}, ValueError),
    ("cosine_frames", {"hop": 2.0}, TypeError),
    ("cosine_frames", {"coefficients": (1.0,)}, ValueError),
    ("table_frames", {"table": torch.ones(1, 14)}, ValueError),
    ("table_frames", {"table": torch.ones(3, 10)}, ValueError),
    ("table_frames", {"table": torch.ones(1, 10, dtype=torch.float64)}, TypeError),
    ("table_frames", {"frames": torch.empty(2, 16, 5).transpose(1, 2)}, ValueError),
    ("frame_dots", {"out": torch.empty(5, dtype=torch.float64)}, TypeError),
    ("frame_dots", {"out": torch.empty(6)}, ValueError),
    ("frame_dots", {"grad": torch.randn(2, 5, 9, dtype=torch.complex64).conj()}, ValueError),
    ("frame_dots", {"spec": torch.randn(2, 9, 5, dtype=torch.complex64).transpose(1, 2)},
     ValueError),
    ("frame_dots", {"spec": torch.randn(2, 5, 9)}, TypeError),
    ("position_frames", {"bases": torch.arange(5, dtype=torch.int32)}, TypeError),
    ("position_frames", {"bases": torch.arange(6)}, ValueError),
    ("position_frames", {"frac": torch.rand(5)}, TypeError),
    ("position_frames", {"frames": torch.empty(2, 5, 16, dtype=torch.float64)}, TypeError),
    ("position_dots", {"out_theta": None}, ValueError),
    ("position_dots", {"out_theta": torch.empty(4, dtype=torch.float64)}, ValueError),
    ("position_dots", {"adjoint": torch.randn(2, 4, 16)}, ValueError),
    ("cosine_block", {"w": None}, ValueError),
    ("cosine_block", {"w": torch.empty(9, 4, 15)}, ValueError),
    ("cosine_block", {"w": torch.empty(8, 4, 12)}, ValueError),
    ("cosine_block", {"dth": torch.empty(9, 4, 12, dtype=torch.float64)}, TypeError),
    ("cosine_block", {"frac": torch.rand(3, dtype=torch.float64)}, ValueError),
    ("cosine_block", {"n_fft": 15, "w": torch.empty(9, 4, 12)}, ValueError),
    ("entropy_moments", {"x": torch.randn(2, 9, 5, dtype=torch.float16)}, TypeError),
    ("entropy_moments", {"x": torch.randn(9)}, ValueError),
    ("entropy_moments", {"x": torch.randn(9, 2, 10, dtype=torch.complex64)[:, :, ::2]},
     ValueError),
    ("entropy_moments", {"x": torch.randn(2, 9, 5, dtype=torch.complex64).conj()}, ValueError),
    ("entropy_moments", {"e": 2.0}, ValueError),
    ("entropy_moments", {"x": torch.rand(2, 9, 5), "e": 0.5}, ValueError),
    ("entropy_grad", {"coef": torch.zeros(1, 6, dtype=torch.float64)}, ValueError),
    ("entropy_grad", {"coef": torch.zeros(2, 6)}, TypeError),
    ("entropy_grad", {"out": torch.empty(2, 9, 5, dtype=torch.complex128)}, TypeError),
    ("entropy_grad", {"out": torch.empty(2, 5, 9, dtype=torch.complex64).transpose(1, 2)},
     ValueError),
    ("entropy_grad", {"out": torch.empty(2, 9, 4, dtype=torch.complex64)}, ValueError),
    ("kurtosis_stats", {"x": torch.randn(2, 9, 5, dtype=torch.complex64, device="meta")},
     ValueError),
    ("kurtosis_grad", {"stats": torch.ones(2, 9, 3, dtype=torch.float64)}, ValueError),
    ("kurtosis_grad", {"coef": torch.zeros(2, 5, 2)}, TypeError),
    ("kurtosis_grad", {"out": torch.empty(2, 9, 5)}, TypeError),
    ("total_variation", {"theta": torch.rand(4, 6).T}, ValueError),
    ("total_variation", {"theta": torch.rand(6)}, ValueError),
    ("total_variation", {"theta": torch.rand(4, 6, dtype=torch.float16)}, TypeError),
    ("total_variation_grad", {"out": torch.empty(4, 6)}, TypeError),
    ("total_variation_grad", {"out": torch.empty(4, 5, dtype=torch.float64)}, ValueError),
]


def test_native_adapter_accepts_well_formed_calls():
    for call in _adapter_calls().values():
        call()


@pytest.mark.parametrize(("name", "overrides", "error"), _WRONG_CALLS)
def test_native_adapter_refuses_a_wrong_call(name, overrides, error):
    # Every call into the C module goes through engines.native, which checks each tensor's
    # type, dtype, device, shape and layout before any address reaches C.
    with pytest.raises(error):
        _adapter_calls()[name](**overrides)


@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    window=st.sampled_from(["hann", "hamming", "blackman"]),
    n_fft=st.sampled_from([4, 16, 64]),
    n_frames=st.integers(1, 10),
    per_bin=st.booleans(),
    fractional=st.booleans(),
    integer_theta=st.booleans(),
    double=st.booleans(),
    batch=st.integers(1, 2),
    seed=st.integers(0, 2**31 - 1),
)
def test_fused_bin_kernel_equals_the_pytorch_engine(window, n_fft, n_frames, per_bin, fractional,
                                                    integer_theta, double, batch, seed):
    # Per-TF-bin θ (and per-bin θ at fractional positions) through the fused C kernel against
    # the PyTorch per-bin engine: spectrum and gradients w.r.t. signal, θ and tₙ, positions
    # unsorted and reaching past both ends of the signal, θ on the support edge when integer.
    gen = torch.Generator().manual_seed(seed)
    dtype = torch.float64 if double else torch.float32
    n_bins, length = n_fft // 2 + 1, 3 * n_fft
    x0 = torch.randn(batch, length, dtype=dtype, generator=gen)
    positions0 = torch.rand(n_frames, dtype=torch.float64, generator=gen) * (length + 2 * n_fft)
    positions0 = positions0 - n_fft
    if not fractional:
        positions0 = positions0.round().long()
        per_bin = False  # per-bin θ at integer positions is the matrix-product engine
    theta0 = 1 + (n_fft - 1) * torch.rand(n_bins, 1 if per_bin else n_frames,
                                          dtype=torch.float64, generator=gen)
    if integer_theta:
        theta0 = theta0.round()
    g = torch.randn(batch, n_bins, n_frames, dtype=torch.complex128, generator=gen)
    results = []
    for module in (native.MODULE, None):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(native, "MODULE", module)
            x = x0.clone().requires_grad_()
            theta = theta0.to(dtype).requires_grad_()
            positions = positions0.clone().requires_grad_() if fractional else positions0
            spec = dstft(x, n_fft=n_fft, window_length=theta, frame_positions=positions,
                         window=window)
            spec.backward(g.to(spec.dtype))
            results.append((spec.detach(), x.grad, theta.grad,
                            positions.grad if fractional else None))
    tol = 1e-11 if double else 2e-4
    for got, want in zip(*results, strict=True):
        if want is None:
            assert got is None
            continue
        scale = max(float(want.abs().max()), 1.0)
        assert float((got - want).abs().max()) <= tol * scale


@pytest.mark.parametrize("window", ["hann", "blackman"])
def test_fused_bin_kernel_gradcheck(window):
    # The fused kernel's backward is the exact vector-Jacobian product of its forward (float64,
    # finite differences) w.r.t. signal, per-TF θ and fractional positions.
    from torch.autograd import gradcheck

    assert transform.select_engine("tf", "fractional", True, True) == "bins-c"
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 40, dtype=torch.float64, generator=gen).requires_grad_()
    positions = (torch.tensor([0.0, 9.0, 17.0, 31.0], dtype=torch.float64)
                 + 0.2 + 0.6 * torch.rand(4, dtype=torch.float64, generator=gen)).requires_grad_()
    theta = (4 + 11 * torch.rand(9, 4, dtype=torch.float64, generator=gen)).requires_grad_()
    assert gradcheck(lambda a, b, c: torch.view_as_real(dstft(
        a, n_fft=16, window_length=b, frame_positions=c, window=window)), (x, theta, positions))


@pytest.mark.parametrize("window", ["hann", "blackman"])
def test_fused_bin_kernel_float32_keeps_single_precision_over_long_windows(window):
    # The float32 kernel runs its window and phase recurrences in single precision and restarts
    # them from double-precision values every 512 samples; windows of up to 2048 samples cross
    # several restarts. Against the float64 kernel (checked above against the PyTorch engine):
    # spectrum and every gradient within a few float32 roundings of their largest value.
    n_fft, hop = 2048, 512
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(1, 12 * n_fft, dtype=torch.float64, generator=gen)
    n_frames = 1 + x.shape[-1] // hop  # x, θ and the positions stay float64 constants here
    positions = torch.arange(n_frames, dtype=torch.float64) * hop + torch.rand(
        n_frames, dtype=torch.float64, generator=gen)
    theta = 16 + (n_fft - 16) * torch.rand(n_fft // 2 + 1, n_frames, dtype=torch.float64,
                                           generator=gen)
    g = torch.randn(1, n_fft // 2 + 1, n_frames, dtype=torch.complex128, generator=gen)
    results = []
    for dtype in (torch.float64, torch.float32):
        leaves = [x.to(dtype, copy=True).requires_grad_(),
                  theta.to(dtype, copy=True).requires_grad_(),
                  positions.clone().requires_grad_()]
        spec = dstft(leaves[0], n_fft=n_fft, window_length=leaves[1], frame_positions=leaves[2],
                     window=window)
        spec.backward(g.to(spec.dtype))
        results.append([spec.detach().to(torch.complex128)] + [t.grad.double() for t in leaves])
    for want, got in zip(*results, strict=True):
        assert float((got - want).abs().max()) <= 2e-6 * float(want.abs().max())


def test_fused_bin_kernel_serves_cosine_windows_on_the_cpu_only():
    # The dispatch table: the fused kernel for cosine-sum windows with the C module, the PyTorch
    # per-bin engine otherwise (Gaussian window, no module), the matrix product for per-bin θ
    # at integer positions.
    assert transform.select_engine("tf", "grid", True, True) == "bins-c"
    assert transform.select_engine("bin", "fractional", True, True) == "bins-c"
    assert transform.select_engine("bin", "integer", True, True) == "bin-gemm"
    assert transform.select_engine("tf", "fractional", False, True) == "bins"
    assert transform.select_engine("tf", "grid", True, False) == "bins"
    assert transform.select_engine("frame", "grid", False, False) == "grid"


def test_fused_bin_kernel_adapter_refuses_wrong_calls():
    x = torch.randn(1, 100)
    ok = {"n_fft": 16, "bases": torch.arange(4) * 20, "frac": None,
          "theta": torch.full((9, 4), 8.0, dtype=torch.float64), "coefficients": (0.5, 0.5)}
    spec = torch.empty(1, 4, 9, dtype=torch.complex64)
    native.tf_forward(x, spec, **ok)
    wrong = [
        ({"spec": torch.empty(1, 4, 9, dtype=torch.complex128)}, TypeError),
        ({"spec": torch.empty(1, 9, 4, dtype=torch.complex64).transpose(1, 2)}, ValueError),
        ({"theta": torch.full((9, 4), 8.0)}, TypeError),
        ({"theta": torch.full((9, 1), 8.0, dtype=torch.float64)}, ValueError),
        ({"n_fft": 15}, ValueError),
        ({"frac": torch.rand(3, dtype=torch.float64)}, ValueError),
    ]
    for overrides, error in wrong:
        args = ok | overrides
        out = args.pop("spec", spec)
        with pytest.raises(error):
            native.tf_forward(x, out, **args)
    grad = torch.randn(1, 4, 9, dtype=torch.complex64)
    outs = {"grad_theta": None, "grad_frac": None, "grad_frames": None}
    with pytest.raises(ValueError):
        native.tf_backward(x, grad, **ok, **outs)
    with pytest.raises(ValueError):
        native.tf_backward(x, grad, **ok, **(outs | {"grad_frames": torch.empty(1, 4, 15)}))
    with pytest.raises(TypeError):
        native.tf_backward(x, grad.to(torch.complex128), **ok,
                           **(outs | {"grad_theta": torch.empty(9, 4, dtype=torch.float64)}))
