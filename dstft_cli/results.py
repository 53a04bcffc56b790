"""Result folders: what they hold, how θ is summarised in them, and how they are read back.

A result folder (``OUT/<name>/``, assembled atomically by :func:`dstft_cli.io.result_dir`) holds
``spectrogram.npz`` (``magnitude``, ``window_length`` broadcastable to (M, N), ``frame_positions``,
``times``, ``freqs``), figures, and ``params.json``, written last. :func:`read_result` reads one
back; :func:`applied_parameters` turns its saved θ and positions into what the transform takes
for another signal (``dstft apply``).

θ is summarised one way everywhere: :func:`theta_summary` (a number, or min / median / max with
the lower median, as ``torch.median``), :func:`theta_text` for console lines and
:func:`theta_title` for figure titles.

This module never imports click; torch only inside :func:`applied_parameters`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .io import one_line
from .units import in_ms

__all__ = [
    "SavedParams", "read_result", "recorded_input", "applied_parameters", "AppliedParameters",
    "theta_summary", "theta_text", "theta_title", "axes", "input_record", "plot_magnitude",
    "converted_to_rate", "RateConversion",
]

#: Keys a result's params.json must hold to be applied to other inputs.
REQUIRED_KEYS = ("mode", "n_fft", "hop", "window")


# --------------------------------------------------------------------------------------------
# θ summaries


def theta_summary(theta: Any) -> float | dict[str, float]:
    """A number for one θ, else ``{"min", "median", "max"}`` (lower median, as torch's)."""
    values = np.asarray(theta, dtype=np.float64).reshape(-1)
    if values.size == 1:
        return float(values[0])
    ordered = np.sort(values)
    return {"min": float(ordered[0]), "median": float(ordered[(values.size - 1) // 2]),
            "max": float(ordered[-1])}


def theta_text(summary: float | dict[str, float], digits: int = 2,
               sample_rate: float | None = None) -> str:
    """``θ = 313.85 samples (39.2 ms)`` or ``θ ∈ [24.0, 980.5] samples (3.0–122.6 ms)`` for
    console lines (without a sample rate: samples only)."""
    if isinstance(summary, dict):
        text = f"θ ∈ [{summary['min']:.1f}, {summary['max']:.1f}] samples"
    else:
        text = f"θ = {summary:.{digits}f} samples"
    return text + _ms_suffix(summary, sample_rate)


def theta_title(summary: float | dict[str, float], sample_rate: float | None = None,
                hop: float | None = None) -> str:
    """θ (and the hop) for figure titles, in samples and ms, with the median for several
    lengths."""
    if isinstance(summary, dict):
        text = (f"θ ∈ [{summary['min']:.1f}, {summary['max']:.1f}] "
                f"(median {summary['median']:.1f}) samples")
    else:
        text = f"θ = {summary:.1f} samples"
    text += _ms_suffix(summary, sample_rate)
    if hop is not None:
        text += f", hop {hop:g}" + _ms_suffix(float(hop), sample_rate)
    return text


def _ms_suffix(summary: float | dict[str, float], sample_rate: float | None) -> str:
    ms = in_ms(summary, sample_rate) if sample_rate else None
    if ms is None:
        return ""
    if isinstance(ms, dict):
        return f" ({ms['min']:.1f}–{ms['max']:.1f} ms)"
    return f" ({ms:.1f} ms)"


# --------------------------------------------------------------------------------------------
# what a result holds


def axes(n_fft: int, frame_positions: Any, sample_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Frame times (s) and bin frequencies (Hz) of a spectrogram."""
    times = np.asarray(frame_positions, dtype=np.float64) / sample_rate
    freqs = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)
    return times, freqs


def plot_magnitude(magnitude: np.ndarray) -> np.ndarray:
    """A 2-D map for the spectrogram figure (the channel mean for multichannel results)."""
    return magnitude if magnitude.ndim == 2 else magnitude.mean(axis=0)


def input_record(signal: Any, reader: dict) -> dict:
    """The ``input`` entry of params.json: where the signal came from and how it was read."""
    return {
        "path": str(signal.path), "sha256": signal.sha256, "sample_rate": signal.sample_rate,
        "frames": signal.frames, "channels": signal.channels_in_file,
        "channel": reader.get("channel", "mix"),
    }


# --------------------------------------------------------------------------------------------
# reading a result back


def recorded_input(result_dir: str | os.PathLike) -> str | None:
    """The input path a result folder's params.json records, or None."""
    try:
        params = json.loads((Path(result_dir) / "params.json").read_text(encoding="utf-8"))
        path = params["input"]["path"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return path if isinstance(path, str) else None


@dataclass(frozen=True)
class SavedParams:
    """Parameters read back from a result folder."""

    source: str
    params: dict
    window_length: Any  # numpy, broadcastable to (M, N)
    frame_positions: Any  # numpy (N,)

    @property
    def mode(self) -> str:
        return self.params["mode"]


def read_result(result_dir: str | os.PathLike) -> SavedParams:
    """Read params.json and spectrogram.npz of a result folder (ValueError if incomplete)."""
    folder = Path(result_dir)
    params_path, npz_path = folder / "params.json", folder / "spectrogram.npz"
    if not params_path.is_file():
        raise ValueError(f"{folder}: not a finished result folder (no params.json)")
    try:
        params = json.loads(params_path.read_text(encoding="utf-8"))
        with np.load(npz_path, allow_pickle=False) as npz:
            theta = np.array(npz["window_length"])
            positions = np.array(npz["frame_positions"])
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{folder}: unreadable result ({one_line(exc)})") from None
    if not isinstance(params, dict):
        raise ValueError(f"{params_path}: not a table of parameters (got {type(params).__name__})")
    missing = [k for k in REQUIRED_KEYS if k not in params]
    if missing:
        raise ValueError(f"{params_path}: missing {', '.join(missing)}")
    problem = _saved_problem(params, theta, positions)
    if problem:
        raise ValueError(f"{folder}: {problem}")
    return SavedParams(str(folder), params, theta, positions)


def _saved_problem(params: dict, theta: np.ndarray, positions: np.ndarray) -> str | None:
    """What makes saved parameters unusable, or None (checked once, before any input)."""
    from .config import MODES
    from .units import MAX_SAMPLES

    def whole(value, low: int) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and low <= value <= MAX_SAMPLES

    n_fft, hop, mode = params["n_fft"], params["hop"], params["mode"]
    if mode not in MODES:
        return f"mode = {str(mode)[:40]!r} is not one of {', '.join(MODES)}"
    if not whole(n_fft, 8) or n_fft % 2:
        return f"n_fft = {str(n_fft)[:40]} is not an even integer ≥ 8"
    if not whole(hop, 1) or hop > n_fft:
        return f"hop = {str(hop)[:40]} is not an integer in [1, n_fft]"
    if not isinstance(params["window"], str):
        return "window is not a name"
    rate = params.get("sample_rate")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float)
                             or not (np.isfinite(rate) and rate > 0)):
        return f"sample_rate = {str(rate)[:40]} is not a positive number"
    if theta.dtype.kind not in "fiu" or positions.dtype.kind not in "fiu":
        return "window_length and frame_positions must be numeric arrays"
    bins = n_fft // 2 + 1
    if theta.ndim != 2 or theta.shape[0] not in (1, bins) or positions.ndim != 1 or (
            theta.shape[1] not in (1, positions.shape[0])):
        return (f"window_length {theta.shape} does not fit {bins} bins and "
                f"{positions.shape[0] if positions.ndim == 1 else positions.shape} frames")
    if not np.isfinite(theta).all() or theta.min() <= 0 or theta.max() > n_fft:
        return f"window_length must be finite numbers in (0, n_fft = {n_fft}]"
    frames = (params.get("input") or {}).get("frames") if isinstance(params.get("input"),
                                                                        dict) else None
    top = (frames if whole(frames, 1) else MAX_SAMPLES) + n_fft
    if not np.isfinite(positions).all() or positions.min() < -n_fft or positions.max() > top:
        return f"frame_positions must be finite numbers in [-n_fft, {top}]"
    return None


@dataclass
class AppliedParameters:
    """A saved result's parameters for one signal: tensors the transform takes."""

    window_length: Any  # torch: scalar, (N,), (M, 1) or (M, N)
    frame_positions: Any  # torch (N,) or None for the default grid
    positions: np.ndarray  # the frame positions actually used (samples)


def applied_parameters(saved: SavedParams, frames: int, device: Any = "cpu") -> AppliedParameters:
    """θ and frame positions of ``saved`` for a signal of ``frames`` samples.

    Constant and per-bin parameters apply to any length; per-frame ones (time, tf, hop) only to
    signals with the same number of frames (ValueError otherwise).
    """
    import torch

    from .core import default_frame_positions, frame_count
    from .recipes import LENGTH_MODE

    p = saved.params
    hop, mode = int(p["hop"]), p["mode"]
    theta, positions = saved.window_length, saved.frame_positions
    if LENGTH_MODE.get(mode) in ("frame", "tf") or mode == "hop":
        n_frames = frame_count(frames, hop)
        if n_frames != positions.shape[0]:
            raise ValueError(
                f"the {mode!r} result in {saved.source} has {positions.shape[0]} frames but this "
                f"input gives {n_frames} (at hop {hop}); only constant and freq results apply "
                "to signals of another length")
        frame_positions = torch.from_numpy(positions).to(device)
    else:
        frame_positions = None
        positions = default_frame_positions(frames, hop).numpy()
    if theta.size == 1:
        theta_t = torch.tensor(float(theta.reshape(())), dtype=torch.float64)
    elif theta.shape[0] == 1:
        theta_t = torch.from_numpy(theta.reshape(-1))
    else:
        theta_t = torch.from_numpy(theta)
    return AppliedParameters(theta_t.to(device), frame_positions, positions)


@dataclass(frozen=True)
class RateConversion:
    """How a result's parameters were carried to another sample rate (params.json ``converted``)."""

    from_hz: float
    to_hz: float
    factor: float  # to_hz / from_hz: every length in samples is multiplied by it
    n_fft: tuple[int, int]
    hop: tuple[int, int]

    def record(self) -> dict:
        return {"from_sample_rate": self.from_hz, "to_sample_rate": self.to_hz,
                "factor": self.factor, "n_fft": list(self.n_fft), "hop": list(self.hop)}

    def notice(self) -> str:
        return (f"parameters carried as durations from {self.from_hz:g} Hz to {self.to_hz:g} Hz "
                f"(lengths × {self.factor:.6g}: n_fft {self.n_fft[0]} → {self.n_fft[1]}, hop "
                f"{self.hop[0]} → {self.hop[1]}; --keep-samples keeps samples)")


def converted_to_rate(saved: SavedParams, sample_rate: float
                      ) -> tuple[SavedParams, RateConversion | None]:
    """``saved`` with its lengths carried to ``sample_rate`` as durations.

    θ, the frame positions, the hop and n_fft (rounded to an even size) are multiplied by the
    ratio of the rates; per-bin θ (freq, tf) is interpolated onto the new bins' frequencies
    (held constant beyond the old Nyquist frequency). Unchanged (and no conversion) when the
    result records no sample rate or the same one.
    """
    from_hz = saved.params.get("sample_rate")
    if not isinstance(from_hz, int | float) or isinstance(from_hz, bool) or not from_hz > 0 \
            or float(from_hz) == float(sample_rate):
        return saved, None
    factor = float(sample_rate) / float(from_hz)
    n_fft, hop = int(saved.params["n_fft"]), int(saved.params["hop"])
    new_n_fft = max(8, 2 * round(n_fft * factor / 2))
    new_hop = max(1, round(hop * factor))
    theta = np.asarray(saved.window_length, dtype=np.float64) * factor
    if theta.ndim == 2 and theta.shape[0] > 1:  # per bin: onto the new bins' frequencies
        old_f = np.fft.rfftfreq(n_fft, d=1.0 / from_hz)
        new_f = np.fft.rfftfreq(new_n_fft, d=1.0 / sample_rate)
        theta = np.stack([np.interp(new_f, old_f, column) for column in theta.T], axis=1)
    theta = np.clip(theta, 1.0, float(new_n_fft))
    positions = np.asarray(saved.frame_positions, dtype=np.float64) * factor
    if saved.params.get("mode") != "hop":  # a fixed grid stays a grid at the new hop
        positions = np.arange(positions.shape[0], dtype=np.int64) * new_hop
    params = {**saved.params, "n_fft": new_n_fft, "hop": new_hop, "sample_rate": sample_rate}
    conversion = RateConversion(float(from_hz), float(sample_rate), factor, (n_fft, new_n_fft),
                                (hop, new_hop))
    return SavedParams(saved.source, params, theta, positions), conversion
