"""Helpers every engine shares: frame gathering and its adjoint, phase tables, the adjoint of
the half-spectrum rfft, and the saving of inputs between the passes.

Frames follow Eq. (25): with k = ⌊tₙ⌋ + j, j = −L/2+1 … L/2, every frame reads L samples around
⌊tₙ⌋, the window is evaluated at j − {tₙ}, and the phase e^{−j2π⌊tₙ⌋m/L} is taken from a table
indexed by (⌊tₙ⌋·m) mod L computed in integers, so it stays exact for any signal length and
dtype.
"""

from __future__ import annotations

import functools
import math

import torch

Tensor = torch.Tensor


def offsets(n_fft: int, device, dtype) -> Tensor:
    """j = −L/2+1 … L/2: sample offsets of a frame relative to ⌊tₙ⌋ (Eq. 25)."""
    return torch.arange(-n_fft // 2 + 1, n_fft // 2 + 1, device=device, dtype=dtype)


def split_positions(frame_positions: Tensor, dtype) -> tuple[Tensor, Tensor | None]:
    """⌊tₙ⌋ as int64 and {tₙ} in ``dtype`` (None for integer positions: no fractional part)."""
    if not frame_positions.is_floating_point():
        return frame_positions.long(), None
    floor = torch.floor(frame_positions.detach())
    return floor.long(), (frame_positions - floor).to(dtype)


def frame_index(base: Tensor, n_fft: int, pad: int, padded_length: int) -> Tensor:
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


def gather_frames(x: Tensor, base: Tensor, n_fft: int,
                  grid: tuple[int, int] | None = None) -> Tensor:
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


def scatter_frames(grad_frames: Tensor, base: Tensor, signal_length: int, n_fft: int) -> Tensor:
    """Adjoint of :func:`gather_frames`: overlap-add (B, N, L) back onto the (B, Ls) signal."""
    batch = grad_frames.shape[0]
    out = grad_frames.new_zeros(batch, signal_length + 2 * n_fft)
    idx = frame_index(base, n_fft, n_fft, out.shape[-1])
    out.index_add_(1, idx.reshape(-1), grad_frames.reshape(batch, -1))
    return out[:, n_fft : n_fft + signal_length]


@functools.lru_cache(maxsize=16)
def _phase_table(n_fft: int, device, dtype) -> tuple[Tensor, Tensor]:
    angle = torch.arange(n_fft, device=device, dtype=torch.float64) * (2 * math.pi / n_fft)
    return torch.cos(angle).to(dtype), torch.sin(angle).to(dtype)


def frame_phase(base: Tensor, n_fft: int, dtype, *, rfft_origin: bool = True) -> Tensor:
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


def phase_multiply(
    spec: Tensor, base: Tensor, n_fft: int, *, conjugate: bool = False, scaled: bool = False,
    inplace: bool = False,
) -> Tensor:
    """spec (B, N, M) · e^{∓j2π(⌊tₙ⌋ − L/2 + 1)m/L}, times :func:`adjoint_scale` if ``scaled``."""
    real_dtype = spec.real.dtype
    phase = frame_phase(base, n_fft, real_dtype)
    if conjugate:
        phase = phase.conj()
    if scaled:
        phase = phase * adjoint_scale(n_fft, spec.device, real_dtype)
    return spec.mul_(phase) if inplace else spec * phase


@functools.lru_cache(maxsize=8)
def dft_tables(n_fft: int, device, dtype) -> tuple[Tensor, Tensor]:
    """cos and sin of 2π·(j·m mod L)/L for (M, L), j = −L/2+1 … L/2."""
    n_bins = n_fft // 2 + 1
    m = torch.arange(n_bins, device=device)
    j = torch.arange(-n_fft // 2 + 1, n_fft // 2 + 1, device=device)
    r = torch.remainder(m[:, None] * j[None, :], n_fft)
    cos, sin = _phase_table(n_fft, device, dtype)
    return cos[r], sin[r]


def window_args(frac: Tensor | None, n_fft: int, n_frames: int, device, dtype) -> Tensor:
    """x = j − {tₙ}: (N, L), or (1, L) when every frame sits on an integer position."""
    j = offsets(n_fft, device, dtype)
    if frac is None:
        return j[None, :]
    return j[None, :] - frac[:, None]


def adjoint_scale(n_fft: int, device, dtype) -> Tensor:
    """Weights that turn irfft into the adjoint of the half-spectrum rfft.

    Re Σ_{m=0}^{L/2} X_m e^{+j2πim/L} = L·irfft(c ⊙ X) with c_m = 1/2 for m = 1 … L/2−1 (irfft
    counts those bins twice, for Hermitian symmetry) and c_m = 1 at DC and Nyquist.
    """
    scale = torch.full((n_fft // 2 + 1,), 0.5 * n_fft, device=device, dtype=dtype)
    scale[0] = scale[-1] = float(n_fft)
    return scale


def real_spectrum_adjoint(spec_weighted: Tensor, n_fft: int) -> Tensor:
    """irfft of an already weighted spectrum (see :func:`adjoint_scale`).

    The imaginary parts of the DC and Nyquist bins must not count; they are dropped explicitly
    since not every FFT backend ignores them.
    """
    # (in place on the imaginary view: assigning the real view back to the complex slice reads
    # and writes the same memory, which PyTorch refuses for a single frame)
    spec_weighted[..., 0].imag.zero_()
    spec_weighted[..., -1].imag.zero_()
    return torch.fft.irfft(spec_weighted, n=n_fft, dim=-1)


def save_inputs(ctx, x, theta, frac, base) -> None:
    # save_for_backward takes tensors only: an absent fractional part is saved as an empty one.
    ctx.save_for_backward(x, theta, frac if frac is not None else torch.empty(0), base)
    ctx.has_frac = frac is not None


def saved_inputs(ctx):
    x, theta, frac, base = ctx.saved_tensors
    return x, theta, (frac if ctx.has_frac else None), base



def with_lead(spec: Tensor, lead) -> Tensor:
    """(B, M, N) → (*lead, M, N), a view (B is the product of ``lead``); None keeps (B, M, N)."""
    return spec if lead is None else spec.reshape(*lead, *spec.shape[-2:])



def weighted_adjoint_input(grad_out: Tensor, n_fft: int) -> Tensor:
    """Gᵀ (B, N, M) times :func:`adjoint_scale`, ready for the irfft.

    G usually has the memory layout of S (frames outer, bins inner: every elementwise loss keeps
    it), then Gᵀ is contiguous. Otherwise the product keeps G's layout and the irfft reads it
    strided, which is cheaper than any explicit transposition.
    """
    scale = adjoint_scale(n_fft, grad_out.device, grad_out.real.dtype)
    g = grad_out.transpose(-1, -2)
    if not g.is_contiguous():
        return (grad_out * scale[:, None]).transpose(-1, -2)
    return torch.view_as_complex(torch.view_as_real(g) * scale[:, None])

