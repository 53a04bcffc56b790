"""Inverse DSTFT: the least-squares signal whose DSTFT is closest to a given S.

For constant and per-frame θ every column of S is the rfft of one windowed frame, so the
least-squares solution is the classic weighted overlap-add (Griffin & Lim):

    x̂[k] = Σₙ ω(k − tₙ, θₙ) aₙ[k] / Σₙ ω(k − tₙ, θₙ)²,   aₙ = irfft of column n

For per-bin and per-TF-bin θ every bin has its own window, so columns are not DFTs of one frame;
x̂ then solves the normal equations AᵀA x = Aᵀ S by conjugate gradients, A being the DSTFT
itself and Aᵀ its exact adjoint (the backward pass w.r.t. the signal), with a Jacobi
preconditioner Σ_{m,n} ω² per sample.
"""

from __future__ import annotations

import torch

from .engines.common import frame_phase, offsets, scatter_frames, split_positions
from .transform import default_frame_positions, dstft, window_length_kind
from .windows import evaluate_window, get_window

Tensor = torch.Tensor

__all__ = ["idstft"]


def idstft(
    spec: Tensor,
    *,
    n_fft: int,
    window_length,
    signal_length: int,
    frame_positions: Tensor | None = None,
    hop_length: int | float | None = None,
    window: str = "hann",
    max_iter: int = 500,
    rtol: float | None = None,
) -> Tensor:
    """Reconstruct a real signal (..., Ls) from its DSTFT ``spec`` (..., M, N).

    Parameters are those given to :func:`~dstft_cli.core.dstft`. Every sample must be covered by
    at least one window (Σ ω² > 0), otherwise a ``ValueError`` names the uncovered range.
    ``max_iter``/``rtol`` control the conjugate-gradient solve of the per-bin modes (``rtol``
    defaults to 100·machine epsilon of the dtype, relative to the right-hand side).
    """
    if not spec.is_complex():
        raise TypeError("spec must be complex (the output of dstft)")
    real_dtype = spec.real.dtype
    n_bins = n_fft // 2 + 1
    if spec.shape[-2] != n_bins:
        raise ValueError(f"spec has {spec.shape[-2]} bins, n_fft={n_fft} gives {n_bins}")
    if frame_positions is None:
        frame_positions = default_frame_positions(
            signal_length, n_fft // 4 if hop_length is None else hop_length, device=spec.device
        )
    frame_positions = torch.as_tensor(frame_positions, device=spec.device)
    n_frames = spec.shape[-1]
    if frame_positions.shape != (n_frames,):
        raise ValueError(f"frame_positions must be ({n_frames},), got {tuple(frame_positions.shape)}")
    theta = torch.as_tensor(window_length, dtype=real_dtype, device=spec.device)
    kind = window_length_kind(theta, n_bins, n_frames)
    win = get_window(window)
    base, frac = split_positions(frame_positions.detach(), real_dtype)
    lead = spec.shape[:-2]
    spec2 = spec.reshape(-1, n_bins, n_frames)
    j = offsets(n_fft, spec.device, real_dtype)
    x_arg = j[None, :] if frac is None else j[None, :] - frac[:, None]

    if kind in ("constant", "frame"):
        w, _, _ = evaluate_window(win, x_arg, theta.detach().reshape(-1, 1))
        w = w.expand(n_frames, n_fft)
        phase = frame_phase(base, n_fft, real_dtype)
        frames = torch.fft.irfft(spec2.transpose(-1, -2) * phase.conj(), n=n_fft, dim=-1)
        num = scatter_frames(frames * w, base, signal_length, n_fft)
        den = scatter_frames((w * w)[None], base, signal_length, n_fft)[0]
        _check_covered(den)
        return (num / den).reshape(*lead, signal_length)

    # per-bin / per-TF-bin: conjugate gradients on the normal equations
    theta = theta.detach()
    diag = _gram_diagonal(win, x_arg, theta.expand(n_bins, n_frames), base, signal_length, n_fft)
    _check_covered(diag)

    def forward(x):
        return dstft(x, n_fft=n_fft, window_length=theta, frame_positions=frame_positions,
                     window=win)

    def adjoint(y):
        x = torch.zeros(y.shape[0], signal_length, dtype=real_dtype, device=spec.device,
                        requires_grad=True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(forward(x), x, grad_outputs=y)
        return g

    def normal(x):
        return adjoint(forward(x))

    rhs = adjoint(spec2)
    rtol = 100 * torch.finfo(real_dtype).eps if rtol is None else rtol
    x = _pcg(normal, rhs, 1.0 / diag, max_iter, rtol)
    return x.reshape(*lead, signal_length)


def _check_covered(weight: Tensor) -> None:
    if weight.device.type != "cpu":
        return
    bad = torch.nonzero(weight <= 0)
    if bad.numel():
        first, last = int(bad[0, -1]), int(bad[-1, -1])
        raise ValueError(
            f"samples {first}…{last} are not covered by any window; the signal cannot be "
            "reconstructed there (use more frames or longer windows)"
        )


def _gram_diagonal(win, x_arg, theta_full, base, signal_length, n_fft) -> Tensor:
    """Σ_{m,n} ω(k − tₙ, θ_{m,n})² per sample k, frames in chunks (no M×N×L tensor)."""
    n_bins, n_frames = theta_full.shape
    weight = torch.zeros(n_frames, n_fft, dtype=theta_full.dtype, device=theta_full.device)
    chunk = max(1, (1 << 21) // (n_bins * n_fft))
    for n0 in range(0, n_frames, chunk):
        n1 = min(n0 + chunk, n_frames)
        xa = x_arg if x_arg.shape[0] == 1 else x_arg[n0:n1]
        w, _, _ = evaluate_window(win, xa, theta_full[:, n0:n1, None])
        weight[n0:n1] = (w * w).sum(0)
    return scatter_frames(weight[None], base, signal_length, n_fft)[0]


def _pcg(apply_a, b, inv_diag, max_iter, rtol):
    x = torch.zeros_like(b)
    r = b.clone()
    z = r * inv_diag
    p = z.clone()
    rz = (r * z).sum(-1, keepdim=True)
    b_norm = b.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(b.dtype).tiny)
    for _ in range(max_iter):
        ap = apply_a(p)
        alpha = rz / (p * ap).sum(-1, keepdim=True).clamp_min(torch.finfo(b.dtype).tiny)
        x = x + alpha * p
        r = r - alpha * ap
        if bool((r.norm(dim=-1, keepdim=True) <= rtol * b_norm).all()):
            break
        z = r * inv_diag
        rz_new = (r * z).sum(-1, keepdim=True)
        p = z + (rz_new / rz) * p
        rz = rz_new
    return x
