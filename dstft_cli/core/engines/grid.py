"""Grid engine: constant or per-frame θ on a regular integer grid tₙ = t₀ + n·H (the default
grid, and any integer positions with constant spacing), O(N·L log L), any device.

The rfft of a frame laid out in absolute sample order (index k mod L) — a *rotated* frame — is
Eq. (6) with no phase factor at all; the θ-gradient is taken in the frequency domain,
Σ Re(conj(G)·S_{∂θω}). On the CPU the frames are written by the C module (one pass, windows
evaluated as it writes); elsewhere, or without it, by strided PyTorch products with the same
values.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch

from ..windows import evaluate_window
from . import native
from .common import offsets, real_spectrum_adjoint, weighted_adjoint_input, with_lead

Tensor = torch.Tensor


# On a regular integer grid tₙ = t₀ + n·H the phase factor can be dropped altogether: the rfft
# of frame n taken in *absolute* sample order (index i holds the sample k with k ≡ i mod L) is
# Σₖ ω s[k] e^{−j2πkm/L} exactly, i.e. Eq. (6) with no per-frame phase. That rotated frame is two
# slices of the signal cut into L-sample blocks: samples k ≥ the block boundary come from block q
# (columns r … L−1), the wrapped ones from block q+1 (columns 0 … r−1). Frames fall into
# P = L / gcd(H, L) classes of equal r, and within a class the blocks advance by a constant step,
# so each class is a strided view and the whole windowed, rotated frame array costs 2P slice
# multiplies — one pass over memory, like torch.stft's own windowing.
_MAX_PHASE_CLASSES = 64


@functools.lru_cache(maxsize=64)
def grid_geometry(t0: int, hop: int, n_frames: int, n_fft: int):
    """(P, block step, ((class c, block q, column r, frames in class), …), blocks) or None."""
    period = n_fft // math.gcd(hop, n_fft)
    if period > _MAX_PHASE_CLASSES:
        return None
    step = period * hop // n_fft
    classes, last = [], 0
    for c in range(min(period, n_frames)):
        start = t0 + c * hop + n_fft // 2 + 1  # first sample of frame c in the signal padded by L
        if start < 0:
            return None
        q, r = divmod(start, n_fft)
        count = -(-(n_frames - c) // period)
        classes.append((c, q, r, count))
        last = max(last, q + (count - 1) * step + (1 if r else 0))
    return period, step, tuple(classes), last + 1


def signal_blocks(x: Tensor, n_fft: int, blocks: int) -> Tensor:
    """The signal preceded by L zeros, zero-padded or cut to ``blocks``·L samples: (B, blocks, L)."""
    xp = x.new_empty(x.shape[0], blocks * n_fft)
    keep = min(x.shape[-1], blocks * n_fft - n_fft)
    xp[:, :n_fft].zero_()
    xp[:, n_fft:n_fft + keep] = x[:, :keep]
    xp[:, n_fft + keep:].zero_()
    return xp.view(x.shape[0], blocks, n_fft)


def _window_columns(theta: Tensor, n_fft: int) -> tuple[int, int]:
    """Frame columns [c₀, c₁) that can fall inside a window: j ∈ (−θmax/2, θmax/2].

    Per-frame θ on the CPU only (reading θmax on a GPU would synchronise the device): windows
    shorter than L leave columns that are zero in every frame, and evaluating ω there is wasted.
    """
    if theta.dim() == 0 or theta.device.type != "cpu":
        return 0, n_fft
    half = 0.5 * float(theta.detach().max())
    first = max(0, math.floor(-half) + 1 + n_fft // 2 - 1)
    last = min(n_fft, math.floor(half) + n_fft // 2)
    return (first, last) if last > first else (0, n_fft)


def grid_windows(window, theta: Tensor, n_fft: int, x: Tensor, *, value=True, d_theta=False):
    """ω and ∂θω on the columns of :func:`_window_columns`: ((1 or N, width) each, c₀).

    Per-frame windows that vanish at their edges are evaluated on j ≥ 0 only and mirrored: on an
    integer grid the offsets j are symmetric about 0 and ω(−j) = ω(j), ∂θω(−j) = ∂θω(j) for the
    symmetric base windows (the half-open support only differs at |x| = θ/2, where such windows
    are zero). The trigonometric work is the largest part of the per-frame forward pass and a
    mirror copy costs a fraction of it.
    """
    first, last = _window_columns(theta, n_fft)
    centre = n_fft // 2 - 1  # the column of j = 0
    if theta.dim() == 1 and window.vanishes_at_edges and window.symmetric:
        right = torch.arange(0, last - centre, device=x.device, dtype=x.dtype)[None]
        half = evaluate_window(window, right, theta.reshape(-1, 1), value=value,
                               d_theta=d_theta)[:2]
        left = centre - first  # columns with j < 0, at most as many as with j > 0
        w, dw_dtheta = (None if h is None else torch.cat((h[:, 1:left + 1].flip(-1), h), dim=-1)
                        for h in half)
        return w, dw_dtheta, first
    columns = offsets(n_fft, x.device, x.dtype)[None, first:last]
    w, dw_dtheta, _ = evaluate_window(window, columns, theta.reshape(-1, 1), value=value,
                                      d_theta=d_theta)
    return w, dw_dtheta, first


@functools.lru_cache(maxsize=64)
def _part_plan(geometry, n_fft: int, first: int, width: int) -> tuple:
    """The rotated frames as strided pieces, for a window on columns [first, first + width).

    For each class c of frames and each of its two pieces (columns from block q, wrapped
    columns from block q+1) cut to the window columns: (c, frames in class, piece width, offset
    in the signal blocks, offset in the frame array, offset in the window row). Cached: the
    transform is called with the same geometry at every optimisation step, and building the
    pieces by slicing costs more than the multiplications on short signals.
    """
    period, step, classes, _ = geometry
    plan = []
    for c, q, r, count in classes:
        # (frame columns, window columns, first signal block) of the two pieces
        pieces = [(r, 0, q)] + ([(0, n_fft - r, q + 1)] if r else [])
        for col0, wcol0, block in pieces:
            piece_width = n_fft - r if col0 == r else r
            lo, hi = max(wcol0, first), min(wcol0 + piece_width, first + width)
            if lo >= hi:
                continue
            col = col0 + lo - wcol0
            plan.append((c, count, hi - lo, block * n_fft + col, c * n_fft + col, lo - first))
    return period, step, tuple(plan)


def _pieces(plan, xb: Tensor, frames: Tensor, w: Tensor):
    """(signal piece, frame-array piece, window piece) views for each entry of the plan."""
    period, step, parts = plan
    batch, n_fft = xb.shape[0], xb.shape[-1]
    xs, fs = xb.stride(0), frames.stride(0)
    xo, fo = xb.storage_offset(), frames.storage_offset()
    shared = w.shape[0] == 1
    width_all = w.shape[-1]
    for c, count, width, sig_off, out_off, w_off in parts:
        sig = xb.as_strided((batch, count, width), (xs, step * n_fft, 1), xo + sig_off)
        out = frames.as_strided((batch, count, width), (fs, period * n_fft, 1), fo + out_off)
        if shared:
            win = w.as_strided((1, width), (width_all, 1), w.storage_offset() + w_off)
        else:
            win = w.as_strided((count, width), (period * width_all, 1),
                               w.storage_offset() + c * width_all + w_off)
        yield sig, out, win


def rotated_product(xb: Tensor, w: Tensor, geometry, n_fft: int, n_frames: int,
                     first: int = 0) -> Tensor:
    """Rotated frames times the rotated window: (B, N, L).

    ``w`` is (1, width) or (N, width): the window on frame columns [first, first + width); the
    other columns are zero.
    """
    width = w.shape[-1]
    if width == n_fft:
        out = xb.new_empty(xb.shape[0], n_frames, n_fft)
    else:
        out = xb.new_zeros(xb.shape[0], n_frames, n_fft)
    plan = _part_plan(geometry, n_fft, first, width)
    for sig, piece, win in _pieces(plan, xb, out, w.contiguous()):
        torch.mul(sig, win, out=piece)
    return out




# Frames per block of the grid engine: the rotated frames and their rfft exist one block at a
# time (64 Mi elements), so a 10-minute recording never holds a second frame-sized array.
GRID_BLOCK_ELEMENTS = 1 << 26


class _GridWindows(NamedTuple):
    """What multiplies the rotated frames of the grid engine.

    Either tables ``w``/``dw`` of ω and ∂θω on frame columns [first, first + width), (1 or N,
    width) each, or — for cosine-sum windows when the C module is present — θ itself (float64,
    one value or one per frame), from which the module evaluates the windows as it writes.
    """

    w: Tensor | None
    dw: Tensor | None
    first: int = 0
    theta: Tensor | None = None
    coefficients: tuple[float, ...] | None = None
    vanishes: bool = True


def grid_source(window, theta: Tensor, n_fft: int, x: Tensor, *, value: bool = True,
                 d_theta: bool) -> _GridWindows:
    """ω and/or ∂θω for the grid engine (tables, or θ for the C module)."""
    if window.cosine_coefficients is not None and native.usable(x):
        return _GridWindows(None, None, theta=theta.detach().to(torch.float64).reshape(-1),
                            coefficients=window.cosine_coefficients,
                            vanishes=window.vanishes_at_edges)
    w, dw, first = grid_windows(window, theta, n_fft, x, value=value, d_theta=d_theta)
    return _GridWindows(w, dw, first)


def native_frames(x: Tensor, windows: _GridWindows, t0: int, hop: int, n0: int, n1: int,
                   n_fft: int, value: bool, d_theta: bool):
    """Frames n0:n1 of the signal ``x`` (B, Ls) from the C module: (ω frames, ∂θω frames)."""
    batch, n = x.shape[0], n1 - n0
    start0 = t0 + n0 * hop - n_fft // 2 + 1  # first sample of frame n0
    if windows.theta is not None:
        theta = windows.theta
        # Two arrays, two rfft calls: one call on a (2, B, n, L) pair would hand all ω frames
        # to one OpenMP thread and all ∂θω frames to the other, while the C module writes
        # both for the same frames on the same thread (and the dot product of the backward
        # pass reads them there): measured markedly slower.
        frames = x.new_empty(batch, n, n_fft) if value else None
        dframes = x.new_empty(batch, n, n_fft) if d_theta else None
        per_frame = theta.numel() > 1  # (a single frame reads its one θ either way)
        native.cosine_frames(x, frames, dframes, start0=start0, hop=hop,
                             theta=theta[n0:n1] if per_frame else theta,
                             coefficients=windows.coefficients, vanishes=windows.vanishes)
        return frames, dframes
    out = []
    for table, wanted in ((windows.w, value), (windows.dw, d_theta)):
        if not wanted:
            out.append(None)
            continue
        table = (table if table.shape[0] == 1 else table[n0:n1]).contiguous()
        frames = x.new_empty(batch, n, n_fft)
        native.table_frames(x, frames, start0=start0, hop=hop, table=table, first=windows.first)
        out.append(frames)
    return tuple(out)


def _frame_blocks(x: Tensor, windows: _GridWindows, grid, n_fft: int, *, value=True,
                  d_theta=False, block_elements: int | None = None):
    """(n0, n1, frames with ω or None, frames with ∂θω or None) for blocks of frames.

    ``x`` is the (B, Ls) signal; the PyTorch path pads it into L-sample blocks first.
    """
    t0, hop, n_frames = grid
    use_c = native.usable(x)
    if use_c:
        x = x.contiguous()
    else:
        xb = signal_blocks(x, n_fft, grid_geometry(*grid, n_fft)[3])
    limit = GRID_BLOCK_ELEMENTS if block_elements is None else block_elements
    block = max(1, limit // (n_fft * x.shape[0]))
    for n0 in range(0, n_frames, block):
        n1 = min(n0 + block, n_frames)
        if use_c:
            yield (n0, n1, *native_frames(x, windows, t0, hop, n0, n1, n_fft, value, d_theta))
            continue
        sub = grid_geometry(t0 + n0 * hop, hop, n1 - n0, n_fft)
        yield (n0, n1, *(
            None if table is None or not wanted else rotated_product(
                xb, table if table.shape[0] == 1 else table[n0:n1], sub, n_fft, n1 - n0,
                windows.first)
            for table, wanted in ((windows.w, value), (windows.dw, d_theta))))


def _blocked_rfft(x: Tensor, windows: _GridWindows, grid, n_fft: int, *, d_theta=False):
    """The (B, N, M) spectra of the rotated frames with ω and, if asked, with ∂θω."""
    specs = [None, None]
    for n0, n1, *frames in _frame_blocks(x, windows, grid, n_fft, d_theta=d_theta):
        for k, f in enumerate(frames):
            if f is None:
                continue
            if n1 - n0 == grid[2]:
                specs[k] = torch.fft.rfft(f, dim=-1)
                continue
            if specs[k] is None:
                dtype = torch.complex128 if f.dtype == torch.float64 else torch.complex64
                specs[k] = f.new_empty((f.shape[0], grid[2], n_fft // 2 + 1), dtype=dtype)
            part = specs[k][:, n0:n1]
            if part.is_contiguous():  # (one signal) the rfft writes its slice directly
                torch.fft.rfft(f, dim=-1, out=part)
            else:
                part.copy_(torch.fft.rfft(f, dim=-1))
    return specs[0], specs[1]


def spectral_dot(grad_out: Tensor, spec_t: Tensor, per_frame: bool) -> Tensor:
    """Σ Re(conj(G)·S') over bins (and frames unless ``per_frame``) and the batch.

    ``spec_t`` is (B, N, M); G is (B, M, N). This is ∂L/∂p when S' = ∂S/∂p: with torch's
    convention G = ∂L/∂Re S + i ∂L/∂Im S.
    """
    g = grad_out.transpose(-1, -2)
    # The C loop makes one pass and no temporary (a product then a sum over bins is two passes
    # and a frame-sized temporary), each thread over the frames it wrote; and its per-frame sums,
    # unlike torch.dot's, do not depend on the number of threads.
    if native.usable(g) and spec_t.is_contiguous() and g.dim() == 3:
        g = g.resolve_conj().resolve_neg()  # the C loop reads memory, not lazy conj/neg views
        out = spec_t.real.new_empty(g.shape[1])
        native.frame_dots(g, spec_t, out)
        return out if per_frame else out.sum()
    if not g.is_contiguous():
        g = g.contiguous()
    gr, sr = torch.view_as_real(g), torch.view_as_real(spec_t)
    if not per_frame:
        return torch.dot(gr.reshape(-1), sr.reshape(-1))
    flat = gr.shape[:-2] + (-1,)
    return torch.linalg.vecdot(gr.reshape(flat), sr.reshape(flat)).sum(0)


# S_{∂θω} is kept from the forward pass while it takes at most this many bytes (constant θ,
# per-frame θ); then the backward pass is one dot product. Larger spectra are recomputed in the
# backward pass, in blocks of frames of RECOMPUTE_BLOCK_ELEMENTS samples, each block's rfft met
# by its slice of G while it is still in cache. Keeping wins on short signals; recomputing wins
# once the kept arrays pass glibc's largest mmap threshold (32 MiB, see runtime.tune_allocator)
# and are mapped afresh on every call, earlier for constant θ than per frame (whose windows are
# then evaluated a second time); see the grid-engine rows of BENCHMARKS.md. A 10-minute
# recording then also holds a single spectrum-sized array between the passes.
KEPT_SPECTRUM_BYTES = (16 << 20, 32 << 20)
RECOMPUTE_BLOCK_ELEMENTS = 1 << 20


class GridEngine(torch.autograd.Function):
    """Constant or per-frame θ on a regular integer grid: rotated frames, no phase factor.

    The θ-gradient is taken in the frequency domain, ∂L/∂θ = Σ Re(conj(G)·S_{∂θω}) (Sec. IV):
    one rfft of the frames times ∂θω and a dot product, cheaper than the irfft of G followed by
    a product with the frames. Up to ``KEPT_SPECTRUM_BYTES`` of spectrum S_{∂θω} is computed
    in the forward pass, where ω and ∂θω share their trigonometric work (and each OpenMP thread
    writes, transforms and later reads the same frames); longer signals recompute it in the
    backward pass from the signal, block by block, which keeps nothing but the input between
    the two passes.
    """

    @staticmethod
    def forward(ctx, x, theta, window, n_fft, grid, need_theta_grad, lead=None):
        # ``lead``: the caller's leading dimensions; the output is (*lead, M, N) straight away
        # (a reshape outside would add an autograd node to every call)
        spectrum_bytes = x.shape[0] * grid[2] * (n_fft // 2 + 1) * 2 * x.element_size()
        keep = need_theta_grad and spectrum_bytes <= KEPT_SPECTRUM_BYTES[theta.dim()]
        windows = grid_source(window, theta, n_fft, x, d_theta=keep)
        spec, spec_dtheta = _blocked_rfft(x, windows, grid, n_fft, d_theta=keep)
        ctx.save_for_backward(x, theta, spec_dtheta if keep else torch.empty(0))
        ctx.window, ctx.n_fft, ctx.grid, ctx.kept = window, n_fft, grid, keep
        return with_lead(spec.transpose(-1, -2), lead)

    @staticmethod
    def backward(ctx, grad_out):
        x, theta, spec_dtheta = ctx.saved_tensors
        grad_out = grad_out.reshape(x.shape[0], *grad_out.shape[-2:])
        window, n_fft, grid = ctx.window, ctx.n_fft, ctx.grid
        need_x, need_theta = ctx.needs_input_grad[:2]
        grad_x = grad_theta = None
        per_frame = theta.dim() == 1
        if need_theta and ctx.kept:
            grad_theta = spectral_dot(grad_out, spec_dtheta, per_frame=per_frame)
        elif need_theta:
            # S_{∂θω} block by block, each met by its slice of G at once: never a whole array.
            windows = grid_source(window, theta, n_fft, x, value=False, d_theta=True)
            parts = [spectral_dot(grad_out[..., n0:n1], torch.fft.rfft(dframes, dim=-1),
                                   per_frame=per_frame)
                     for n0, n1, _, dframes in _frame_blocks(
                         x, windows, grid, n_fft, value=False, d_theta=True,
                         block_elements=RECOMPUTE_BLOCK_ELEMENTS)]
            grad_theta = torch.cat(parts) if per_frame else torch.stack(parts).sum()
        if need_x:
            # The adjoint of the rfft (Sec. IV-C), then of the rotated gather: overlap-add.
            geometry = grid_geometry(*grid, n_fft)
            w, _, first = grid_windows(window, theta, n_fft, x)
            adj = real_spectrum_adjoint(weighted_adjoint_input(grad_out, n_fft), n_fft)
            grad_xb = x.new_zeros(x.shape[0], geometry[3], n_fft)
            plan = _part_plan(geometry, n_fft, first, w.shape[-1])
            for sig, piece, win in _pieces(plan, grad_xb, adj, w.contiguous()):
                sig.addcmul_(piece, win)
            keep = min(x.shape[-1], grad_xb.shape[1] * n_fft - n_fft)
            grad_x = x.new_zeros(x.shape)
            grad_x[:, :keep] = grad_xb.view(x.shape[0], -1)[:, n_fft:n_fft + keep]
        return grad_x, grad_theta, None, None, None, None, None

