"""Criteria on DSTFT outputs (Sec. VI): entropies, concentration, kurtosis, coverage and total
variation, and the registry of named losses that the recipes and the command line use.

Regularised objectives (``dstft optimize --tv-weight``, ``dstft track --tv-weight``) add
λ·TV(θ)/numel(θ): :func:`total_variation` per window length, so λ does not scale with the number of
frames or bins.

Every function takes tensors and returns a 0-d tensor, differentiable everywhere that matters:
zeros in the spectrogram (silent frames, padding) never produce NaN values or gradients.

The entropies and the kurtosis take |S| or the complex S itself. On CPU they, and the total
variation, run in the C module ``_losses`` (``_losses.c``, called through
:mod:`~dstft_cli.core.engines.native`): one pass over S for the value, one for the gradient, no
temporary array and nothing kept for the backward pass but S (BENCHMARKS.md table s);
elsewhere, or without the C module, the same formulas run as PyTorch operations.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .engines import native
from .loss_names import LOSS_NAMES, LossName, loss_forms, parse_loss

Tensor = torch.Tensor

__all__ = [
    "shannon_entropy", "renyi_entropy", "stankovic_concentration", "kurtosis", "coverage",
    "total_variation", "LOSSES", "LossSpec", "parse_loss", "evaluate", "loss_forms",
]

#: the C module, or None (not built: the PyTorch formulas below); tests set it to None
_native = native.LOSS_MODULE


def _tiny(t: Tensor) -> float:
    return torch.finfo(t.dtype).tiny


def _real_dtype(x: Tensor) -> torch.dtype:
    return x.dtype.to_real()


# ----------------------------------------------------------------------------- entropy kernels
# Group layout for the C module: each leading index's (M, N) values must fill one contiguous
# block, in either order (the transform returns S with frames contiguous, i.e. (N, M) in memory).
def _grouped(x: Tensor) -> Tensor:
    x = x.resolve_conj().resolve_neg()
    if x.is_contiguous() or x.transpose(-1, -2).is_contiguous():
        return x
    return x.contiguous()


def _uses_native(x: Tensor) -> bool:
    return (_native is not None and x.device.type == "cpu" and x.dim() >= 2
            and _real_dtype(x) in (torch.float32, torch.float64))


class _NativeEntropy(torch.autograd.Function):
    """Shannon (``alpha`` None) or Rényi entropy of p = m / Σm, m = |x|^q, per leading index.

    Only x itself is kept for the backward pass; see _losses.c for the passes and formulas.
    """

    @staticmethod
    def forward(ctx, x, q, alpha):
        x = _grouped(x)
        lead = x.shape[:-2]
        e = q / 2 if x.is_complex() else float(q)
        beta = 0.0 if alpha is None else alpha
        promote = False
        stats = native.entropy_moments(x, e, promote=promote, beta=beta)
        if _real_dtype(x) != torch.float64 and any(s[3] > 0 for s in stats):
            promote = True  # values outside the normal float range: everything in double precision
            stats = native.entropy_moments(x, e, promote=promote, beta=beta)
        log_t = [math.log(s[0]) if s[0] > 0 else 0.0 for s in stats]
        if alpha is None:
            values = [lt - s[1] / s[0] if s[0] > 0 else 0.0 for s, lt in zip(stats, log_t, strict=True)]
        else:
            # log Σ p^α = α(log max m − log T) + log W, W = Σ (m / max m)^α
            ratio = 1.0 / (1.0 / alpha - 1.0)  # α/(1−α), finite for α up to 1e308
            values = [ratio * (s[2] - lt) + math.log(s[4]) / (1.0 - alpha) if s[0] > 0 else 0.0
                      for s, lt in zip(stats, log_t, strict=True)]
        ctx.save_for_backward(x)
        ctx.setup = (e, promote, stats, log_t, values, alpha)
        return torch.tensor(values, dtype=_real_dtype(x)).reshape(lead)

    @staticmethod
    def backward(ctx, grad_values):
        (x,) = ctx.saved_tensors
        e, promote, stats, log_t, values, alpha = ctx.setup
        grads = grad_values.detach().to(torch.float64).reshape(-1).tolist()
        log_tiny = math.log(torch.finfo(_real_dtype(x)).tiny)
        rows = []
        exponent = 0.0
        for s, lt, h, g in zip(stats, log_t, values, grads, strict=True):
            total = s[0]
            if total <= 0:  # silent: p = 0 everywhere, the clamped limit −log tiny
                rows.append([0.0, 0.0, 0.0, 0.0, -g * log_tiny if alpha is None else 0.0, math.inf])
            elif alpha is None:
                # ∂H/∂m = −(log p + H)/T; p < tiny takes the clamped limit −(log tiny − H + 1)/T
                rows.append([-g * (h - lt) / total, -g / total, 0.0, 0.0,
                             g * (-log_tiny - h + 1.0) / total, log_tiny + lt])
            else:
                # ∂R/∂m = α/(1−α)/T · (p^(α−1)/Σp^α − 1), p^(α−1)/Σp^α = (m/max m)^(α−1)/(max m·W)
                ratio = 1.0 / (1.0 / alpha - 1.0)
                peak = float(s[2])
                a = -g * ratio / total
                c = g * ratio * math.exp(-peak) / s[4]
                rows.append([a, 0.0, c, peak, a, log_tiny + lt])
                exponent = alpha - 1.0
        coef = torch.tensor(rows, dtype=torch.float64)
        out = torch.empty_like(x)
        native.entropy_grad(x, e, promote=promote, coef=coef, exponent=exponent, out=out)
        return out, None, None


def _magnitude_power(x: Tensor, q: int) -> Tensor:
    if x.is_complex():
        return x.abs() if q == 1 else x.real.square() + x.imag.square()
    return x if q == 1 else x.square()


def _torch_entropy(x: Tensor, q: int, alpha: float | None) -> Tensor:
    """The formulas of _NativeEntropy with PyTorch operations (CUDA, or no C module)."""
    m = _magnitude_power(x, q)
    total = m.sum(dim=(-2, -1), keepdim=True)
    nonzero = total > 0
    p = m / torch.where(nonzero, total, torch.ones_like(total))
    tiny = _tiny(p)
    if alpha is None:
        return -(p * torch.log(p.clamp_min(tiny))).sum(dim=(-2, -1))
    peak = p.amax(dim=(-2, -1), keepdim=True)
    safe_peak = torch.where(nonzero, peak, torch.ones_like(peak))
    ratio = 1.0 / (1.0 / alpha - 1.0)
    # Σ (p/max p)^α ≥ 1 over the non-zero p: no underflow for any order α
    relative = torch.where(p >= tiny, p / safe_peak, torch.zeros_like(p))
    power = torch.where(relative > 0, relative.clamp_min(tiny).pow(alpha), torch.zeros_like(p))
    w = power.sum(dim=(-2, -1), keepdim=True)
    value = ratio * torch.log(safe_peak) + torch.log(torch.where(nonzero, w, torch.ones_like(w))) / (
        1.0 - alpha)
    return torch.where(nonzero, value, torch.zeros_like(value))[..., 0, 0]


def _entropy(x: Tensor, q: int, alpha: float | None) -> Tensor:
    if x.dim() < 2:
        raise ValueError(f"expected a spectrogram shaped (..., M, N), got shape {tuple(x.shape)}")
    return _group_entropies(x, q, alpha).mean()


def _group_entropies(x: Tensor, q: int, alpha: float | None) -> Tensor:
    """The entropy of each (M, N) map of x."""
    if _uses_native(x):
        # out-of-range float values are already recomputed in double precision by the kernels
        return _NativeEntropy.apply(x, q, alpha)
    value = _torch_entropy(x, q, alpha)
    if x.dtype in (torch.float32, torch.complex64) and not bool(torch.isfinite(value).all()):
        # |S|² of float32 values beyond ~1e19 overflows; the entropy does not depend on the
        # scale, so the same formula in double precision gives the value the data mean
        wide = x.to(torch.complex128 if x.is_complex() else torch.float64)
        value = _group_entropies(wide, q, alpha).to(value.dtype)
    return value


def _check_order(alpha: float) -> float:
    alpha = float(alpha)
    if not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"Rényi order alpha must be a finite number > 0, got {alpha}")
    return alpha


def shannon_entropy(magnitude: Tensor, *, energy: bool = False) -> Tensor:
    """Shannon entropy −Σ p log p of p = |S| / Σ|S| (Eq. 26); mean over leading dims.

    ``magnitude`` is ``|S|`` shaped (..., M, N), or the complex S itself (then |S| is taken
    inside, and only S is kept for the gradient). ``energy=True``: p = |S|² / Σ|S|² instead.
    Lower means a more concentrated spectrogram; a silent map has entropy 0.
    """
    return _entropy(magnitude, 2 if energy else 1, None)


def renyi_entropy(magnitude: Tensor, alpha: float, *, energy: bool = False) -> Tensor:
    """Rényi entropy (1/(1−α)) log Σ p^α of p = |S| / Σ|S| (or |S|² with ``energy``).

    Any finite order α > 0; α = 1 is Shannon's entropy, and a large α tends to −log max p
    (evaluated as α/(1−α)·log max p + log Σ (p/max p)^α / (1−α), which never under- or
    overflows). Zero entries contribute 0^α = 0; a silent map has entropy 0.
    """
    alpha = _check_order(alpha)
    if alpha == 1.0:
        return shannon_entropy(magnitude, energy=energy)
    return _entropy(magnitude, 2 if energy else 1, alpha)


def stankovic_concentration(magnitude: Tensor, p: float = 2.0) -> Tensor:
    """Stanković's concentration measure (Σ ρ^(1/p))^p / Σ ρ of the energy ρ = |S|² (p > 1).

    L. Stanković, "A measure of some time–frequency distributions concentration", Signal
    Processing 81(3):621–631, 2001, with the distribution normalised to unit energy. For p = 2
    it is (Σ|S|)² / Σ|S|², the squared ℓ1/ℓ2 norm ratio of S, between 1 (one non-zero bin)
    and M·N (a flat map); lower is more concentrated. It equals exp((p − 1)·H_{1/p}) of the
    energy-based Rényi entropy of order 1/p, which is how it is evaluated. Mean over leading dims.
    """
    p = float(p)
    if not (math.isfinite(p) and p > 1):  # p = 1 is the constant 1
        raise ValueError(f"Stanković's exponent p must be a finite number > 1, got {p}")
    if magnitude.dim() < 2:
        raise ValueError(f"expected a spectrogram shaped (..., M, N), got shape {tuple(magnitude.shape)}")
    per_group = _group_entropies(magnitude, 2, 1.0 / p)
    return torch.exp((p - 1.0) * per_group).mean()


def _frame_scale(x: Tensor) -> Tensor:
    """σ per frame of x (..., M, N): the power of two that brings max |Re|, |Im| over the bins
    into [½, 1) (1 for a silent frame), shaped (..., N). The kurtosis of a frame does not
    depend on its scale, and |σ·x|⁴ neither overflows nor underflows."""
    parts = torch.view_as_real(x) if x.is_complex() else x[..., None]
    peak = torch.maximum(parts.amax(dim=(-3, -1)), -parts.amin(dim=(-3, -1)))
    # subnormal peaks: the largest power of two of the dtype (|σ·x|⁴ is then still normal)
    exponent = (-torch.frexp(peak).exponent).clamp_max(int(math.log2(torch.finfo(peak.dtype).max)))
    sigma = torch.ldexp(torch.ones_like(peak), exponent)
    return torch.where(peak > 0, sigma, torch.ones_like(sigma))


def _scaled_power(x: Tensor, sigma: Tensor) -> Tensor:
    """w = |σ·x|² as a new real tensor (..., M, N), σ per frame."""
    parts = torch.view_as_real(x) if x.is_complex() else x[..., None]
    scale = sigma[..., None, :]
    power = parts[..., 0].mul(scale).square_()
    if x.is_complex():
        power += parts[..., 1].mul(scale).square_()
    return power


def _torch_kurtosis_stats(x: Tensor) -> Tensor:
    """The frame sums of _losses.c's kurtosis pass with PyTorch operations: (Σw, Σw², σ) per
    frame, float64 (..., N, 3)."""
    sigma = _frame_scale(x)
    power = _scaled_power(x, sigma)
    s2 = power.sum(dim=-2, dtype=torch.float64)
    s4 = torch.linalg.vecdot(power.transpose(-1, -2), power.transpose(-1, -2)).to(torch.float64)
    return torch.stack([s2, s4, sigma.to(torch.float64)], dim=-1)


def _torch_kurtosis_grad(x: Tensor, stats: Tensor, coef: Tensor) -> Tensor:
    sigma = stats[..., 2].to(_real_dtype(x))
    power = _scaled_power(x, sigma)
    p, q = (coef[..., k].to(power.dtype)[..., None, :] for k in (0, 1))
    # σ·x first: P·σ alone may leave the float range where σ·x and P·(w − Q) do not
    return (x * sigma[..., None, :]).mul_(power.sub_(q).mul_(p))


class _Kurtosis(torch.autograd.Function):
    # kₙ = M·Σw² / (Σw)² per frame, w = |σₙ·S|² (σₙ a power of two per frame: kₙ does not change
    # with the scale), from the frame sums s₂ = Σw, s₄ = Σw² and nothing else kept but S:
    # ∂kₙ/∂S = Pₙ·(w − Qₙ)·σₙ·S with Pₙ = 4M·σₙ/s₂², Qₙ = s₄/s₂ (PyTorch's ∂/∂Re + i·∂/∂Im).
    # A silent frame (s₂ = 0) contributes 0 and has no gradient.
    @staticmethod
    def forward(ctx, x):
        x = _grouped(x)
        use_native = _uses_native(x)
        stats = native.kurtosis_stats(x) if use_native else _torch_kurtosis_stats(x)
        s2, s4 = stats[..., 0], stats[..., 1]
        active = s2 > 0
        safe = torch.where(active, s2, torch.ones_like(s2))
        frames = torch.where(active, x.shape[-2] * s4 / safe.square(), torch.zeros_like(s2))
        ctx.save_for_backward(x, stats)
        ctx.use_native = use_native
        return frames.mean().to(_real_dtype(x))

    @staticmethod
    def backward(ctx, grad_value):
        x, stats = ctx.saved_tensors
        s2, s4, sigma = stats.unbind(-1)
        active = s2 > 0
        safe = torch.where(active, s2, torch.ones_like(s2))
        scale = grad_value.to(torch.float64) * 4 * x.shape[-2] / s2.numel()
        p = torch.where(active, scale * sigma / safe.square(), torch.zeros_like(s2))
        q = torch.where(active, s4 / safe, torch.zeros_like(s2))
        coef = torch.stack([p, q], dim=-1)
        if not ctx.use_native:
            return _torch_kurtosis_grad(x, stats, coef)
        out = torch.empty_like(x)
        native.kurtosis_grad(x, stats, coef, out)
        return out


def kurtosis(magnitude: Tensor) -> Tensor:
    """Mean frame kurtosis (1/N) Σₙ E_m[|S|⁴] / E_m[|S|²]² (Eq. 30); larger means sharper.

    ``magnitude`` is |S| (..., M, N) or the complex S. Every frame is evaluated at its own scale
    (the kurtosis does not depend on it), so spectra of any magnitude give the same value; a
    silent frame contributes 0 rather than 0/0.
    """
    if magnitude.dim() < 2:
        raise ValueError(f"expected a spectrogram shaped (..., M, N), got shape {tuple(magnitude.shape)}")
    return _Kurtosis.apply(magnitude)


def coverage(frame_positions: Tensor, window_lengths: Tensor, signal_length: int) -> Tensor:
    """Signal coverage of Eq. (32), about 1 when the frames cover the whole signal.

    (1/Ls) Σₙ min(tₙ₊₁ − tₙ, (θₙ₊₁ + θₙ)/2) · 1[tₙ₊₁ − θₙ₊₁/2 < Ls] · 1[tₙ + θₙ/2 > 0]

    ``frame_positions`` (N,), ``window_lengths`` (N,) or scalar (one length per frame).
    """
    t = frame_positions
    theta = window_lengths.expand_as(t) if window_lengths.dim() == 0 else window_lengths
    if t.shape[0] < 2:
        return (theta.sum() * 0 + torch.clamp(theta[0], max=float(signal_length))) / signal_length
    gap = t[1:] - t[:-1]
    reach = 0.5 * (theta[1:] + theta[:-1])
    inside = ((t[1:] - 0.5 * theta[1:]) < signal_length) & ((t[:-1] + 0.5 * theta[:-1]) > 0)
    return (torch.minimum(gap, reach) * inside).sum() / signal_length


def _tv_norms(theta: Tensor, eps: float) -> Tensor:
    """sqrt((θ_{m,n} − θ_{m+1,n})² + (θ_{m,n} − θ_{m,n+1})² + ε²), zero differences past the edges."""
    norms = torch.full_like(theta, eps * eps)
    d = theta[:-1, :] - theta[1:, :]
    norms[:-1, :].addcmul_(d, d)
    d = theta[:, :-1] - theta[:, 1:]
    norms[:, :-1].addcmul_(d, d)
    return norms.sqrt_()


class _TotalVariation(torch.autograd.Function):
    # One node. C module: one pass for the value, one for the gradient, nothing kept but θ;
    # PyTorch: the norms are the only M·N array kept for the backward pass.
    @staticmethod
    def forward(ctx, theta, eps):
        ctx.eps = eps
        if _uses_native(theta):
            theta = theta.contiguous()
            ctx.save_for_backward(theta)
            return torch.tensor(native.total_variation(theta, eps), dtype=theta.dtype)
        norms = _tv_norms(theta, eps)
        ctx.save_for_backward(theta, norms)
        return (norms.sum(dtype=torch.float64) - eps * norms.numel()).to(theta.dtype)

    @staticmethod
    def backward(ctx, grad_value):
        if len(ctx.saved_tensors) == 1:
            (theta,) = ctx.saved_tensors
            grad = torch.empty_like(theta)
            native.total_variation_grad(theta, ctx.eps, float(grad_value), grad)
            return grad, None
        theta, norms = ctx.saved_tensors
        grad = torch.zeros_like(theta)
        u = (theta[:-1, :] - theta[1:, :]).div_(norms[:-1, :])
        grad[:-1, :] += u
        grad[1:, :] -= u
        v = (theta[:, :-1] - theta[:, 1:]).div_(norms[:, :-1])
        grad[:, :-1] += v
        grad[:, 1:] -= v
        return grad.mul_(grad_value), None


def total_variation(window_length: Tensor, *, eps: float = 1e-6) -> Tensor:
    """Isotropic total variation of a (M, N) window-length map (Eq. 28).

    Σ_{m,n} sqrt((θ_{m,n} − θ_{m+1,n})² + (θ_{m,n} − θ_{m,n+1})² + ε²) − ε, with the right and
    lower neighbours; ε keeps the square root differentiable where the map is flat. (M, 1) and (N,)
    maps are accepted (one direction only).
    """
    theta = window_length
    if theta.dim() == 1:
        theta = theta[None, :]
    if theta.dim() != 2:
        raise ValueError(f"total_variation expects a 1-D or 2-D map, got shape {tuple(theta.shape)}")
    return _TotalVariation.apply(theta, float(eps))


# ------------------------------------------------------------------------------- named losses
@dataclass(frozen=True)
class LossSpec:
    """A named loss (:data:`~dstft_cli.core.loss_names.LOSS_NAMES`) and its function:
    ``function(spectrum, parameter)`` → 0-d tensor, lower is better."""

    name: LossName
    function: Callable[[Tensor, float | None], Tensor]


_FUNCTIONS: dict[str, Callable[[Tensor, float | None], Tensor]] = {
    "shannon": lambda s, _: shannon_entropy(s),
    "shannon-energy": lambda s, _: shannon_entropy(s, energy=True),
    "renyi": lambda s, a: renyi_entropy(s, a),
    "renyi-energy": lambda s, a: renyi_entropy(s, a, energy=True),
    "stankovic": lambda s, p: stankovic_concentration(s, p),
    "kurtosis": lambda s, _: -kurtosis(s),
}

#: The losses the recipes and ``--loss`` accept, by name.
LOSSES: dict[str, LossSpec] = {name: LossSpec(spec, _FUNCTIONS[name])
                               for name, spec in LOSS_NAMES.items()}


def evaluate(loss: str, spectrum: Tensor) -> Tensor:
    """The named loss (see :data:`LOSSES`) of a spectrogram: the complex S or |S|, (..., M, N).

    Lower is better for every loss (kurtosis is negated); the mean over leading dims.
    """
    name, parameter = parse_loss(loss)
    return LOSSES[name].function(spectrum, parameter)
