"""One window length for a whole data set, learned for frequency estimation (Sec. VII-A).

For signals x_j with true instantaneous frequency ȳ_j(t), the frequency estimate of frame n is the
magnitude-weighted mean frequency of the spectrogram (Eq. 34)

    ŷ_j[n] = Σ_m |S_j[m, n; θ]| · m·Δf  /  Σ_l |S_j[l, n; θ]|

and θ minimises the mean squared error over the data set (Eq. 33)

    L(θ) = (1/J) Σ_j (1/N_j) Σ_n (ŷ_j[n] − ȳ_j(tₙ))²            (Hz²)

(the squared norm of Eq. 33 is averaged over frames so signals of different lengths weigh the
same). θ is fitted by Adam through the DSTFT's θ-gradient; :func:`loss_curve` evaluates the same
loss on a grid of θ (Fig. 7, top), against which the fit can be checked.

Under torchrun (a torch.distributed process group) every process computes the share of L(θ) of
its shard of the signals (every world-th) and θ is trained in DistributedDataParallel; see
:func:`fit_window_length`.

Pure torch/numpy: no file I/O, click or plotting.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..core import dstft, frame_count, optimise
from .distributed import data_parallel, process_group, sum_over_processes

__all__ = ["FitConfig", "FitResult", "FrequencyExample", "frequency_estimate", "DatasetLoss",
           "fit_window_length", "loss_curve"]


@dataclass(frozen=True)
class FitConfig:
    n_fft: int = 512
    hop_length: int | None = None  # default n_fft // 4
    window: str = "hann"
    init_length: float | None = None  # default n_fft / 4
    min_length: float | None = None  # default n_fft / 64
    iters: int = 150
    lr: float | None = None  # Adam step in samples, default n_fft / 32, decayed to 1 % at the end
    tol: float = 1e-3  # stop when θ moved less than tol samples over the last `patience` steps
    patience: int = 10
    grid_points: int = 64
    margin: float | None = None  # samples left out at either end, default n_fft / 2

    def __post_init__(self):
        if self.n_fft < 4 or self.n_fft % 2:
            raise ValueError(f"n_fft must be an even integer ≥ 4, got {self.n_fft}")
        if self.hop_length is not None and self.hop_length < 1:
            raise ValueError(f"hop_length must be ≥ 1, got {self.hop_length}")
        lo = self.lower_length
        if not 0 < lo < self.n_fft:
            raise ValueError(f"min_length must lie in (0, n_fft={self.n_fft}), got {lo}")
        if not lo <= self.start_length <= self.n_fft:
            raise ValueError(
                f"init_length must lie in [min_length={lo}, n_fft={self.n_fft}], got {self.start_length}"
            )
        if self.iters < 0 or self.grid_points < 2 or self.patience < 1:
            raise ValueError("iters must be ≥ 0, grid_points ≥ 2 and patience ≥ 1")

    @property
    def hop(self) -> int:
        return self.hop_length if self.hop_length is not None else max(1, self.n_fft // 4)

    @property
    def lower_length(self) -> float:
        return float(self.min_length) if self.min_length is not None else self.n_fft / 64

    @property
    def start_length(self) -> float:
        return float(self.init_length) if self.init_length is not None else self.n_fft / 4

    @property
    def step(self) -> float:
        return float(self.lr) if self.lr is not None else self.n_fft / 32

    @property
    def edge(self) -> float:
        return float(self.margin) if self.margin is not None else self.n_fft / 2


@dataclass(frozen=True)
class FrequencyExample:
    """One training signal: samples, sample rate, truth (time in s, frequency in Hz)."""

    signal: np.ndarray
    sample_rate: float
    truth_times: np.ndarray
    truth_freq: np.ndarray
    name: str = ""


@dataclass
class FitResult:
    window_length: float
    loss: float
    loss_initial: float
    loss_history: list[float]
    theta_history: list[float]
    iterations: int
    converged: bool
    grid_lengths: np.ndarray = field(default_factory=lambda: np.empty(0))
    grid_losses: np.ndarray = field(default_factory=lambda: np.empty(0))
    elapsed_s: float = 0.0

    @property
    def grid_optimum(self) -> float:
        return float(self.grid_lengths[int(np.nanargmin(self.grid_losses))])


def frequency_estimate(magnitude: torch.Tensor, sample_rate: float, n_fft: int) -> torch.Tensor:
    """Eq. (34): per-frame magnitude-weighted mean frequency (Hz), ``(..., M, N)`` → ``(..., N)``."""
    m = torch.arange(magnitude.shape[-2], dtype=magnitude.dtype, device=magnitude.device)
    df = sample_rate / n_fft
    total = magnitude.sum(-2)
    # a silent frame (total 0) estimates 0 Hz with finite gradients instead of 0/0
    safe = torch.where(total > 0, total, torch.ones_like(total))
    return (magnitude * (m * df)[:, None]).sum(-2) / safe


def check_example(example: FrequencyExample, config: FitConfig) -> None:
    """Raise ValueError (naming the signal) if ``example`` cannot enter the loss of ``config``."""
    name = example.name or "signal"
    if example.signal.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D signal, got {example.signal.shape}")
    if example.signal.shape[0] < config.n_fft:
        raise ValueError(
            f"{name}: {example.signal.shape[0]} samples is shorter than n_fft={config.n_fft}"
        )


class DatasetLoss:
    """L(θ) of Eq. (33) over a list of examples; signals of equal length and rate are batched."""

    def __init__(self, examples: Sequence[FrequencyExample], config: FitConfig, *,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64):
        if not examples:
            raise ValueError("no training signals")
        self.config = config
        self.device, self.dtype = torch.device(device), dtype
        groups: dict[tuple[int, float], list[FrequencyExample]] = {}
        for ex in examples:
            check_example(ex, config)
            groups.setdefault((ex.signal.shape[0], float(ex.sample_rate)), []).append(ex)
        self.batches = []
        hop = config.hop
        for (length, sr), exs in groups.items():
            n_frames = frame_count(length, hop)
            centres = np.arange(n_frames) * hop
            keep = (centres >= config.edge) & (centres <= length - 1 - config.edge)
            if not keep.any():  # very short signals: keep every frame
                keep[:] = True
            times = centres / sr
            targets = np.stack([np.interp(times, ex.truth_times, ex.truth_freq) for ex in exs])
            x = torch.as_tensor(np.stack([ex.signal for ex in exs]), dtype=dtype, device=self.device)
            y = torch.as_tensor(targets[:, keep], dtype=dtype, device=self.device)
            k = torch.as_tensor(np.flatnonzero(keep), device=self.device)
            self.batches.append((x, y, k, sr, len(exs)))
        self.n_signals = len(examples)

    def total(self, theta) -> torch.Tensor:
        """Σ_j (1/N_j) Σ_n (ŷ_j[n] − ȳ_j(tₙ))²: the loss before the mean over signals."""
        cfg = self.config
        total = None
        for x, y, keep, sr, _count in self.batches:
            mag = dstft(x, n_fft=cfg.n_fft, window_length=theta, hop_length=cfg.hop, window=cfg.window).abs()
            est = frequency_estimate(mag, sr, cfg.n_fft)[..., keep]
            part = ((est - y) ** 2).mean(-1).sum()
            total = part if total is None else total + part
        return total

    def __call__(self, theta) -> torch.Tensor:
        return self.total(theta) / self.n_signals


class _LossShare(nn.Module):
    """θ and this process's share of L(θ): Σ over its shard of the signals / J (all J signals).

    What DistributedDataParallel wraps for fit-window: ``forward()`` returns (world · share,
    share). DDP averages the gradient of the first over the processes, which is the gradient of
    L; the second, summed over the processes, is L itself. A process without a signal (more
    processes than signals) contributes θ · 0, which keeps θ in its graph: every process must
    produce θ's gradient for DDP's all-reduce.
    """

    def __init__(self, shard: Sequence[FrequencyExample], n_signals: int, config: FitConfig,
                 world: int, device: torch.device | str):
        super().__init__()
        self.loss = DatasetLoss(shard, config, device=device) if shard else None
        self.n_signals, self.world = n_signals, world
        self.theta = nn.Parameter(torch.tensor(config.start_length, dtype=torch.float64,
                                               device=torch.device(device)))

    def share(self, theta) -> torch.Tensor:
        if self.loss is None:
            return torch.as_tensor(theta, dtype=self.theta.dtype, device=self.theta.device) * 0.0
        return self.loss.total(theta) / self.n_signals

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        part = self.share(self.theta)
        return part * self.world, part


class _ValueOf(torch.autograd.Function):
    """``total``'s value with ``share``'s gradient path: the optimiser sees the whole data set's
    loss, the same number on every process (so every process takes the same decisions: stopping,
    best θ, non-finite steps), and backpropagates through this process's share."""

    @staticmethod
    def forward(ctx, share: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
        return total.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


@torch.no_grad()
def loss_curve(loss: DatasetLoss, lengths: Sequence[float]) -> np.ndarray:
    """L(θ) at each θ of ``lengths`` (no gradients)."""
    return np.array([float(loss(float(t))) for t in lengths])


@torch.no_grad()
def _shared_loss_curve(module: _LossShare, lengths: Sequence[float]) -> np.ndarray:
    """:func:`loss_curve` from the processes' shares (in one process: the same numbers)."""
    shares = torch.stack([module.share(float(t)) for t in lengths]) if len(lengths) else \
        torch.empty(0, dtype=torch.float64)
    return sum_over_processes(shares).cpu().numpy()


def fit_window_length(
    examples: Sequence[FrequencyExample], config: FitConfig, *, device: torch.device | str = "cpu",
    grid: bool = True, callback: Callable[[int, float, float], None] | None = None,
) -> FitResult:
    """Adam on θ (projected onto [min_length, n_fft]) minimising Eq. (33); optionally the grid curve.

    :func:`~dstft_cli.core.optimise` with the step decaying geometrically from ``lr`` to lr/100
    over ``iters`` (Adam settles into the minimum instead of oscillating around it), stopping when
    θ moved less than ``tol`` samples over ``patience`` steps. Returns the θ with the lowest loss
    seen; a non-finite loss or gradient restores the last finite θ and halves the step.

    Inside a torch.distributed process group (``dstft fit-window`` under torchrun) every process
    checks every signal, computes the loss of its shard (every world-th signal) and θ is trained
    in DistributedDataParallel (:class:`_LossShare`): the averaged gradient is L's, and the loss the
    optimiser sees is L summed from the shares, so every process takes the same steps and holds
    the same θ, up to floating-point summation order. The grid curve is summed the same way.
    """
    t0 = time.perf_counter()
    if not examples:
        raise ValueError("no training signals")
    for ex in examples:  # in every process, so a bad signal stops them all with the same message
        check_example(ex, config)
    world, rank = process_group()
    module = _LossShare(list(examples)[rank::world], len(examples), config, world, device)
    step_module = data_parallel(module)
    lo, hi = config.lower_length, float(config.n_fft)
    theta = module.theta
    thetas: list[float] = []

    def record(it: int, value: float) -> None:
        thetas.append(float(theta.detach()))
        if callback is not None:
            callback(it, value, thetas[-1])

    def project() -> None:
        with torch.no_grad():
            theta.clamp_(lo, hi)

    def loss() -> torch.Tensor:
        scaled, share = step_module()
        if world == 1:
            return share
        return _ValueOf.apply(scaled, sum_over_processes(share).to(share.dtype))

    run = optimise([theta], loss, method="adam", lr=config.step,
                   lr_end=config.step / 100, max_iter=config.iters + 1, patience=config.patience,
                   param_tol=config.tol, project=project, callback=record)
    losses = run.loss_history
    grid_lengths = np.linspace(lo, hi, config.grid_points) if grid else np.empty(0)
    grid_losses = _shared_loss_curve(module, grid_lengths) if grid else np.empty(0)
    return FitResult(
        window_length=float(theta.detach()), loss=run.best_loss,
        loss_initial=losses[0] if losses else math.nan, loss_history=losses, theta_history=thetas,
        iterations=max(len(losses) - 1, 0), converged=run.converged,
        grid_lengths=grid_lengths, grid_losses=grid_losses, elapsed_s=time.perf_counter() - t0,
    )
