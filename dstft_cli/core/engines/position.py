"""Position engine: constant or per-frame θ with a cosine-sum window at any frame positions
(fractional, learnable tₙ or H), on the CPU with the C module.

Rotated frames at the integer bases ⌊tₙ⌋ with the window at j − {tₙ}: frame n holds
ω(j − {tₙ})·s[⌊tₙ⌋ + j] at column (⌊tₙ⌋ + j) mod L, so its rfft is Eq. (6) with no phase factor.
"""

from __future__ import annotations

import torch

from ..windows import evaluate_window
from . import native
from .common import (
    offsets,
    real_spectrum_adjoint,
    save_inputs,
    saved_inputs,
    scatter_frames,
    weighted_adjoint_input,
    window_args,
    with_lead,
)


def applies(x, window) -> bool:
    """The C module is usable for ``x`` and the window is a cosine sum."""
    return native.usable(x) and window.cosine_coefficients is not None


def _c_inputs(theta, frac, base) -> dict:
    """θ, {tₙ} and ⌊tₙ⌋ as the C module reads them."""
    return {"theta": theta.detach().to(torch.float64).reshape(-1).contiguous(),
            "frac": None if frac is None else frac.detach().to(torch.float64).contiguous(),
            "bases": base.to(torch.int64).contiguous()}


class PositionEngine(torch.autograd.Function):
    """Constant or per-frame θ (cosine-sum windows) at any frame positions, on CPU with the C
    module: rotated frames at the integer bases ⌊tₙ⌋ with the window at j − {tₙ}, so the rfft is
    Eq. (6) with no phase factor. Backward (Sec. IV): r = the adjoint of the rfft applied to G,
    then per frame Σ ∂θω·s·r (∂L/∂θₙ) and −Σ ∂xω·s·r (∂L/∂tₙ) in one pass, windows evaluated
    on the fly; the signal's gradient overlap-adds r·ω."""

    @staticmethod
    def forward(ctx, x, theta, frac, base, window, n_fft, lead=None):
        x = x.contiguous()
        frames = x.new_empty(x.shape[0], base.shape[0], n_fft)
        native.position_frames(x, frames, coefficients=window.cosine_coefficients,
                               **_c_inputs(theta, frac, base))
        save_inputs(ctx, x, theta, frac, base)
        ctx.window, ctx.n_fft = window, n_fft
        return with_lead(torch.fft.rfft(frames, dim=-1).transpose(-1, -2), lead)

    @staticmethod
    def backward(ctx, grad_out):
        x, theta, frac, base = saved_inputs(ctx)
        n_fft, window = ctx.n_fft, ctx.window
        grad_out = grad_out.reshape(x.shape[0], *grad_out.shape[-2:])
        need_x, need_theta, need_frac = ctx.needs_input_grad[:3]
        grad_x = grad_theta = grad_frac = None
        adjoint = real_spectrum_adjoint(weighted_adjoint_input(grad_out, n_fft), n_fft)
        adjoint = adjoint.contiguous()
        if need_theta or need_frac:
            n_frames = base.shape[0]
            out_theta = torch.empty(n_frames, dtype=torch.float64) if need_theta else None
            out_x = torch.empty(n_frames, dtype=torch.float64) if need_frac else None
            native.position_dots(x, adjoint, coefficients=window.cosine_coefficients,
                                 out_theta=out_theta, out_x=out_x, **_c_inputs(theta, frac, base))
            if need_theta:
                total = out_theta.sum() if theta.dim() == 0 else out_theta.reshape(theta.shape)
                grad_theta = total.to(theta.dtype)
            if need_frac:
                grad_frac = (-out_x).to(frac.dtype)
        if need_x:
            # r is in column order (k mod L); the frame order of scatter_frames reads frame n's
            # sample ⌊tₙ⌋ + j, j = −L/2+1 … L/2, at column (⌊tₙ⌋ + j) mod L.
            columns = torch.remainder(base[:, None] + offsets(n_fft, x.device, base.dtype),
                                      n_fft)
            in_frame_order = adjoint.gather(-1, columns.expand(adjoint.shape[0], -1, -1))
            x_arg = window_args(frac, n_fft, base.shape[0], x.device, x.dtype)
            w, _, _ = evaluate_window(window, x_arg, theta.reshape(-1, 1))
            grad_x = scatter_frames(in_frame_order * w, base, x.shape[-1], n_fft)
        return grad_x, grad_theta, grad_frac, None, None, None, None

