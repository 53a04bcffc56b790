"""Figures for results: spectrogram, comparison, loss curve, window lengths, frames, θ scan, tracking.

Every function builds and returns a :class:`matplotlib.figure.Figure` made directly (not through
pyplot): no global figure registry, no GUI backend, nothing to close, safe in worker threads.
:class:`FigureOptions` carries everything a user may choose about a figure (limits, dB range and
reference, colour map, size, resolution, formats, frequency scale, θ unit, title); every function
takes one. Saving (formats, reproducible bytes) is :func:`dstft_cli.figures.save_figure`.
Inputs are numpy arrays (or anything ``np.asarray`` accepts); nothing here imports torch or click.

Conventions: time in s, frequency in Hz, magnitudes in dB relative to a reference stated on the
colour bar (``dB re peak``: 0 dB at the largest |S|; ``dB re 1``: 20·log10 |S|), window lengths θ
in ms or samples (the other unit on a secondary axis when the sample rate is known).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn: commands with --no-plots
    from matplotlib.figure import Figure  # do not pay its import (about half a second)

__all__ = [
    "DPI", "DB_RANGE", "CMAP", "FORMATS", "FREQ_SCALES", "THETA_UNITS", "FigureOptions",
    "FigureOptionError", "to_db", "padding_frames", "spectrogram_figure", "comparison_figure",
    "loss_figure", "window_lengths_figure", "frames_figure", "scan_figure", "tracking_figure",
]

#: Resolution of every raster figure unless a user asks for another.
DPI = 110.0
DB_RANGE = 100.0
CMAP = "magma"
THETA_CMAP = "viridis"
Format = Literal["png", "svg", "pdf"]
FreqScale = Literal["linear", "log"]
ThetaUnit = Literal["ms", "samples"]
FORMATS: tuple[str, ...] = get_args(Format)
FREQ_SCALES: tuple[str, ...] = get_args(FreqScale)
THETA_UNITS: tuple[str, ...] = get_args(ThetaUnit)


class FigureOptionError(ValueError):
    """A figure option with a value that cannot be used; ``option`` is the field's name."""

    def __init__(self, option: str, problem: str):
        self.option = option
        self.problem = problem
        super().__init__(f"{option}: {problem}")


def _finite(name: str, value: Any, *, positive: bool = False, allow_none: bool = True):
    if value is None and allow_none:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FigureOptionError(name, f"{value!r} is not a number") from None
    if not math.isfinite(number) or (positive and number <= 0):
        raise FigureOptionError(name, f"{value!r} is not a {'positive' if positive else 'finite'} "
                                      "number")
    return number


def _known_cmap(name: Any) -> str:
    if name in (CMAP, THETA_CMAP):
        return name
    import matplotlib

    if not isinstance(name, str) or name not in matplotlib.colormaps:
        raise FigureOptionError("cmap", f"unknown colour map {name!r} (see matplotlib's "
                                        "colormap reference, e.g. magma, viridis, gray_r)")
    return name


@dataclass(frozen=True)
class FigureOptions:
    """What a user chooses about figures; ``None`` means "from the data" (or the figure's own
    size). Invalid values raise :class:`FigureOptionError` naming the field."""

    fmin: float | None = None
    fmax: float | None = None
    tmin: float | None = None
    tmax: float | None = None
    db_range: float = DB_RANGE
    #: "peak" (0 dB at the largest |S|) or an absolute magnitude
    ref: str | float = "peak"
    cmap: str = CMAP
    figsize: tuple[float, float] | None = None
    dpi: float = DPI
    formats: tuple[str, ...] = ("png",)
    freq_scale: str = "linear"
    theta_unit: str = "ms"
    title: str | None = None

    def __post_init__(self) -> None:
        put = object.__setattr__
        for name in ("fmin", "fmax", "tmin", "tmax"):
            put(self, name, _finite(name, getattr(self, name)))
        if self.fmin is not None and self.fmin < 0:
            raise FigureOptionError("fmin", f"{self.fmin:g} Hz is negative")
        for lo, hi, unit in (("fmin", "fmax", "Hz"), ("tmin", "tmax", "s")):
            a, b = getattr(self, lo), getattr(self, hi)
            if a is not None and b is not None and b <= a:
                raise FigureOptionError(hi, f"{b:g} {unit} is not above {lo} ({a:g} {unit})")
        put(self, "db_range", _finite("db_range", self.db_range, positive=True, allow_none=False))
        if isinstance(self.ref, str) and self.ref.strip().lower() == "peak":
            put(self, "ref", "peak")
        else:
            put(self, "ref", _finite("ref", self.ref, positive=True, allow_none=False))
        _known_cmap(self.cmap)
        if self.figsize is not None:
            size = tuple(self.figsize) if not isinstance(self.figsize, str) else ()
            if len(size) != 2:
                raise FigureOptionError("figsize", f"{self.figsize!r} is not WIDTH,HEIGHT (inches)")
            put(self, "figsize", tuple(_finite("figsize", v, positive=True) for v in size))
        put(self, "dpi", _finite("dpi", self.dpi, positive=True, allow_none=False))
        formats = (self.formats,) if isinstance(self.formats, str) else tuple(self.formats)
        formats = tuple(dict.fromkeys(str(f).lower().lstrip(".") for f in formats))
        unknown = [f for f in formats if f not in FORMATS]
        if unknown or not formats:
            raise FigureOptionError("formats", f"unknown format {', '.join(unknown) or '(none)'}; "
                                               f"use any of {', '.join(FORMATS)}")
        put(self, "formats", formats)
        if self.freq_scale not in FREQ_SCALES:
            raise FigureOptionError("freq_scale", f"{self.freq_scale!r} is not one of "
                                                  f"{', '.join(FREQ_SCALES)}")
        if self.theta_unit not in THETA_UNITS:
            raise FigureOptionError("theta_unit", f"{self.theta_unit!r} is not one of "
                                                  f"{', '.join(THETA_UNITS)}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> FigureOptions:
        """Options from a mapping such as a TOML ``[plot]`` table (unknown keys are errors)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise FigureOptionError(unknown[0], f"unknown figure setting; known: "
                                                f"{', '.join(sorted(known))}")
        return cls(**dict(values))

    @property
    def db_label(self) -> str:
        """The colour-bar unit: ``dB re peak`` or ``dB re <value>``."""
        return "dB re peak" if self.ref == "peak" else f"dB re {self.ref:g}"


DEFAULT_OPTIONS = FigureOptions()


# --------------------------------------------------------------------------------------------
# values


def to_db(magnitude: np.ndarray, db_range: float = DB_RANGE, ref: str | float = 1.0) -> np.ndarray:
    """20·log10(|S| / ref), floored at (max − ``db_range``) dB; ``ref="peak"`` puts 0 dB at the
    largest |S|. An all-zero input gives all −db_range."""
    mag = np.abs(np.asarray(magnitude, dtype=np.float64))
    peak = float(mag.max()) if mag.size else 0.0
    if not np.isfinite(peak) or peak <= 0:
        return np.full(mag.shape, -db_range)
    reference = peak if ref == "peak" else float(ref)
    floor = peak * 10 ** (-db_range / 20)
    return 20 * np.log10(np.maximum(mag, floor) / reference)


def padding_frames(times_s: np.ndarray, half_window_s: Any, duration_s: float) -> np.ndarray:
    """Which frames reach past the signal: |tₙ − edge| < θₙ/2 at t = 0 or t = duration.

    Such a frame windows the abrupt start (or end) of the signal against the zero padding of
    Eq. (6): the step spreads over every frequency, so these columns of a spectrogram are bright
    broadband stripes that say nothing about the signal. Long windows make them wider.
    """
    t = np.asarray(times_s, dtype=np.float64).reshape(-1)
    half = np.broadcast_to(np.asarray(half_window_s, dtype=np.float64), t.shape)
    return (t - half < 0) | (t + half > duration_s)


def _is_uniform(x: np.ndarray) -> bool:
    if x.size < 3:
        return True
    d = np.diff(x)
    return bool(np.all(d > 0) and np.ptp(d) <= 1e-6 * abs(d.mean()))


def _edges(centres: np.ndarray, log: bool = False) -> np.ndarray:
    """Cell edges around sorted centres (half-way points, geometric on a log axis; outer cells
    mirrored)."""
    c = np.asarray(centres, dtype=np.float64)
    if log:
        return np.exp(_edges(np.log(c)))
    if c.size == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = 0.5 * (c[1:] + c[:-1])
    return np.concatenate(([c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]))


def _window(centres: np.ndarray, lo: float | None, hi: float | None) -> slice:
    """The centres whose cells overlap [lo, hi] (all of them for None limits)."""
    e = _edges(centres)
    first = 0 if lo is None else int(np.searchsorted(e[1:], lo, side="right"))
    last = centres.size if hi is None else int(np.searchsorted(e[:-1], hi, side="left"))
    if last <= first:
        raise ValueError(f"no data between {lo} and {hi} (data span {e[0]:.6g} to {e[-1]:.6g})")
    return slice(first, last)


@dataclass
class _Map:
    values: np.ndarray
    times: np.ndarray
    freqs: np.ndarray


def _visible(values: np.ndarray, times: Any, freqs: Any, o: FigureOptions) -> _Map:
    """The part of an (M, N) map inside the options' limits, time-sorted, positive frequencies
    only on a log axis."""
    values = np.asarray(values, dtype=np.float64)
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    freqs = np.asarray(freqs, dtype=np.float64).reshape(-1)
    if values.shape != (freqs.size, times.size):
        raise ValueError(f"map of shape {values.shape} does not match {freqs.size} frequencies "
                         f"× {times.size} times")
    order = np.argsort(times, kind="stable")
    if np.any(order != np.arange(times.size)):
        times, values = times[order], values[:, order]
    if o.freq_scale == "log":
        keep = freqs > 0
        values, freqs = values[keep], freqs[keep]
    cols = _window(times, o.tmin, o.tmax)
    rows = _window(freqs, o.fmin, o.fmax)
    return _Map(values[rows, cols], times[cols], freqs[rows])


def _draw_map(ax, m: _Map, o: FigureOptions, **kw):
    """Draw a map with frame centres ``m.times`` and bin centres ``m.freqs``."""
    log = o.freq_scale == "log"
    if _is_uniform(m.times) and _is_uniform(m.freqs) and not log:
        te, fe = _edges(m.times), _edges(m.freqs)
        image = ax.imshow(m.values, origin="lower", aspect="auto", interpolation="nearest",
                          extent=(te[0], te[-1], fe[0], fe[-1]), **kw)
    else:
        if log:
            ax.set_yscale("log")
            for axis_formatter in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
                from matplotlib.ticker import LogFormatter

                axis_formatter(LogFormatter(labelOnlyBase=False))
        image = ax.pcolormesh(_edges(m.times), _edges(m.freqs, log), m.values, shading="flat",
                              rasterized=True, **kw)
    te, fe = _edges(m.times), _edges(m.freqs, log)
    ax.set_xlim(te[0] if o.tmin is None else o.tmin, te[-1] if o.tmax is None else o.tmax)
    low = fe[0] if o.fmin is None or (log and o.fmin <= 0) else o.fmin
    ax.set_ylim(low, fe[-1] if o.fmax is None else o.fmax)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (Hz)")
    return image


def _db_map(ax, magnitude, times, freqs, o: FigureOptions, reference: float | None = None,
            top_magnitude: float | None = None):
    """|S| in dB re the options' reference (re ``reference`` for a shared peak), coloured over
    the ``db_range`` below the visible maximum (``top_magnitude`` for a shared scale)."""
    mag = np.abs(np.asarray(magnitude, dtype=np.float64))
    if mag.ndim != 2:
        raise ValueError(f"magnitude must be 2-D (M, N), got shape {mag.shape}")
    peak = float(mag.max()) if mag.size else 0.0
    if o.ref == "peak":
        ref = reference if reference is not None else peak
    else:
        ref = float(o.ref)
    ref = ref if np.isfinite(ref) and ref > 0 else 1.0
    m = _visible(mag, times, freqs, o)
    top_mag = float(m.values.max()) if m.values.size else 0.0
    top_mag = top_mag if top_magnitude is None else top_magnitude
    top = 20 * math.log10(top_mag / ref) if top_mag > 0 else 0.0
    floor = ref * 10 ** ((top - o.db_range) / 20)
    m.values = 20 * np.log10(np.maximum(m.values, floor) / ref)
    return _draw_map(ax, m, o, cmap=o.cmap, vmin=top - o.db_range, vmax=top)


def _mark_padding(ax, times, half_window_s, duration_s: float) -> None:
    """Hatch the frames whose window reaches into the zero padding (see :func:`padding_frames`)."""
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    order = np.argsort(t, kind="stable")
    t = t[order]
    half = np.broadcast_to(np.asarray(half_window_s, dtype=np.float64), order.shape)[order]
    hit = padding_frames(t, half, duration_s)
    if not hit.any():
        return
    e = _edges(t)
    labelled = False
    for side in (hit & (t <= duration_s / 2), hit & (t > duration_s / 2)):
        if side.any():
            idx = np.flatnonzero(side)
            ax.axvspan(e[idx[0]], e[idx[-1] + 1], facecolor="none", edgecolor=(0.7, 0.7, 0.7, 0.8),
                       hatch="///",
                       linewidth=0, label=None if labelled else "window reaches past the signal")
            labelled = True


def _new_figure(o: FigureOptions, size: tuple[float, float]) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=o.figsize or size, dpi=o.dpi, layout="constrained")


def _heading(o: FigureOptions, title: str) -> str:
    return title if o.title is None else o.title


# --------------------------------------------------------------------------------------------
# figures


def spectrogram_figure(magnitude: np.ndarray, times_s: np.ndarray, freqs_hz: np.ndarray,
                       title: str = "", *, options: FigureOptions | None = None,
                       half_window_s: Any = None, duration_s: float | None = None) -> Figure:
    """|S| (M × N) in dB re the options' reference, time in s, frequency in Hz, with a colour
    bar. Frame times may be non-uniform (``hop`` mode). With ``half_window_s`` (θₙ/2 per frame,
    in s) and ``duration_s``, the frames reaching past the signal are hatched."""
    o = options or DEFAULT_OPTIONS
    fig = _new_figure(o, (8, 4.5))
    ax = fig.add_subplot()
    im = _db_map(ax, magnitude, times_s, freqs_hz, o)
    if half_window_s is not None and duration_s is not None:
        _mark_padding(ax, times_s, half_window_s, duration_s)
        if ax.patches:
            fig.legend(loc="outside lower right", fontsize="small", frameon=False)
    heading = _heading(o, title)
    if heading:
        ax.set_title(heading)
    fig.colorbar(im, ax=ax, label=f"magnitude ({o.db_label})")
    return fig


def comparison_figure(fixed: np.ndarray, optimised: np.ndarray, times_s: np.ndarray,
                      freqs_hz: np.ndarray, *, fixed_label: str, optimised_label: str,
                      window_length: Any = None, sample_rate: float | None = None,
                      fixed_times_s: np.ndarray | None = None, title: str = "",
                      options: FigureOptions | None = None) -> Figure:
    """A fixed-window spectrogram beside the optimised one (one colour scale, both in dB re the
    larger peak of the two) and, for several window lengths, the θ map or curve."""
    o = options or DEFAULT_OPTIONS
    theta = None if window_length is None else np.asarray(window_length, dtype=np.float64)
    with_theta = theta is not None and theta.size > 1
    fig = _new_figure(o, (14, 4.2) if with_theta else (10, 4.2))
    axes = fig.subplots(1, 3 if with_theta else 2, sharey=False)
    reference = max(float(np.max(np.abs(fixed))), float(np.max(np.abs(optimised))))
    ft = times_s if fixed_times_s is None else fixed_times_s
    top = max(float(_visible(np.abs(fixed), ft, freqs_hz, o).values.max()),
              float(_visible(np.abs(optimised), times_s, freqs_hz, o).values.max()))
    im = _db_map(axes[0], fixed, ft, freqs_hz, o, reference, top)
    _db_map(axes[1], optimised, times_s, freqs_hz, o, reference, top)
    axes[0].set_title(fixed_label)
    axes[1].set_title(optimised_label)
    axes[1].set_ylabel("")
    fig.colorbar(im, ax=list(axes[:2]), label=f"magnitude ({o.db_label})", pad=0.01)
    if with_theta:
        _theta_axes(fig, axes[2], theta, times_s, freqs_hz, sample_rate, o)
        axes[2].set_title("window length θ")
    heading = _heading(o, title)
    if heading:
        fig.suptitle(heading)
    return fig


def _stage_marks(ax, stages: Sequence[tuple[str, int]], n: int) -> None:
    """A dashed line where each stage starts (before its first point) and the stage names on
    the top axis, each over the middle of its stage."""
    starts = [(name, start) for name, start in stages if 0 <= start < n]
    if not starts:
        return
    for _, start in starts:
        if start > 0:
            ax.axvline(start - 0.5, color="0.4", ls="--", lw=0.8)
    ends = [start for _, start in starts[1:]] + [n]
    middles = [0.5 * (start + end - 1) for (_, start), end in zip(starts, ends, strict=True)]
    top = ax.secondary_xaxis("top")
    top.set_xticks(middles, labels=[name for name, _ in starts], fontsize="small")
    top.tick_params(length=0)


def loss_figure(history: Sequence[float] | Mapping[str, Sequence[float]], title: str = "loss",
                *, ylabel: str = "loss", xlabel: str = "iteration",
                stages: Sequence[tuple[str, int]] = (),
                options: FigureOptions | None = None) -> Figure:
    """Loss per iteration (one curve, or one per entry of a mapping such as train/val) on integer
    iteration ticks; non-finite values are left out and the best finite value is marked.
    ``stages`` — (name, index of the stage's first value) — draws the stage boundaries."""
    o = options or DEFAULT_OPTIONS
    series = dict(history) if isinstance(history, Mapping) else {ylabel: history}
    fig = _new_figure(o, (6, 4))
    ax = fig.add_subplot()
    drawn = False
    longest = 0
    for name, values in series.items():
        y = np.asarray(values, dtype=np.float64).reshape(-1)
        x = np.arange(y.size)
        longest = max(longest, y.size)
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
    _stage_marks(ax, stages, longest)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if longest:
        ax.set_xlim(-0.5, max(longest - 0.5, 1.5))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.set_title(_heading(o, title))
    return fig


def _theta_scale(o: FigureOptions, sample_rate: float | None) -> tuple[float, str, str | None]:
    """(factor from samples, unit, the other unit) for θ."""
    if sample_rate and o.theta_unit == "ms":
        return 1000.0 / sample_rate, "ms", "samples"
    return 1.0, "samples", "ms" if sample_rate else None


def _theta_limits(values: np.ndarray, factor: float) -> tuple[float, float]:
    """The real spread of θ, widened to at least 2 samples and 2 % of the median so that a nearly
    constant θ does not look like wild variation."""
    lo, hi = float(np.min(values)), float(np.max(values))
    least = max(2.0 * factor, 0.02 * abs(float(np.median(values))))
    if hi - lo < least:
        middle = 0.5 * (lo + hi)
        lo, hi = middle - least / 2, middle + least / 2
    return lo, hi


def _other_unit(ax, factor: float, other: str | None, side: str, axis: str = "y") -> None:
    """A secondary ``axis`` ("x" or "y") in the other θ unit (ms ↔ samples) on ``side``."""
    if other is None:
        return
    ratio = 1.0 / factor if other == "samples" else factor

    def forward(v):
        return v * ratio

    def backward(v):
        return v / ratio

    if axis == "x":
        ax.secondary_xaxis(side, functions=(forward, backward)).set_xlabel(other)
    else:
        ax.secondary_yaxis(side, functions=(forward, backward)).set_ylabel(other)


def _theta_axes(fig, ax, theta: np.ndarray, times, freqs, sample_rate, o: FigureOptions) -> None:
    factor, unit, other = _theta_scale(o, sample_rate)
    label = f"window length ({unit})"
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    freqs = np.asarray(freqs, dtype=np.float64).reshape(-1)
    values = theta * factor
    if values.ndim == 2 and values.shape[0] > 1 and values.shape[1] > 1:
        lo, hi = _theta_limits(values, factor)
        im = _draw_map(ax, _visible(values, times, freqs, o), o, cmap=THETA_CMAP, vmin=lo, vmax=hi)
        bar = fig.colorbar(im, ax=ax, label=label)
        _other_unit(bar.ax, factor, other, "left")
        return
    if values.ndim == 2 and values.shape[1] == 1 and values.shape[0] > 1:
        x, y, xlabel = freqs, values[:, 0], "frequency (Hz)"
        if o.freq_scale == "log":
            ax.set_xscale("log")
            x, y = x[x > 0], y[x > 0]
        ax.set_xlim(o.fmin if o.fmin is not None else x.min(), o.fmax or x.max())
        ax.plot(x, y)
    else:
        curve = values.reshape(-1)
        if curve.size == 1:
            curve = np.full(times.size, curve[0])
        if curve.size != times.size:
            raise ValueError(f"window_length of shape {theta.shape} does not match "
                             f"{times.size} frames / {freqs.size} bins")
        order = np.argsort(times, kind="stable")
        ax.plot(times[order], curve[order], drawstyle="steps-mid" if times.size < 200 else None)
        if o.tmin is not None or o.tmax is not None:
            ax.set_xlim(o.tmin, o.tmax)
        xlabel = "time (s)"
        y = curve
    lo, hi = _theta_limits(y, factor)
    pad = 0.05 * (hi - lo)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(label)
    ax.grid(True, alpha=0.3)
    _other_unit(ax, factor, other, "right")


def window_lengths_figure(window_length: Any, times_s: np.ndarray, freqs_hz: np.ndarray,
                          title: str = "window length", *, sample_rate: float | None = None,
                          options: FigureOptions | None = None) -> Figure:
    """The window lengths θ as in Fig. 3: a constant → a flat line over time, ``(N,)`` or
    ``(1, N)`` → a curve over time, ``(M, 1)`` → a curve over frequency, ``(M, N)`` → a
    time-frequency map with a colour bar. Samples without ``sample_rate``; with it, the options'
    unit (ms by default) and the other one on a secondary axis."""
    o = options or DEFAULT_OPTIONS
    theta = np.asarray(window_length, dtype=np.float64)
    fig = _new_figure(o, (8, 4.5))
    ax = fig.add_subplot()
    _theta_axes(fig, ax, theta, times_s, freqs_hz, sample_rate, o)
    ax.set_title(_heading(o, title))
    return fig


def frames_figure(frame_positions_s: np.ndarray, window_lengths_s: Any, signal_duration: float,
                  title: str = "frames", *, signal: np.ndarray | None = None,
                  options: FigureOptions | None = None) -> Figure:
    """Frame n as a horizontal bar from tₙ − θₙ/2 to tₙ + θₙ/2 at height n, centre marked, the
    signal span [0, duration] shaded (as Fig. 4, right). Optionally the signal above it."""
    o = options or DEFAULT_OPTIONS
    pos = np.asarray(frame_positions_s, dtype=np.float64).reshape(-1)
    lengths = np.broadcast_to(np.asarray(window_lengths_s, dtype=np.float64).reshape(-1)
                              if np.ndim(window_lengths_s) else window_lengths_s, pos.shape)
    fig = _new_figure(o, (8, 5))
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
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    lo = min(0.0, float(np.min(pos - lengths / 2))) if pos.size else 0.0
    hi = max(signal_duration, float(np.max(pos + lengths / 2))) if pos.size else signal_duration
    ax.set_xlim(lo if o.tmin is None else o.tmin, hi if o.tmax is None else o.tmax)
    ax.set_title(_heading(o, title))
    return fig


def _paired(a: Any, b: Any, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Two flat float64 series of one length; ``names`` name them in the error."""
    x = np.asarray(a, dtype=np.float64).reshape(-1)
    y = np.asarray(b, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"{x.size} {names[0]} but {y.size} {names[1]}")
    return x, y


def scan_figure(lengths: np.ndarray, losses: np.ndarray, best: float | None = None,
                title: str = "loss vs window length", *, ylabel: str = "loss",
                sample_rate: float | None = None, options: FigureOptions | None = None) -> Figure:
    """Loss against window length (Fig. 2), with ``best`` (or the minimum) marked. With the
    sample rate, θ is shown in the options' unit (ms by default) with the other one on top."""
    o = options or DEFAULT_OPTIONS
    x, y = _paired(lengths, losses, ("lengths", "losses"))
    factor, unit, other = _theta_scale(o, sample_rate)
    fig = _new_figure(o, (6, 4))
    ax = fig.add_subplot()
    ok = np.isfinite(y)
    ax.plot(x[ok] * factor, y[ok])
    if best is None and ok.any():
        best = float(x[ok][np.argmin(y[ok])])
    if best is not None:
        label = f"θ* = {best:.1f} samples"
        if sample_rate:
            label += f" ({1000.0 * best / sample_rate:.1f} ms)"
        ax.axvline(best * factor, color="tab:red", ls="--", lw=1, label=label)
        ax.legend()
    ax.set_xlabel(f"window length θ ({unit})")
    _other_unit(ax, factor, other, "top", axis="x")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.set_title(_heading(o, title))
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
                    title: str = "frequency tracking", *,
                    options: FigureOptions | None = None) -> Figure:
    """Spectrogram (dB) with the estimated frequency overlaid (dashed), and the true one if given
    (``(time_s, f_hz)`` or a mapping with ``time_s`` and ``f_hz``/``f0_hz``/``freq_hz``); with a
    truth, a second panel plots estimate and truth and the title gives the mean square error."""
    o = options or DEFAULT_OPTIONS
    et, ef = _paired(est_times, est_freq, ("estimate times", "estimated frequencies"))
    fig = _new_figure(o, (8, 6))
    if truth is not None:
        ax, ax2 = fig.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    else:
        ax, ax2 = fig.add_subplot(), None
    im = _db_map(ax, magnitude, times, freqs, o)
    fig.colorbar(im, ax=ax, label=f"magnitude ({o.db_label})")
    ax.plot(et, ef, "--", color="cyan", lw=1.2, label="estimate")
    heading = _heading(o, title)
    if truth is not None:
        ax.set_xlabel("")
        tt, tf = _truth_pair(truth)
        ax.plot(tt, tf, color="white", lw=0.8, alpha=0.8, label="truth")
        on_est = np.interp(et, tt, tf, left=np.nan, right=np.nan)
        err = ef - on_est
        ok = np.isfinite(err)
        if ok.any() and o.title is None:
            heading = f"{title} — MSE {np.mean(err[ok] ** 2):.3g} Hz²"
        ax2.plot(tt, tf, color="k", lw=1, label="truth")
        ax2.plot(et, ef, "--", color="tab:orange", lw=1.2, label="estimate")
        ax2.set_ylabel("frequency (Hz)")
        ax2.set_xlabel("time (s)")
        ax2.grid(True, alpha=0.3)
        ax2.legend(loc="best")
    ax.legend(loc="upper right")
    ax.set_title(heading)
    return fig
