"""Several ridges through a spectrogram that keep their identity where components cross.

A single-ridge Viterbi path with a penalty on bin jumps (:func:`~dstft_cli.tasks.tracking.
viterbi_ridge`) has no notion of direction: where two components cross, the strongest path is
free to turn onto the other one. Here each ridge also pays for changing its *slope*, and slopes
are measured between fractional peak frequencies, so a slow chirp (a fraction of a bin per frame)
has a constant slope instead of a staircase of 0- and 1-bin jumps.

Per frame the candidates are the ``candidates`` largest local maxima of log |S| in the band,
each refined to a fraction of a bin by a parabola. A ridge is the candidate sequence cₙ
maximising

    Σₙ log|S|(cₙ) − λ Σₙ vₙ² − μ Σₙ (vₙ − vₙ₋₁)²,     vₙ = f(cₙ) − f(cₙ₋₁)  (bins per frame)

found exactly by dynamic programming over pairs (cₙ, cₙ₋₁), O(N·C³). Ridges are taken one after
another, strongest first; a candidate already on an earlier ridge costs ``reuse_penalty`` more,
so later ridges avoid earlier ones but can still pass through the single peak two components
share where they cross.

Where two components cross they merge into one peak for a few frames, whose frequency stays
still: during the merge the peaks themselves cannot tell a crossing from two ridges touching and
turning back, and the strongest path follows whichever tail is louder. So afterwards every
*contact* (an interval of frames where two ridges lie within ``contact`` bins) is resolved by
slope: the straight-line slopes of both ridges over ``span`` frames before and after the
contact are compared, and the tails are exchanged when that continues each ridge with the slope
it came in with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["RidgeCandidates", "ridge_candidates", "track_ridges", "relink_crossings", "ridges_hz"]


@dataclass(frozen=True)
class RidgeCandidates:
    """(N, C) fractional bins, log magnitudes (−inf where a frame has fewer peaks) and the
    integer bins they come from."""

    freqs: np.ndarray
    scores: np.ndarray
    bins: np.ndarray


def ridge_candidates(magnitude: np.ndarray, count: int,
                     band: tuple[int, int] | None = None) -> RidgeCandidates:
    """The ``count`` largest local maxima of log |S| per frame within bins ``band`` (inclusive)."""
    magnitude = np.asarray(magnitude, dtype=np.float64)
    if magnitude.ndim != 2:
        raise ValueError(f"magnitude must be (M, N), got shape {magnitude.shape}")
    n_bins, n_frames = magnitude.shape
    lo, hi = (0, n_bins - 1) if band is None else band
    if not 0 <= lo <= hi < n_bins:
        raise ValueError(f"band {band} lies outside bins 0…{n_bins - 1}")
    log_mag = np.log(magnitude + 1e-9 * max(float(magnitude.max()), 1e-300))
    padded = np.pad(log_mag, ((1, 1), (0, 0)), constant_values=-np.inf)
    peak = (padded[1:-1] >= padded[:-2]) & (padded[1:-1] > padded[2:])
    rows = np.arange(n_bins)[:, None]
    peak &= (rows >= lo) & (rows <= hi)
    ranked = np.where(peak, log_mag, -np.inf)
    order = np.argsort(-ranked, axis=0, kind="stable")[:count]  # (C, N)
    frames = np.arange(n_frames)
    scores = ranked[order, frames]
    a = padded[order, frames]
    b = padded[order + 1, frames]
    c = padded[order + 2, frames]
    den = a - 2 * b + c
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = np.where(np.isfinite(a) & np.isfinite(c) & (den < 0), 0.5 * (a - c) / den, 0.0)
    freqs = order + np.clip(np.nan_to_num(delta), -0.5, 0.5)
    return RidgeCandidates(freqs.T.copy(), scores.T.copy(), order.T.copy())


def _best_path(freqs: np.ndarray, scores: np.ndarray, smoothness: float,
               slope_penalty: float) -> np.ndarray:
    """Candidate indices (N,) of the best path (module docstring); −inf scores are never used
    unless a frame has no finite candidate."""
    n_frames, count = scores.shape
    scores = np.where(np.isfinite(scores), scores, -1e12)
    if n_frames == 1:
        return np.array([int(np.argmax(scores[0]))])
    # acc[i, j]: best total with candidate i at frame n and j at frame n−1
    v = freqs[1][:, None] - freqs[0][None, :]
    acc = scores[1][:, None] + scores[0][None, :] - smoothness * v * v
    back = np.zeros((n_frames, count, count), dtype=np.int64)
    for n in range(2, n_frames):
        v_new = freqs[n][:, None] - freqs[n - 1][None, :]  # (i, j)
        v_old = freqs[n - 1][:, None] - freqs[n - 2][None, :]  # (j, h)
        total = acc[None, :, :] - slope_penalty * (v_new[:, :, None] - v_old[None, :, :]) ** 2
        back[n] = np.argmax(total, axis=2)
        best = np.take_along_axis(total, back[n][:, :, None], axis=2)[:, :, 0]
        acc = best + scores[n][:, None] - smoothness * v_new * v_new
    path = np.empty(n_frames, dtype=np.int64)
    i, j = np.unravel_index(int(np.argmax(acc)), acc.shape)
    path[-1], path[-2] = i, j
    for n in range(n_frames - 1, 1, -1):
        h = back[n, path[n], path[n - 1]]
        path[n - 2] = h
    return path


def track_ridges(magnitude: np.ndarray, count: int, *, smoothness: float = 0.05,
                 slope_penalty: float = 50.0, reuse_penalty: float = 2.0,
                 candidates: int | None = None, band: tuple[int, int] | None = None,
                 contact: float = 1.5, span: int = 8) -> np.ndarray:
    """``count`` ridges (K, N) in fractional bins through the magnitude map (M, N), strongest
    first; a ridge keeps its slope through crossings (module docstring).

    ``smoothness`` λ and ``slope_penalty`` μ are in log-magnitude units per squared bin (per
    frame); ``reuse_penalty`` is charged per frame for a peak an earlier ridge took;
    ``contact`` (bins) and ``span`` (frames) define the crossings resolved by
    :func:`relink_crossings`.
    """
    if count < 1:
        raise ValueError(f"the number of ridges must be ≥ 1, got {count}")
    for name, value in (("smoothness", smoothness), ("slope_penalty", slope_penalty),
                        ("reuse_penalty", reuse_penalty)):
        if not value >= 0:
            raise ValueError(f"{name} must be ≥ 0, got {value}")
    found = ridge_candidates(magnitude, candidates or max(2 * count + 2, 6), band)
    scores = found.scores.copy()
    frames = np.arange(scores.shape[0])
    ridges = np.empty((count, scores.shape[0]))
    for k in range(count):
        path = _best_path(found.freqs, scores, smoothness, slope_penalty)
        ridges[k] = found.freqs[frames, path]
        scores[frames, path] -= reuse_penalty
    return relink_crossings(ridges, contact=contact, span=span)


def _slope(values: np.ndarray) -> float:
    frames = np.arange(len(values), dtype=np.float64)
    return float(np.polyfit(frames, values, 1)[0])


def _contacts(a: np.ndarray, b: np.ndarray, contact: float) -> list[tuple[int, int]]:
    """Maximal intervals [start, stop) of frames where |a − b| ≤ contact."""
    close = np.abs(a - b) <= contact
    edges = np.flatnonzero(np.diff(np.concatenate(([0], close.astype(np.int8), [0]))))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def relink_crossings(ridges: np.ndarray, *, contact: float = 1.5, span: int = 8) -> np.ndarray:
    """Exchange the tails of two ridges after a contact when that keeps each one's slope
    (module docstring). ``ridges`` (K, N) in bins; returns a new array."""
    ridges = np.array(ridges, dtype=np.float64)
    n_frames = ridges.shape[1]
    changed = True
    passes = 0
    # an exchange can create or remove contacts with a third ridge: rescan, a bounded number of times
    while changed and passes < 10 * len(ridges) ** 2:
        changed = False
        passes += 1
        for i in range(len(ridges)):
            for j in range(i + 1, len(ridges)):
                for start, stop in _contacts(ridges[i], ridges[j], contact):
                    if start < 2 or stop > n_frames - 2:
                        continue  # no slope to compare on one side
                    before = slice(max(0, start - span), start)
                    after = slice(stop, min(n_frames, stop + span))
                    si, sj = _slope(ridges[i, before]), _slope(ridges[j, before])
                    ti, tj = _slope(ridges[i, after]), _slope(ridges[j, after])
                    if abs(si - tj) + abs(sj - ti) < abs(si - ti) + abs(sj - tj):
                        middle = (start + stop) // 2
                        tail = ridges[i, middle:].copy()
                        ridges[i, middle:] = ridges[j, middle:]
                        ridges[j, middle:] = tail
                        changed = True
                        break
                if changed:
                    break
            if changed:
                break
    return ridges


def ridges_hz(magnitude: np.ndarray, freqs: np.ndarray, count: int, *,
              fmin: float | None = None, fmax: float | None = None, **options) -> np.ndarray:
    """:func:`track_ridges` on a map whose bins are at ``freqs`` (Hz, uniform), searched between
    ``fmin`` and ``fmax`` Hz; returns (K, N) frequencies in Hz."""
    df = float(freqs[1] - freqs[0])
    lo = 0 if fmin is None else max(0, int(np.floor(fmin / df)))
    hi = len(freqs) - 1 if fmax is None else min(len(freqs) - 1, int(np.ceil(fmax / df)))
    return track_ridges(magnitude, count, band=(lo, hi), **options) * df + float(freqs[0])
