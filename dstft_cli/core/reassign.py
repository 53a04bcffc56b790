"""Reassignment and synchrosqueezing of the DSTFT (Auger & Flandrin 1995; Oberlin et al. 2014).

The DSTFT of Eq. (6), S[m, n] = Σ_k ω(k − tₙ, θ_{m,n}) s[k] e^{−j2πkm/L}, is computed twice more
with the windows x·ω(x, θ) and ∂ω/∂x (x, θ), for the same θ and positions. With

    S_tω[m, n] = Σ_k (k − tₙ) ω(k − tₙ, θ) s[k] e^{−j2πkm/L}
    S_ω′[m, n] = Σ_k ∂ₓω(k − tₙ, θ) s[k] e^{−j2πkm/L}

the reassignment operators (time in samples, frequency in bins of 1/L cycles per sample) are

    t̂[m, n] = tₙ + Re(S_tω · S̄ / |S|²)
    f̂[m, n] = m − L/(2π) · Im(S_ω′ · S̄ / |S|²)

A Dirac at k₀ gives t̂ = k₀ exactly; a complex tone of frequency ν₀ gives f̂ = ν₀·L up to the
aliasing of the sampled window's spectrum (tiny for Hann, Blackman and Gaussian).

Both extra windows belong to a window family of their own, so the engines of
:func:`~dstft_cli.core.dstft` compute them for every parameterisation (θ constant, per frame, per
bin, per TF bin; integer, fractional or learnable positions). With ω(x, θ) = g(x/θ)/θ and u = x/θ:

    x·ω(x, θ) = θ · [u·g(u)] / θ        → S_tω = θ · DSTFT with base window u·g(u)
    ∂ₓω(x, θ) = θ⁻¹ · g′(u) / θ         → S_ω′ = θ⁻¹ · DSTFT with base window g′(u)

θ here is θ_{m,n} of the output bin, so the factors θ and 1/θ multiply S element-wise for every
parameterisation. The derived families need their own derivatives for the θ- and t-gradients:
(u·g)′ = g + u·g′ and (g′)′ = g″ (analytic for cosine sums; autograd of g′ otherwise).

Windows whose base does not vanish at the edges (Hamming, truncated Gaussian) are differentiated
as smooth functions inside their support, as everywhere in the engines; the jump at the edge is
ignored, which makes the operators approximate for Hamming (its edge is 8 % of its peak).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import torch

from .transform import default_frame_positions, dstft, window_length_kind
from .windows import BaseWindow, evaluate_window, get_window

Tensor = torch.Tensor

__all__ = [
    "ReassignmentOperators", "time_weighted_window", "derivative_window", "reassignment_spectra",
    "reassignment_operators", "reassigned_spectrogram", "synchrosqueeze", "synchrosqueezed_inverse",
    "synchrosqueezed_sample_positions",
]

# |S|² below this fraction of the signal's largest |S|² is not reassigned: the ratios S_tω/S and
# S_ω′/S are then dominated by rounding, and the energy moved is negligible anyway.
DEFAULT_THRESHOLD = 1e-10


@dataclass(frozen=True)
class ReassignmentOperators:
    """The DSTFT ``spec`` (..., M, N) and where each of its bins is moved.

    ``times``: t̂ in samples, ``freqs``: f̂ in bins (f̂ / L cycles per sample), both real
    (..., M, N). Bins whose power is below the threshold keep their own coordinates (tₙ, m);
    ``moved`` marks the others.
    """

    spec: Tensor
    times: Tensor
    freqs: Tensor
    moved: Tensor


def _autograd_derivative(f):
    def derivative(u: Tensor) -> Tensor:
        with torch.enable_grad():
            v = u.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(f(v).sum(), v)
        return grad
    return derivative


def _second_derivative(base: BaseWindow):
    if base.cosine_coefficients is not None:
        coefficients = base.cosine_coefficients

        def d2g(u: Tensor) -> Tensor:
            angle = u * (2 * math.pi)
            out = torch.zeros_like(u)
            for k, a in enumerate(coefficients[1:], start=1):
                out = out - (a * (2 * math.pi * k) ** 2) * torch.cos(angle * k)
            return out
        return d2g
    return _autograd_derivative(base.dg)


@cache
def _time_weighted(base: BaseWindow) -> BaseWindow:
    return BaseWindow(
        f"{base.name}·t",
        lambda u: u * base.g(u),
        lambda u: base.g(u) + u * base.dg(u),
        # g(±½) = g′(±½) = 0 ⇒ (u·g)(±½) = (u·g)′(±½) = 0
        vanishes_at_edges=base.vanishes_at_edges,
    )


@cache
def _derivative(base: BaseWindow) -> BaseWindow:
    # g″(±½) ≠ 0 even for Hann, so the support must be masked, not clamped.
    return BaseWindow(f"{base.name}′", base.dg, _second_derivative(base), vanishes_at_edges=False)


def time_weighted_window(window: str | BaseWindow) -> BaseWindow:
    """The family u·g(u) whose DSTFT, times θ, is S_tω (module docstring)."""
    return _time_weighted(get_window(window))


def derivative_window(window: str | BaseWindow) -> BaseWindow:
    """The family g′(u) whose DSTFT, divided by θ, is S_ω′ (module docstring)."""
    return _derivative(get_window(window))


def _theta_grid(window_length, x: Tensor, n_bins: int, n_frames: int) -> Tensor:
    """θ as a tensor broadcasting against (..., M, N)."""
    theta = window_length if isinstance(window_length, Tensor) else torch.as_tensor(
        window_length, dtype=x.dtype, device=x.device)
    theta = theta.to(dtype=x.dtype, device=x.device)
    kind = window_length_kind(theta, n_bins, n_frames)
    if kind == "constant":
        return theta.reshape(())
    if kind == "frame":
        return theta.reshape(n_frames)
    return theta


def _positions(x: Tensor, n_fft: int, frame_positions, hop_length) -> Tensor:
    if frame_positions is None:
        hop = n_fft // 4 if hop_length is None else hop_length
        return default_frame_positions(x.shape[-1], hop, device=x.device)
    if not isinstance(frame_positions, Tensor):
        frame_positions = torch.as_tensor(frame_positions)
    return frame_positions.to(x.device)


def reassignment_spectra(
    x: Tensor, *, n_fft: int, window_length, frame_positions: Tensor | None = None,
    hop_length: int | float | None = None, window: str | BaseWindow = "hann",
    engine: str = "fused",
) -> tuple[Tensor, Tensor, Tensor]:
    """(S, S_tω, S_ω′), each complex (..., M, N); arguments as :func:`~dstft_cli.core.dstft`."""
    common = dict(n_fft=n_fft, window_length=window_length, frame_positions=frame_positions,
                  hop_length=hop_length, engine=engine)
    base = get_window(window)
    spec = dstft(x, window=base, **common)
    theta = _theta_grid(window_length, x, spec.shape[-2], spec.shape[-1])
    spec_t = dstft(x, window=time_weighted_window(base), **common) * theta
    spec_d = dstft(x, window=derivative_window(base), **common) / theta
    return spec, spec_t, spec_d


def reassignment_operators(
    x: Tensor, *, n_fft: int, window_length, frame_positions: Tensor | None = None,
    hop_length: int | float | None = None, window: str | BaseWindow = "hann",
    engine: str = "fused", threshold: float = DEFAULT_THRESHOLD,
) -> ReassignmentOperators:
    """t̂ and f̂ of every bin of the DSTFT of ``x`` (module docstring).

    ``threshold``: bins with |S|² ≤ threshold · max |S|² (per signal) are not moved.
    Differentiable with respect to θ, the positions and ``x`` wherever bins are moved.
    """
    spec, spec_t, spec_d = reassignment_spectra(
        x, n_fft=n_fft, window_length=window_length, frame_positions=frame_positions,
        hop_length=hop_length, window=window, engine=engine)
    n_bins, n_frames = spec.shape[-2:]
    positions = _positions(x, n_fft, frame_positions, hop_length).to(spec.real.dtype)
    power = spec.real.square() + spec.imag.square()
    peak = power.flatten(-2).amax(-1)[..., None, None]
    moved = power > threshold * peak
    safe_power = torch.where(moved, power, torch.ones_like(power))
    conj = spec.conj()
    dt = (spec_t * conj).real / safe_power
    df = (spec_d * conj).imag / safe_power * (n_fft / (2 * math.pi))
    bins = torch.arange(n_bins, dtype=power.dtype, device=power.device)[:, None]
    zero = torch.zeros((), dtype=power.dtype, device=power.device)
    times = positions + torch.where(moved, dt, zero)
    freqs = bins - torch.where(moved, df, zero)
    return ReassignmentOperators(spec, times, freqs, moved)


def _nearest_frame(times: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
    """Index of the frame nearest to each time, and whether the time lies within half a frame
    spacing of the grid's first and last frames."""
    order = torch.argsort(positions)
    sorted_pos = positions[order]
    if sorted_pos.numel() == 1:
        return torch.zeros_like(times, dtype=torch.long), torch.ones_like(times, dtype=torch.bool)
    midpoints = 0.5 * (sorted_pos[1:] + sorted_pos[:-1])
    index = torch.bucketize(times.contiguous(), midpoints.contiguous())
    low = sorted_pos[0] - 0.5 * (sorted_pos[1] - sorted_pos[0])
    high = sorted_pos[-1] + 0.5 * (sorted_pos[-1] - sorted_pos[-2])
    return order[index], (times >= low) & (times <= high)


def reassigned_spectrogram(
    x: Tensor, *, n_fft: int, window_length, frame_positions: Tensor | None = None,
    hop_length: int | float | None = None, window: str | BaseWindow = "hann",
    engine: str = "fused", threshold: float = DEFAULT_THRESHOLD,
) -> tuple[Tensor, ReassignmentOperators]:
    """The reassigned spectrogram (..., M, N): every |S[m, n]|² added to the grid bin nearest to
    (t̂, f̂) — the frame whose position is nearest to t̂ and the bin round(f̂).

    Energy moved below bin 0, above the Nyquist bin or more than half a frame spacing past the
    first or last frame is dropped. Returns the spectrogram and the operators.
    """
    ops = reassignment_operators(
        x, n_fft=n_fft, window_length=window_length, frame_positions=frame_positions,
        hop_length=hop_length, window=window, engine=engine, threshold=threshold)
    n_bins, n_frames = ops.spec.shape[-2:]
    positions = _positions(x, n_fft, frame_positions, hop_length).to(ops.times.dtype).detach()
    frame, inside_t = _nearest_frame(ops.times.detach(), positions)
    freqs = ops.freqs.detach()
    inside_f = (freqs >= -0.5) & (freqs < n_bins - 0.5)
    row = torch.round(freqs).clamp_(0, n_bins - 1).long()
    power = ops.spec.real.square() + ops.spec.imag.square()
    power = torch.where(inside_t & inside_f, power, torch.zeros((), dtype=power.dtype,
                                                                 device=power.device))
    lead = power.shape[:-2]
    flat_index = (row * n_frames + frame).reshape(-1, n_bins * n_frames)
    out = torch.zeros(flat_index.shape, dtype=power.dtype, device=power.device)
    out = out.scatter_add(1, flat_index, power.reshape(-1, n_bins * n_frames))
    return out.reshape(*lead, n_bins, n_frames), ops


def synchrosqueezed_sample_positions(frame_positions: Tensor) -> Tensor:
    """kₙ = round(tₙ): the sample each frame of the synchrosqueezed transform reconstructs."""
    if not frame_positions.is_floating_point():
        return frame_positions.long()
    return torch.floor(frame_positions.detach() + 0.5).long()


def synchrosqueeze(
    x: Tensor, *, n_fft: int, window_length, frame_positions: Tensor | None = None,
    hop_length: int | float | None = None, window: str | BaseWindow = "hann",
    engine: str = "fused", threshold: float = DEFAULT_THRESHOLD,
) -> tuple[Tensor, ReassignmentOperators]:
    """The STFT synchrosqueezed transform T (..., M, N), complex: each bin moved along frequency
    only, to round(f̂) (clamped to 0 … M−1 so no coefficient is lost).

    Every coefficient is first referred to the sample kₙ = round(tₙ) and normalised,

        T[η, n] = Σ_{m : round(f̂[m,n]) = η} cₘ S[m, n] e^{j2πkₙm/L} / (L ω(kₙ − tₙ, θ_{m,n})),

    cₘ = 1 for the DC and Nyquist bins and 2 otherwise, so that the inversion is the discrete
    form of the FSST reconstruction s(t) = (1/ω(0)) ∫ T(t, η) dη (Oberlin, Meignen & Perrier
    2014):  s[kₙ] = Re Σ_η T[η, n]  (:func:`synchrosqueezed_inverse`). For constant and per-frame
    θ this is the inverse DFT of the frame evaluated at kₙ and holds to rounding for any signal;
    for per-bin and per-TF θ it holds where θ varies little across the bins one component
    occupies. |T| on a component's ridge is about its amplitude. It reconstructs the samples kₙ:
    hop 1 gives the whole signal.
    """
    ops = reassignment_operators(
        x, n_fft=n_fft, window_length=window_length, frame_positions=frame_positions,
        hop_length=hop_length, window=window, engine=engine, threshold=threshold)
    spec = ops.spec
    n_bins, n_frames = spec.shape[-2:]
    real_dtype = spec.real.dtype
    positions = _positions(x, n_fft, frame_positions, hop_length)
    samples = synchrosqueezed_sample_positions(positions)
    offset = (samples.to(real_dtype) - positions.to(real_dtype)).detach()
    theta = _theta_grid(window_length, x, n_bins, n_frames).detach()
    centre, _, _ = evaluate_window(get_window(window), offset, theta)
    m = torch.arange(n_bins, device=spec.device)
    # e^{j2πkₙm/L} from (kₙ·m) mod L in integers: exact for any signal length
    turns = (samples[None, :] * m[:, None]).remainder(n_fft).to(real_dtype) * (2 * math.pi / n_fft)
    weight = torch.full((n_bins, 1), 2.0, dtype=real_dtype, device=spec.device)
    weight[0] = 1.0
    weight[-1] = 1.0
    scale = weight / (n_fft * centre)
    referred = spec * torch.polar(scale.expand(n_bins, n_frames).contiguous(), turns)
    row = torch.round(ops.freqs.detach()).clamp_(0, n_bins - 1).long()
    lead = spec.shape[:-2]
    frames = torch.arange(n_frames, device=spec.device)
    flat_index = (row * n_frames + frames).reshape(-1, n_bins * n_frames)
    out = torch.zeros(flat_index.shape, dtype=spec.dtype, device=spec.device)
    out = out.scatter_add(1, flat_index, referred.reshape(-1, n_bins * n_frames))
    return out.reshape(*lead, n_bins, n_frames), ops


def synchrosqueezed_inverse(sst: Tensor, *, bins: slice | Tensor | None = None) -> Tensor:
    """s[kₙ] (..., N) from the synchrosqueezed transform (..., M, N): Re Σ_η T[η, n], over all
    bins or only ``bins`` (a slice or a boolean (M,) or (M, N) mask) to extract a component."""
    if bins is None:
        return sst.real.sum(-2)
    if isinstance(bins, slice):
        return sst[..., bins, :].real.sum(-2)
    mask = bins if bins.dim() == 2 else bins[:, None]
    return (sst.real * mask.to(sst.real.dtype)).sum(-2)
