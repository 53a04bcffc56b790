"""Losses: known values, the plain formulas in numpy, gradients, degenerate inputs and parameters."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dstft_cli import losses
from dstft_cli.core import losses as core_losses

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


# ------------------------------------------------------------------ the plain formulas in numpy
def _groups(magnitude: np.ndarray) -> np.ndarray:
    return magnitude.reshape(-1, magnitude.shape[-2] * magnitude.shape[-1]).astype(np.float64)


def np_shannon(mag, q=1):
    out = []
    for g in _groups(mag) ** q:
        p = g[g > 0] / g.sum() if g.sum() > 0 else np.zeros(0)
        out.append(-(p * np.log(p)).sum())
    return float(np.mean(out))


def np_renyi(mag, alpha, q=1):
    out = []
    for g in _groups(mag) ** q:
        p = g[g > 0] / g.sum()
        out.append(np.log((p ** alpha).sum()) / (1 - alpha) if p.size else 0.0)
    return float(np.mean(out))


def np_stankovic(mag, p=2.0):
    # a silent group has zero entropy by convention, so its measure exp((p − 1)·H) is 1
    groups = _groups(mag.astype(np.float64))
    return float(np.mean([(g ** (2 / p)).sum() ** p / (g ** 2).sum() if g.any() else 1.0
                          for g in groups]))


def np_kurtosis(mag):
    m = mag.astype(np.float64)
    power = m ** 2
    return float(np.mean((power ** 2).mean(axis=-2) / power.mean(axis=-2) ** 2))


#: registry name → the numpy value of the loss on |S|
NUMPY = {
    "shannon": lambda m: np_shannon(m),
    "shannon-energy": lambda m: np_shannon(m, 2),
    "renyi:3": lambda m: np_renyi(m, 3.0),
    "renyi:0.5": lambda m: np_renyi(m, 0.5),
    "renyi-energy:2.5": lambda m: np_renyi(m, 2.5, 2),
    "renyi-energy:0.3": lambda m: np_renyi(m, 0.3, 2),
    "stankovic": lambda m: np_stankovic(m),
    "stankovic:3": lambda m: np_stankovic(m, 3.0),
    "kurtosis": lambda m: -np_kurtosis(m),
}


def _spectrum(shape, dtype, seed=0, scale=1.0, zeros=0.0):
    gen = torch.Generator().manual_seed(seed)
    s = torch.randn(*shape, dtype=dtype, generator=gen) * scale
    if zeros:
        s = s * (torch.rand(*shape, generator=gen) >= zeros)
    return s


@pytest.mark.parametrize("name", sorted(NUMPY))
@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_every_named_loss_equals_its_numpy_formula(name, dtype):
    s = _spectrum((2, 33, 41), dtype, zeros=0.1)
    ref = NUMPY[name](s.abs().numpy())
    tol = 1e-12 if dtype == torch.complex128 else 2e-5
    for x in (s, s.abs(), s.transpose(-1, -2).contiguous().transpose(-1, -2)):
        assert float(losses.evaluate(name, x)) == pytest.approx(ref, rel=tol, abs=tol)


@pytest.mark.parametrize("name", sorted(NUMPY))
def test_every_named_loss_has_the_gradient_of_its_formula(name):
    s = _spectrum((2, 5, 6), torch.complex128, seed=1) + 0.1
    assert torch.autograd.gradcheck(lambda x: losses.evaluate(name, x), (s.requires_grad_(),))
    m = s.detach().abs().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: losses.evaluate(name, x), (m,))


@pytest.mark.parametrize("name", sorted(NUMPY))
def test_the_torch_formulas_equal_the_c_module(name, monkeypatch):
    if core_losses._native is None:
        pytest.skip("the C module _losses is not built")
    s = _spectrum((3, 17, 12), torch.complex128, seed=2, zeros=0.2).requires_grad_()
    value = losses.evaluate(name, s)
    (grad,) = torch.autograd.grad(value, s)
    monkeypatch.setattr(core_losses, "_native", None)
    ref = losses.evaluate(name, s)
    (ref_grad,) = torch.autograd.grad(ref, s)
    assert float(value) == pytest.approx(float(ref), rel=1e-12, abs=1e-12)
    assert torch.allclose(grad, ref_grad, rtol=1e-9, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    lead=st.sampled_from([(), (1,), (3,), (2, 2)]),
    bins=st.integers(1, 40), frames=st.integers(1, 40),
    log_scale=st.floats(-30, 30), zeros=st.sampled_from([0.0, 0.5, 1.0]),
    name=st.sampled_from(sorted(NUMPY)), seed=st.integers(0, 2**16),
)
def test_losses_match_numpy_at_any_shape_and_scale(lead, bins, frames, log_scale, zeros, name, seed):
    s = _spectrum((*lead, bins, frames), torch.complex64, seed, 10.0 ** log_scale, zeros)
    mag = s.abs().numpy()
    if name == "kurtosis" or not mag.any():
        mag_ok = (mag ** 2).sum(axis=-2).all() if name == "kurtosis" else True
        if not mag_ok or not mag.any():
            # silent maps and frames: every entropy is 0 by convention; kurtosis frames count 0
            assert math.isfinite(float(losses.evaluate(name, s)))
            return
    ref = NUMPY[name](mag)
    value = float(losses.evaluate(name, s))
    # float32 data: |S|² of values around 1e±30 leaves the float range; the module then
    # recomputes in double precision, so the result is as accurate at every scale
    assert value == pytest.approx(ref, rel=3e-5, abs=3e-5)


def test_tiny_and_huge_float32_spectra_are_computed_as_in_double_precision():
    s = _spectrum((20, 30), torch.complex128, seed=4)
    for scale in (1e-25, 1e25):
        x = (s * scale).to(torch.complex64)
        for name in ("shannon", "renyi:2", "shannon-energy", "stankovic"):
            assert float(losses.evaluate(name, x)) == pytest.approx(
                float(losses.evaluate(name, x.to(torch.complex128))), rel=1e-5)


def test_gradient_of_a_complex_spectrum_is_zero_where_it_vanishes():
    s = _spectrum((4, 5), torch.complex128, seed=5)
    s[1, 2] = 0
    s.requires_grad_()
    for name in NUMPY:
        (g,) = torch.autograd.grad(losses.evaluate(name, s), s)
        assert g[1, 2] == 0 and torch.isfinite(g).all()


def test_renyi_of_huge_order_tends_to_the_min_entropy_and_alpha_one_is_shannon():
    s = _spectrum((2, 9, 11), torch.complex128, seed=6)
    mag = s.abs().reshape(2, -1)
    min_entropy = float((-torch.log(mag.max(dim=1).values / mag.sum(dim=1))).mean())
    for alpha in (1e9, 1e300):
        value = losses.renyi_entropy(s, alpha)
        assert float(value) == pytest.approx(min_entropy, rel=1e-6)
    s.requires_grad_()
    (g,) = torch.autograd.grad(losses.renyi_entropy(s, 1e300), s)
    assert torch.isfinite(g).all()
    assert float(losses.evaluate("renyi:1", s)) == float(losses.shannon_entropy(s))
    assert losses.parse_loss("renyi-energy:1") == ("shannon-energy", None)


@pytest.mark.parametrize("bad", ["renyi:0", "renyi:-2", "renyi:inf", "renyi:nan", "renyi", "renyi:x",
                                 "renyi-energy:", "stankovic:1", "stankovic:0.5", "stankovic:inf",
                                 "shannon:2", "kurtosis:1", "entropy", ""])
def test_degenerate_parameters_are_refused(bad):
    with pytest.raises(ValueError, match="loss"):
        losses.parse_loss(bad)
    with pytest.raises(ValueError):
        losses.evaluate(bad, torch.ones(3, 3))


def test_direct_calls_refuse_degenerate_orders():
    x = torch.ones(3, 3)
    for alpha in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="order"):
            losses.renyi_entropy(x, alpha)
    with pytest.raises(ValueError, match="exponent"):
        losses.stankovic_concentration(x, 1.0)


def test_registry_names_parse_with_defaults():
    assert losses.parse_loss("Stankovic") == ("stankovic", 2.0)
    assert losses.parse_loss("renyi-energy:3") == ("renyi-energy", 3.0)
    assert set(losses.LOSSES) == {"shannon", "shannon-energy", "renyi", "renyi-energy", "stankovic",
                                  "kurtosis"}
    for form in losses.loss_forms().split(", "):
        name = form.split(":")[0].split("[")[0]
        assert name in losses.LOSSES


def test_stankovic_measure_bounds():
    one = torch.zeros(6, 7, dtype=F64)
    one[2, 3] = 5.0
    assert float(losses.stankovic_concentration(one)) == pytest.approx(1.0)
    assert float(losses.stankovic_concentration(torch.ones(6, 7, dtype=F64))) == pytest.approx(42.0)


def _tv_by_autograd(theta, eps=1e-6):
    d_freq = torch.zeros_like(theta)
    d_time = torch.zeros_like(theta)
    d_freq[:-1, :] = theta[:-1, :] - theta[1:, :]
    d_time[:, :-1] = theta[:, :-1] - theta[:, 1:]
    return (torch.sqrt(d_freq * d_freq + d_time * d_time + eps * eps) - eps).sum()


@pytest.mark.parametrize("shape", [(7, 9), (1, 5), (6, 1), (1, 1)])
def test_total_variation_equals_its_formula_with_gradient(shape):
    theta = (torch.rand(*shape, dtype=F64, generator=torch.Generator().manual_seed(7)) * 100
             ).requires_grad_()
    value, ref = losses.total_variation(theta), _tv_by_autograd(theta)
    (g,) = torch.autograd.grad(value, theta)
    (g_ref,) = torch.autograd.grad(ref, theta)
    assert float(value) == pytest.approx(float(ref), rel=1e-12, abs=1e-12)
    assert torch.allclose(g, g_ref, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(losses.total_variation, (theta,))


def test_kurtosis_gradient_on_a_complex_spectrum_with_a_silent_frame():
    s = _spectrum((2, 6, 5), torch.complex128, seed=8)
    s[0, :, 1] = 0
    s.requires_grad_()
    assert torch.autograd.gradcheck(losses.kurtosis, (s,))
    m = s.detach().abs().requires_grad_()
    assert torch.autograd.gradcheck(losses.kurtosis, (m,))


def test_threaded_split_gives_the_same_sums():
    if core_losses._native is None:
        pytest.skip("the C module _losses is not built")
    s = _spectrum((2, 300, 200), torch.complex64, seed=9)
    before = core_losses._native.set_parallel_threshold(0)
    try:
        split = [float(losses.evaluate(n, s)) for n in ("shannon", "renyi:3")]
    finally:
        core_losses._native.set_parallel_threshold(1 << 40)
    try:
        single = [float(losses.evaluate(n, s)) for n in ("shannon", "renyi:3")]
    finally:
        core_losses._native.set_parallel_threshold(before)
    assert split == single


def _on_path(path, monkeypatch):
    """Run the losses on the C module ("c") or on the PyTorch formulas ("torch")."""
    if path == "torch":
        monkeypatch.setattr(core_losses, "_native", None)
    elif core_losses._native is None:
        pytest.skip("the C module _losses is not built")


@pytest.mark.parametrize("path", ["c", "torch"])
@pytest.mark.parametrize(("dtype", "scale"), [(torch.complex64, 1e-30), (torch.complex64, 1e30),
                                              (torch.complex64, 1e-42), (torch.complex128, 1e-200),
                                              (torch.complex128, 1e200), (torch.float32, 1e-30)])
def test_kurtosis_is_the_same_at_any_scale(path, dtype, scale, monkeypatch):
    # |S|² of 1e-30 underflows in float32 and |S|⁴ of 1e200 overflows in float64: every frame
    # is evaluated at its own scale, so the value is the numpy value of the unscaled data and
    # the gradient scales as 1/scale.
    _on_path(path, monkeypatch)
    s = _spectrum((2, 40, 30), torch.complex128, seed=10)
    if not dtype.is_complex:
        s = s.abs()
    ref = np_kurtosis(np.abs(s.numpy()))
    unit = s.clone().requires_grad_()
    (g_unit,) = torch.autograd.grad(losses.kurtosis(unit), unit)
    x = (s * scale).to(dtype).requires_grad_()
    value = losses.kurtosis(x)
    (g,) = torch.autograd.grad(value, x)
    double = dtype in (torch.complex128, torch.float64)
    tol = 1e-12 if double else 1e-5
    if scale == 1e-42:
        # float32 subnormals keep a few bits: the value of the rounded data (scaled back), not of s
        data = np.abs(x.detach().to(torch.complex128).numpy()) / scale
        assert float(value) == pytest.approx(np_kurtosis(data), rel=tol)
    else:
        assert float(value) == pytest.approx(ref, rel=tol)
        scaled = g.to(g_unit.dtype) * scale
        assert torch.allclose(scaled, g_unit, rtol=1e-9 if double else 1e-4,
                              atol=(1e-12 if double else 1e-5) * float(g_unit.abs().max()))


@pytest.mark.parametrize("path", ["c", "torch"])
def test_kurtosis_of_frames_far_below_the_loudest_is_their_own(path, monkeypatch):
    # the kurtosis of each frame does not depend on the other frames' level
    _on_path(path, monkeypatch)
    s = _spectrum((30, 4), torch.complex128, seed=11)
    ref = np_kurtosis(np.abs(s[:, [0, 1, 3]].numpy())) * 3 / 4
    s[:, 1] *= 1e-150
    s[:, 2] = 0  # silent: counts 0
    assert float(losses.kurtosis(s)) == pytest.approx(ref, rel=1e-12)


def np_total_variation(theta, eps=1e-6):
    theta = theta.astype(np.float64)
    d_freq = np.zeros_like(theta)
    d_time = np.zeros_like(theta)
    d_freq[:-1, :] = theta[:-1, :] - theta[1:, :]
    d_time[:, :-1] = theta[:, :-1] - theta[:, 1:]
    return float((np.sqrt(d_freq ** 2 + d_time ** 2 + eps ** 2) - eps).sum())


@pytest.mark.parametrize("shape", [(7, 9), (1, 5), (6, 1), (1, 1), (40, 130)])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_total_variation_c_and_torch_paths_agree_with_numpy(shape, dtype, monkeypatch):
    if core_losses._native is None:
        pytest.skip("the C module _losses is not built")
    theta = (torch.rand(*shape, dtype=F64, generator=torch.Generator().manual_seed(12)) * 100
             ).to(dtype).requires_grad_()
    value = losses.total_variation(theta)
    (grad,) = torch.autograd.grad(value * 3.0, theta)
    monkeypatch.setattr(core_losses, "_native", None)
    ref = losses.total_variation(theta)
    (ref_grad,) = torch.autograd.grad(ref * 3.0, theta)
    tol = 1e-12 if dtype == F64 else 1e-5
    assert float(value) == pytest.approx(np_total_variation(theta.detach().numpy()), rel=tol)
    assert float(value) == pytest.approx(float(ref), rel=tol)
    assert torch.allclose(grad, ref_grad, rtol=tol, atol=tol)


def test_total_variation_gradcheck_on_the_c_module():
    if core_losses._native is None:
        pytest.skip("the C module _losses is not built")
    theta = (torch.rand(9, 13, dtype=F64, generator=torch.Generator().manual_seed(13)) * 10
             ).requires_grad_()
    assert torch.autograd.gradcheck(losses.total_variation, (theta,))
    assert torch.autograd.gradcheck(lambda t: losses.total_variation(t, eps=0.5), (theta,))
    assert torch.autograd.gradcheck(losses.total_variation, (theta[2].detach().requires_grad_(),))


@pytest.mark.parametrize("name", ["kurtosis", "renyi:3", "stankovic", "renyi-energy:2"])
def test_c_kernels_for_every_layout_and_dtype_have_the_gradient_of_their_formula(name):
    # the power tails taken by products (renyi:3, stankovic, renyi-energy:2), the kurtosis in
    # both memory layouts, real and complex
    s = _spectrum((2, 7, 6), torch.complex128, seed=14) + 0.1
    for x in (s, s.transpose(-1, -2).contiguous().transpose(-1, -2), s.abs()):
        leaf = x.detach().requires_grad_()
        assert torch.autograd.gradcheck(lambda t, n=name: losses.evaluate(n, t), (leaf,))


def test_threaded_split_gives_the_same_kurtosis_and_total_variation():
    if core_losses._native is None:
        pytest.skip("the C module _losses is not built")
    s = _spectrum((2, 300, 200), torch.complex64, seed=15)
    theta = torch.rand(300, 200, generator=torch.Generator().manual_seed(15)) * 100
    cases = [(s, lambda t: losses.kurtosis(t)),
             (s.transpose(-1, -2).contiguous().transpose(-1, -2), lambda t: losses.kurtosis(t)),
             (theta, losses.total_variation)]

    def run():
        out = []
        for x, fn in cases:
            leaf = x.clone().requires_grad_()
            value = fn(leaf)
            out += [value.detach(), torch.autograd.grad(value, leaf)[0]]
        return out

    before = core_losses._native.set_parallel_threshold(0)
    try:
        split = run()
        core_losses._native.set_parallel_threshold(1 << 40)
        single = run()
    finally:
        core_losses._native.set_parallel_threshold(before)
    for a, b in zip(split, single, strict=True):
        assert torch.equal(a, b)


def _instruction_sets():
    module = core_losses._native
    return range(module.instruction_set()[1] + 1) if module is not None else []


@pytest.mark.parametrize("level", _instruction_sets())
@pytest.mark.parametrize("name", sorted(set(NUMPY) - {"kurtosis"}))
@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_every_instruction_set_gives_the_formula_and_the_same_gradient(level, name, dtype):
    # The entropy kernels exist for AVX-512, AVX2 and the baseline; the CPU's best is used, so
    # the others are run here by lowering the level. 37 × 53 values: vector loops with tails.
    module = core_losses._native
    s = _spectrum((2, 37, 53), dtype, seed=3, zeros=0.1)
    layouts = (s, s.abs(), s.transpose(-1, -2).contiguous().transpose(-1, -2))
    before = module.instruction_set()[0]
    try:
        results = {}
        for use in (0, level):
            module.instruction_set(use)
            for k, x in enumerate(layouts):
                x = x.clone().requires_grad_()
                value = losses.evaluate(name, x)
                (grad,) = torch.autograd.grad(value, x)
                results[use, k] = float(value), grad
    finally:
        module.instruction_set(before)
    tol = 1e-12 if dtype == torch.complex128 else 2e-5
    ref = NUMPY[name](s.abs().numpy())
    for k in range(len(layouts)):
        value, grad = results[level, k]
        base_value, base_grad = results[0, k]
        assert value == pytest.approx(ref, rel=tol, abs=tol)
        assert value == pytest.approx(base_value, rel=tol, abs=tol)
        assert torch.allclose(grad, base_grad, rtol=10 * tol, atol=10 * tol * float(grad.abs().max()))


def test_an_instruction_set_the_cpu_lacks_is_refused():
    if core_losses._native is None:
        pytest.skip("the C module _losses is not built")
    level, highest = core_losses._native.instruction_set()
    with pytest.raises(ValueError, match="not available"):
        core_losses._native.instruction_set(highest + 1)
    assert core_losses._native.instruction_set() == (level, highest)
