"""Representation-driven optimisation recipes (paper Sec. VI): tensors in, a result object out.

Each recipe takes a signal tensor ``x`` shaped ``(Ls,)`` or ``(channels, Ls)`` (channels share
the parameters; the losses average over them) and a frozen :class:`~dstft_cli.config.Config`,
and returns a :class:`RecipeResult`. No file I/O, printing or click here: the CLI reads the
input, calls :func:`run` and writes the result files.

========  ===================================  ==========================================
mode      parameters                           minimised objective
========  ===================================  ==========================================
constant  one θ                                E(|S|)  (Eq. 26)
time      θₙ per frame                         E(|S|) + λ·R(θ)  (Sec. VI-C; λ = 0 default)
freq      θₘ per bin                           E(|S|) + λ·R(θ)
tf        θₘ,ₙ per bin and frame               E(|S|) + λ·R(θ)  (Eqs. 27-28)
hop       tₙ and θₙ per frame                  −K(|S|) + λ·(1 − C)  (Eqs. 29-32)
========  ===================================  ==========================================

E is the loss named by ``config.loss`` (Shannon, Rényi, or −kurtosis), R the total variation of
Eq. (28) divided by the number of window lengths (so that λ does not depend on the grid size) and
C the coverage of Eq. (32). ``time``, ``freq`` and ``tf`` start from the constant
optimum (``init = "constant"``), as the paper recommends for ``tf``. Non-finite losses or
gradients are stepped back by the core optimiser and recorded in :attr:`RecipeResult.events`.
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from .config import RECIPES, Config, parse_loss
from .core import dstft, losses
from .core.layer import DSTFT
from .core.optimiser import optimise

Tensor = torch.Tensor

__all__ = [
    "RecipeResult", "RecipeError", "ScanResult", "RECIPE_MODES", "run", "scan", "spectrogram",
    "objective_value", "loss_value", "LENGTH_MODE",
]

#: DSTFT ``length_mode`` / ``position_mode`` of every recipe.
LENGTH_MODE = {"constant": "constant", "time": "frame", "freq": "bin", "tf": "tf", "hop": "frame"}
POSITION_MODE = {"constant": "fixed", "time": "fixed", "freq": "fixed", "tf": "fixed",
                 "hop": "frame"}
RECIPE_MODES = tuple(LENGTH_MODE)

#: ``progress(stage, iteration, loss, theta_summary)`` after every iteration.
Progress = Callable[[str, int, float, str], None]


class RecipeError(RuntimeError):
    """The optimisation could not produce a finite result."""


@dataclass
class RecipeResult:
    """What a recipe found, as tensors on the CPU (``window_length`` in float64)."""

    mode: str
    loss: str
    #: θ as the transform uses it: scalar (constant), (N,) (time, hop), (M, 1) (freq), (M, N) (tf)
    window_length: Tensor
    #: tₙ in samples, (N,): int64 on a fixed integer grid, float64 when learned (hop)
    frame_positions: Tensor
    #: |S| (..., M, N) for exactly these parameters, computed in float64
    magnitude: Tensor
    loss_history: list[float]
    loss_initial: float
    loss_final: float
    iterations: int
    converged: bool
    events: list[dict] = field(default_factory=list)
    elapsed_s: float = 0.0
    n_fft: int = 0
    window: str = "hann"
    #: (stage name, index in ``loss_history`` of the stage's first value); index 0 is the start
    stages: list[tuple[str, int]] = field(default_factory=list)

    @property
    def window_length_grid(self) -> Tensor:
        """θ as a 2-D array broadcastable to (M, N): (1, 1), (1, N), (M, 1) or (M, N)."""
        theta = self.window_length
        if theta.dim() == 0:
            return theta.reshape(1, 1)
        if theta.dim() == 1:
            return theta.reshape(1, -1)
        return theta

    def window_length_summary(self) -> float | dict[str, float]:
        """A number for constant θ, else ``{"min", "median", "max"}``."""
        theta = self.window_length
        if theta.numel() == 1:
            return float(theta.reshape(()))
        return {"min": float(theta.min()), "median": float(theta.median()),
                "max": float(theta.max())}


@dataclass
class ScanResult:
    """Loss against constant θ (Fig. 2)."""

    lengths: list[float]
    losses: list[float]

    @property
    def best_length(self) -> float:
        finite = [(v, t) for t, v in zip(self.lengths, self.losses, strict=True)
                  if math.isfinite(v)]
        return min(finite)[1] if finite else math.nan

    @property
    def best_loss(self) -> float:
        finite = [v for v in self.losses if math.isfinite(v)]
        return min(finite) if finite else math.nan


# --------------------------------------------------------------------------------------------
# building blocks


def _dtype(config: Config) -> torch.dtype:
    return torch.float64 if config.dtype == "float64" else torch.float32


def _base_loss(spectrum: Tensor, loss: str) -> Tensor:
    """The criterion on S (complex) or |S|; Shannon takes S itself (blockwise, lighter)."""
    name, alpha = parse_loss(loss)
    if name == "shannon":
        return losses.shannon_entropy(spectrum)
    magnitude = spectrum.abs() if spectrum.is_complex() else spectrum
    if name == "renyi":
        return losses.renyi_entropy(magnitude, alpha)
    return -losses.kurtosis(magnitude)


def _objective(layer: DSTFT, x: Tensor, config: Config) -> Callable[[], Tensor]:
    signal_length = x.shape[-1]

    def closure() -> Tensor:
        loss = _base_loss(layer(x), config.loss)
        if config.tv_weight > 0 and layer.length_mode != "constant":
            # Eq. (28) averaged over the window lengths, so that λ does not depend on the size
            # of the grid (the paper's λ = 1e-3 then gives its Fig. 3 behaviour).
            theta = layer.window_length
            loss = loss + config.tv_weight * losses.total_variation(theta) / theta.numel()
        if config.coverage_weight > 0:
            cover = losses.coverage(layer.frame_positions,
                                    layer.frame_window_lengths().to(torch.float64),
                                    signal_length)
            loss = loss + config.coverage_weight * (1.0 - cover).to(loss.dtype)
        return loss

    return closure


def objective_value(x: Tensor, config: Config, *, window_length, frame_positions=None) -> float:
    """The recipe's objective (without the penalties) for given parameters, no gradient."""
    with torch.no_grad():
        mag = dstft(x, n_fft=config.n_fft, window_length=window_length,
                    frame_positions=frame_positions, hop_length=config.hop,
                    window=config.window).abs()
        return float(_base_loss(mag, config.loss))


def loss_value(spectrum: Tensor, loss: str) -> float:
    """The criterion ``loss`` (``"shannon"``, ``"renyi:3"``, …) of S or |S|, without penalties."""
    with torch.no_grad():
        return float(_base_loss(spectrum, loss))


def _layer(x: Tensor, config: Config, mode: str, init) -> DSTFT:
    return DSTFT(
        n_fft=config.n_fft, hop_length=config.hop, signal_length=x.shape[-1],
        window=config.window, length_mode=LENGTH_MODE[mode], position_mode=POSITION_MODE[mode],
        init_length=init, min_length=config.min_length, max_length=config.max_length,
        dtype=x.dtype, device=x.device,
    )


def _theta_summary(layer: DSTFT) -> str:
    with torch.no_grad():
        theta = layer.window_length
        if theta.numel() == 1:
            return f"θ={float(theta.reshape(())):.1f}"
        return f"θ∈[{float(theta.min()):.0f},{float(theta.max()):.0f}]"


def _run_stage(layer: DSTFT, x: Tensor, config: Config, stage: str,
               progress: Progress | None):
    closure = _objective(layer, x, config)
    callback = None
    if progress is not None:
        def callback(iteration: int, value: float) -> None:
            progress(stage, iteration, value, _theta_summary(layer))
    max_length = config.n_fft if config.max_length is None else config.max_length
    result = optimise(
        layer.parameters(), closure, method=config.optimizer, lr=config.lr,
        max_iter=config.iters, tol=config.tol, patience=config.patience,
        project=layer.project_, bounds=(config.min_length, max_length), callback=callback,
    )
    for event in result.events:
        event.setdefault("stage", stage)
    return result, closure


def start_candidates(config: Config) -> list[float]:
    """θ values tried before the constant optimisation (``init_scan`` > 0).

    ``init_scan`` log-spaced lengths over [min_length, max_length], plus the lengths n_fft / k:
    there the nulls of the window's spectrum fall exactly on DFT bins, and the entropy of Eq. (26)
    has narrow dips (cusps a few samples wide) that a gradient method cannot see from a distance
    but a grid search over integer θ finds.
    """
    max_length = float(config.n_fft if config.max_length is None else config.max_length)
    lo, n = float(config.min_length), config.init_scan
    if n <= 1 or lo == max_length:
        grid = [max_length]
    else:
        ratio = max_length / lo
        grid = [lo * ratio ** (i / (n - 1)) for i in range(n - 1)] + [max_length]
    k = 1
    while config.n_fft / k >= lo:
        if config.n_fft / k <= max_length:
            grid.append(config.n_fft / k)
        k += 1
        if k > 16:
            break
    return sorted(set(grid))


def _scan_start(x: Tensor, config: Config) -> float:
    """Best θ among :func:`start_candidates`."""
    return scan(x, config, start_candidates(config)).best_length


def _constant_stage(x: Tensor, config: Config, progress: Progress | None):
    """Optimise one θ; returns (layer, optimise result, closure)."""
    if config.init_length is not None:
        start = config.init_length
    elif config.init_scan > 0:
        start = _scan_start(x, config)
        if not math.isfinite(start):
            start = config.n_fft / 2
    else:
        start = config.n_fft / 2
    layer = _layer(x, config, "constant", float(start))
    result, closure = _run_stage(layer, x, config, "constant", progress)
    return layer, result, closure


# Frames per block of the final float64 spectrogram: each frame is independent in Eq. (6), so
# the transform runs block by block and only |S| is kept whole (a 10-minute 44.1 kHz recording
# would otherwise hold its float64 frames and complex S at once, several GiB).
_FINAL_BLOCK_FRAMES = 8192


def final_magnitude(x: Tensor, config: Config, theta: Tensor, positions: Tensor) -> Tensor:
    """|S| (M, N) on the CPU for the optimised parameters, computed in blocks of frames."""
    n_frames, n_bins = positions.shape[0], config.n_fft // 2 + 1
    out = torch.empty(*x.shape[:-1], n_bins, n_frames, dtype=x.dtype)
    theta = theta.to(x.device)
    positions = positions.to(x.device)
    for n0 in range(0, n_frames, _FINAL_BLOCK_FRAMES):
        n1 = min(n0 + _FINAL_BLOCK_FRAMES, n_frames)
        if theta.dim() == 1:
            block_theta = theta[n0:n1]
        elif theta.dim() == 2 and theta.shape[1] == n_frames and n_frames > 1:
            block_theta = theta[:, n0:n1]
        else:
            block_theta = theta
        out[..., n0:n1] = dstft(x, n_fft=config.n_fft, window_length=block_theta,
                                frame_positions=positions[n0:n1], window=config.window).abs().cpu()
    return out


def _finish(layer: DSTFT, x_exact: Tensor, config: Config, closure, history, initial,
            iterations, converged, events, started, stages) -> RecipeResult:
    with torch.no_grad():
        final = float(closure())
        theta = layer.window_length.detach().to("cpu", torch.float64).clone()
        positions = layer.frame_positions.detach().to("cpu").clone()
        if positions.is_floating_point():
            positions = positions.to(torch.float64)
        magnitude = final_magnitude(x_exact, config, theta, positions)
    problems = [name for name, t in (("window length", theta), ("frame positions", positions),
                                     ("spectrogram", magnitude))
                if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if problems or not math.isfinite(final):
        what = ", ".join(problems) if problems else "loss"
        raise RecipeError(f"the optimisation ended with a non-finite {what}")
    if not math.isfinite(initial):
        initial = history[0] if history else final
    return RecipeResult(
        mode=config.mode, loss=config.loss, window_length=theta, frame_positions=positions,
        magnitude=magnitude, loss_history=[initial, *history], loss_initial=initial,
        loss_final=final, iterations=iterations, converged=converged, events=events,
        elapsed_s=_time.perf_counter() - started, n_fft=config.n_fft, window=config.window,
        stages=stages,
    )


# --------------------------------------------------------------------------------------------
# recipes


def _prepare(x: Tensor, config: Config) -> tuple[Tensor, Tensor]:
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() not in (1, 2):
        raise ValueError(f"x must have shape (Ls,) or (channels, Ls), got {tuple(x.shape)}")
    if x.shape[-1] < 2:
        raise ValueError(f"the signal has {x.shape[-1]} samples; at least 2 are needed")
    exact = x if x.dtype == torch.float64 else x.to(torch.float32)
    return x.to(_dtype(config)), exact


def run(x: Tensor, config: Config, *, progress: Progress | None = None) -> RecipeResult:
    """Run the recipe ``config.mode`` on ``x`` ((Ls,) or (channels, Ls), any device)."""
    if config.mode not in LENGTH_MODE:
        raise ValueError(f"unknown mode {config.mode!r}; expected one of {RECIPE_MODES}")
    torch.manual_seed(config.seed)
    started = _time.perf_counter()
    x, exact = _prepare(x, config)
    nominal = config.n_fft / 2 if config.init_length is None else config.init_length
    # The loss at the nominal start θ = init_length (default n_fft / 2), before any scan.
    probe = _layer(x, config, config.mode, float(nominal))
    with torch.no_grad():
        initial = float(_objective(probe, x, config)())

    if config.mode == "constant":
        layer, result, closure = _constant_stage(x, config, progress)
        return _finish(layer, exact, config, closure, result.loss_history, initial,
                       result.iterations, result.converged, list(result.events), started,
                       [("constant", 1)])

    history: list[float] = []
    events: list[dict] = []
    stages: list[tuple[str, int]] = []
    iterations = 0
    start = float(nominal)
    if config.init == "constant":
        base = RECIPES["constant"]
        stage_config = replace(
            config, mode="constant", optimizer=base.optimizer, lr=base.lr, iters=base.iters,
            tol=base.tol, patience=base.patience, tv_weight=0.0,
        )
        layer0, result0, _ = _constant_stage(x, stage_config, progress)
        start = float(layer0.window_length.detach())
        stages.append(("constant", 1))
        history += result0.loss_history
        events += result0.events
        iterations += result0.iterations
    layer = _layer(x, config, config.mode, start)
    result, closure = _run_stage(layer, x, config, config.mode, progress)
    stages.append((config.mode, 1 + len(history)))
    history += result.loss_history
    events += result.events
    iterations += result.iterations
    return _finish(layer, exact, config, closure, history, initial, iterations,
                   result.converged, events, started, stages)


def scan(x: Tensor, config: Config, lengths) -> ScanResult:
    """Loss of ``config.loss`` for each constant θ in ``lengths`` (no gradient; Fig. 2)."""
    x, _ = _prepare(x, config)
    values = []
    for theta in lengths:
        value = objective_value(x, config, window_length=float(theta))
        values.append(value if math.isfinite(value) else math.nan)
    return ScanResult(lengths=[float(t) for t in lengths], losses=values)


def spectrogram(x: Tensor, *, n_fft: int, window_length, frame_positions=None,
                hop_length: int | None = None, window: str = "hann") -> Tensor:
    """|S| of Eq. (6) for given parameters (used by ``dstft apply``)."""
    with torch.no_grad():
        return dstft(x, n_fft=n_fft, window_length=window_length, frame_positions=frame_positions,
                     hop_length=hop_length, window=window).abs()
