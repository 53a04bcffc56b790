"""The one door to the optional C modules ``dstft_cli.core._frames`` and ``dstft_cli.core._losses``.

The C functions read and write raw memory: given a wrong address, length or dtype they corrupt
memory instead of failing. The engines and the losses therefore call them through the functions
below, which take tensors and check, before the call, that each is a CPU tensor of the expected
dtype, shape and (where the C code walks it linearly) layout, and raise ``TypeError`` (wrong
type or dtype) or ``ValueError`` (wrong device, shape, layout or geometry) otherwise. Addresses
are taken here and nowhere else.

``MODULE`` (the transform's loops) and ``LOSS_MODULE`` (the losses' passes) are the loaded C
modules, or None when they were not built (no C compiler at install time); the engines and
losses then take their PyTorch paths. Tests swap them (for None, or for a build without OpenMP)
to run both paths.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

try:
    from .. import _frames as MODULE
except ImportError:  # built without a C compiler: the PyTorch paths give the same values
    MODULE = None
try:
    from .. import _losses as LOSS_MODULE
except ImportError:
    LOSS_MODULE = None
if LOSS_MODULE is not None and not hasattr(LOSS_MODULE, "kurtosis"):
    # a build of an older _losses.c (its functions take other arguments): the PyTorch paths
    # until the module is rebuilt (``python setup.py build_ext --inplace``)
    LOSS_MODULE = None

Tensor = torch.Tensor

_REAL = (torch.float32, torch.float64)
_COMPLEX_OF = {torch.float32: torch.complex64, torch.float64: torch.complex128}


def available() -> bool:
    """True when the C module was built."""
    return MODULE is not None


def usable(*tensors: Tensor) -> bool:
    """True when the C module is built and every tensor lives on the CPU."""
    return MODULE is not None and all(t.device.type == "cpu" for t in tensors)


def openmp() -> bool:
    """True when the module splits large jobs over PyTorch's OpenMP threads."""
    return bool(_module().OPENMP)


def set_parallel_threshold(elements: int) -> int:
    """Smallest job (in elements) split over the threads; returns the previous value."""
    return _module().set_parallel_threshold(int(elements))


# --------------------------------------------------------------------------------------------
# checks


def _module():
    if MODULE is None:
        raise RuntimeError("the C module dstft_cli.core._frames was not built")
    return MODULE


def _tensor(value, name: str, dtypes: Sequence[torch.dtype], shape: tuple | None = None, *,
            contiguous: bool = True) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.device.type != "cpu":
        raise ValueError(f"{name} must be a CPU tensor, got one on {value.device}")
    if value.dtype not in dtypes:
        raise TypeError(f"{name} has dtype {value.dtype}; expected "
                        + " or ".join(str(d) for d in dtypes))
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(value.shape)}; expected {tuple(shape)}")
    if contiguous and not value.is_contiguous():
        raise ValueError(f"{name} must be contiguous")
    if value.is_conj() or value.is_neg():
        raise ValueError(f"{name} is a lazy conjugate/negative view; resolve it first")
    return value


def _optional(value, name, dtypes, shape):
    return None if value is None else _tensor(value, name, dtypes, shape)


def _address(value: Tensor | None) -> int:
    return 0 if value is None else value.data_ptr()


def _integer(value, name: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be ≥ {minimum}, got {value}")
    return value


def _n_fft(value) -> int:
    value = _integer(value, "n_fft", 2)
    if value % 2:
        raise ValueError(f"n_fft must be even, got {value}")
    return value


def _coefficients(values) -> tuple[float, ...]:
    if not isinstance(values, tuple) or not 2 <= len(values) <= 8:
        raise ValueError("coefficients must be a tuple of 2 to 8 cosine-sum coefficients")
    return tuple(float(v) for v in values)


def _signal(signal: Tensor) -> Tensor:
    signal = _tensor(signal, "signal", _REAL)
    if signal.dim() != 2 or signal.shape[0] < 1 or signal.shape[1] < 1:
        raise ValueError(f"signal must be (B, Ls) with B, Ls ≥ 1, got {tuple(signal.shape)}")
    return signal


def _theta_rows(theta: Tensor, n_frames: int) -> tuple[Tensor, int]:
    """θ as float64, one value or one per frame: (θ, stride 0 or 1)."""
    theta = _tensor(theta, "theta", (torch.float64,))
    if theta.numel() == 1:
        return theta, 0
    if tuple(theta.shape) != (n_frames,):
        raise ValueError(f"theta has shape {tuple(theta.shape)}; expected one value or ({n_frames},)")
    return theta, 1


# --------------------------------------------------------------------------------------------
# grid engine: rotated frames of a regular integer grid


def cosine_frames(signal: Tensor, frames: Tensor | None, dframes: Tensor | None, *, start0: int,
                  hop: int, theta: Tensor, coefficients: tuple, vanishes: bool) -> None:
    """Rotated frames of frame starts ``start0 + n·hop`` times a cosine-sum window of length θ
    (into ``frames``) and its θ-derivative (into ``dframes``), each (B, n, L) or None."""
    signal = _signal(signal)
    out = frames if frames is not None else dframes
    if out is None:
        raise ValueError("cosine_frames needs frames or dframes")
    if not isinstance(out, Tensor) or out.dim() != 3:
        raise ValueError("frames must be (B, n, L) tensors")
    batch, n, n_fft = out.shape
    shape = (signal.shape[0], n, n_fft)
    frames = _optional(frames, "frames", (signal.dtype,), shape)
    dframes = _optional(dframes, "dframes", (signal.dtype,), shape)
    theta, stride = _theta_rows(theta, n)
    _module().cosine_frames(
        signal.dtype == torch.float64, signal.data_ptr(), signal.shape[1], _address(frames),
        _address(dframes), batch, n, _n_fft(n_fft), _integer(start0, "start0"),
        _integer(hop, "hop", 1), theta.data_ptr(), stride, _coefficients(coefficients),
        bool(vanishes))


def table_frames(signal: Tensor, frames: Tensor, *, start0: int, hop: int, table: Tensor,
                 first: int) -> None:
    """Rotated frames times a window table on frame columns [first, first + width): ``table`` is
    (1, width), shared by every frame, or (n, width)."""
    signal = _signal(signal)
    if not isinstance(frames, Tensor) or frames.dim() != 3:
        raise ValueError("frames must be a (B, n, L) tensor")
    batch, n, n_fft = frames.shape
    frames = _tensor(frames, "frames", (signal.dtype,), (signal.shape[0], n, n_fft))
    table = _tensor(table, "table", (signal.dtype,))
    if table.dim() != 2 or table.shape[0] not in (1, n):
        raise ValueError(f"table must be (1, width) or ({n}, width), got {tuple(table.shape)}")
    width = table.shape[1]
    first = _integer(first, "first", 0)
    if width < 1 or first + width > n_fft:
        raise ValueError(f"window columns [{first}, {first + width}) outside the frame of {n_fft}")
    _module().table_frames(
        signal.dtype == torch.float64, signal.data_ptr(), signal.shape[1], frames.data_ptr(),
        batch, n, _n_fft(n_fft), _integer(start0, "start0"), _integer(hop, "hop", 1),
        table.data_ptr(), 0 if table.shape[0] == 1 else width, first, width)


def frame_dots(grad: Tensor, spec: Tensor, out: Tensor) -> None:
    """out[n] = Σ_b Σ_m Re(conj(grad[b, n, m])·spec[b, n, m]): ``grad`` (B, N, M) complex with any
    non-negative strides, ``spec`` contiguous of the same shape and dtype, ``out`` (N,) real."""
    spec = _tensor(spec, "spec", tuple(_COMPLEX_OF.values()))
    if spec.dim() != 3:
        raise ValueError(f"spec must be (B, N, M), got {tuple(spec.shape)}")
    grad = _tensor(grad, "grad", (spec.dtype,), tuple(spec.shape), contiguous=False)
    if any(s < 0 for s in grad.stride()):
        raise ValueError("grad must have non-negative strides")
    real = torch.float64 if spec.dtype == torch.complex128 else torch.float32
    out = _tensor(out, "out", (real,), (spec.shape[1],))
    _module().frame_dots(real == torch.float64, grad.data_ptr(), *grad.stride(), spec.data_ptr(),
                         *spec.shape, out.data_ptr())


# --------------------------------------------------------------------------------------------
# position engine: rotated frames at integer bases with fractional offsets


def _placed(signal, bases, frac):
    """The checked signal, bases (int64 (N,)) and fractional offsets (float64 (N,) or None) of
    the position and per-TF-bin kernels, and N."""
    signal = _signal(signal)
    bases = _tensor(bases, "bases", (torch.int64,))
    if bases.dim() != 1 or bases.shape[0] < 1:
        raise ValueError(f"bases must be (N,) with N ≥ 1, got {tuple(bases.shape)}")
    n_frames = bases.shape[0]
    frac = _optional(frac, "frac", (torch.float64,), (n_frames,))
    return signal, bases, frac, n_frames


def _position_args(signal, bases, frac, theta, coefficients, n_fft):
    signal, bases, frac, n_frames = _placed(signal, bases, frac)
    theta, stride = _theta_rows(theta, n_frames)
    return (signal.dtype == torch.float64, signal.data_ptr(), signal.shape[1], signal.shape[0],
            n_frames, _n_fft(n_fft), bases.data_ptr(), _address(frac), theta.data_ptr(), stride,
            _coefficients(coefficients))


def position_frames(signal: Tensor, frames: Tensor, *, bases: Tensor, frac: Tensor | None,
                    theta: Tensor, coefficients: tuple) -> None:
    """Frame n = ω(j − fracₙ, θₙ)·s[basesₙ + j] at column (basesₙ + j) mod L, into ``frames``
    (B, N, L); ``bases`` int64 (N,), ``frac`` float64 (N,) or None, θ float64 (1,) or (N,)."""
    if not isinstance(frames, Tensor) or frames.dim() != 3:
        raise ValueError("frames must be a (B, N, L) tensor")
    args = _position_args(signal, bases, frac, theta, coefficients, frames.shape[-1])
    _tensor(frames, "frames", (signal.dtype,), (signal.shape[0], bases.shape[0], frames.shape[-1]))
    _module().position_frames(*args, frames.data_ptr())


def position_dots(signal: Tensor, adjoint: Tensor, *, bases: Tensor, frac: Tensor | None,
                  theta: Tensor, coefficients: tuple, out_theta: Tensor | None,
                  out_x: Tensor | None) -> None:
    """Per frame Σ ∂θω·s·r into ``out_theta`` and Σ ∂xω·s·r into ``out_x`` (float64 (N,), either
    may be None), r = ``adjoint`` (B, N, L) in the column order of :func:`position_frames`."""
    if not isinstance(adjoint, Tensor) or adjoint.dim() != 3:
        raise ValueError("adjoint must be a (B, N, L) tensor")
    args = _position_args(signal, bases, frac, theta, coefficients, adjoint.shape[-1])
    n_frames = bases.shape[0]
    _tensor(adjoint, "adjoint", (signal.dtype,), (signal.shape[0], n_frames, adjoint.shape[-1]))
    if out_theta is None and out_x is None:
        raise ValueError("position_dots needs out_theta or out_x")
    out_theta = _optional(out_theta, "out_theta", (torch.float64,), (n_frames,))
    out_x = _optional(out_x, "out_x", (torch.float64,), (n_frames,))
    _module().position_dots(*args, adjoint.data_ptr(), _address(out_theta), _address(out_x))


# --------------------------------------------------------------------------------------------
# per-bin / per-TF-bin engine


def cosine_block(theta: Tensor, frac: Tensor | None, *, n_fft: int, first: int,
                 coefficients: tuple, w: Tensor | None, dth: Tensor | None,
                 dx: Tensor | None) -> None:
    """ω, ∂θω and/or ∂xω (each (M, nc, width) or None) of a cosine-sum window for every bin and
    frame of a block, at frame columns [first, first + width): θ float64 (M, nc), ``frac``
    float64 (nc,) or None."""
    theta = _tensor(theta, "theta", (torch.float64,))
    if theta.dim() != 2 or min(theta.shape) < 1:
        raise ValueError(f"theta must be (M, nc), got {tuple(theta.shape)}")
    n_bins, nc = theta.shape
    frac = _optional(frac, "frac", (torch.float64,), (nc,))
    out = next((o for o in (w, dth, dx) if o is not None), None)
    if out is None:
        raise ValueError("cosine_block needs an output")
    if not isinstance(out, Tensor) or out.dim() != 3:
        raise ValueError("outputs must be (M, nc, width) tensors")
    dtype, width = out.dtype, out.shape[-1]
    outs = [_optional(o, name, _REAL, (n_bins, nc, width))
            for o, name in ((w, "w"), (dth, "dth"), (dx, "dx"))]
    if any(o is not None and o.dtype != dtype for o in outs):
        raise TypeError("the outputs must share one dtype")
    n_fft = _n_fft(n_fft)
    first = _integer(first, "first", 0)
    if width < 1 or first + width > n_fft:
        raise ValueError(f"columns [{first}, {first + width}) outside the frame of {n_fft}")
    _module().cosine_block(dtype == torch.float64, theta.data_ptr(), n_bins, nc, _address(frac),
                           n_fft, first, width, _coefficients(coefficients),
                           *(_address(o) for o in outs))


def _tf_args(signal, bases, frac, theta, coefficients, n_fft):
    signal, bases, frac, n_frames = _placed(signal, bases, frac)
    n_fft = _n_fft(n_fft)
    theta = _tensor(theta, "theta", (torch.float64,), (n_fft // 2 + 1, n_frames))
    return (signal.dtype == torch.float64, signal.data_ptr(), signal.shape[1], signal.shape[0],
            n_frames, n_fft, bases.data_ptr(), _address(frac), theta.data_ptr(),
            _coefficients(coefficients))


def tf_forward(signal: Tensor, spec: Tensor, *, n_fft: int, bases: Tensor, frac: Tensor | None,
               theta: Tensor, coefficients: tuple) -> None:
    """S (B, N, M) complex into ``spec``: bin m of frame n summed over the support of the
    cosine-sum window of length θ[m, n] (float64 (M, N)) centred on bases + frac."""
    args = _tf_args(signal, bases, frac, theta, coefficients, n_fft)
    _tensor(spec, "spec", (_COMPLEX_OF[signal.dtype],),
            (signal.shape[0], bases.shape[0], n_fft // 2 + 1))
    _module().tf_forward(*args, spec.data_ptr())


def tf_backward(signal: Tensor, grad: Tensor, *, n_fft: int, bases: Tensor, frac: Tensor | None,
                theta: Tensor, coefficients: tuple, grad_theta: Tensor | None,
                grad_frac: Tensor | None, grad_frames: Tensor | None) -> None:
    """From G (B, N, M) complex: ∂L/∂θ (float64 (M, N)), Σ over bins of the x-derivative sums
    (float64 (N,), minus ∂L/∂fₙ) and ∂L/∂frames (B, N, L) in frame order; each may be None."""
    args = _tf_args(signal, bases, frac, theta, coefficients, n_fft)
    batch, n_frames, n_bins = signal.shape[0], bases.shape[0], n_fft // 2 + 1
    _tensor(grad, "grad", (_COMPLEX_OF[signal.dtype],), (batch, n_frames, n_bins))
    if grad_theta is None and grad_frac is None and grad_frames is None:
        raise ValueError("tf_backward needs an output")
    grad_theta = _optional(grad_theta, "grad_theta", (torch.float64,), (n_bins, n_frames))
    grad_frac = _optional(grad_frac, "grad_frac", (torch.float64,), (n_frames,))
    grad_frames = _optional(grad_frames, "grad_frames", (signal.dtype,),
                            (batch, n_frames, n_fft))
    _module().tf_backward(*args, grad.data_ptr(), _address(grad_theta), _address(grad_frac),
                          _address(grad_frames))


# --------------------------------------------------------------------------------------------
# losses (_losses.c)


def _loss_module():
    if LOSS_MODULE is None:
        raise RuntimeError("the C module dstft_cli.core._losses was not built")
    return LOSS_MODULE


def _spectrogram(x, name: str = "spectrogram") -> tuple[Tensor, int, int, bool]:
    """x (..., M, N) real or complex, each (M, N) map one block of memory: (x, groups, M·N,
    frames contiguous)."""
    x = _tensor(x, name, (*_REAL, *_COMPLEX_OF.values()), contiguous=False)
    if x.dim() < 2:
        raise ValueError(f"{name} must be (..., M, N), got {tuple(x.shape)}")
    if x.is_contiguous():
        frame_major = False
    elif x.transpose(-1, -2).is_contiguous():
        frame_major = True
    else:
        raise ValueError(f"{name} must be contiguous as (..., M, N) or as (..., N, M)")
    groups = 1
    for size in x.shape[:-2]:
        groups *= size
    return x, groups, x.shape[-2] * x.shape[-1], frame_major


def _power_exponent(x: Tensor, e) -> float:
    e = float(e)
    if e not in ((0.5, 1.0) if x.is_complex() else (1.0, 2.0)):
        raise ValueError(f"exponent e = {e} is not one the kernels have for this dtype")
    return e


def _half(value: float) -> int:
    """2·value when that is an integer in [−1, 15] (a power the kernels take by products),
    else 16 (by exp and log)."""
    twice = 2.0 * value
    return int(twice) if twice == int(twice) and -1 <= twice <= 15 else 16


def entropy_moments(x: Tensor, e: float, *, promote: bool, beta: float = 0.0) -> list:
    """Per (M, N) map of x, m = b^e (b = |x|² for complex x, else x): (Σm, Σm·log m,
    log max m, count of non-zero b outside the normal range of x's precision, W) with
    W = Σ exp(β(log m − log max m)) when β ≠ 0 (else 0). ``promote``: float data in double."""
    x, groups, count, _ = _spectrogram(x)
    e = _power_exponent(x, e)
    return _loss_module().moments(_real(x) == torch.float64, x.is_complex(), bool(promote), e,
                                  x.data_ptr(), groups, count, float(beta), _half(beta * e))


def entropy_grad(x: Tensor, e: float, *, promote: bool, coef: Tensor, exponent: float,
                 out: Tensor) -> None:
    """∂L/∂x into ``out`` (laid out like x) of an entropy-type loss with ∂L/∂m = A + B·log m +
    C·(m / max m)^D per map: ``coef`` float64 (groups, 6) = A, B, C, log max m, Z, log m below
    which p < tiny (where ∂L/∂m = Z); D = ``exponent``."""
    x, groups, count, _ = _spectrogram(x)
    e = _power_exponent(x, e)
    coef = _tensor(coef, "coef", (torch.float64,), (groups, 6))
    _same_layout(out, x)
    _loss_module().grad(_real(x) == torch.float64, x.is_complex(), bool(promote), e, x.data_ptr(),
                        groups, count, out.data_ptr(), coef.data_ptr(), float(exponent),
                        _half(exponent * e))


def kurtosis_stats(x: Tensor) -> Tensor:
    """Per frame of x (..., M, N): (Σw, Σw², σ) float64 (..., N, 3), w = |σ·x|² over the bins,
    σ a power of two per frame (1 for float data) that keeps w⁴ in range."""
    x, groups, _, frame_major = _spectrogram(x)
    stats = torch.zeros(*x.shape[:-2], x.shape[-1], 3, dtype=torch.float64)
    _loss_module().kurtosis(_real(x) == torch.float64, x.is_complex(), x.data_ptr(), groups,
                            x.shape[-2], x.shape[-1], frame_major, stats.data_ptr(), 0, 0)
    return stats


def kurtosis_grad(x: Tensor, stats: Tensor, coef: Tensor, out: Tensor) -> None:
    """Pₙ·(w − Qₙ)·σₙ·x into ``out`` (laid out like x), w and σ as in :func:`kurtosis_stats`
    (``stats``), ``coef`` float64 (..., N, 2) = P, Q per frame."""
    x, groups, _, frame_major = _spectrogram(x)
    frames = (*x.shape[:-2], x.shape[-1])
    stats = _tensor(stats, "stats", (torch.float64,), (*frames, 3))
    coef = _tensor(coef, "coef", (torch.float64,), (*frames, 2))
    _same_layout(out, x)
    _loss_module().kurtosis(_real(x) == torch.float64, x.is_complex(), x.data_ptr(), groups,
                            x.shape[-2], x.shape[-1], frame_major, stats.data_ptr(),
                            coef.data_ptr(), out.data_ptr())


def _map(theta) -> Tensor:
    theta = _tensor(theta, "theta", _REAL)
    if theta.dim() != 2 or min(theta.shape) < 1:
        raise ValueError(f"theta must be a (M, N) map, got {tuple(theta.shape)}")
    return theta


def total_variation(theta: Tensor, eps: float) -> float:
    """Σ √((θₘₙ − θₘ₊₁ₙ)² + (θₘₙ − θₘₙ₊₁)² + ε²) − ε·M·N of a contiguous (M, N) map."""
    theta = _map(theta)
    return _loss_module().total_variation(theta.dtype == torch.float64, theta.data_ptr(),
                                          *theta.shape, float(eps), 0, 0.0)


def total_variation_grad(theta: Tensor, eps: float, scale: float, out: Tensor) -> None:
    """``scale`` times the gradient of :func:`total_variation` into ``out`` (like θ)."""
    theta = _map(theta)
    out = _tensor(out, "out", (theta.dtype,), tuple(theta.shape))
    _loss_module().total_variation(theta.dtype == torch.float64, theta.data_ptr(), *theta.shape,
                                   float(eps), out.data_ptr(), float(scale))


def _real(x: Tensor) -> torch.dtype:
    return x.dtype.to_real()


def _same_layout(out, x: Tensor) -> None:
    out = _tensor(out, "out", (x.dtype,), tuple(x.shape), contiguous=False)
    if out.stride() != x.stride():
        raise ValueError(f"out has strides {out.stride()}; expected those of the input, {x.stride()}")
