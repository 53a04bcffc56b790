"""Reference engine: the same maths as the fused engines through plain autograd (no custom
backward), for comparison and as the reference of the gradient tests."""

from __future__ import annotations

import torch

from ..windows import evaluate_window
from .common import dft_tables, frame_phase, gather_frames, offsets


def autograd_engine(x, theta, frac, base, window, n_fft, kind):
    frames = gather_frames(x, base, n_fft)
    j = offsets(n_fft, x.device, x.dtype)
    x_arg = j[None, :] if frac is None else j[None, :] - frac[:, None]
    if kind in ("constant", "frame"):
        w, _, _ = evaluate_window(window, x_arg, theta.reshape(-1, 1))
        phase = frame_phase(base, n_fft, x.dtype)
        return (torch.fft.rfft(frames * w, dim=-1) * phase).transpose(-1, -2)
    phase = frame_phase(base, n_fft, x.dtype, rfft_origin=False)
    n_bins, n_frames = n_fft // 2 + 1, base.shape[0]
    cos, sin = dft_tables(n_fft, x.device, x.dtype)
    w, _, _ = evaluate_window(window, x_arg, theta.expand(n_bins, n_frames)[..., None])
    real = torch.einsum("mnj,bnj,mj->bmn", w, frames, cos)
    imag = -torch.einsum("mnj,bnj,mj->bmn", w, frames, sin)
    return torch.complex(real, imag) * phase.T
