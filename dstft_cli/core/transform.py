"""The differentiable STFT of Eq. (6), computed as in Eq. (25).

    S[m, n] = Σ_k ω(k − tₙ, θ_{m,n}) s[k] e^{−j2πkm/L},   s = 0 outside the signal

With k = ⌊tₙ⌋ + j, j = −L/2+1 … L/2 (Eq. 25) every frame reads L samples around ⌊tₙ⌋, the
window is evaluated at j − {tₙ}, and the phase e^{−j2π⌊tₙ⌋m/L} is taken from a table indexed by
(⌊tₙ⌋·m) mod L computed in integers, so it stays exact for any signal length and dtype.

Engines, chosen from the shape of ``window_length`` and the frame positions:

* constant θ or per-frame θₙ on a regular integer grid tₙ = t₀ + n·H (the default grid, and
  any integer positions with constant spacing): *rotated* frames, O(N·L log L). The rfft of a
  frame laid out in absolute sample order (index k mod L) is Eq. (6) with no phase factor at
  all; the θ-gradient is taken in the frequency domain, Σ Re(conj(G)·S_{∂θω}). On CPU the
  frames are written by the optional C module ``_frames`` (one pass: windows evaluated as it
  writes); elsewhere, or without it, by strided PyTorch products with the same values;
* constant or per-frame θ at any other positions (fractional, learnable tₙ or H): on CPU with
  the C module and a cosine-sum window, rotated frames again, now at the integer bases ⌊tₙ⌋
  with the window at j − {tₙ} (no phase factor), and a backward pass that is the irfft of G and
  one fused pass for the θ- and t-derivatives; otherwise one rfft per frame, then the phase
  e^{−j2π⌊tₙ⌋m/L} per frame. O(N·L log L) either way;
* per-bin θₘ or per-TF-bin θₘ,ₙ: a different window for every bin, O(M·N·L), computed in chunks
  of frames so that no N×M×L tensor ever exists (peak memory O(M·N + chunk·M·L)); per-bin θ on
  integer positions is one matrix product.

All are :class:`torch.autograd.Function` s whose backward applies the formulas of Sec. IV directly
(∂θ through S computed with ∂θω, ∂t through −S computed with ∂xω, the signal through the adjoint
transform), recomputing frames and windows instead of storing them (per-frame θ on a grid keeps
S_{∂θω}, one array the size of S). ``engine="autograd"`` runs the same maths through plain
autograd, for comparison and as a reference.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch

from .windows import BaseWindow, evaluate_window, get_window

try:
    from . import _frames as _native
except ImportError:  # built without a C compiler: the PyTorch path gives the same values
    _native = None

Tensor = torch.Tensor

__all__ = ["dstft", "default_frame_positions", "frame_count", "native_frames_available",
           "window_length_kind"]

_SUPPORTED_DTYPES = (torch.float32, torch.float64)
# Elements of one (M, chunk, L) window block in the per-bin engine: 2²¹ doubles = 16 MiB.
_CHUNK_ELEMENTS = 1 << 21


def frame_count(signal_length: int, hop_length: int | float) -> int:
    """Number of frames of the default grid: N = 1 + ⌊Ls / H⌋ (Sec. VI-A)."""
    return 1 + int(math.floor(signal_length / hop_length))


def default_frame_positions(
    signal_length: int, hop_length: int | float, *, device: torch.device | str | None = None
) -> Tensor:
    """Frame centres tₙ = n·H, n = 0 … ⌊Ls/H⌋; integer dtype when H is an integer."""
    n = torch.arange(frame_count(signal_length, hop_length), device=device)
    if float(hop_length).is_integer():
        return n * int(hop_length)
    return n.to(torch.float64) * float(hop_length)


def window_length_kind(window_length: Tensor, n_bins: int, n_frames: int) -> str:
    """Classify a window-length tensor: ``constant``, ``frame``, ``bin`` or ``tf``.

    Accepted shapes: scalar or (1,) → constant; (N,) or (1, N) → per frame; (M, 1) → per bin;
    (M, N) → per time-frequency bin.
    """
    shape = tuple(window_length.shape)
    if window_length.dim() == 0 or shape == (1,) or shape == (1, 1):
        return "constant"
    if shape in ((n_frames,), (1, n_frames)):
        return "frame"
    if shape == (n_bins, 1):
        return "bin"
    if shape == (n_bins, n_frames):
        return "tf"
    raise ValueError(
        f"window_length has shape {shape}; expected a scalar, ({n_frames},) per frame, "
        f"({n_bins}, 1) per bin or ({n_bins}, {n_frames}) per bin and frame"
    )


# --------------------------------------------------------------------------------------------
# helpers shared by the engines


def _offsets(n_fft: int, device, dtype) -> Tensor:
    """j = −L/2+1 … L/2: sample offsets of a frame relative to ⌊tₙ⌋ (Eq. 25)."""
    return torch.arange(-n_fft // 2 + 1, n_fft // 2 + 1, device=device, dtype=dtype)


def _split_positions(frame_positions: Tensor, dtype) -> tuple[Tensor, Tensor | None]:
    """⌊tₙ⌋ as int64 and {tₙ} in ``dtype`` (None for integer positions: no fractional part)."""
    if not frame_positions.is_floating_point():
        return frame_positions.long(), None
    floor = torch.floor(frame_positions.detach())
    return floor.long(), (frame_positions - floor).to(dtype)


def _frame_index(base: Tensor, n_fft: int, pad: int, padded_length: int) -> Tensor:
    j = torch.arange(-n_fft // 2 + 1, n_fft // 2 + 1, device=base.device)
    # Clamped indices land on the zero padding at either end: s = 0 outside the signal.
    return (base[:, None] + j + pad).clamp_(0, padded_length - 1)


def regular_grid(frame_positions: Tensor) -> tuple[int, int] | None:
    """(t₀, H) when the positions are integers tₙ = t₀ + n·H with H ≥ 1, else None.

    Checked only for CPU tensors (reading values on a GPU would synchronise the device).
    """
    if frame_positions.is_floating_point() or frame_positions.device.type != "cpu":
        return None
    if frame_positions.numel() == 1:
        return int(frame_positions[0]), 1
    steps = frame_positions[1:] - frame_positions[:-1]
    hop = int(steps[0])
    if hop < 1 or not bool((steps == hop).all()):
        return None
    return int(frame_positions[0]), hop


def _frames(x: Tensor, base: Tensor, n_fft: int, grid: tuple[int, int] | None = None) -> Tensor:
    """Samples s[⌊tₙ⌋ + j], j = −L/2+1 … L/2, of every frame: (B, N, L), a view when possible."""
    pad = n_fft
    xp = torch.nn.functional.pad(x, (pad, pad))
    n_frames = base.shape[0]
    if grid is not None:
        first = grid[0] - n_fft // 2 + 1 + pad
        if first >= 0 and first + (n_frames - 1) * grid[1] + n_fft <= xp.shape[-1]:
            return xp[:, first:].unfold(-1, n_fft, grid[1])[:, :n_frames]
    # Rows of the stride-1 unfold view: one contiguous copy per frame. A frame entirely outside
    # the signal is clamped onto the zero padding (pad = L) and reads zeros, as Eq. (6) wants.
    start = (base - (n_fft // 2 - 1) + pad).clamp(0, xp.shape[-1] - n_fft)
    return xp.unfold(-1, n_fft, 1)[:, start]


def _scatter_frames(grad_frames: Tensor, base: Tensor, signal_length: int, n_fft: int) -> Tensor:
    """Adjoint of :func:`_frames`: overlap-add (B, N, L) back onto the (B, Ls) signal."""
    batch = grad_frames.shape[0]
    out = grad_frames.new_zeros(batch, signal_length + 2 * n_fft)
    idx = _frame_index(base, n_fft, n_fft, out.shape[-1])
    out.index_add_(1, idx.reshape(-1), grad_frames.reshape(batch, -1))
    return out[:, n_fft : n_fft + signal_length]


@functools.lru_cache(maxsize=16)
def _phase_table(n_fft: int, device, dtype) -> tuple[Tensor, Tensor]:
    angle = torch.arange(n_fft, device=device, dtype=torch.float64) * (2 * math.pi / n_fft)
    return torch.cos(angle).to(dtype), torch.sin(angle).to(dtype)


def _frame_phase(base: Tensor, n_fft: int, dtype, *, rfft_origin: bool = True) -> Tensor:
    """e^{−j2π(⌊tₙ⌋ − o)m/L} for (N, M).

    With ``rfft_origin`` o = L/2 − 1: an rfft over the frame counts from i = 0 at j = −L/2+1;
    otherwise o = 0 (the per-bin engine sums over j itself).
    """
    n_bins = n_fft // 2 + 1
    origin = n_fft // 2 - 1 if rfft_origin else 0
    # (⌊tₙ⌋ − o)·m mod L = ((⌊tₙ⌋ − o) mod L)·m mod L: the reduced product is below L·M, so it
    # fits int32 (half the memory traffic of int64) whenever L·M < 2³¹.
    small = n_fft * n_bins < 2**31
    index_dtype = torch.int32 if small else torch.int64
    m = torch.arange(n_bins, device=base.device, dtype=index_dtype)
    shift = torch.remainder(base - origin, n_fft).to(index_dtype)
    r = shift[:, None] * m
    if n_fft & (n_fft - 1) == 0:
        r.bitwise_and_(n_fft - 1)  # mod L for a power of two, ~3× cheaper than remainder
    else:
        r = torch.remainder(r, n_fft)
    # index_select on the flat index: much faster than advanced indexing on CPU
    table = _complex_phase_table(n_fft, base.device, dtype)
    return torch.index_select(table, 0, r.view(-1)).view(r.shape)


@functools.lru_cache(maxsize=16)
def _complex_phase_table(n_fft: int, device, dtype) -> Tensor:
    """e^{−j2πk/L}, k = 0 … L−1, as one complex table (a single gather per phase array)."""
    cos, sin = _phase_table(n_fft, device, dtype)
    return torch.complex(cos, -sin)


def _phase_multiply(
    spec: Tensor, base: Tensor, n_fft: int, *, conjugate: bool = False, scaled: bool = False,
    inplace: bool = False,
) -> Tensor:
    """spec (B, N, M) · e^{∓j2π(⌊tₙ⌋ − L/2 + 1)m/L}, times :func:`_adjoint_scale` if ``scaled``."""
    real_dtype = spec.real.dtype
    phase = _frame_phase(base, n_fft, real_dtype)
    if conjugate:
        phase = phase.conj()
    if scaled:
        phase = phase * _adjoint_scale(n_fft, spec.device, real_dtype)
    return spec.mul_(phase) if inplace else spec * phase


@functools.lru_cache(maxsize=8)
def _dft_tables(n_fft: int, device, dtype) -> tuple[Tensor, Tensor]:
    """cos and sin of 2π·(j·m mod L)/L for (M, L), j = −L/2+1 … L/2."""
    n_bins = n_fft // 2 + 1
    m = torch.arange(n_bins, device=device)
    j = torch.arange(-n_fft // 2 + 1, n_fft // 2 + 1, device=device)
    r = torch.remainder(m[:, None] * j[None, :], n_fft)
    cos, sin = _phase_table(n_fft, device, dtype)
    return cos[r], sin[r]


def _window_args(frac: Tensor | None, n_fft: int, n_frames: int, device, dtype) -> Tensor:
    """x = j − {tₙ}: (N, L), or (1, L) when every frame sits on an integer position."""
    j = _offsets(n_fft, device, dtype)
    if frac is None:
        return j[None, :]
    return j[None, :] - frac[:, None]


def _adjoint_scale(n_fft: int, device, dtype) -> Tensor:
    """Weights that turn irfft into the adjoint of the half-spectrum rfft.

    Re Σ_{m=0}^{L/2} X_m e^{+j2πim/L} = L·irfft(c ⊙ X) with c_m = 1/2 for m = 1 … L/2−1 (irfft
    counts those bins twice, for Hermitian symmetry) and c_m = 1 at DC and Nyquist.
    """
    scale = torch.full((n_fft // 2 + 1,), 0.5 * n_fft, device=device, dtype=dtype)
    scale[0] = scale[-1] = float(n_fft)
    return scale


def _real_spectrum_adjoint(spec_weighted: Tensor, n_fft: int) -> Tensor:
    """irfft of an already weighted spectrum (see :func:`_adjoint_scale`).

    The imaginary parts of the DC and Nyquist bins must not count; they are dropped explicitly
    since not every FFT backend ignores them.
    """
    # (in place on the imaginary view: assigning the real view back to the complex slice reads
    # and writes the same memory, which PyTorch refuses for a single frame)
    spec_weighted[..., 0].imag.zero_()
    spec_weighted[..., -1].imag.zero_()
    return torch.fft.irfft(spec_weighted, n=n_fft, dim=-1)


def _save_inputs(ctx, x, theta, frac, base) -> None:
    # save_for_backward takes tensors only: an absent fractional part is saved as an empty one.
    ctx.save_for_backward(x, theta, frac if frac is not None else torch.empty(0), base)
    ctx.has_frac = frac is not None


def _saved_inputs(ctx):
    x, theta, frac, base = ctx.saved_tensors
    return x, theta, (frac if ctx.has_frac else None), base


# --------------------------------------------------------------------------------------------
# engine 1: constant or per-frame θ, FFT


class _FFTEngine(torch.autograd.Function):
    """Constant or per-frame θ at any frame positions: rfft of the windowed frames, then the
    phase e^{−j2π⌊tₙ⌋m/L} of each frame."""

    @staticmethod
    def forward(ctx, x, theta, frac, base, window, n_fft, grid):
        # x (B, Ls); theta () or (N,); frac (N,) or None; base (N,) int64; grid (t0, H) or None
        frames = _frames(x, base, n_fft, grid)
        x_arg = _window_args(frac, n_fft, base.shape[0], x.device, x.dtype)
        w, _, _ = evaluate_window(window, x_arg, theta.reshape(-1, 1))
        spec = _phase_multiply(torch.fft.rfft(frames * w, dim=-1), base, n_fft, inplace=True)
        _save_inputs(ctx, x, theta, frac, base)
        ctx.window, ctx.n_fft, ctx.grid = window, n_fft, grid
        return spec.transpose(-1, -2)

    @staticmethod
    def backward(ctx, grad_out):
        x, theta, frac, base = _saved_inputs(ctx)
        n_fft, window, grid = ctx.n_fft, ctx.window, ctx.grid
        need_x, need_theta, need_frac = ctx.needs_input_grad[:3]
        grad_x = grad_theta = grad_frac = None
        # dL/dA for A = frames·w: the adjoint of rfft applied to G·conj(phase)  (Sec. IV-C).
        weighted = _phase_multiply(grad_out.transpose(-1, -2), base, n_fft, conjugate=True,
                                   scaled=True)
        adj = _real_spectrum_adjoint(weighted, n_fft)  # (B, N, L)
        x_arg = _window_args(frac, n_fft, base.shape[0], x.device, x.dtype)
        w, dw_dtheta, dw_dx = evaluate_window(
            window, x_arg, theta.reshape(-1, 1), value=need_x, d_theta=need_theta, d_x=need_frac
        )
        if need_x:
            grad_x = _scatter_frames(adj * w, base, x.shape[-1], n_fft)
        if need_theta or need_frac:
            # Σ over the batch: θ and t are shared by every signal of the batch.
            fa = adj.mul_(_frames(x, base, n_fft, grid))
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


def _with_lead(spec: Tensor, lead) -> Tensor:
    """(B, M, N) → (*lead, M, N), a view (B is the product of ``lead``); None keeps (B, M, N)."""
    return spec if lead is None else spec.reshape(*lead, *spec.shape[-2:])


def _uses_native_positions(x: Tensor, window) -> bool:
    return _uses_native(x) and window.cosine_coefficients is not None


def _position_arguments(x: Tensor, theta: Tensor, frac: Tensor | None, base: Tensor, window,
                        n_fft: int):
    """The arguments the C module's position functions share, and the tensors behind them
    (kept referenced while the module reads them)."""
    theta64 = theta.detach().to(torch.float64).reshape(-1).contiguous()
    frac64 = None if frac is None else frac.detach().to(torch.float64).contiguous()
    bases = base.to(torch.int64).contiguous()
    args = (x.dtype == torch.float64, x.data_ptr(), x.shape[-1], x.shape[0], base.shape[0],
            n_fft, bases.data_ptr(), 0 if frac64 is None else frac64.data_ptr(),
            theta64.data_ptr(), 1 if theta64.numel() > 1 else 0, window.cosine_coefficients)
    return args, (theta64, frac64, bases)


class _PositionEngine(torch.autograd.Function):
    """Constant or per-frame θ (cosine-sum windows) at any frame positions, on CPU with the C
    module: rotated frames at the integer bases ⌊tₙ⌋ with the window at j − {tₙ}, so the rfft is
    Eq. (6) with no phase factor. Backward (Sec. IV): r = the adjoint of the rfft applied to G,
    then per frame Σ ∂θω·s·r (∂L/∂θₙ) and −Σ ∂xω·s·r (∂L/∂tₙ) in one pass, windows evaluated
    on the fly; the signal's gradient overlap-adds r·ω."""

    @staticmethod
    def forward(ctx, x, theta, frac, base, window, n_fft, lead=None):
        x = x.contiguous()
        args, keep_alive = _position_arguments(x, theta, frac, base, window, n_fft)
        frames = x.new_empty(x.shape[0], base.shape[0], n_fft)
        _native.position_frames(*args, frames.data_ptr())
        del keep_alive
        _save_inputs(ctx, x, theta, frac, base)
        ctx.window, ctx.n_fft = window, n_fft
        return _with_lead(torch.fft.rfft(frames, dim=-1).transpose(-1, -2), lead)

    @staticmethod
    def backward(ctx, grad_out):
        x, theta, frac, base = _saved_inputs(ctx)
        n_fft, window = ctx.n_fft, ctx.window
        grad_out = grad_out.reshape(x.shape[0], *grad_out.shape[-2:])
        need_x, need_theta, need_frac = ctx.needs_input_grad[:3]
        grad_x = grad_theta = grad_frac = None
        adjoint = _real_spectrum_adjoint(_weighted_adjoint_input(grad_out, n_fft), n_fft)
        adjoint = adjoint.contiguous()
        if need_theta or need_frac:
            args, keep_alive = _position_arguments(x, theta, frac, base, window, n_fft)
            n_frames = base.shape[0]
            out_theta = torch.empty(n_frames, dtype=torch.float64) if need_theta else None
            out_x = torch.empty(n_frames, dtype=torch.float64) if need_frac else None
            _native.position_dots(*args, adjoint.data_ptr(),
                                  0 if out_theta is None else out_theta.data_ptr(),
                                  0 if out_x is None else out_x.data_ptr())
            del keep_alive
            if need_theta:
                total = out_theta.sum() if theta.dim() == 0 else out_theta.reshape(theta.shape)
                grad_theta = total.to(theta.dtype)
            if need_frac:
                grad_frac = (-out_x).to(frac.dtype)
        if need_x:
            # r is in column order (k mod L); the frame order of _scatter_frames reads frame n's
            # sample ⌊tₙ⌋ + j, j = −L/2+1 … L/2, at column (⌊tₙ⌋ + j) mod L.
            columns = torch.remainder(base[:, None] + _offsets(n_fft, x.device, base.dtype),
                                      n_fft)
            in_frame_order = adjoint.gather(-1, columns.expand(adjoint.shape[0], -1, -1))
            x_arg = _window_args(frac, n_fft, base.shape[0], x.device, x.dtype)
            w, _, _ = evaluate_window(window, x_arg, theta.reshape(-1, 1))
            grad_x = _scatter_frames(in_frame_order * w, base, x.shape[-1], n_fft)
        return grad_x, grad_theta, grad_frac, None, None, None, None


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
def _grid_geometry(t0: int, hop: int, n_frames: int, n_fft: int):
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


def _signal_blocks(x: Tensor, n_fft: int, blocks: int) -> Tensor:
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


def _grid_windows(window, theta: Tensor, n_fft: int, x: Tensor, *, value=True, d_theta=False):
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
        offsets = torch.arange(0, last - centre, device=x.device, dtype=x.dtype)[None]
        half = evaluate_window(window, offsets, theta.reshape(-1, 1), value=value,
                               d_theta=d_theta)[:2]
        left = centre - first  # columns with j < 0, at most as many as with j > 0
        w, dw_dtheta = (None if h is None else torch.cat((h[:, 1:left + 1].flip(-1), h), dim=-1)
                        for h in half)
        return w, dw_dtheta, first
    offsets = _offsets(n_fft, x.device, x.dtype)[None, first:last]
    w, dw_dtheta, _ = evaluate_window(window, offsets, theta.reshape(-1, 1), value=value,
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


def _rotated_product(xb: Tensor, w: Tensor, geometry, n_fft: int, n_frames: int,
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


def _weighted_adjoint_input(grad_out: Tensor, n_fft: int) -> Tensor:
    """Gᵀ (B, N, M) times :func:`_adjoint_scale`, ready for the irfft.

    G usually has the memory layout of S (frames outer, bins inner: every elementwise loss keeps
    it), then Gᵀ is contiguous. Otherwise the product keeps G's layout and the irfft reads it
    strided, which is cheaper than any explicit transposition.
    """
    scale = _adjoint_scale(n_fft, grad_out.device, grad_out.real.dtype)
    g = grad_out.transpose(-1, -2)
    if not g.is_contiguous():
        return (grad_out * scale[:, None]).transpose(-1, -2)
    return torch.view_as_complex(torch.view_as_real(g) * scale[:, None])


# Frames per block of the grid engine: the rotated frames and their rfft exist one block at a
# time (64 Mi elements), so a 10-minute recording never holds a second frame-sized array.
_GRID_BLOCK_ELEMENTS = 1 << 26


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


def native_frames_available() -> bool:
    """True when the optional C module ``dstft_cli.core._frames`` was built at install time.

    Without it (no C compiler when installing) the grid engine computes the same values with
    PyTorch operations, more slowly for per-frame θ.
    """
    return _native is not None


def _uses_native(x: Tensor) -> bool:
    return _native is not None and x.device.type == "cpu"


def _grid_source(window, theta: Tensor, n_fft: int, x: Tensor, *, value: bool = True,
                 d_theta: bool) -> _GridWindows:
    """ω and/or ∂θω for the grid engine (tables, or θ for the C module)."""
    if window.cosine_coefficients is not None and _uses_native(x):
        return _GridWindows(None, None, theta=theta.detach().to(torch.float64).reshape(-1),
                            coefficients=window.cosine_coefficients,
                            vanishes=window.vanishes_at_edges)
    w, dw, first = _grid_windows(window, theta, n_fft, x, value=value, d_theta=d_theta)
    return _GridWindows(w, dw, first)


def _native_frames(x: Tensor, windows: _GridWindows, t0: int, hop: int, n0: int, n1: int,
                   n_fft: int, value: bool, d_theta: bool):
    """Frames n0:n1 of the signal ``x`` (B, Ls) from the C module: (ω frames, ∂θω frames)."""
    batch, n = x.shape[0], n1 - n0
    start0 = t0 + n0 * hop - n_fft // 2 + 1  # first sample of frame n0
    common = (x.dtype == torch.float64, x.data_ptr(), x.shape[-1])
    geometry = (batch, n, n_fft, start0, hop)
    if windows.theta is not None:
        theta = windows.theta
        # Two arrays, two rfft calls: one call on a (2, B, n, L) pair would hand all ω frames
        # to one OpenMP thread and all ∂θω frames to the other, while the C module writes
        # both for the same frames on the same thread (and the dot product of the backward
        # pass reads them there). Measured at 160 k samples: forward+backward at per-frame θ
        # 3.49× torch.stft with the pair against 2.51× with two calls.
        frames = x.new_empty(batch, n, n_fft) if value else None
        dframes = x.new_empty(batch, n, n_fft) if d_theta else None
        per_frame = theta.numel() > 1  # (a single frame reads its one θ either way)
        _native.cosine_frames(*common, 0 if frames is None else frames.data_ptr(),
                              0 if dframes is None else dframes.data_ptr(), *geometry,
                              theta[n0:n1].data_ptr() if per_frame else theta.data_ptr(),
                              1 if per_frame else 0, windows.coefficients, windows.vanishes)
        return frames, dframes
    out = []
    for table, wanted in ((windows.w, value), (windows.dw, d_theta)):
        if not wanted:
            out.append(None)
            continue
        table = (table if table.shape[0] == 1 else table[n0:n1]).contiguous()
        frames = x.new_empty(batch, n, n_fft)
        _native.table_frames(*common, frames.data_ptr(), *geometry, table.data_ptr(),
                             0 if table.shape[0] == 1 else table.shape[1], windows.first,
                             table.shape[1])
        out.append(frames)
    return tuple(out)


def _frame_blocks(x: Tensor, windows: _GridWindows, grid, n_fft: int, *, value=True,
                  d_theta=False, block_elements: int | None = None):
    """(n0, n1, frames with ω or None, frames with ∂θω or None) for blocks of frames.

    ``x`` is the (B, Ls) signal; the PyTorch path pads it into L-sample blocks first.
    """
    t0, hop, n_frames = grid
    native = _uses_native(x)
    if native:
        x = x.contiguous()
    else:
        xb = _signal_blocks(x, n_fft, _grid_geometry(*grid, n_fft)[3])
    limit = _GRID_BLOCK_ELEMENTS if block_elements is None else block_elements
    block = max(1, limit // (n_fft * x.shape[0]))
    for n0 in range(0, n_frames, block):
        n1 = min(n0 + block, n_frames)
        if native:
            yield (n0, n1, *_native_frames(x, windows, t0, hop, n0, n1, n_fft, value, d_theta))
            continue
        sub = _grid_geometry(t0 + n0 * hop, hop, n1 - n0, n_fft)
        yield (n0, n1, *(
            None if table is None or not wanted else _rotated_product(
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


def _spectral_dot(grad_out: Tensor, spec_t: Tensor, per_frame: bool) -> Tensor:
    """Σ Re(conj(G)·S') over bins (and frames unless ``per_frame``) and the batch.

    ``spec_t`` is (B, N, M); G is (B, M, N). This is ∂L/∂p when S' = ∂S/∂p: with torch's
    convention G = ∂L/∂Re S + i ∂L/∂Im S.
    """
    g = grad_out.transpose(-1, -2)
    # The C loop makes one pass and no temporary (a product then a sum over bins is two passes
    # and a frame-sized temporary), each thread over the frames it wrote; and its per-frame sums,
    # unlike torch.dot's, do not depend on the number of threads.
    if _uses_native(g) and spec_t.is_contiguous() and g.dim() == 3:
        g = g.resolve_conj().resolve_neg()  # the C loop reads memory, not lazy conj/neg views
        out = spec_t.real.new_empty(g.shape[1])
        _native.frame_dots(out.dtype == torch.float64, g.data_ptr(), *g.stride(), spec_t.data_ptr(),
                           *g.shape, out.data_ptr())
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
# backward pass, in blocks of frames of _RECOMPUTE_BLOCK_ELEMENTS samples, each block's rfft met
# by its slice of G while it is still in cache. Measured, fwd+bwd against torch.stft at n_fft
# 1024, hop 256, float32: keeping wins at 400 k samples (constant θ 2.51× against 2.59–3.30×);
# at 1.6 M recomputing wins for constant θ (2.67× → 2.48×) but not per frame (2.81× → 3.02×: its
# windows are evaluated a second time); at 3.2 M, where the kept arrays pass glibc's largest mmap
# threshold (32 MiB, see runtime.tune_allocator) and are mapped afresh on every call, it wins
# for both (constant θ 3.79× → 2.04×, per-frame θ 3.87× → 2.31×). A 10-minute recording then
# also holds a single spectrum-sized array between the passes.
_KEPT_SPECTRUM_BYTES = (16 << 20, 32 << 20)
_RECOMPUTE_BLOCK_ELEMENTS = 1 << 20


class _GridFFTEngine(torch.autograd.Function):
    """Constant or per-frame θ on a regular integer grid: rotated frames, no phase factor.

    The θ-gradient is taken in the frequency domain, ∂L/∂θ = Σ Re(conj(G)·S_{∂θω}) (Sec. IV):
    one rfft of the frames times ∂θω and a dot product, cheaper than the irfft of G followed by
    a product with the frames. Up to ``_KEPT_SPECTRUM_BYTES`` of spectrum S_{∂θω} is computed
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
        keep = need_theta_grad and spectrum_bytes <= _KEPT_SPECTRUM_BYTES[theta.dim()]
        windows = _grid_source(window, theta, n_fft, x, d_theta=keep)
        spec, spec_dtheta = _blocked_rfft(x, windows, grid, n_fft, d_theta=keep)
        ctx.save_for_backward(x, theta, spec_dtheta if keep else torch.empty(0))
        ctx.window, ctx.n_fft, ctx.grid, ctx.kept = window, n_fft, grid, keep
        return _with_lead(spec.transpose(-1, -2), lead)

    @staticmethod
    def backward(ctx, grad_out):
        x, theta, spec_dtheta = ctx.saved_tensors
        grad_out = grad_out.reshape(x.shape[0], *grad_out.shape[-2:])
        window, n_fft, grid = ctx.window, ctx.n_fft, ctx.grid
        need_x, need_theta = ctx.needs_input_grad[:2]
        grad_x = grad_theta = None
        per_frame = theta.dim() == 1
        if need_theta and ctx.kept:
            grad_theta = _spectral_dot(grad_out, spec_dtheta, per_frame=per_frame)
        elif need_theta:
            # S_{∂θω} block by block, each met by its slice of G at once: never a whole array.
            windows = _grid_source(window, theta, n_fft, x, value=False, d_theta=True)
            parts = [_spectral_dot(grad_out[..., n0:n1], torch.fft.rfft(dframes, dim=-1),
                                   per_frame=per_frame)
                     for n0, n1, _, dframes in _frame_blocks(
                         x, windows, grid, n_fft, value=False, d_theta=True,
                         block_elements=_RECOMPUTE_BLOCK_ELEMENTS)]
            grad_theta = torch.cat(parts) if per_frame else torch.stack(parts).sum()
        if need_x:
            # The adjoint of the rfft (Sec. IV-C), then of the rotated gather: overlap-add.
            geometry = _grid_geometry(*grid, n_fft)
            w, _, first = _grid_windows(window, theta, n_fft, x)
            adj = _real_spectrum_adjoint(_weighted_adjoint_input(grad_out, n_fft), n_fft)
            grad_xb = x.new_zeros(x.shape[0], geometry[3], n_fft)
            plan = _part_plan(geometry, n_fft, first, w.shape[-1])
            for sig, piece, win in _pieces(plan, grad_xb, adj, w.contiguous()):
                sig.addcmul_(piece, win)
            keep = min(x.shape[-1], grad_xb.shape[1] * n_fft - n_fft)
            grad_x = x.new_zeros(x.shape)
            grad_x[:, :keep] = grad_xb.view(x.shape[0], -1)[:, n_fft:n_fft + keep]
        return grad_x, grad_theta, None, None, None, None, None


# --------------------------------------------------------------------------------------------
# engine 2: per-bin or per-TF-bin θ, direct summation in chunks of frames


def _chunk_frames(n_bins: int, n_fft: int, batch: int, chunk_size: int | None) -> int:
    if chunk_size is not None:
        return max(1, int(chunk_size))
    return max(1, _CHUNK_ELEMENTS // (n_bins * n_fft * batch))


def _support_slice(theta_blk: Tensor, n_fft: int) -> slice:
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
    if window.cosine_coefficients is not None and _uses_native(theta_blk):
        return _native_block_windows(window, frac, theta_blk, n0, n1, cols, n_fft, dtype,
                                     **which)
    j = _offsets(n_fft, theta_blk.device, dtype)[cols]
    x_arg = j if frac is None else j[None, :] - frac[n0:n1, None]  # (Lj,) or (nc, Lj)
    return evaluate_window(window, x_arg, theta_blk[:, :, None], **which)


def _native_block_windows(window, frac, theta_blk, n0, n1, cols, n_fft, dtype, *, value=True,
                          d_theta=False, d_x=False):
    """_block_windows by the C module: each (bin, frame) row evaluated by recurrences on its
    support (a cos and a sin per element were half of the per-TF-bin engine's time)."""
    n_bins, nc = theta_blk.shape
    width = cols.stop - cols.start
    theta64 = theta_blk.detach().to(torch.float64).contiguous()
    frac64 = None if frac is None else frac[n0:n1].detach().to(torch.float64).contiguous()
    outs = [theta_blk.new_empty((n_bins, nc, width), dtype=dtype) if wanted else None
            for wanted in (value, d_theta, d_x)]
    _native.cosine_block(dtype == torch.float64, theta64.data_ptr(), n_bins, nc,
                         0 if frac64 is None else frac64.data_ptr(),
                         n_fft, cols.start, width, window.cosine_coefficients,
                         *(0 if o is None else o.data_ptr() for o in outs))
    return tuple(outs)


def _project(block: Tensor, frames: Tensor, cos_sin: Tensor) -> Tensor:
    """Σ_j block[m,n,j]·frames[b,n,j]·(cos, sin)[m,j] → (M, B, nc, 2).

    The product block ⊙ frames is formed once and contracted with both tables in one batched
    matrix product over bins.
    """
    n_bins, nc, width = block.shape[0], block.shape[-2], block.shape[-1]
    batch = frames.shape[0]
    z = block.expand(n_bins, nc, width)[:, None] * frames[None]  # (M, B, nc, Lj)
    return torch.bmm(z.view(n_bins, batch * nc, width), cos_sin).view(n_bins, batch, nc, 2)


class _BinEngine(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, theta, frac, base, window, n_fft, chunk_size):
        n_bins, n_frames, batch = n_fft // 2 + 1, base.shape[0], x.shape[0]
        chunk = _chunk_frames(n_bins, n_fft, batch, chunk_size)
        theta_full = theta.expand(n_bins, n_frames)
        cos_sin = torch.stack(_dft_tables(n_fft, x.device, x.dtype), -1)  # (M, L, 2)
        frames = _frames(x, base, n_fft)
        out = x.new_empty(n_bins, batch, n_frames, 2)
        for n0 in range(0, n_frames, chunk):
            n1 = min(n0 + chunk, n_frames)
            theta_blk = theta_full[:, n0:n1]
            cols = _support_slice(theta_blk, n_fft)
            w, _, _ = _block_windows(window, frac, theta_blk, n0, n1, cols, n_fft, x.dtype)
            out[:, :, n0:n1] = _project(w, frames[:, n0:n1, cols], cos_sin[:, cols])
        spec = torch.complex(out[..., 0], -out[..., 1]).permute(1, 0, 2)  # (B, M, N)
        phase = _frame_phase(base, n_fft, x.dtype, rfft_origin=False).T  # (M, N)
        _save_inputs(ctx, x, theta, frac, base)
        ctx.window, ctx.n_fft, ctx.chunk = window, n_fft, chunk
        return spec * phase

    @staticmethod
    def backward(ctx, grad_out):
        x, theta, frac, base = _saved_inputs(ctx)
        window, n_fft, chunk = ctx.window, ctx.n_fft, ctx.chunk
        need_x, need_theta, need_frac = ctx.needs_input_grad[:3]
        n_bins, n_frames, batch = n_fft // 2 + 1, base.shape[0], x.shape[0]
        theta_full = theta.expand(n_bins, n_frames)
        cos_sin = torch.stack(_dft_tables(n_fft, x.device, x.dtype), -1)  # (M, L, 2)
        frames = _frames(x, base, n_fft)
        # X = G·conj(phase); dL/dp = Σ Re(conj X · Y_p) with Y_p = Σ_j ∂_pW F (cos − i sin),
        # i.e. xr·c − xi·s for the (c, s) projections of ∂_pW.
        X = grad_out * _frame_phase(base, n_fft, x.dtype, rfft_origin=False).T.conj()
        xr_xs = torch.stack((X.real, -X.imag), -1).permute(1, 0, 2, 3)  # (M, B, N, 2)
        grad_theta_full = torch.zeros_like(theta_full) if need_theta else None
        grad_frac = x.new_zeros(n_frames) if need_frac else None
        grad_frames = x.new_zeros(batch, n_frames, n_fft) if need_x else None
        for n0 in range(0, n_frames, chunk):
            n1 = min(n0 + chunk, n_frames)
            theta_blk = theta_full[:, n0:n1]
            cols = _support_slice(theta_blk, n_fft)
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
        grad_x = _scatter_frames(grad_frames, base, x.shape[-1], n_fft) if need_x else None
        grad_theta = None
        if need_theta:
            grad_theta = grad_theta_full.sum(1, keepdim=True) if theta.shape[1] == 1 else grad_theta_full
        return grad_x, grad_theta, grad_frac, None, None, None, None


class _BinGemmEngine(torch.autograd.Function):
    """Per-bin θₘ on integer frame positions: the window of bin m is the same in every frame, so
    S = F·Kᵀ with K[m, j] = ω(j, θₘ)e^{−j2πjm/L}, a matrix product instead of a block sum."""

    @staticmethod
    def forward(ctx, x, theta, base, window, n_fft):
        n_bins, n_frames, batch = n_fft // 2 + 1, base.shape[0], x.shape[0]
        cos, sin = _dft_tables(n_fft, x.device, x.dtype)
        w, _, _ = evaluate_window(window, _offsets(n_fft, x.device, x.dtype), theta)  # (M, L)
        frames = _frames(x, base, n_fft).reshape(batch * n_frames, n_fft)
        real = frames @ (w * cos).T  # (B·N, M)
        imag = frames @ (w * sin).T
        spec = torch.complex(real, -imag).view(batch, n_frames, n_bins).transpose(-1, -2)
        ctx.save_for_backward(x, theta, base)
        ctx.window, ctx.n_fft = window, n_fft
        return spec * _frame_phase(base, n_fft, x.dtype, rfft_origin=False).T

    @staticmethod
    def backward(ctx, grad_out):
        x, theta, base = ctx.saved_tensors
        window, n_fft = ctx.window, ctx.n_fft
        need_x, need_theta = ctx.needs_input_grad[:2]
        n_frames, batch = base.shape[0], x.shape[0]
        cos, sin = _dft_tables(n_fft, x.device, x.dtype)
        X = grad_out * _frame_phase(base, n_fft, x.dtype, rfft_origin=False).T.conj()  # (B, M, N)
        xr = X.real.transpose(0, 1).reshape(-1, batch * n_frames)  # (M, B·N)
        xi = X.imag.transpose(0, 1).reshape(-1, batch * n_frames)
        w, dth, _ = evaluate_window(window, _offsets(n_fft, x.device, x.dtype), theta,
                                    value=need_x, d_theta=need_theta)
        frames = _frames(x, base, n_fft).reshape(batch * n_frames, n_fft)
        grad_x = grad_theta = None
        if need_theta:
            # Σ_j ∂θω[m,j] Σ_n F[n,j](xr[m,n] cos[m,j] − xi[m,n] sin[m,j])
            grad_theta = (dth * ((xr @ frames) * cos - (xi @ frames) * sin)).sum(-1, keepdim=True)
        if need_x:
            grad_frames = xr.T @ (w * cos) - xi.T @ (w * sin)  # (B·N, L)
            grad_x = _scatter_frames(grad_frames.view(batch, n_frames, n_fft), base,
                                     x.shape[-1], n_fft)
        return grad_x, grad_theta, None, None, None


# --------------------------------------------------------------------------------------------
# reference engine: the same maths through plain autograd


def _autograd_engine(x, theta, frac, base, window, n_fft, kind):
    frames = _frames(x, base, n_fft)
    j = _offsets(n_fft, x.device, x.dtype)
    x_arg = j[None, :] if frac is None else j[None, :] - frac[:, None]
    if kind in ("constant", "frame"):
        w, _, _ = evaluate_window(window, x_arg, theta.reshape(-1, 1))
        phase = _frame_phase(base, n_fft, x.dtype)
        return (torch.fft.rfft(frames * w, dim=-1) * phase).transpose(-1, -2)
    phase = _frame_phase(base, n_fft, x.dtype, rfft_origin=False)
    n_bins, n_frames = n_fft // 2 + 1, base.shape[0]
    cos, sin = _dft_tables(n_fft, x.device, x.dtype)
    w, _, _ = evaluate_window(window, x_arg, theta.expand(n_bins, n_frames)[..., None])
    real = torch.einsum("mnj,bnj,mj->bmn", w, frames, cos)
    imag = -torch.einsum("mnj,bnj,mj->bmn", w, frames, sin)
    return torch.complex(real, imag) * phase.T


# --------------------------------------------------------------------------------------------
# public function


def _as_tensor(value, like: Tensor, name: str) -> Tensor:
    if isinstance(value, Tensor):
        if value.is_complex():
            raise TypeError(f"{name} must be real, got dtype {value.dtype}")
        # The cast is differentiable: a float64 θ may drive a float32 transform.
        return value.to(device=like.device, dtype=like.dtype)
    return torch.as_tensor(value, dtype=like.dtype, device=like.device)


def _check_values(window_length: Tensor, n_fft: int) -> None:
    # Value checks need the numbers on the host: done on CPU only, where that is free. On CUDA
    # they would force a device synchronisation in every forward pass.
    if window_length.device.type != "cpu":
        return
    with torch.no_grad():
        if window_length.numel() == 1:
            lo = hi = float(window_length.reshape(()))
        else:
            lo, hi = torch.stack(torch.aminmax(window_length)).tolist()
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("window_length contains non-finite values")
    if lo <= 0 or hi > n_fft:
        raise ValueError(f"window_length must lie in (0, n_fft={n_fft}]; got values in [{lo}, {hi}]")


def dstft(
    x: Tensor,
    *,
    n_fft: int,
    window_length,
    frame_positions: Tensor | None = None,
    hop_length: int | float | None = None,
    window: str | BaseWindow = "hann",
    engine: str = "fused",
    chunk_size: int | None = None,
) -> Tensor:
    """Differentiable STFT S[m, n] = Σₖ ω(k − tₙ, θₘ,ₙ) s[k] e^{−j2πkm/L} (Eq. 6).

    Args:
        x: real signal ``(..., Ls)``, float32 or float64; leading dimensions are batch/channels.
        n_fft: L, the DFT size (even); the output has M = L/2 + 1 frequency bins.
        window_length: θ in (0, L]: a number or 0-d tensor (constant), ``(N,)`` per frame,
            ``(M, 1)`` per bin or ``(M, N)`` per bin and frame. Tensors may require grad.
        frame_positions: tₙ in samples, ``(N,)``, real-valued (may require grad) or integer.
            Defaults to tₙ = n·H, N = 1 + ⌊Ls/H⌋ with H = ``hop_length``.
        hop_length: H for the default grid (default L/4); ignored when positions are given.
        window: ``hann`` (Eq. 4), ``gaussian`` (Eq. 5), ``hamming``, ``blackman`` or a
            :class:`~dstft_cli.core.windows.BaseWindow`.
        engine: ``fused`` (custom backward of Sec. IV, default) or ``autograd`` (reference).
        chunk_size: frames per block in the per-bin engines (default: about 16 MiB per block).

    Returns:
        complex tensor ``(..., M, N)``.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _SUPPORTED_DTYPES:
        raise TypeError(
            f"x has dtype {x.dtype}; dstft supports float32 and float64 (half precision loses the "
            "window-length gradient entirely) — convert with x.float()"
        )
    if x.dim() < 1 or x.shape[-1] < 1:
        raise ValueError(f"x must have shape (..., Ls) with Ls ≥ 1, got {tuple(x.shape)}")
    if not isinstance(n_fft, int) or isinstance(n_fft, bool) or n_fft < 2 or n_fft % 2:
        raise ValueError(f"n_fft must be an even integer ≥ 2, got {n_fft!r}")
    if engine not in ("fused", "autograd"):
        raise ValueError(f"engine must be 'fused' or 'autograd', got {engine!r}")
    window = get_window(window)
    signal_length = x.shape[-1]
    grid = None
    if frame_positions is None:
        hop = n_fft // 4 if hop_length is None else hop_length
        if not hop > 0:
            raise ValueError(f"hop_length must be > 0, got {hop_length!r}")
        if float(hop).is_integer():
            # The default integer grid is known without building it (the grid engine needs
            # only t₀, H and N; the positions are made if another engine asks for them).
            grid = (0, int(hop))
            n_frames = frame_count(signal_length, hop)
        else:
            frame_positions = default_frame_positions(signal_length, hop, device=x.device)
    elif not isinstance(frame_positions, Tensor):
        frame_positions = torch.as_tensor(frame_positions, device=x.device)
    if frame_positions is not None:
        if frame_positions.dim() != 1 or frame_positions.numel() < 1:
            raise ValueError(
                f"frame_positions must have shape (N,), got {tuple(frame_positions.shape)}")
        frame_positions = frame_positions.to(x.device)
        n_frames = frame_positions.shape[0]
        if grid is None:
            grid = regular_grid(frame_positions)
    theta = _as_tensor(window_length, x, "window_length")
    n_bins = n_fft // 2 + 1
    kind = window_length_kind(theta, n_bins, n_frames)
    _check_values(theta, n_fft)
    # (reshaped only when needed: even a reshape to the same shape adds an autograd node)
    if kind == "constant" and theta.dim() != 0:
        theta = theta.reshape(())
    elif kind == "frame" and theta.dim() != 1:
        theta = theta.reshape(n_frames)

    lead = x.shape[:-1]
    x2 = x.reshape(-1, signal_length)
    if kind in ("constant", "frame") and engine == "fused" and grid is not None:
        geometry = _grid_geometry(grid[0], grid[1], n_frames, n_fft)
        if geometry is not None:
            need_theta_grad = theta.requires_grad and torch.is_grad_enabled()
            return _GridFFTEngine.apply(x2, theta, window, n_fft, (grid[0], grid[1], n_frames),
                                        need_theta_grad, lead)
    if frame_positions is None:
        frame_positions = default_frame_positions(signal_length, grid[1], device=x.device)
    base, frac = _split_positions(frame_positions, x.dtype)
    if engine == "autograd":
        spec = _autograd_engine(x2, theta, frac, base, window, n_fft, kind)
    elif kind in ("constant", "frame") and _uses_native_positions(x2, window):
        return _PositionEngine.apply(x2, theta, frac, base, window, n_fft, lead)
    elif kind in ("constant", "frame"):
        spec = _FFTEngine.apply(x2, theta, frac, base, window, n_fft, grid)
    elif kind == "bin" and frac is None:
        spec = _BinGemmEngine.apply(x2, theta, base, window, n_fft)
    else:
        spec = _BinEngine.apply(x2, theta, frac, base, window, n_fft, chunk_size)
    return spec.reshape(*lead, n_bins, n_frames)

