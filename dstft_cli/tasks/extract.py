"""Components out of a DSTFT: a band (optionally a time range) or a ridge ± a width, resynthesised.

Two routes, both from the transform parameters of a result (θ, positions, window):

* ``inverse``: the DSTFT coefficients outside the component are zeroed and the least-squares
  inverse :func:`~dstft_cli.core.idstft` gives the signal (weighted overlap-add for constant and
  per-frame θ, conjugate gradients for per-bin and per-TF θ);
* ``sst``: the synchrosqueezed transform is computed at every sample (θ of the result's frames
  interpolated linearly in time) and the component is Re Σ_η T[η, k] over its bins
  (:func:`~dstft_cli.core.reassign.synchrosqueeze`). Bins are selected after squeezing, so a
  component is cut where its energy has been moved to, not where the window smeared it.

:func:`resynthesis_snr_db` states how accurately a route reproduces the whole signal for these
parameters (the full band); a component's own accuracy cannot be measured without its truth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..core import dstft, idstft, window_length_kind
from ..core.losses import renyi_entropy
from ..core.reassign import reassigned_spectrogram, synchrosqueeze, synchrosqueezed_inverse

Tensor = torch.Tensor

__all__ = [
    "TransformParams", "Component", "METHODS", "check_band", "band_mask", "ridge_mask",
    "ridge_on_frames", "extract_component", "resynthesis_snr_db", "snr_db", "SharpenedMaps",
    "sharpened_maps",
]

METHODS = ("inverse", "sst")
# Positions per synchrosqueezing block: bounds the (M, block) arrays of the hop-1 transform.
_SST_BLOCK = 4096


@dataclass(frozen=True)
class TransformParams:
    """The DSTFT a component is cut from: θ as given to ``dstft`` (scalar, (N,), (M, 1) or
    (M, N)), positions tₙ (N,) in samples, and the sample rate in Hz."""

    n_fft: int
    window_length: Tensor
    frame_positions: Tensor
    sample_rate: float
    window: str = "hann"

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def freqs(self) -> np.ndarray:
        return np.arange(self.n_bins) * self.sample_rate / self.n_fft

    @property
    def times(self) -> np.ndarray:
        return self.frame_positions.detach().cpu().numpy().astype(np.float64) / self.sample_rate


@dataclass(frozen=True)
class Component:
    signal: Tensor  # (..., Ls), the input's dtype
    energy_fraction: float  # ‖component‖² / ‖signal‖²
    method: str


def check_band(fmin: float, fmax: float, sample_rate: float) -> None:
    """ValueError unless 0 ≤ fmin < fmax ≤ Nyquist."""
    nyquist = sample_rate / 2
    if not (math.isfinite(fmin) and math.isfinite(fmax)):
        raise ValueError(f"band {fmin}:{fmax} Hz is not finite")
    if fmin < 0 or fmax > nyquist:
        raise ValueError(f"band {fmin:g}:{fmax:g} Hz lies outside 0…{nyquist:g} Hz (Nyquist)")
    if fmax <= fmin:
        raise ValueError(f"band {fmin:g}:{fmax:g} Hz is empty (FMAX must exceed FMIN)")


def band_mask(freqs: np.ndarray, times: np.ndarray, band: tuple[float, float],
              time_range: tuple[float, float] | None = None) -> np.ndarray:
    """Boolean (M, N): bins with fmin ≤ f ≤ fmax (and frames with t0 ≤ t ≤ t1)."""
    fmin, fmax = band
    rows = (freqs >= fmin) & (freqs <= fmax)
    cols = np.ones(len(times), dtype=bool)
    if time_range is not None:
        cols = (times >= time_range[0]) & (times <= time_range[1])
    if not rows.any():
        raise ValueError(f"band {fmin:g}:{fmax:g} Hz holds no frequency bin "
                         f"(bins are {freqs[1] - freqs[0]:.4g} Hz apart)")
    if not cols.any():
        raise ValueError(f"time range {time_range[0]:g}:{time_range[1]:g} s holds no frame")
    return rows[:, None] & cols[None, :]


def ridge_on_frames(ridge_times: np.ndarray, ridge_freqs: np.ndarray, times: np.ndarray,
                    sample_rate: float) -> np.ndarray:
    """The ridge frequency at each of ``times``, linearly interpolated.

    ValueError when the ridge belongs to another recording: it does not span the frames'
    times (within one frame spacing), is not increasing in time, or lies above the Nyquist
    frequency of ``sample_rate``.
    """
    ridge_times = np.asarray(ridge_times, dtype=np.float64)
    ridge_freqs = np.asarray(ridge_freqs, dtype=np.float64)
    if ridge_times.ndim != 1 or ridge_times.shape != ridge_freqs.shape or len(ridge_times) < 2:
        raise ValueError("the ridge needs at least two (time_s, frequency_hz) rows")
    if not (np.isfinite(ridge_times).all() and np.isfinite(ridge_freqs).all()):
        raise ValueError("the ridge holds non-finite values")
    if np.any(np.diff(ridge_times) <= 0):
        raise ValueError("the ridge's times are not increasing")
    nyquist = sample_rate / 2
    if ridge_freqs.max() > nyquist or ridge_freqs.min() < 0:
        raise ValueError(f"the ridge reaches {ridge_freqs.max():g} Hz, outside 0…{nyquist:g} Hz "
                         "of this result (another sample rate?)")
    spacing = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
    slack = max(spacing, float(np.median(np.diff(ridge_times))))
    if ridge_times[0] > times[0] + slack or ridge_times[-1] < times[-1] - slack:
        raise ValueError(f"the ridge spans {ridge_times[0]:.4g}…{ridge_times[-1]:.4g} s but the "
                         f"result spans {times[0]:.4g}…{times[-1]:.4g} s (another recording?)")
    return np.interp(times, ridge_times, ridge_freqs)


def ridge_mask(freqs: np.ndarray, ridge: np.ndarray, width: float) -> np.ndarray:
    """Boolean (M, N): bins within ``width`` Hz of the ridge frequency ``ridge`` (N,) of each
    frame; the nearest bin is always kept, so a narrow width still selects one bin per frame."""
    if not (math.isfinite(width) and width >= 0):
        raise ValueError(f"width must be a finite number ≥ 0 Hz, got {width}")
    distance = np.abs(freqs[:, None] - ridge[None, :])
    return (distance <= width) | (distance == distance.min(axis=0, keepdims=True))


def snr_db(reference: Tensor, estimate: Tensor) -> float:
    """10 log₁₀(‖reference‖² / ‖reference − estimate‖²) in float64 (∞ when identical)."""
    ref = reference.detach().to(torch.float64)
    err = (ref - estimate.detach().to(torch.float64)).square().sum()
    if float(err) == 0.0:
        return math.inf
    return float(10 * torch.log10(ref.square().sum() / err))


def _inverse(x: Tensor, params: TransformParams, mask: Tensor | None) -> Tensor:
    common = dict(n_fft=params.n_fft, window_length=params.window_length,
                  frame_positions=params.frame_positions, window=params.window)
    with torch.no_grad():
        spec = dstft(x, **common)
        if mask is not None:
            spec = spec * mask
        return idstft(spec, signal_length=x.shape[-1], **common)


def _theta_at(params: TransformParams, samples: np.ndarray, dtype, device) -> Tensor:
    """θ at the given sample positions: per-frame columns interpolated linearly in time."""
    theta = params.window_length.detach().to(device=device, dtype=dtype)
    n_frames = params.frame_positions.shape[0]
    kind = window_length_kind(theta, params.n_bins, n_frames)
    if kind in ("constant", "bin"):
        return theta
    positions = params.frame_positions.detach().cpu().numpy().astype(np.float64)
    order = np.argsort(positions)
    grid = theta.reshape(-1, n_frames).cpu().numpy()[:, order]
    rows = [np.interp(samples, positions[order], row) for row in grid]
    out = torch.tensor(np.stack(rows), dtype=dtype, device=device)
    return out[0] if kind == "frame" else out


def _frames_to_samples(mask: Tensor, positions: np.ndarray, length: int) -> Tensor:
    """A per-frame (M, N) mask read at every sample: the nearest frame's column."""
    order = np.argsort(positions)
    sorted_pos = positions[order]
    mid = 0.5 * (sorted_pos[1:] + sorted_pos[:-1])
    nearest = order[np.searchsorted(mid, np.arange(length))] if len(positions) > 1 else \
        np.zeros(length, dtype=np.int64)
    return mask[:, torch.from_numpy(nearest).to(mask.device)]


def _sst(x: Tensor, params: TransformParams, mask: Tensor | None) -> Tensor:
    """Re Σ_η T[η, k] over the masked bins, at every sample k, in blocks of samples."""
    length = x.shape[-1]
    n_fft = params.n_fft
    positions = params.frame_positions.detach().cpu().numpy().astype(np.float64)
    if mask is not None:
        mask = _frames_to_samples(mask, positions, length)
    out = torch.empty_like(x)
    half = n_fft // 2
    with torch.no_grad():
        for start in range(0, length, _SST_BLOCK):
            stop = min(length, start + _SST_BLOCK)
            # the frames of samples start…stop−1 read at most start−L/2+1 … stop−1+L/2
            lo, hi = max(0, start - half), min(length, stop + half)
            samples = np.arange(start, stop)
            theta = _theta_at(params, samples.astype(np.float64), x.dtype, x.device)
            local = torch.arange(start - lo, stop - lo, device=x.device)
            sst, _ = synchrosqueeze(x[..., lo:hi], n_fft=n_fft, window_length=theta,
                                    frame_positions=local, window=params.window)
            bins = None if mask is None else mask[:, start:stop]
            out[..., start:stop] = synchrosqueezed_inverse(sst, bins=bins)
    return out


def extract_component(x: Tensor, params: TransformParams, mask: np.ndarray | Tensor | None, *,
                      method: str = "inverse") -> Component:
    """The component of ``x`` (..., Ls) under ``mask`` (M, N) of the result's grid (None: the
    whole signal, for the full-band check)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if mask is not None:
        mask = torch.as_tensor(mask, device=x.device)
        if tuple(mask.shape) != (params.n_bins, params.frame_positions.shape[0]):
            raise ValueError(f"mask has shape {tuple(mask.shape)}, the transform "
                             f"({params.n_bins}, {params.frame_positions.shape[0]})")
    signal = (_inverse if method == "inverse" else _sst)(x, params, mask)
    total = float(x.detach().to(torch.float64).square().sum())
    part = float(signal.detach().to(torch.float64).square().sum())
    return Component(signal, part / total if total > 0 else 0.0, method)


def resynthesis_snr_db(x: Tensor, params: TransformParams, *, method: str = "inverse") -> float:
    """SNR (dB) of the full-band resynthesis of ``x`` by ``method`` with these parameters."""
    return snr_db(x, extract_component(x, params, None, method=method).signal)


@dataclass(frozen=True)
class SharpenedMaps:
    """Magnitudes (..., M, N) on the result's grid: the DSTFT |S|, the reassigned spectrogram
    (square root of the reassigned power, so that all three compare as magnitudes) and the
    synchrosqueezed |T|; ``renyi3`` holds the Rényi entropy of order 3 of each."""

    dstft: Tensor
    reassigned: Tensor
    synchrosqueezed: Tensor
    renyi3: dict


def sharpened_maps(x: Tensor, params: TransformParams) -> SharpenedMaps:
    """The DSTFT of ``x`` with the result's parameters, reassigned and synchrosqueezed."""
    common = dict(n_fft=params.n_fft, window_length=params.window_length,
                  frame_positions=params.frame_positions, window=params.window)
    with torch.no_grad():
        power, ops = reassigned_spectrogram(x, **common)
        sst, _ = synchrosqueeze(x, **common)
    maps = {"dstft": ops.spec.abs(), "reassigned": power.sqrt(), "synchrosqueezed": sst.abs()}
    renyi3 = {name: float(renyi_entropy(m, 3.0)) for name, m in maps.items()}
    return SharpenedMaps(**maps, renyi3=renyi3)
