"""Per-bin θₘ and per-TF-bin θₘ,ₙ engines: a different window for every bin, O(M·N·L).

* :class:`BinGemmEngine` — per-bin θ on integer positions: the window of bin m is the same in
  every frame, so S = F·Kᵀ, one matrix product.
* :class:`BinEngine` — any other per-bin or per-TF-bin case: direct summation of Eq. (6) in
  chunks of frames, so that no N×M×L tensor ever exists (peak memory O(M·N + chunk·M·L)).
"""

from __future__ import annotations

import math

import torch

from ..windows import evaluate_window
from . import native
from .common import (
    dft_tables,
    frame_phase,
    gather_frames,
    offsets,
    save_inputs,
    saved_inputs,
    scatter_frames,
    with_lead,
)

Tensor = torch.Tensor
# Elements of one (M, chunk, L) window block in the per-bin engine: 2²¹ doubles = 16 MiB.
CHUNK_ELEMENTS = 1 << 21


def _chunk_frames(n_bins: int, n_fft: int, batch: int, chunk_size: int | None) -> int:
    if chunk_size is not None:
        return max(1, int(chunk_size))
    return max(1, CHUNK_ELEMENTS // (n_bins * n_fft * batch))


def support_slice(theta_blk: Tensor, n_fft: int) -> slice:
    """Offsets j (as frame indices) that can fall inside a window of this block.

    The window covers x = j − {t} ∈ (−θ/2, θ/2] with 0 ≤ {t} < 1, so −θ/2 < j < θ/2 + 1. Only
    computed on CPU: reading θ_max on a GPU would synchronise the device, which then sums over
    the whole frame (the extra terms are exact zeros).
    """
    if theta_blk.device.type != "cpu":
        return slice(0, n_fft)
    half = float(theta_blk.detach().max()) / 2
    j_lo = max(-n_fft // 2 + 1, math.floor(-half))
    j_hi = min(n_fft // 2, math.ceil(half) + 1)
    offset = n_fft // 2 - 1  # frame index of j is j + L/2 − 1
    return slice(j_lo + offset, j_hi + offset + 1)


def _block_windows(window, frac, theta_blk, n0, n1, cols, n_fft, dtype, **which):
    """ω (and derivatives) for frames n0:n1, every bin, offsets ``cols``: (M, nc, Lj) each."""
    if window.cosine_coefficients is not None and native.usable(theta_blk):
        return native_block_windows(window, frac, theta_blk, n0, n1, cols, n_fft, dtype,
                                     **which)
    j = offsets(n_fft, theta_blk.device, dtype)[cols]
    x_arg = j if frac is None else j[None, :] - frac[n0:n1, None]  # (Lj,) or (nc, Lj)
    return evaluate_window(window, x_arg, theta_blk[:, :, None], **which)


def native_block_windows(window, frac, theta_blk, n0, n1, cols, n_fft, dtype, *, value=True,
                          d_theta=False, d_x=False):
    """_block_windows by the C module: each (bin, frame) row evaluated by recurrences on its
    support (a cos and a sin per element were half of the per-TF-bin engine's time)."""
    n_bins, nc = theta_blk.shape
    width = cols.stop - cols.start
    theta64 = theta_blk.detach().to(torch.float64).contiguous()
    frac64 = None if frac is None else frac[n0:n1].detach().to(torch.float64).contiguous()
    w, dth, dx = (theta_blk.new_empty((n_bins, nc, width), dtype=dtype) if wanted else None
                  for wanted in (value, d_theta, d_x))
    native.cosine_block(theta64, frac64, n_fft=n_fft, first=cols.start,
                        coefficients=window.cosine_coefficients, w=w, dth=dth, dx=dx)
    return w, dth, dx


def _project(block: Tensor, frames: Tensor, cos_sin: Tensor) -> Tensor:
    """Σ_j block[m,n,j]·frames[b,n,j]·(cos, sin)[m,j] → (M, B, nc, 2).

    The product block ⊙ frames is formed once and contracted with both tables in one batched
    matrix product over bins.
    """
    n_bins, nc, width = block.shape[0], block.shape[-2], block.shape[-1]
    batch = frames.shape[0]
    z = block.expand(n_bins, nc, width)[:, None] * frames[None]  # (M, B, nc, Lj)
    return torch.bmm(z.view(n_bins, batch * nc, width), cos_sin).view(n_bins, batch, nc, 2)


class BinEngine(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, theta, frac, base, window, n_fft, chunk_size):
        n_bins, n_frames, batch = n_fft // 2 + 1, base.shape[0], x.shape[0]
        chunk = _chunk_frames(n_bins, n_fft, batch, chunk_size)
        theta_full = theta.expand(n_bins, n_frames)
        cos_sin = torch.stack(dft_tables(n_fft, x.device, x.dtype), -1)  # (M, L, 2)
        frames = gather_frames(x, base, n_fft)
        out = x.new_empty(n_bins, batch, n_frames, 2)
        for n0 in range(0, n_frames, chunk):
            n1 = min(n0 + chunk, n_frames)
            theta_blk = theta_full[:, n0:n1]
            cols = support_slice(theta_blk, n_fft)
            w, _, _ = _block_windows(window, frac, theta_blk, n0, n1, cols, n_fft, x.dtype)
            out[:, :, n0:n1] = _project(w, frames[:, n0:n1, cols], cos_sin[:, cols])
        spec = torch.complex(out[..., 0], -out[..., 1]).permute(1, 0, 2)  # (B, M, N)
        phase = frame_phase(base, n_fft, x.dtype, rfft_origin=False).T  # (M, N)
        save_inputs(ctx, x, theta, frac, base)
        ctx.window, ctx.n_fft, ctx.chunk = window, n_fft, chunk
        return spec * phase

    @staticmethod
    def backward(ctx, grad_out):
        x, theta, frac, base = saved_inputs(ctx)
        window, n_fft, chunk = ctx.window, ctx.n_fft, ctx.chunk
        need_x, need_theta, need_frac = ctx.needs_input_grad[:3]
        n_bins, n_frames, batch = n_fft // 2 + 1, base.shape[0], x.shape[0]
        theta_full = theta.expand(n_bins, n_frames)
        cos_sin = torch.stack(dft_tables(n_fft, x.device, x.dtype), -1)  # (M, L, 2)
        frames = gather_frames(x, base, n_fft)
        # X = G·conj(phase); dL/dp = Σ Re(conj X · Y_p) with Y_p = Σ_j ∂_pW F (cos − i sin),
        # i.e. xr·c − xi·s for the (c, s) projections of ∂_pW.
        X = grad_out * frame_phase(base, n_fft, x.dtype, rfft_origin=False).T.conj()
        xr_xs = torch.stack((X.real, -X.imag), -1).permute(1, 0, 2, 3)  # (M, B, N, 2)
        grad_theta_full = torch.zeros_like(theta_full) if need_theta else None
        grad_frac = x.new_zeros(n_frames) if need_frac else None
        grad_frames = x.new_zeros(batch, n_frames, n_fft) if need_x else None
        for n0 in range(0, n_frames, chunk):
            n1 = min(n0 + chunk, n_frames)
            theta_blk = theta_full[:, n0:n1]
            cols = support_slice(theta_blk, n_fft)
            w, dth, dx = _block_windows(
                window, frac, theta_blk, n0, n1, cols, n_fft, x.dtype,
                value=need_x, d_theta=need_theta, d_x=need_frac,
            )
            fr = frames[:, n0:n1, cols]
            cs = cos_sin[:, cols]
            g_blk = xr_xs[:, :, n0:n1]  # (M, B, nc, 2)
            if need_theta:
                grad_theta_full[:, n0:n1] = (_project(dth, fr, cs) * g_blk).sum((1, 3))
            if need_frac:
                grad_frac[n0:n1] = -(_project(dx, fr, cs) * g_blk).sum((0, 1, 3))
            if need_x:
                # dL/dF[b,n,j] = Σ_m W[m,n,j](xr[b,m,n] cos[m,j] − xi[b,m,n] sin[m,j])
                nc, width = n1 - n0, cs.shape[1]
                q = torch.bmm(g_blk.reshape(n_bins, batch * nc, 2), cs.transpose(1, 2))
                q = q.view(n_bins, batch, nc, width) * w.expand(n_bins, nc, width)[:, None]
                grad_frames[:, n0:n1, cols] = q.sum(0)
        grad_x = scatter_frames(grad_frames, base, x.shape[-1], n_fft) if need_x else None
        grad_theta = None
        if need_theta:
            grad_theta = grad_theta_full.sum(1, keepdim=True) if theta.shape[1] == 1 else grad_theta_full
        return grad_x, grad_theta, grad_frac, None, None, None, None


class BinGemmEngine(torch.autograd.Function):
    """Per-bin θₘ on integer frame positions: the window of bin m is the same in every frame, so
    S = F·Kᵀ with K[m, j] = ω(j, θₘ)e^{−j2πjm/L}, a matrix product instead of a block sum."""

    @staticmethod
    def forward(ctx, x, theta, base, window, n_fft):
        n_bins, n_frames, batch = n_fft // 2 + 1, base.shape[0], x.shape[0]
        cos, sin = dft_tables(n_fft, x.device, x.dtype)
        w, _, _ = evaluate_window(window, offsets(n_fft, x.device, x.dtype), theta)  # (M, L)
        frames = gather_frames(x, base, n_fft).reshape(batch * n_frames, n_fft)
        real = frames @ (w * cos).T  # (B·N, M)
        imag = frames @ (w * sin).T
        spec = torch.complex(real, -imag).view(batch, n_frames, n_bins).transpose(-1, -2)
        ctx.save_for_backward(x, theta, base)
        ctx.window, ctx.n_fft = window, n_fft
        return spec * frame_phase(base, n_fft, x.dtype, rfft_origin=False).T

    @staticmethod
    def backward(ctx, grad_out):
        x, theta, base = ctx.saved_tensors
        window, n_fft = ctx.window, ctx.n_fft
        need_x, need_theta = ctx.needs_input_grad[:2]
        n_frames, batch = base.shape[0], x.shape[0]
        cos, sin = dft_tables(n_fft, x.device, x.dtype)
        X = grad_out * frame_phase(base, n_fft, x.dtype, rfft_origin=False).T.conj()  # (B, M, N)
        xr = X.real.transpose(0, 1).reshape(-1, batch * n_frames)  # (M, B·N)
        xi = X.imag.transpose(0, 1).reshape(-1, batch * n_frames)
        w, dth, _ = evaluate_window(window, offsets(n_fft, x.device, x.dtype), theta,
                                    value=need_x, d_theta=need_theta)
        frames = gather_frames(x, base, n_fft).reshape(batch * n_frames, n_fft)
        grad_x = grad_theta = None
        if need_theta:
            # Σ_j ∂θω[m,j] Σ_n F[n,j](xr[m,n] cos[m,j] − xi[m,n] sin[m,j])
            grad_theta = (dth * ((xr @ frames) * cos - (xi @ frames) * sin)).sum(-1, keepdim=True)
        if need_x:
            grad_frames = xr.T @ (w * cos) - xi.T @ (w * sin)  # (B·N, L)
            grad_x = scatter_frames(grad_frames.view(batch, n_frames, n_fft), base,
                                     x.shape[-1], n_fft)
        return grad_x, grad_theta, None, None, None



def native_applies(x: Tensor, window) -> bool:
    """The fused C kernel serves ``x``: CPU, C module built, cosine-sum window."""
    return native.usable(x) and window.cosine_coefficients is not None


class NativeBinEngine(torch.autograd.Function):
    """Per-bin or per-TF-bin θ with a cosine-sum window, on the CPU with the C module: every
    (bin, frame) summed over its own window support in one fused pass (forward), and ∂θ, ∂t and
    the signal's gradient in another (backward); no window block or product is stored."""

    @staticmethod
    def forward(ctx, x, theta, frac, base, window, n_fft, lead=None):
        x = x.contiguous()
        inputs = _tf_inputs(theta, frac, base, n_fft)
        dtype = torch.complex128 if x.dtype == torch.float64 else torch.complex64
        spec = x.new_empty((x.shape[0], base.shape[0], n_fft // 2 + 1), dtype=dtype)
        native.tf_forward(x, spec, n_fft=n_fft, coefficients=window.cosine_coefficients, **inputs)
        save_inputs(ctx, x, theta, frac, base)
        ctx.window, ctx.n_fft = window, n_fft
        return with_lead(spec.transpose(-1, -2), lead)

    @staticmethod
    def backward(ctx, grad_out):
        x, theta, frac, base = saved_inputs(ctx)
        window, n_fft = ctx.window, ctx.n_fft
        need_x, need_theta, need_frac = ctx.needs_input_grad[:3]
        n_bins, n_frames, batch = n_fft // 2 + 1, base.shape[0], x.shape[0]
        g = grad_out.reshape(batch, n_bins, n_frames).transpose(-1, -2)
        g = g.resolve_conj().resolve_neg().contiguous()
        grad_theta64 = x.new_empty((n_bins, n_frames), dtype=torch.float64) if need_theta else None
        grad_frac64 = x.new_empty(n_frames, dtype=torch.float64) if need_frac else None
        grad_frames = x.new_empty(batch, n_frames, n_fft) if need_x else None
        native.tf_backward(x, g, n_fft=n_fft, coefficients=window.cosine_coefficients,
                           grad_theta=grad_theta64, grad_frac=grad_frac64,
                           grad_frames=grad_frames, **_tf_inputs(theta, frac, base, n_fft))
        grad_x = grad_theta = grad_frac = None
        if need_theta:
            total = grad_theta64.sum(1, keepdim=True) if theta.shape[1] == 1 else grad_theta64
            grad_theta = total.to(theta.dtype)
        if need_frac:
            # t enters only through x = j − {t}: ∂S/∂t = −S_{∂xω} (Eq. 14)
            grad_frac = (-grad_frac64).to(frac.dtype)
        if need_x:
            grad_x = scatter_frames(grad_frames, base, x.shape[-1], n_fft)
        return grad_x, grad_theta, grad_frac, None, None, None, None


def _tf_inputs(theta: Tensor, frac: Tensor | None, base: Tensor, n_fft: int) -> dict:
    """θ (as (M, N)), {tₙ} and ⌊tₙ⌋ as the C kernel reads them."""
    n_bins, n_frames = n_fft // 2 + 1, base.shape[0]
    return {"theta": theta.detach().to(torch.float64).expand(n_bins, n_frames).contiguous(),
            "frac": None if frac is None else frac.detach().to(torch.float64).contiguous(),
            "bases": base.to(torch.int64).contiguous()}
