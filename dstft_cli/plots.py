"""Figures for results: spectrogram, loss curve, window lengths, frames, θ scan, tracking.

Every function builds and returns a :class:`matplotlib.figure.Figure` made directly (not through
pyplot): no global figure registry, no GUI backend, nothing to close, safe in worker threads.
Save with :func:`dstft_cli.io.atomic_savefig` (or ``fig.savefig``), which renders with Agg.
Inputs are numpy arrays (or anything ``np.asarray`` accepts); nothing here imports torch or click.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "to_db", "spectrogram_figure", "loss_figure", "window_lengths_figure", "frames_figure",
    "scan_figure", "tracking_figure",
]

DB_RANGE = 100.0
CMAP = "magma"


def to_db(magnitude: np.ndarray, db_range: float = DB_RANGE) -> np.ndarray:
    """20·log10 |S|, floored at (max − ``db_range``) dB; an all-zero input gives all −db_range."""
    mag = np.abs(np.asarray(magnitude, dtype=np.float64))
    peak = float(mag.max()) if mag.size else 0.0
    if not np.isfinite(peak) or peak <= 0:
        return np.full(mag.shape, -db_range)
    floor = peak * 10 ** (-db_range / 20)
    return 20 * np.log10(np.maximum(mag, floor))


def _is_uniform(x: np.ndarray) -> bool:
    if x.size < 3:
        return True
    d = np.diff(x)
    return bool(np.all(d > 0) and np.ptp(d) <= 1e-6 * abs(d.mean()))


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges around sorted centres (half-way points; outer cells mirrored)."""
    c = np.asarray(centres, dtype=np.float64)
    if c.size == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = 0.5 * (c[1:] + c[:-1])
    return np.concatenate(([c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]))


def _tf_image(ax, values: np.ndarray, times: np.ndarray, freqs: np.ndarray, **kw):
    """Draw an (M, N) map with frame centres ``times`` and bin centres ``freqs``."""
    values = np.asarray(values, dtype=np.float64)
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    freqs = np.asarray(freqs, dtype=np.float64).reshape(-1)
    if values.shape != (freqs.size, times.size):
        raise ValueError(f"map of shape {values.shape} does not match {freqs.size} frequencies "
                         f"× {times.size} times")
    order = np.argsort(times, kind="stable")
    if np.any(order != np.arange(times.size)):
        times, values = times[order], values[:, order]
    if _is_uniform(times) and _is_uniform(freqs):
        te, fe = _edges(times), _edges(freqs)
        return ax.imshow(values, origin="lower", aspect="auto", interpolation="nearest",
                         extent=(te[0], te[-1], fe[0], fe[-1]), **kw)
    return ax.pcolormesh(_edges(times), _edges(freqs), values, shading="flat",
                         rasterized=True, **kw)


def spectrogram_figure(magnitude: np.ndarray, times_s: np.ndarray, freqs_hz: np.ndarray,
                       title: str = "", *, db_range: float = DB_RANGE,
                       figsize: tuple[float, float] = (8, 4.5)) -> Figure:
    """|S| (M × N) in dB (20 log10, floor at max − ``db_range``), time in s, frequency in Hz,
    with a colour bar. Frame times may be non-uniform (``hop`` mode)."""
    mag = np.asarray(magnitude)
    if mag.ndim != 2:
        raise ValueError(f"magnitude must be 2-D (M, N), got shape {mag.shape}")
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    db = to_db(mag, db_range)
    top = float(db.max())
    im = _tf_image(ax, db, times_s, freqs_hz, cmap=CMAP, vmin=top - db_range, vmax=top)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (Hz)")
    if title:
        ax.set_title(title)
    fig.colorbar(im, ax=ax, label="magnitude (dB)")
    return fig


def loss_figure(history: Sequence[float] | Mapping[str, Sequence[float]], title: str = "loss",
                *, ylabel: str = "loss", xlabel: str = "iteration",
                figsize: tuple[float, float] = (6, 4)) -> Figure:
    """Loss per iteration (one curve, or one per entry of a mapping such as train/val);
    non-finite values are left out and the best finite value is marked."""
    series = dict(history) if isinstance(history, Mapping) else {ylabel: history}
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    drawn = False
    for name, values in series.items():
        y = np.asarray(values, dtype=np.float64).reshape(-1)
        x = np.arange(y.size)
        ok = np.isfinite(y)
        if not ok.any():
            continue
        (line,) = ax.plot(x[ok], y[ok], marker="." if ok.sum() < 60 else None,
                          label=name if len(series) > 1 else None)
        best = int(np.nanargmin(np.where(ok, y, np.nan)))
        ax.plot([x[best]], [y[best]], "o", color=line.get_color(), mfc="none", ms=9)
        drawn = True
    if not drawn:
        ax.text(0.5, 0.5, "no finite loss values", ha="center", va="center",
                transform=ax.transAxes)
    if len(series) > 1 and drawn:
        ax.legend()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.set_title(title)
    return fig


def window_lengths_figure(window_length: Any, times_s: np.ndarray, freqs_hz: np.ndarray,
                          title: str = "window length", *, sample_rate: float | None = None,
                          figsize: tuple[float, float] = (8, 4.5)) -> Figure:
    """The window lengths θ (samples) as in Fig. 3: a constant → a flat line over time, ``(N,)``
    or ``(1, N)`` → a curve over time, ``(M, 1)`` → a curve over frequency, ``(M, N)`` → a
    time-frequency map with a colour bar. With ``sample_rate`` the unit is ms instead."""
    theta = np.asarray(window_length, dtype=np.float64)
    times = np.asarray(times_s, dtype=np.float64).reshape(-1)
    freqs = np.asarray(freqs_hz, dtype=np.float64).reshape(-1)
    scale, unit = (1000.0 / sample_rate, "ms") if sample_rate else (1.0, "samples")
    label = f"window length ({unit})"
    theta = theta * scale
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    if theta.ndim == 2 and theta.shape[0] > 1 and theta.shape[1] > 1:
        im = _tf_image(ax, theta, times, freqs, cmap="viridis")
        ax.set_xlabel("time (s)")
        ax.set_ylabel("frequency (Hz)")
        fig.colorbar(im, ax=ax, label=label)
    elif theta.ndim == 2 and theta.shape[1] == 1 and theta.shape[0] > 1:
        ax.plot(freqs, theta[:, 0])
        ax.set_xlabel("frequency (Hz)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    else:
        curve = theta.reshape(-1)
        if curve.size == 1:
            curve = np.full(times.size, curve[0])
        if curve.size != times.size:
            raise ValueError(f"window_length of shape {theta.shape} does not match "
                             f"{times.size} frames / {freqs.size} bins")
        order = np.argsort(times, kind="stable")
        ax.plot(times[order], curve[order], drawstyle="steps-mid" if times.size < 200 else None)
        ax.set_xlabel("time (s)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    ax.set_title(title)
    return fig


def frames_figure(frame_positions_s: np.ndarray, window_lengths_s: Any, signal_duration: float,
                  title: str = "frames", *, signal: np.ndarray | None = None,
                  figsize: tuple[float, float] = (8, 5)) -> Figure:
    """Frame n as a horizontal bar from tₙ − θₙ/2 to tₙ + θₙ/2 at height n, centre marked, the
    signal span [0, duration] shaded (as Fig. 4, right). Optionally the signal above it."""
    pos = np.asarray(frame_positions_s, dtype=np.float64).reshape(-1)
    lengths = np.broadcast_to(np.asarray(window_lengths_s, dtype=np.float64).reshape(-1)
                              if np.ndim(window_lengths_s) else window_lengths_s, pos.shape)
    fig = Figure(figsize=figsize, layout="constrained")
    if signal is not None:
        ax_sig, ax = fig.subplots(2, 1, sharex=True, height_ratios=[1, 3])
        sig = np.asarray(signal, dtype=np.float64).reshape(-1)
        ax_sig.plot(np.arange(sig.size) * signal_duration / max(sig.size, 1), sig, lw=0.6)
        ax_sig.set_ylabel("signal")
    else:
        ax = fig.add_subplot()
    n = np.arange(pos.size)
    ax.axvspan(0, signal_duration, color="0.92", zorder=0)
    ax.barh(n, lengths, left=pos - lengths / 2, height=0.7, color="tab:blue", alpha=0.55,
            edgecolor="tab:blue", linewidth=0.5, zorder=2)
    ax.plot(pos, n, "|", color="k", ms=6, zorder=3)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frame")
    lo = min(0.0, float(np.min(pos - lengths / 2))) if pos.size else 0.0
    hi = max(signal_duration, float(np.max(pos + lengths / 2))) if pos.size else signal_duration
    ax.set_xlim(lo, hi)
    ax.set_title(title)
    return fig


def scan_figure(lengths: np.ndarray, losses: np.ndarray, best: float | None = None,
                title: str = "loss vs window length", *, xlabel: str = "window length θ (samples)",
                ylabel: str = "loss", figsize: tuple[float, float] = (6, 4)) -> Figure:
    """Loss against window length (Fig. 2), with ``best`` (or the minimum) marked."""
    x = np.asarray(lengths, dtype=np.float64).reshape(-1)
    y = np.asarray(losses, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"{x.size} lengths but {y.size} losses")
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    ok = np.isfinite(y)
    ax.plot(x[ok], y[ok])
    if best is None and ok.any():
        best = float(x[ok][np.argmin(y[ok])])
    if best is not None:
        ax.axvline(best, color="tab:red", ls="--", lw=1, label=f"θ* = {best:.1f}")
        ax.legend()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.set_title(title)
    return fig


def _truth_pair(truth: Any) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(truth, Mapping):
        t = truth.get("time_s", truth.get("times"))
        f = next((truth[k] for k in ("f_hz", "f0_hz", "freq_hz", "freqs") if k in truth), None)
        if t is None or f is None:
            raise ValueError("truth mapping needs 'time_s' and one of 'f_hz', 'f0_hz', 'freq_hz'")
    else:
        t, f = truth
    return np.asarray(t, dtype=np.float64).reshape(-1), np.asarray(f, dtype=np.float64).reshape(-1)


def tracking_figure(magnitude: np.ndarray, times: np.ndarray, freqs: np.ndarray,
                    est_times: np.ndarray, est_freq: np.ndarray, truth: Any = None,
                    title: str = "frequency tracking", *, db_range: float = DB_RANGE,
                    figsize: tuple[float, float] = (8, 6)) -> Figure:
    """Spectrogram (dB) with the estimated frequency overlaid (dashed), and the true one if given
    (``(time_s, f_hz)`` or a mapping with ``time_s`` and ``f_hz``/``f0_hz``/``freq_hz``); with a
    truth, a second panel plots estimate and truth and the title gives the mean square error."""
    et = np.asarray(est_times, dtype=np.float64).reshape(-1)
    ef = np.asarray(est_freq, dtype=np.float64).reshape(-1)
    if et.shape != ef.shape:
        raise ValueError(f"{et.size} estimate times but {ef.size} estimated frequencies")
    fig = Figure(figsize=figsize, layout="constrained")
    if truth is not None:
        ax, ax2 = fig.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    else:
        ax, ax2 = fig.add_subplot(), None
    db = to_db(magnitude, db_range)
    top = float(db.max())
    im = _tf_image(ax, db, times, freqs, cmap=CMAP, vmin=top - db_range, vmax=top)
    fig.colorbar(im, ax=ax, label="magnitude (dB)")
    ax.plot(et, ef, "--", color="cyan", lw=1.2, label="estimate")
    ax.set_ylabel("frequency (Hz)")
    heading = title
    if truth is not None:
        tt, tf = _truth_pair(truth)
        ax.plot(tt, tf, color="white", lw=0.8, alpha=0.8, label="truth")
        on_est = np.interp(et, tt, tf, left=np.nan, right=np.nan)
        err = ef - on_est
        ok = np.isfinite(err)
        if ok.any():
            heading = f"{title} — MSE {np.mean(err[ok] ** 2):.3g} Hz²"
        ax2.plot(tt, tf, color="k", lw=1, label="truth")
        ax2.plot(et, ef, "--", color="tab:orange", lw=1.2, label="estimate")
        ax2.set_ylabel("frequency (Hz)")
        ax2.set_xlabel("time (s)")
        ax2.grid(True, alpha=0.3)
        ax2.legend(loc="best")
    else:
        ax.set_xlabel("time (s)")
    ax.legend(loc="upper right")
    ax.set_title(heading)
    return fig
