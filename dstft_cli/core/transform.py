"""The differentiable STFT of Eq. (6): public API, argument checks and the choice of engine.

    S[m, n] = Σ_k ω(k − tₙ, θ_{m,n}) s[k] e^{−j2πkm/L},   s = 0 outside the signal

The computation lives in :mod:`dstft_cli.core.engines`, one module per engine, chosen by
:func:`select_engine` from the table ``ENGINES`` below (θ shape × positions × window × device).
All engines are :class:`torch.autograd.Function` s whose backward applies the formulas of Sec. IV
directly (∂θ through S computed with ∂θω, ∂t through −S computed with ∂xω, the signal through
the adjoint transform), recomputing frames and windows instead of storing them.
``engine="autograd"`` runs the same maths through plain autograd, as a reference.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .engines import autograd, bins, grid, native, phase, position
from .engines.common import regular_grid, split_positions
from .windows import BaseWindow, get_window

Tensor = torch.Tensor

__all__ = ["dstft", "default_frame_positions", "frame_count", "native_frames_available",
           "select_engine", "window_length_kind"]

_SUPPORTED_DTYPES = (torch.float32, torch.float64)


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





def native_frames_available() -> bool:
    """True when the optional C module ``dstft_cli.core._frames`` was built at install time.

    Without it (no C compiler when installing) every engine computes the same values with
    PyTorch operations, more slowly.
    """
    return native.available()


# --------------------------------------------------------------------------------------------
# the choice of engine: the first matching row wins
#
#   positions: "grid"  = integer tₙ = t₀ + n·H that the grid engine can rotate
#                        (L / gcd(H, L) ≤ 64 phase classes, see grid.grid_geometry);
#              "integer" = any integer positions (a grid is integer too); "any".
#   window:    "cosine" = a cosine-sum window (hann, hamming, blackman); "any".
#   device:    "cpu+C" = CPU tensors and the C module built; "any".

ENGINES = (
    # θ shape                positions   window     device    engine
    (("constant", "frame"), "grid",     "any",     "any",    "grid"),
    (("constant", "frame"), "any",      "cosine",  "cpu+C",  "position"),
    (("constant", "frame"), "any",      "any",     "any",    "phase"),
    (("bin",),              "integer",  "any",     "any",    "bin-gemm"),
    (("bin", "tf"),         "any",      "cosine",  "cpu+C",  "bins-c"),
    (("bin", "tf"),         "any",      "any",     "any",    "bins"),
)


def select_engine(kind: str, positions: str, cosine_window: bool, native_device: bool) -> str:
    """The engine of the first row of ``ENGINES`` that matches.

    ``kind`` is a :func:`window_length_kind`; ``positions`` is ``grid``, ``integer`` or
    ``fractional``.
    """
    position_classes = {"grid": ("grid", "integer", "any"), "integer": ("integer", "any"),
                        "fractional": ("any",)}[positions]
    for kinds, where, window, device, engine in ENGINES:
        if (kind in kinds and where in position_classes
                and (window == "any" or cosine_window) and (device == "any" or native_device)):
            return engine
    raise AssertionError(f"no engine for {kind!r} θ at {positions} positions")  # table is total


class _Call(NamedTuple):
    """One transform, validated: the signal as (B, Ls) and what the engines need."""

    x: Tensor
    theta: Tensor
    window: BaseWindow
    n_fft: int
    kind: str
    grid: tuple[int, int] | None  # (t₀, H) when the positions are a regular integer grid
    n_frames: int
    positions: Tensor | None  # None: the default grid, made only if an engine asks for it
    lead: tuple
    chunk_size: int | None

    def split(self) -> tuple[Tensor, Tensor | None]:
        """(⌊tₙ⌋ int64, {tₙ} or None for integer positions)."""
        positions = self.positions
        if positions is None:
            positions = default_frame_positions(self.x.shape[-1], self.grid[1], device=self.x.device)
        base, frac = split_positions(positions, self.x.dtype)
        return base, frac

    def shaped(self, spec: Tensor) -> Tensor:
        return spec.reshape(*self.lead, self.n_fft // 2 + 1, self.n_frames)


def _run_grid(c: _Call) -> Tensor:
    need_theta_grad = c.theta.requires_grad and torch.is_grad_enabled()
    return grid.GridEngine.apply(c.x, c.theta, c.window, c.n_fft, (*c.grid, c.n_frames),
                                 need_theta_grad, c.lead)


def _run_position(c: _Call) -> Tensor:
    base, frac = c.split()
    return position.PositionEngine.apply(c.x, c.theta, frac, base, c.window, c.n_fft, c.lead)


def _run_phase(c: _Call) -> Tensor:
    base, frac = c.split()
    return c.shaped(phase.PhaseEngine.apply(c.x, c.theta, frac, base, c.window, c.n_fft, c.grid))


def _run_bin_gemm(c: _Call) -> Tensor:
    base, _ = c.split()
    return c.shaped(bins.BinGemmEngine.apply(c.x, c.theta, base, c.window, c.n_fft))


def _run_bins(c: _Call) -> Tensor:
    base, frac = c.split()
    return c.shaped(bins.BinEngine.apply(c.x, c.theta, frac, base, c.window, c.n_fft,
                                         c.chunk_size))


def _run_bins_c(c: _Call) -> Tensor:
    base, frac = c.split()
    return bins.NativeBinEngine.apply(c.x, c.theta, frac, base, c.window, c.n_fft, c.lead)


def _run_autograd(c: _Call) -> Tensor:
    base, frac = c.split()
    return c.shaped(autograd.autograd_engine(c.x, c.theta, frac, base, c.window, c.n_fft, c.kind))


_RUN = {"grid": _run_grid, "position": _run_position, "phase": _run_phase,
        "bin-gemm": _run_bin_gemm, "bins-c": _run_bins_c, "bins": _run_bins, "autograd": _run_autograd}


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


def _positions(x: Tensor, n_fft: int, frame_positions, hop_length):
    """(positions or None for the default integer grid, (t₀, H) or None, N)."""
    signal_length = x.shape[-1]
    if frame_positions is None:
        hop = n_fft // 4 if hop_length is None else hop_length
        if not hop > 0:
            raise ValueError(f"hop_length must be > 0, got {hop_length!r}")
        if float(hop).is_integer():
            # The default integer grid is known without building it (the grid engine needs
            # only t₀, H and N; the positions are made if another engine asks for them).
            return None, (0, int(hop)), frame_count(signal_length, hop)
        frame_positions = default_frame_positions(signal_length, hop, device=x.device)
    elif not isinstance(frame_positions, Tensor):
        frame_positions = torch.as_tensor(frame_positions, device=x.device)
    if frame_positions.dim() != 1 or frame_positions.numel() < 1:
        raise ValueError(f"frame_positions must have shape (N,), got {tuple(frame_positions.shape)}")
    frame_positions = frame_positions.to(x.device)
    return frame_positions, regular_grid(frame_positions), frame_positions.shape[0]


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
    positions, on_grid, n_frames = _positions(x, n_fft, frame_positions, hop_length)
    theta = _as_tensor(window_length, x, "window_length")
    kind = window_length_kind(theta, n_fft // 2 + 1, n_frames)
    _check_values(theta, n_fft)
    # (reshaped only when needed: even a reshape to the same shape adds an autograd node)
    if kind == "constant" and theta.dim() != 0:
        theta = theta.reshape(())
    elif kind == "frame" and theta.dim() != 1:
        theta = theta.reshape(n_frames)
    call = _Call(x.reshape(-1, x.shape[-1]), theta, window, n_fft, kind, on_grid, n_frames,
                 positions, tuple(x.shape[:-1]), chunk_size)
    if engine == "autograd":
        return _run_autograd(call)
    if on_grid is not None and grid.grid_geometry(*on_grid, n_frames, n_fft) is not None:
        where = "grid"
    elif positions is None or not positions.is_floating_point():
        where = "integer"
    else:
        where = "fractional"
    chosen = select_engine(kind, where, window.cosine_coefficients is not None,
                           native.usable(x))
    return _RUN[chosen](call)
