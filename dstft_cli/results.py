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

__all__ = [
    "SavedParams", "read_result", "applied_parameters", "AppliedParameters",
    "theta_summary", "theta_text", "theta_title", "axes", "input_record", "plot_magnitude",
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


def theta_text(summary: float | dict[str, float], digits: int = 2) -> str:
    """``θ = 313.85`` or ``θ ∈ [24.0, 980.5]`` for console lines."""
    if isinstance(summary, dict):
        return f"θ ∈ [{summary['min']:.1f}, {summary['max']:.1f}]"
    return f"θ = {summary:.{digits}f}"


def theta_title(summary: float | dict[str, float]) -> str:
    """θ for figure titles, with the median for several lengths."""
    if isinstance(summary, dict):
        return (f"θ ∈ [{summary['min']:.1f}, {summary['max']:.1f}] "
                f"(median {summary['median']:.1f}) samples")
    return f"θ = {summary:.1f} samples"


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
    missing = [k for k in REQUIRED_KEYS if k not in params]
    if missing:
        raise ValueError(f"{params_path}: missing {', '.join(missing)}")
    return SavedParams(str(folder), params, theta, positions)


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
