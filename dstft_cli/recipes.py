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

Lengths given as durations, ``n_fft = "auto"`` and the defaults of ``hop`` and ``min_length`` are
resolved for the input's sample rate (:func:`dstft_cli.config.resolve`). With ``n_fft = "auto"``
the constant stage doubles the DFT size whenever its optimum lies at the upper bound (within
1 %; for the other recipes, which start from it, whenever it lies above n_fft / 2, leaving their
per-frame or per-bin lengths room on both sides) and optimises again; those recipes double it
again while more than 10 % of their lengths end at n_fft. All of this stops at
:func:`dstft_cli.units.auto_n_fft_cap`; :attr:`RecipeResult.n_fft_reason` says why the size used
was chosen.

The signal is divided by a power of two near its peak before optimising (every loss is
invariant to the scale, and float32 then neither overflows at 1e30 nor underflows at 1e-30);
:attr:`RecipeResult.scale` records the divisor and :attr:`RecipeResult.magnitude` is |S| of the
signal as given (exact: scaling by a power of two loses no bits). A signal that is all zeros or
has a single non-zero sample is refused: its spectrogram is the window's own spectrum wherever
it is non-zero, so no window length is better than another for a reason in the signal.

:attr:`RecipeResult.warnings` lists what makes a result doubtful, one line each: θ at a bound
(constant: within 1 %; other recipes: more than 10 % of the values within 1 % of a bound),
windows that leave gaps (less than 99 % of the samples inside a window: the coverage C of Eq. 32
with the ends of the signal counted; e.g. θ < hop), a stage stopped by
``iters`` while the loss still improved by more than ``tol``, and other minima of the start scan
within 1 % of the best loss (listed with their losses in :attr:`RecipeResult.scan_minima`).
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from .config import RECIPES, Config, is_resolved, resolve
from .core import dstft, losses
from .core.layer import DSTFT
from .core.optimiser import optimise
from .units import auto_n_fft_cap, format_length

Tensor = torch.Tensor

__all__ = [
    "RecipeResult", "RecipeError", "ScanResult", "RECIPE_MODES", "run", "scan", "spectrogram",
    "objective_value", "loss_value", "LENGTH_MODE", "BOUND_TOLERANCE", "COVERAGE_TOLERANCE",
    "NEAR_MINIMUM",
]

#: θ within this fraction of a bound counts as "at the bound".
BOUND_TOLERANCE = 0.01
#: Share of per-frame / per-bin θ values at a bound above which a warning is given.
BOUND_SHARE = 0.10
#: Coverage C (Eq. 32) below 1 − this is a warning: the windows leave gaps in the signal.
COVERAGE_TOLERANCE = 0.01
#: Scan minima within this fraction of the best loss are reported as near-equal.
NEAR_MINIMUM = 0.01

#: DSTFT ``length_mode`` / ``position_mode`` of every recipe.
LENGTH_MODE = {"constant": "constant", "time": "frame", "freq": "bin", "tf": "tf", "hop": "frame"}
POSITION_MODE = {"constant": "fixed", "time": "fixed", "freq": "fixed", "tf": "fixed",
                 "hop": "frame"}
RECIPE_MODES = tuple(LENGTH_MODE)

#: ``progress(stage, iteration, loss, theta_summary)`` after every iteration; ``theta_summary``
#: becomes text (θ's range) when formatted with ``str()`` or an f-string.
Progress = Callable[[str, int, float, object], None]


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
    hop: int = 0
    #: Hz, when the recipe was given one (durations and ``n_fft = "auto"`` need it)
    sample_rate: float | None = None
    #: the configuration in samples that produced the result (n_fft as finally used)
    config: Config | None = None
    #: why this n_fft: ``"given"`` or a sentence on the automatic choice
    n_fft_reason: str = "given"
    #: the signal was divided by this before optimising (the magnitude is of the signal as given)
    scale: float = 1.0
    #: what makes the result doubtful, one line each (see the module docstring)
    warnings: list[str] = field(default_factory=list)
    #: local minima of the start scan within NEAR_MINIMUM of the best: {"window_length", "loss"}
    scan_minima: list[dict] = field(default_factory=list)
    #: (stage name, index in ``loss_history`` of the stage's first value); index 0 is the start
    stage_starts: list[tuple[str, int]] = field(default_factory=list)

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
    """The criterion on S (complex) or |S|: :func:`dstft_cli.core.losses.evaluate`."""
    return losses.evaluate(loss, spectrum)


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


class _ThetaSummary:
    """θ's range as text, computed only when formatted: a progress callback that shows nothing
    (no terminal, ``--quiet``) then costs no reduction over θ and no host synchronisation."""

    def __init__(self, layer: DSTFT):
        self.layer = layer

    def __str__(self) -> str:
        with torch.no_grad():
            theta = self.layer.window_length
            if theta.numel() == 1:
                return f"θ={float(theta.reshape(())):.1f}"
            low, high = torch.aminmax(theta)
            return f"θ∈[{float(low):.0f},{float(high):.0f}]"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def _run_stage(layer: DSTFT, x: Tensor, config: Config, stage: str,
               progress: Progress | None):
    closure = _objective(layer, x, config)
    callback = None
    if progress is not None:
        summary = _ThetaSummary(layer)

        def callback(iteration: int, value: float) -> None:
            progress(stage, iteration, value, summary)
    max_length = config.n_fft if config.max_length is None else config.max_length
    result = optimise(
        layer.parameters(), closure, method=config.optimizer, lr=config.lr,
        max_iter=config.iters, tol=config.tol, patience=config.patience,
        project=layer.project_, bounds=(config.min_length, max_length), callback=callback,
        relative=config.lr_unit == "relative" and config.optimizer == "adam",
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


def near_minima(result: ScanResult, fraction: float = NEAR_MINIMUM,
                separation: float = 1.5) -> list[dict]:
    """Local minima of a scan (in θ order) whose loss is within ``fraction`` of the best and
    whose θ differ by at least the factor ``separation`` (distinct basins, not the ripples of
    one), best first; the best is always the first entry."""
    pairs = sorted((t, v) for t, v in zip(result.lengths, result.losses, strict=True)
                   if math.isfinite(v))
    best = result.best_loss
    if not pairs or not math.isfinite(best):
        return []
    candidates = []
    for i, (theta, value) in enumerate(pairs):
        if i == 0 or i + 1 == len(pairs):
            continue  # an end of the scan is a bound, not a basin (the bound warning says so)
        left, right = pairs[i - 1][1], pairs[i + 1][1]
        if value <= left and value <= right and value - best <= fraction * max(abs(best), 1e-12):
            candidates.append({"window_length": theta, "loss": value})
    found: list[dict] = []
    for minimum in sorted(candidates, key=lambda m: m["loss"]):
        if all(max(minimum["window_length"], m["window_length"])
               >= separation * min(minimum["window_length"], m["window_length"]) for m in found):
            found.append(minimum)
    return found


@dataclass
class _Constant:
    """What the constant stage produced."""

    layer: DSTFT
    result: object  # core OptimiseResult
    closure: Callable[[], Tensor]
    config: Config
    minima: list[dict]


def _constant_stage(x: Tensor, config: Config, progress: Progress | None) -> _Constant:
    """Optimise one θ (after the start scan unless init_length is given)."""
    minima: list[dict] = []
    if config.init_length is not None:
        start = config.init_length
    elif config.init_scan > 0:
        scanned = scan(x, config, start_candidates(config), prepared=True)
        start = scanned.best_length
        minima = near_minima(scanned)
        if not math.isfinite(start):
            start = config.n_fft / 2
    else:
        start = config.n_fft / 2
    layer = _layer(x, config, "constant", float(start))
    result, closure = _run_stage(layer, x, config, "constant", progress)
    return _Constant(layer, result, closure, config, minima)


def _grown_constant_stage(x: Tensor, config: Config, plan: _Plan, progress: Progress | None,
                          headroom: float) -> _Constant:
    """The constant stage, doubling n_fft while θ > ``headroom`` × n_fft (``plan.auto`` only)."""
    stage = _constant_stage(x, config, progress)
    while plan.auto:
        theta = float(stage.layer.window_length.detach())
        n_fft = stage.config.n_fft
        if theta < headroom * n_fft:
            break
        if 2 * n_fft > plan.cap:
            plan.reason += (f"; θ = {theta:.1f} is near n_fft = {n_fft}, which is the cap "
                            f"({plan.cap_why})")
            break
        where = "at the bound" if headroom > 0.5 else "above n_fft / 2"
        plan.reason += f"; θ = {theta:.1f} {where} n_fft = {n_fft}: doubled to {2 * n_fft}"
        grown = replace(stage.config, n_fft=2 * n_fft, init_length=None)
        stage = _constant_stage(x, grown, progress)
    return stage


@dataclass
class _Plan:
    """How n_fft is chosen for one run."""

    config: Config  # in samples
    auto: bool
    cap: int
    cap_why: str
    reason: str
    #: why the growth stopped short of the cap, if it did (for the bound warning)
    stopped: str = ""


def _plan(config: Config, sample_rate: float | None, signal_length: int) -> _Plan:
    if is_resolved(config):
        return _Plan(config, False, config.n_fft, "", "given")
    resolved = resolve(config, sample_rate, signal_length=signal_length)
    if config.n_fft != "auto":
        return _Plan(resolved, False, resolved.n_fft, "", "given")
    cap = auto_n_fft_cap(sample_rate, signal_length)
    cap_why = (f"16 × the default, {format_length(cap, sample_rate)}"
               if cap == auto_n_fft_cap(sample_rate, 2**62) else "the signal's length")
    auto = config.max_length is None and config.init_length is None
    reason = (f"auto: {resolved.n_fft}, the largest power of two within 128 ms at "
              f"{sample_rate:g} Hz")
    if resolved.n_fft < resolve(config, sample_rate).n_fft:
        reason = f"auto: {resolved.n_fft}, the largest power of two within the signal"
    return _Plan(resolved, auto, cap, cap_why, reason)


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
            iterations, converged, events, started, *, scale: float = 1.0,
            final: float = math.nan) -> RecipeResult:
    """``final``: the objective at the layer's parameters when the optimiser already evaluated
    it there (its best loss: the best parameters are the ones restored), else computed here."""
    with torch.no_grad():
        if not math.isfinite(final):
            final = float(closure())
        theta = layer.window_length.detach().to("cpu", torch.float64).clone()
        positions = layer.frame_positions.detach().to("cpu").clone()
        if positions.is_floating_point():
            positions = positions.to(torch.float64)
        # x / scale and |S| · scale are exact (scale is a power of two)
        magnitude = final_magnitude(x_exact / scale, config, theta, positions) * scale
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
        hop=config.hop, config=config, scale=scale,
    )


def _prepare(x: Tensor, config: Config) -> tuple[Tensor, Tensor, float]:
    """(signal to optimise on, divided by the scale; the signal as given; the scale)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() not in (1, 2):
        raise ValueError(f"x must have shape (Ls,) or (channels, Ls), got {tuple(x.shape)}")
    if x.shape[-1] < 2:
        raise ValueError(f"the signal has {x.shape[-1]} samples; at least 2 are needed")
    exact = x if x.dtype == torch.float64 else x.to(torch.float32)
    scale = signal_scale(exact)
    return (exact / scale).to(_dtype(config)), exact, scale


def signal_scale(x: Tensor) -> float:
    """The power of two nearest above the peak |x|; ValueError for signals with nothing to
    optimise (non-finite, all zeros, or a single non-zero sample)."""
    peak = float(x.abs().max())
    if not math.isfinite(peak):
        raise ValueError("the signal contains non-finite values")
    if peak == 0.0:
        raise ValueError("the signal is all zeros")
    if int(torch.count_nonzero(x)) < 2:
        raise ValueError("the signal has a single non-zero sample: its spectrogram is the "
                         "window's own spectrum, whatever the window length")
    return math.ldexp(1.0, math.frexp(peak)[1])


def _bound_warnings(theta: Tensor, low: float, high: float, config: Config, plan: _Plan,
                    sample_rate: float | None) -> list[str]:
    near_low = theta <= low * (1 + BOUND_TOLERANCE)
    near_high = theta >= high * (1 - BOUND_TOLERANCE)
    grow = plan.stopped or ("n_fft auto stopped at its cap" if plan.auto else
                            "raise --max-length / --n-fft, or use --n-fft auto")
    out = []
    if theta.numel() == 1:
        value = float(theta.reshape(()))
        if bool(near_high.all()):
            out.append(f"θ = {format_length(value, sample_rate)} is at the upper bound "
                       f"{high:g} (max_length/n_fft): the optimum may lie beyond it ({grow})")
        elif bool(near_low.all()):
            out.append(f"θ = {format_length(value, sample_rate)} is at the lower bound "
                       f"min_length = {low:g}: the optimum may lie below it")
        return out
    for share, which, hint in ((float(near_high.double().mean()), f"upper bound {high:g}", grow),
                               (float(near_low.double().mean()), f"lower bound {low:g}",
                                "lower --min-length")):
        if share > BOUND_SHARE:
            out.append(f"{100 * share:.0f} % of the window lengths are at the {which} "
                       f"({hint})")
    return out


def covered_share(positions: Tensor, lengths: Tensor, signal_length: int) -> float:
    """Share of the samples 0 … Ls − 1 inside some window's support [tₙ − θₙ/2, tₙ + θₙ/2].

    This is the coverage C of Eq. (32) with the two ends of the signal counted as well (Eq. 32
    sums the spans between neighbouring frames only, so it stays below 1 when the last frame
    falls short of the end even if its window reaches it).
    """
    starts = (positions - 0.5 * lengths).clamp(0, signal_length)
    ends = (positions + 0.5 * lengths).clamp(0, signal_length)
    order = torch.argsort(starts)
    covered, reach = 0.0, 0.0
    for start, end in zip(starts[order].tolist(), ends[order].tolist(), strict=True):
        if end > reach:
            covered += end - max(start, reach)
            reach = end
    return covered / signal_length


def _diagnose(result: RecipeResult, layer: DSTFT, signal_length: int, plan: _Plan,
              stage_results: list[tuple[str, object]], minima: list[dict]) -> None:
    config, rate = result.config, result.sample_rate
    high = float(config.n_fft if config.max_length is None else config.max_length)
    result.warnings += _bound_warnings(result.window_length, float(config.min_length), high,
                                       config, plan, rate)
    with torch.no_grad():
        lengths = layer.frame_window_lengths().detach().to("cpu", torch.float64)
        positions = layer.frame_positions.detach().to("cpu", torch.float64)
    cover = covered_share(positions, lengths, signal_length)
    if cover < 1 - COVERAGE_TOLERANCE:
        shortest = float(lengths.min())
        why = (f"θ = {shortest:.1f} < hop {config.hop}" if shortest < config.hop
               else "frames leave gaps")
        result.warnings.append(f"the windows cover {100 * cover:.0f} % of the signal ({why}): "
                               "the spectrogram has gaps")
    for stage, stage_result in stage_results:
        history = stage_result.loss_history
        budget = stage_result.max_iter
        if stage_result.converged or stage_result.iterations < budget or len(history) < 2:
            continue
        window = history[-min(len(history), config.patience + 1):]
        gain = (window[0] - window[-1]) / max(abs(window[-1]), 1.0)
        if gain > config.tol:
            result.converged = False
            result.warnings.append(
                f"not converged: the {stage} stage stopped at iters = {budget} with the "
                f"loss still improving ({gain:.2g} relative over the last {len(window) - 1} "
                "iterations; raise --iters)")
    if len(minima) > 1:
        result.scan_minima = minima
        listed = ", ".join(f"θ ≈ {m['window_length']:.1f} (loss {m['loss']:.5g})" for m in minima)
        result.warnings.append(f"near-equal minima of the start scan: {listed}")


# --------------------------------------------------------------------------------------------
# recipes


def _initial_loss(x: Tensor, config: Config) -> float:
    """The objective at the nominal start θ = init_length (default n_fft / 2), at the n_fft the
    run ends with (losses at different n_fft are not comparable)."""
    nominal = config.n_fft / 2 if config.init_length is None else config.init_length
    # one θ everywhere on the fixed grid: the constant transform gives the same S as the per-frame
    # or per-bin engines (and TV is 0) at a small part of their cost (a tf forward at n_fft 8192
    # takes seconds)
    mode = "constant" if POSITION_MODE[config.mode] == "fixed" else config.mode
    probe = _layer(x, config, mode, float(nominal))
    with torch.no_grad():
        return float(_objective(probe, x, config)())


def run(x: Tensor, config: Config, *, sample_rate: float | None = None,
        progress: Progress | None = None) -> RecipeResult:
    """Run the recipe ``config.mode`` on ``x`` ((Ls,) or (channels, Ls), any device).

    ``sample_rate`` (Hz) resolves durations, ``n_fft = "auto"`` and the default hop and
    min_length; a config already in samples needs none.
    """
    if config.mode not in LENGTH_MODE:
        raise ValueError(f"unknown mode {config.mode!r}; expected one of {RECIPE_MODES}")
    torch.manual_seed(config.seed)
    started = _time.perf_counter()
    x, exact, scale = _prepare(x, config)
    plan = _plan(config, sample_rate, x.shape[-1])
    resolved = plan.config
    nominal = resolved.n_fft / 2 if resolved.init_length is None else resolved.init_length

    if resolved.mode == "constant":
        stage = _grown_constant_stage(x, resolved, plan, progress, 1 - BOUND_TOLERANCE)
        initial = _initial_loss(x, stage.config)
        out = _finish(stage.layer, exact, stage.config, stage.closure,
                      stage.result.loss_history, initial, stage.result.iterations,
                      stage.result.converged, list(stage.result.events), started, scale=scale)
        out.sample_rate, out.n_fft_reason = sample_rate, plan.reason
        out.stage_starts = [("constant", 1)]
        _diagnose(out, stage.layer, x.shape[-1], plan, [("constant", stage.result)],
                  stage.minima)
        return out

    history: list[float] = []
    events: list[dict] = []
    iterations = 0
    start = float(nominal)
    stages: list[tuple[str, object]] = []
    minima: list[dict] = []
    if resolved.init in ("constant", "time"):
        base = RECIPES["constant"]
        constant_min = resolved.min_length if config.min_length is not None else float(
            resolved.hop)
        stage_config = replace(
            resolved, mode="constant", optimizer=base.optimizer, lr=base.lr, iters=base.iters,
            lr_unit=base.lr_unit, tol=base.tol, patience=base.patience, tv_weight=0.0, init="fixed",
            min_length=min(constant_min, float(resolved.max_length or resolved.n_fft)),
        )
        stage = _grown_constant_stage(x, stage_config, plan, progress, 0.5)
        resolved = replace(resolved, n_fft=stage.config.n_fft)
        start = float(stage.layer.window_length.detach())
        start = min(max(start, resolved.min_length),
                    float(resolved.max_length or resolved.n_fft))
        history += stage.result.loss_history
        events += stage.result.events
        iterations += stage.result.iterations
        stages.append(("constant", stage.result))
        minima = stage.minima
    # Per-frame lengths may double n_fft once more than the constant stage chose: on speech
    # their entropy keeps 30-60 % of them at the bound at every size up to the cap (2**16
    # samples at 44.1 kHz: 1.5 s windows, 3 minutes and 3 GiB for `time`). freq and tf stages
    # are not rerun larger (one iteration at twice the size costs twice as much or more); tf
    # grows in its time stage instead.
    limit = min(plan.cap, 2 * resolved.n_fft if resolved.mode in ("time", "tf") else
                resolved.n_fft)
    if resolved.init == "time":
        # per-frame lengths first: a time iteration costs a few per cent of a tf one, and θₙ
        # copied to every bin is a tf point whose objective (entropy + λ·TV, TV along frequency
        # being zero) is exactly the time stage's, so the tf stage starts where time ended; n_fft
        # grows here, where a stage costs little, and the tf stage runs once
        time_recipe = RECIPES["time"]
        time_config = replace(resolved, mode="time", init="fixed", iters=time_recipe.iters,
                              lr=time_recipe.lr, lr_unit=time_recipe.lr_unit,
                              optimizer=time_recipe.optimizer)
        timed = _grown_stage(x, time_config, "time", start, plan, progress, limit)
        resolved = replace(resolved, n_fft=timed.config.n_fft)
        start = timed.layer.window_length.detach().clone()
        history += timed.result.loss_history
        events += timed.superseded_events + timed.result.events
        iterations += timed.superseded_iterations + timed.result.iterations
        stages.append(("time", timed.result))
        limit = resolved.n_fft  # the tf stage itself is not rerun larger
    grown = _grown_stage(x, resolved, resolved.mode, start, plan, progress, limit)
    layer, result, closure, resolved = grown.layer, grown.result, grown.closure, grown.config
    events += grown.superseded_events
    iterations += grown.superseded_iterations
    initial = _initial_loss(x, resolved)
    history += result.loss_history
    events += result.events
    iterations += result.iterations
    stages.append((resolved.mode, result))
    out = _finish(layer, exact, resolved, closure, history, initial, iterations,
                  result.converged, events, started, scale=scale, final=result.best_loss)
    out.sample_rate, out.n_fft_reason = sample_rate, plan.reason
    out.stage_starts = _stage_starts(stages)
    _diagnose(out, layer, x.shape[-1], plan, stages, minima)
    return out


@dataclass
class _Grown:
    """What :func:`_grown_stage` produced: the last stage, and what the stages it superseded
    add to the run's events and iteration count."""

    layer: DSTFT
    result: object  # core OptimiseResult
    closure: Callable[[], Tensor]
    config: Config
    superseded_events: list[dict]
    superseded_iterations: int


def _grown_stage(x: Tensor, config: Config, mode: str, start, plan: _Plan,
                 progress: Progress | None, limit: int) -> _Grown:
    """Optimise ``mode`` from ``start``; with n_fft auto, double n_fft (up to ``limit``) and
    optimise again while more than :data:`BOUND_SHARE` of the lengths end at it."""
    layer = _layer(x, config, mode, start)
    result, closure = _run_stage(layer, x, config, mode, progress)
    events: list[dict] = []
    iterations = 0
    while plan.auto and config.max_length is None:
        theta = layer.window_length.detach()
        share = float((theta >= config.n_fft * (1 - BOUND_TOLERANCE)).double().mean())
        if share <= BOUND_SHARE:
            break
        if 2 * config.n_fft > limit:
            if 2 * config.n_fft <= plan.cap:
                plan.stopped = ("n_fft auto grows per-frame lengths at most once after the "
                                "constant stage, per-bin ones not at all; give --n-fft or "
                                "--max-length for more")
            break
        # too many lengths want more than n_fft: double it and optimise again, time-mode θₙ
        # from where they are (the frame grid does not change), the others from the start
        plan.reason += (f"; {100 * share:.0f} % of the {mode} lengths at n_fft = "
                        f"{config.n_fft}: doubled to {2 * config.n_fft}")
        events += result.events  # its convergence is superseded by the next stage's
        iterations += result.iterations
        config = replace(config, n_fft=2 * config.n_fft)
        warm = theta.clone() if mode == "time" else start
        layer = _layer(x, config, mode, warm)
        result, closure = _run_stage(layer, x, config, mode, progress)
    return _Grown(layer, result, closure, config, events, iterations)


def _stage_starts(stages) -> list[tuple[str, int]]:
    """Where each stage's values begin in ``loss_history`` (whose first value is the start)."""
    starts, position = [], 1
    for name, stage_result in stages:
        starts.append((name, position))
        position += len(stage_result.loss_history)
    return starts


def scan(x: Tensor, config: Config, lengths, *, sample_rate: float | None = None,
         prepared: bool = False) -> ScanResult:
    """Loss of ``config.loss`` for each constant θ in ``lengths`` (no gradient; Fig. 2).

    ``sample_rate`` resolves a config given in durations; ``prepared``: ``x`` is already the
    scaled working copy.
    """
    if not prepared:
        x, _, _ = _prepare(x, config)
    if not is_resolved(config):
        config = resolve(config, sample_rate, signal_length=x.shape[-1])
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
