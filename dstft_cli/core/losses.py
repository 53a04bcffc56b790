"""Criteria on DSTFT outputs (Sec. VI): entropies, kurtosis, coverage and total variation.

Regularised objectives (``dstft optimize --tv-weight``, ``dstft track --tv-weight``) add
λ·TV(θ)/numel(θ): :func:`total_variation` per window length, so λ does not scale with the number of
frames or bins.

Every function takes tensors and returns a 0-d tensor, differentiable everywhere that matters:
zeros in the spectrogram (silent frames, padding) never produce NaN values or gradients.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor

__all__ = ["shannon_entropy", "renyi_entropy", "kurtosis", "coverage", "total_variation"]


def _tiny(t: Tensor) -> float:
    return torch.finfo(t.dtype).tiny


def _distribution(magnitude: Tensor) -> Tensor:
    """p = |S| / Σ|S| over the last two dims (M, N); an all-zero map stays all-zero."""
    total = magnitude.sum(dim=(-2, -1), keepdim=True)
    # Dividing a silent map by 1 keeps p = 0 with finite gradients (dividing by a tiny
    # number would overflow them).
    return magnitude / torch.where(total > 0, total, torch.ones_like(total))


class _ShannonEntropy(torch.autograd.Function):
    # One node instead of five (divide, clamp, log, multiply, sum): only |S| is kept for the
    # backward pass, which matters when |S| has hundreds of millions of bins.
    @staticmethod
    def forward(ctx, magnitude):
        p = _distribution(magnitude)
        h = -(p * torch.log(p.clamp_min(_tiny(p)))).sum(dim=(-2, -1))
        ctx.save_for_backward(magnitude)
        return h

    @staticmethod
    def backward(ctx, grad_h):
        (magnitude,) = ctx.saved_tensors
        total = magnitude.sum(dim=(-2, -1), keepdim=True)
        nonzero = total > 0
        safe = torch.where(nonzero, total, torch.ones_like(total))
        p = magnitude / safe
        # a = ∂h/∂p = −(log max(p, tiny) + 1[p ≥ tiny]), exactly what autograd gives the
        # clamped expression of the forward pass; then ∂p_j/∂|S|_k = (δ_jk − p_j·1[T > 0]) / T.
        tiny = _tiny(p)
        a = torch.log(p.clamp_min(tiny)).add_((p >= tiny).to(p.dtype)).neg_()
        mean_a = (a * p).sum(dim=(-2, -1), keepdim=True) * nonzero
        return a.sub_(mean_a).div_(safe).mul_(grad_h[..., None, None])


# Frames per block in the entropy of a complex spectrum: temporaries stay at a few block-sized
# arrays instead of several copies of |S| (a 10-minute recording has 10⁸ bins).
_ENTROPY_BLOCK_ELEMENTS = 1 << 22


def _frame_blocks(spec: Tensor):
    width = max(1, _ENTROPY_BLOCK_ELEMENTS // max(1, spec[..., :1].numel()))
    for n0 in range(0, spec.shape[-1], width):
        yield slice(n0, min(n0 + width, spec.shape[-1]))


def _dot_last2(a: Tensor, b: Tensor) -> Tensor:
    """Σ a·b over the last two dims without an elementwise temporary."""
    lead = a.shape[:-2]
    a2 = a.reshape(-1, 1, a.shape[-2] * a.shape[-1])
    b2 = b.reshape(-1, b.shape[-2] * b.shape[-1], 1)
    return torch.bmm(a2, b2).reshape(lead)


class _SpectrumShannonEntropy(torch.autograd.Function):
    # H(|S|) straight from the complex S, in blocks of frames: only S is kept for the backward
    # pass and no full-size temporary besides the gradient itself is ever allocated.
    @staticmethod
    def forward(ctx, spec):
        real = spec.real.dtype
        total = torch.zeros(spec.shape[:-2], dtype=real, device=spec.device)
        for cols in _frame_blocks(spec):
            total += spec[..., cols].abs().sum(dim=(-2, -1))
        safe = torch.where(total > 0, total, torch.ones_like(total))[..., None, None]
        h = torch.zeros_like(total)
        for cols in _frame_blocks(spec):
            p = spec[..., cols].abs().div_(safe)
            h -= _dot_last2(p, p.clamp_min(_tiny(p)).log_())
        ctx.save_for_backward(spec, total)
        return h

    @staticmethod
    def backward(ctx, grad_h):
        spec, total = ctx.saved_tensors
        nonzero = (total > 0)[..., None, None]
        safe = torch.where(total > 0, total, torch.ones_like(total))[..., None, None]

        def a_and_p(cols):
            # a = ∂h/∂p = −(log max(p, tiny) + 1[p ≥ tiny]) as in _ShannonEntropy
            mag = spec[..., cols].abs()
            p = mag / safe
            tiny = _tiny(p)
            a = torch.log(p.clamp_min(tiny)).add_((p >= tiny).to(p.dtype)).neg_()
            return mag, p, a

        mean_a = torch.zeros_like(total)
        for cols in _frame_blocks(spec):
            _, p, a = a_and_p(cols)
            mean_a += _dot_last2(a, p)
        mean_a = mean_a[..., None, None] * nonzero
        scale = grad_h[..., None, None] / safe
        grad = torch.empty_like(spec)
        for cols in _frame_blocks(spec):
            mag, _, a = a_and_p(cols)
            # ∂h/∂|S| = (a − Σ a p)/T, then ∂|S|/∂S̄ = S/|S| (0 where S = 0, like abs())
            zero = mag == 0
            coef = a.sub_(mean_a).mul_(scale).div_(mag.masked_fill_(zero, 1)).masked_fill_(zero, 0)
            torch.mul(spec[..., cols], coef, out=grad[..., cols])
        return grad


def shannon_entropy(magnitude: Tensor) -> Tensor:
    """Shannon entropy −Σ p log p of p = |S| / Σ|S| (Eq. 26); mean over leading dims.

    ``magnitude`` is ``|S|`` shaped (..., M, N), or the complex S itself: then |S| is taken
    inside, block by block, which needs far less memory on long signals (only S is kept for
    the gradient). Lower means a more concentrated spectrogram.
    """
    if magnitude.is_complex():
        return _SpectrumShannonEntropy.apply(magnitude).mean()
    return _ShannonEntropy.apply(magnitude).mean()


def renyi_entropy(magnitude: Tensor, alpha: float) -> Tensor:
    """Rényi entropy (1/(1−α)) log Σ p^α of p = |S| / Σ|S|; α → 1 gives Shannon's."""
    alpha = float(alpha)
    if not alpha > 0:
        raise ValueError(f"Rényi order alpha must be > 0, got {alpha}")
    if abs(alpha - 1.0) < 1e-12:
        return shannon_entropy(magnitude)
    p = _distribution(magnitude)
    s = p.clamp_min(_tiny(p)).pow(alpha).sum(dim=(-2, -1)) if alpha < 1 else p.pow(alpha).sum(
        dim=(-2, -1)
    )
    return (torch.log(s.clamp_min(_tiny(s))) / (1.0 - alpha)).mean()


def kurtosis(magnitude: Tensor) -> Tensor:
    """Mean frame kurtosis (1/N) Σₙ E_m[|S|⁴] / E_m[|S|²]² (Eq. 30); larger means sharper.

    A silent frame contributes 0 rather than 0/0.
    """
    power = magnitude * magnitude
    num = (power * power).mean(dim=-2)
    den = power.mean(dim=-2).pow(2)
    return (num / den.clamp_min(_tiny(den))).mean()


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
    d_freq = torch.zeros_like(theta)
    d_time = torch.zeros_like(theta)
    d_freq[:-1, :] = theta[:-1, :] - theta[1:, :]
    d_time[:, :-1] = theta[:, :-1] - theta[:, 1:]
    return (torch.sqrt(d_freq * d_freq + d_time * d_time + eps * eps) - eps).sum()
