"""Instantaneous-frequency tracking on an entropy-optimised DSTFT spectrogram (Sec. VI-C).

1. θ: a single window length minimising the Shannon entropy of |S| (Eq. 26) — a coarse grid
   then a golden-section refinement — and, in ``time`` mode, one θₙ per frame initialised from
   that constant optimum (as the paper recommends) and refined by Adam on the same entropy.
2. Ridge: the Viterbi / dynamic-programming path m(n) through the band of interest maximising

       Σₙ score[m(n), n]  −  λ Σₙ (m(n) − m(n−1))²

   (score: log(|S| + ε); λ = ``smoothness`` per squared bin jump, default 0.05/K), refined to a
   fraction of a bin by a parabola through the scores around each peak.
3. ``harmonic`` K: the ridge follows the K-th harmonic; its frequency divided by K estimates the
   fundamental. For K > 1 the score of bin b is the mean log magnitude of the harmonic comb
   b·j/K, j = 1 … K (:func:`harmonic_comb`): the lower harmonics, often stronger, vote for the
   K-th instead of drawing the ridge away from it. ``fmin`` / ``fmax`` bound the *fundamental*
   (the returned quantity): the ridge is searched between K·fmin and K·fmax.

Pure torch/numpy: no file I/O, click or plotting.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ..core import dstft, frame_count, optimise
from ..core.losses import shannon_entropy, total_variation

__all__ = [
    "TrackConfig", "TrackResult", "entropy_constant_theta", "entropy_frame_theta",
    "viterbi_ridge", "harmonic_comb", "refine_peaks", "track_frequency", "frequency_mse", "frame_entropy",
]

ENTROPIES = ("global", "frame")

MODES = ("constant", "time")


@dataclass(frozen=True)
class TrackConfig:
    mode: str = "time"  # "constant" | "time"
    n_fft: int = 1024
    hop_length: int | None = None  # default n_fft // 16
    window: str = "hann"
    harmonic: int = 1
    fmin: float | None = None  # Hz, bounds on the fundamental
    fmax: float | None = None
    # λ, log-magnitude units per squared bin jump of the tracked harmonic; default 0.05 / K (the
    # K-th harmonic moves K bins where the fundamental moves one)
    smoothness: float | None = None
    min_length: float | None = None  # default n_fft / 8
    grid_points: int = 24
    iters: int = 200  # Adam steps of the per-frame refinement
    lr: float | None = None  # default n_fft / 100 samples
    refine: bool = True
    entropy: str = "global"  # "global": Eq. (26) over the whole map; "frame": mean per-frame entropy
    tv_weight: float = 0.0  # λ of λ·TV(θ)/N (Eq. 28 over frames, per window length; core.losses)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.n_fft < 4 or self.n_fft % 2:
            raise ValueError(f"n_fft must be an even integer ≥ 4, got {self.n_fft}")
        if self.hop_length is not None and self.hop_length < 1:
            raise ValueError(f"hop_length must be ≥ 1, got {self.hop_length}")
        if self.harmonic < 1:
            raise ValueError(f"harmonic must be ≥ 1, got {self.harmonic}")
        if self.smoothness is not None and self.smoothness < 0:
            raise ValueError(f"smoothness must be ≥ 0, got {self.smoothness}")
        if self.fmin is not None and self.fmin < 0:
            raise ValueError(f"fmin must be ≥ 0, got {self.fmin}")
        if self.fmin is not None and self.fmax is not None and self.fmax <= self.fmin:
            raise ValueError(f"fmax={self.fmax} must exceed fmin={self.fmin}")
        if self.min_length is not None and not 0 < self.min_length <= self.n_fft:
            raise ValueError(f"min_length must lie in (0, n_fft={self.n_fft}], got {self.min_length}")
        if self.tv_weight < 0:
            raise ValueError(f"tv_weight must be ≥ 0, got {self.tv_weight}")
        if self.entropy not in ENTROPIES:
            raise ValueError(f"entropy must be one of {ENTROPIES}, got {self.entropy!r}")
        if self.iters < 0 or self.grid_points < 3:
            raise ValueError("iters must be ≥ 0 and grid_points ≥ 3")

    @property
    def hop(self) -> int:
        return self.hop_length if self.hop_length is not None else max(1, self.n_fft // 16)

    @property
    def lower_length(self) -> float:
        return self.min_length if self.min_length is not None else self.n_fft / 8

    @property
    def ridge_smoothness(self) -> float:
        return self.smoothness if self.smoothness is not None else 0.05 / self.harmonic

    @property
    def step(self) -> float:
        return self.lr if self.lr is not None else self.n_fft / 100


@dataclass
class TrackResult:
    times: np.ndarray  # (N,) s, frame centres
    frequency: np.ndarray  # (N,) Hz, fundamental estimate (ridge / K)
    ridge_bins: np.ndarray  # (N,) fractional bin of the tracked harmonic
    magnitude: np.ndarray  # (M, N) |S| used for tracking
    freqs: np.ndarray  # (M,) Hz
    window_length: np.ndarray  # () constant or (N,) per frame
    constant_length: float  # the entropy-optimal single θ (the init of ``time`` mode)
    entropy_constant: float
    entropy_final: float
    loss_history: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0


# --------------------------------------------------------------------------------------------
# entropy-optimised window lengths


def frame_entropy(magnitude: torch.Tensor) -> torch.Tensor:
    """Mean over frames of the Shannon entropy of each frame's normalised |S[:, n]|.

    Unlike the global entropy of Eq. (26), a frame cannot lower it by shrinking its share of the
    total |S| (which a longer L¹-normalised window does): each θₙ answers to its own frame only.
    """
    total = magnitude.sum(-2, keepdim=True)
    p = magnitude / torch.where(total > 0, total, torch.ones_like(total))
    h = -(p * torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))).sum(-2)
    return h.mean()


def _entropy(x: torch.Tensor, theta, n_fft: int, hop: int, window: str,
             kind: str = "global") -> torch.Tensor:
    mag = dstft(x, n_fft=n_fft, window_length=theta, hop_length=hop, window=window).abs()
    return shannon_entropy(mag) if kind == "global" else frame_entropy(mag)


def entropy_constant_theta(
    x: torch.Tensor, *, n_fft: int, hop: int, window: str = "hann",
    min_length: float, max_length: float | None = None, grid_points: int = 24, tol: float = 0.05,
    entropy: str = "global",
) -> tuple[float, float]:
    """The single θ minimising the Shannon entropy: a geometric grid, then the core's scalar search.

    The grid finds the basin (the entropy has several local minima in θ); ``optimise(method=
    "scalar")`` then refines it between the grid neighbours of the best point. Returns
    ``(θ*, entropy(θ*))``; ``tol`` is the final bracket width in samples.
    """
    hi = float(max_length if max_length is not None else n_fft)
    lo = float(min_length)
    grid = np.geomspace(lo, hi, grid_points)
    with torch.no_grad():
        values = [float(_entropy(x, float(t), n_fft, hop, window, entropy)) for t in grid]
    k = int(np.argmin(values))
    a, b = float(grid[max(k - 1, 0)]), float(grid[min(k + 1, len(grid) - 1)])
    theta = torch.nn.Parameter(torch.tensor(float(grid[k]), dtype=x.dtype, device=x.device))
    run = optimise([theta], lambda: _entropy(x, theta, n_fft, hop, window, entropy),
                   method="scalar", bounds=(a, b), tol=tol / float(grid[k]), max_iter=40)
    if not run.best_loss <= values[k]:
        return float(grid[k]), values[k]
    return float(theta.detach()), run.best_loss


def entropy_frame_theta(
    x: torch.Tensor, init: float, *, n_fft: int, hop: int, window: str = "hann",
    min_length: float, max_length: float | None = None, iters: int = 200, lr: float = 10.0,
    callback: Callable[[int, float], None] | None = None, entropy: str = "global",
    tv_weight: float = 0.0,
) -> tuple[torch.Tensor, list[float]]:
    """θₙ per frame minimising the Shannon entropy, Adam from the constant optimum ``init``.

    :func:`~dstft_cli.core.optimise` for ``iters`` steps (no early stop), θ projected onto
    [min_length, max_length] after every step. With ``tv_weight`` λ the loss is
    entropy + λ·TV(θ)/N, the total variation of :func:`~dstft_cli.core.losses.total_variation`
    per window length (the regulariser of ``dstft optimize`` too). Returns the θₙ of the lowest
    loss seen and the loss history.
    """
    hi = float(max_length if max_length is not None else n_fft)
    n_frames = frame_count(x.shape[-1], hop)
    theta = torch.nn.Parameter(torch.full((n_frames,), float(init), dtype=x.dtype, device=x.device))

    def loss() -> torch.Tensor:
        value = _entropy(x, theta, n_fft, hop, window, entropy)
        if tv_weight > 0:
            value = value + tv_weight * total_variation(theta) / theta.numel()
        return value

    def project() -> None:
        with torch.no_grad():
            theta.clamp_(min_length, hi)

    run = optimise([theta], loss, method="adam", lr=lr, max_iter=iters + 1, tol=0.0,
                   patience=iters + 1, project=project, callback=callback)
    return theta.detach().clone(), run.loss_history


# --------------------------------------------------------------------------------------------
# ridge


def viterbi_ridge(score: np.ndarray, smoothness: float, band: tuple[int, int] | None = None) -> np.ndarray:
    """Bins m(n) maximising Σ score[m(n), n] − λ Σ (m(n) − m(n−1))² (dynamic programming).

    ``score`` (M, N); ``band`` = (lo, hi) restricts the path to bins lo … hi inclusive.
    Exact: every transition between bins of the band is considered, O(N·B²) for B bins.
    """
    score = np.asarray(score, dtype=np.float64)
    lo, hi = (0, score.shape[0] - 1) if band is None else band
    s = score[lo : hi + 1]
    n_bins, n_frames = s.shape
    m = np.arange(n_bins)
    penalty = smoothness * (m[:, None] - m[None, :]) ** 2  # [to, from]
    acc = s[:, 0].copy()
    back = np.zeros((n_bins, n_frames), dtype=np.int64)
    for n in range(1, n_frames):
        total = acc[None, :] - penalty  # [to, from]
        back[:, n] = np.argmax(total, axis=1)
        acc = total[m, back[:, n]] + s[:, n]
    path = np.empty(n_frames, dtype=np.int64)
    path[-1] = int(np.argmax(acc))
    for n in range(n_frames - 1, 0, -1):
        path[n - 1] = back[path[n], n]
    return path + lo


def harmonic_comb(log_mag: np.ndarray, harmonic: int) -> np.ndarray:
    """Score of "the K-th harmonic is at bin b": mean of log|S| at b·j/K, j = 1 … K.

    Every harmonic below the K-th votes for it (log magnitudes linearly interpolated between
    bins), so a ridge on this score follows the K-th harmonic even where a lower one is stronger,
    and cannot settle on a lower harmonic (whose comb misses the true harmonics). K = 1 gives
    ``log_mag`` itself.
    """
    if harmonic == 1:
        return log_mag
    n_bins = log_mag.shape[0]
    b = np.arange(n_bins, dtype=np.float64)
    score = np.zeros_like(log_mag)
    for j in range(1, harmonic + 1):
        pos = b * j / harmonic
        low = np.floor(pos).astype(np.int64)
        frac = (pos - low)[:, None]
        high = np.minimum(low + 1, n_bins - 1)
        score += (1 - frac) * log_mag[low] + frac * log_mag[high]
    return score / harmonic


def refine_peaks(log_mag: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """Fractional bins: vertex of the parabola through the log magnitude at m−1, m, m+1."""
    n = np.arange(log_mag.shape[1])
    m = np.clip(bins, 1, log_mag.shape[0] - 2)
    a, b, c = log_mag[m - 1, n], log_mag[m, n], log_mag[m + 1, n]
    den = a - 2 * b + c
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = np.where(den < 0, 0.5 * (a - c) / den, 0.0)
    delta = np.clip(np.nan_to_num(delta), -0.5, 0.5)
    out = bins.astype(np.float64)
    inner = (bins >= 1) & (bins <= log_mag.shape[0] - 2)
    out[inner] = m[inner] + delta[inner]
    return out


# --------------------------------------------------------------------------------------------
# the whole task


def track_frequency(
    signal: np.ndarray | torch.Tensor, sample_rate: float, config: TrackConfig, *,
    device: torch.device | str = "cpu", callback: Callable[[int, float], None] | None = None,
) -> TrackResult:
    """Entropy-optimised spectrogram (constant or per-frame θ), then the ridge of harmonic K."""
    t0 = time.perf_counter()
    x = torch.as_tensor(np.asarray(signal, dtype=np.float64), device=device)
    if x.dim() != 1:
        raise ValueError(f"track_frequency needs a 1-D signal, got shape {tuple(x.shape)}")
    if x.shape[0] < config.n_fft:
        raise ValueError(f"signal of {x.shape[0]} samples is shorter than n_fft={config.n_fft}")
    if not torch.isfinite(x).all():
        raise ValueError("signal contains non-finite samples")
    if not bool((x != 0).any()):
        raise ValueError("signal is all zeros: there is no frequency to track")
    n_fft, hop, window = config.n_fft, config.hop, config.window
    nyquist = sample_rate / 2
    K = config.harmonic
    fmin = 0.0 if config.fmin is None else config.fmin
    fmax = nyquist / K if config.fmax is None else config.fmax
    if K * fmin >= nyquist:
        raise ValueError(f"harmonic {K} × fmin {fmin} Hz is above the Nyquist frequency {nyquist} Hz")
    theta_c, h_c = entropy_constant_theta(
        x, n_fft=n_fft, hop=hop, window=window, min_length=config.lower_length,
        grid_points=config.grid_points, entropy=config.entropy,
    )
    history = [h_c]
    theta: torch.Tensor | float = theta_c
    if config.mode == "time":
        theta, history = entropy_frame_theta(
            x, theta_c, n_fft=n_fft, hop=hop, window=window, min_length=config.lower_length,
            iters=config.iters, lr=config.step, callback=callback, entropy=config.entropy,
            tv_weight=config.tv_weight,
        )
    with torch.no_grad():
        mag = dstft(x, n_fft=n_fft, window_length=theta, hop_length=hop, window=window).abs()
        h_final = float(shannon_entropy(mag) if config.entropy == "global" else frame_entropy(mag))
    mag_np = mag.cpu().numpy()
    df = sample_rate / n_fft
    lo = max(0, int(math.floor(K * fmin / df)))
    hi = min(mag_np.shape[0] - 1, int(math.ceil(min(K * fmax, nyquist) / df)))
    if hi <= lo:
        raise ValueError(f"the band {K}×[{fmin}, {fmax}] Hz holds no frequency bin (Δf = {df:.3g} Hz)")
    eps = 1e-6 * float(mag_np.max())
    log_mag = np.log(mag_np + eps)
    bins = viterbi_ridge(harmonic_comb(log_mag, K), config.ridge_smoothness, band=(lo, hi))
    fbins = refine_peaks(harmonic_comb(log_mag, K), bins) if config.refine else bins.astype(np.float64)
    n_frames = mag_np.shape[1]
    theta_np = (theta.detach().cpu().numpy() if isinstance(theta, torch.Tensor)
                else np.asarray(theta, dtype=np.float64))
    return TrackResult(
        times=np.arange(n_frames) * hop / sample_rate,
        frequency=fbins * df / K,
        ridge_bins=fbins,
        magnitude=mag_np,
        freqs=np.arange(mag_np.shape[0]) * df,
        window_length=theta_np,
        constant_length=theta_c,
        entropy_constant=h_c,
        entropy_final=h_final,
        loss_history=list(history),
        elapsed_s=time.perf_counter() - t0,
    )


def frequency_mse(
    times: np.ndarray, estimate: np.ndarray, truth_times: np.ndarray, truth: np.ndarray,
    *, margin_s: float = 0.0,
) -> float:
    """Mean squared error (Hz²) of ``estimate`` against ``truth`` interpolated at ``times``.

    Frames closer than ``margin_s`` to either end of the truth's time span are left out (the
    spectrogram there sees zero padding).
    """
    truth_times = np.asarray(truth_times, dtype=np.float64)
    keep = (times >= truth_times[0] + margin_s) & (times <= truth_times[-1] - margin_s)
    if not keep.any():
        raise ValueError("no frame falls inside the time span of the ground truth")
    ref = np.interp(times[keep], truth_times, np.asarray(truth, dtype=np.float64))
    return float(np.mean((estimate[keep] - ref) ** 2))
