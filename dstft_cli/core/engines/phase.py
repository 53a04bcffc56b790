"""Phase engine: constant or per-frame θ at any frame positions, in PyTorch (any device, any
window): one rfft per windowed frame, then the phase e^{−j2π⌊tₙ⌋m/L} of each frame.

The fallback of the position engine (which needs the C module and a cosine-sum window), and the
engine for CUDA tensors at positions off a regular integer grid.
"""

from __future__ import annotations

import torch

from ..windows import evaluate_window
from .common import (
    gather_frames,
    phase_multiply,
    real_spectrum_adjoint,
    save_inputs,
    saved_inputs,
    scatter_frames,
    window_args,
)


class PhaseEngine(torch.autograd.Function):
    """Constant or per-frame θ at any frame positions: rfft of the windowed frames, then the
    phase e^{−j2π⌊tₙ⌋m/L} of each frame."""

    @staticmethod
    def forward(ctx, x, theta, frac, base, window, n_fft, grid):
        # x (B, Ls); theta () or (N,); frac (N,) or None; base (N,) int64; grid (t0, H) or None
        frames = gather_frames(x, base, n_fft, grid)
        x_arg = window_args(frac, n_fft, base.shape[0], x.device, x.dtype)
        w, _, _ = evaluate_window(window, x_arg, theta.reshape(-1, 1))
        spec = phase_multiply(torch.fft.rfft(frames * w, dim=-1), base, n_fft, inplace=True)
        save_inputs(ctx, x, theta, frac, base)
        ctx.window, ctx.n_fft, ctx.grid = window, n_fft, grid
        return spec.transpose(-1, -2)

    @staticmethod
    def backward(ctx, grad_out):
        x, theta, frac, base = saved_inputs(ctx)
        n_fft, window, grid = ctx.n_fft, ctx.window, ctx.grid
        need_x, need_theta, need_frac = ctx.needs_input_grad[:3]
        grad_x = grad_theta = grad_frac = None
        # dL/dA for A = frames·w: the adjoint of rfft applied to G·conj(phase)  (Sec. IV-C).
        weighted = phase_multiply(grad_out.transpose(-1, -2), base, n_fft, conjugate=True,
                                   scaled=True)
        adj = real_spectrum_adjoint(weighted, n_fft)  # (B, N, L)
        x_arg = window_args(frac, n_fft, base.shape[0], x.device, x.dtype)
        w, dw_dtheta, dw_dx = evaluate_window(
            window, x_arg, theta.reshape(-1, 1), value=need_x, d_theta=need_theta, d_x=need_frac
        )
        if need_x:
            grad_x = scatter_frames(adj * w, base, x.shape[-1], n_fft)
        if need_theta or need_frac:
            # Σ over the batch: θ and t are shared by every signal of the batch.
            fa = adj.mul_(gather_frames(x, base, n_fft, grid))
            fa = fa[0] if fa.shape[0] == 1 else fa.sum(0)  # (N, L)
            if need_theta:
                if theta.dim() == 0 and dw_dtheta.shape[0] == 1:
                    grad_theta = torch.mv(fa, dw_dtheta[0]).sum()
                else:
                    g = (fa * dw_dtheta).sum(-1)
                    grad_theta = g.sum() if theta.dim() == 0 else g.reshape(theta.shape)
            if need_frac:
                # t enters only through x = j − {t}: ∂S/∂t = −S_{∂xω} (Eq. 14)
                grad_frac = -(fa * dw_dx).sum(-1)
        return grad_x, grad_theta, grad_frac, None, None, None, None

