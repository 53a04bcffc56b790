"""Tables s and o — what a user waits for: the optimisation step per recipe, and whole runs.

Table s (one process, interleaved, ratios to ``torch.stft`` forward of the same signal; n_fft
1024, hop 256, Hann, float32, white noise, θ = 600.5):

* every loss alone, forward+backward, on a fixed complex S of the per-frame transform (what the
  recipes hand it), and the Shannon entropy written naively with autograd (``abs``, normalise,
  ``p·log p``); total variation on a θ map of the per-TF recipe's size;
* the whole step of each recipe: the recipe's own objective (transform, its loss and its
  penalties, as ``recipes.run`` builds it) forward and backward to every parameter;
* the same step built on ``torch.stft``: a learnable window of n_fft samples and the naive loss
  (Shannon, or kurtosis for the hop recipe).

Table o: ``dstft optimize`` on the speech recording of ../shared/data/real in a fresh process
per mode: wall time, peak resident memory, iterations and final loss (from params.json).

Run alone: ``python benchmarks/steps.py [--quick]``.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # ``python benchmarks/steps.py``: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks.common import (
    REPO_ROOT,
    Context,
    Section,
    fmt_ratio,
    fmt_size,
    interleaved,
    md_table,
    provenance,
)

N_FFT, HOP, THETA0 = 1024, 256, 600.5
LENGTHS = (160_000, 1_600_000)
#: recipes whose θ has a bin axis cost O(M·N·L) per pass: measured at the shorter length only
BIN_MODES = ("freq", "tf")
MODES = ("constant", "time", "freq", "tf", "hop")
LOSS_NAMES = ("shannon", "shannon-energy", "renyi:3", "renyi-energy:3", "stankovic", "kurtosis")
QUICK = {"lengths": (4_000,), "n_fft": 256, "hop": 64}
#: the speech recording beside the repository (or beside the worktrees' folder)
SPEECH = next((root / "shared" / "data" / "real" / "jfk.flac" for root in (REPO_ROOT.parent,
               REPO_ROOT.parent.parent) if (root / "shared" / "data" / "real" / "jfk.flac").exists()),
              REPO_ROOT.parent / "shared" / "data" / "real" / "jfk.flac")


def _signal(length: int) -> torch.Tensor:
    return torch.randn(length, generator=torch.Generator().manual_seed(1234))


def naive_shannon(spec: torch.Tensor) -> torch.Tensor:
    magnitude = spec.abs()
    p = magnitude / magnitude.sum()
    return -(p * torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))).sum()


def naive_kurtosis(spec: torch.Tensor) -> torch.Tensor:
    power = spec.abs().square()
    return -(power.square().mean(dim=-2) / power.mean(dim=-2).square().clamp_min(1e-38)).mean()


def _reference(x: torch.Tensor, n_fft: int, hop: int):
    window = torch.hann_window(n_fft)

    def stft():
        return torch.stft(x, n_fft, hop, window=window, center=True, pad_mode="constant",
                          return_complex=True)

    return stft


def loss_cases(x: torch.Tensor, n_fft: int, hop: int) -> dict:
    """name → callable: each loss forward+backward on a fixed S (and TV on a per-TF θ map)."""
    from dstft_cli.core import dstft, losses

    n_frames = 1 + x.shape[-1] // hop
    theta = torch.full((n_frames,), THETA0 * n_fft / N_FFT)
    with torch.no_grad():
        spec = dstft(x, n_fft=n_fft, window_length=theta, hop_length=hop)
    leaf = spec.detach().requires_grad_()
    theta_map = (THETA0 + torch.randn(n_fft // 2 + 1, n_frames)).requires_grad_()

    def run(fn, tensor):
        def call():
            tensor.grad = None
            fn(tensor).backward()
        return call

    cases = {name: run(lambda s, n=name: losses.evaluate(n, s), leaf) for name in LOSS_NAMES}
    cases["shannon, naive autograd"] = run(naive_shannon, leaf)
    cases["total variation (M×N θ)"] = run(losses.total_variation, theta_map)
    return cases


def step_cases(x: torch.Tensor, mode: str, n_fft: int, hop: int) -> dict:
    """The recipe's step and the torch.stft step of the same loss, forward+backward."""
    from dstft_cli import recipes
    from dstft_cli.config import RECIPES, resolve

    config = resolve(dataclasses.replace(RECIPES[mode], n_fft=n_fft, hop=hop), 8000.0,
                     signal_length=x.shape[-1])
    layer = recipes._layer(x, config, mode, THETA0 * n_fft / N_FFT)
    objective = recipes._objective(layer, x, config)

    def step():
        layer.zero_grad(set_to_none=True)
        objective().backward()

    naive = naive_kurtosis if config.loss == "kurtosis" else naive_shannon
    window = torch.hann_window(n_fft).requires_grad_()

    def stft_step():
        window.grad = None
        naive(torch.stft(x, n_fft, hop, window=window, center=True, pad_mode="constant",
                         return_complex=True)).backward()

    return {"step": step, "stft step": stft_step, "loss": config.loss}


def _ratios(samples: dict, unit: str) -> dict:
    """name → (median, lowest, highest) of the per-round ratios to ``unit``."""
    out = {}
    base = samples[unit]
    for name, values in samples.items():
        ratios = sorted(v / b for v, b in zip(values, base, strict=False))
        out[name] = (ratios[len(ratios) // 2], ratios[0], ratios[-1])
    return out


def _fmt(r) -> str:
    median, low, high = r
    return f"{fmt_ratio(median)} ({low:.2f}–{high:.2f})"


def _load() -> str:
    try:
        one, five, _ = os.getloadavg()
        return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"
    except OSError:
        return "load average unknown"


def table_s(ctx: Context) -> Section:
    lengths = QUICK["lengths"] if ctx.quick else LENGTHS
    n_fft, hop = (QUICK["n_fft"], QUICK["hop"]) if ctx.quick else (N_FFT, HOP)
    loss_rows, step_rows = [], []
    loads = [_load()]
    for length in lengths:
        x = _signal(length)
        ctx.log(f"table s: losses at {length}")
        functions = {"torch.stft": _reference(x, n_fft, hop), **loss_cases(x, n_fft, hop)}
        samples, rounds = interleaved(functions, reps=ctx.reps, device="cpu", budget_s=40)
        ratios = _ratios(samples, "torch.stft")
        metrics = ctx.metrics.setdefault("s", {"losses": {}, "steps": {}})
        for name in functions:
            if name != "torch.stft":
                metrics["losses"][(length, name)] = ratios[name][0]
                loss_rows.append([fmt_size(length), f"`{name}`" if "," not in name and "(" not in name
                                  else name, _fmt(ratios[name]), str(rounds)])
        for mode in MODES:
            if mode in BIN_MODES and length > lengths[0]:
                continue
            ctx.log(f"table s: {mode} step at {length}")
            cases = step_cases(x, mode, n_fft, hop)
            loss = cases.pop("loss")
            functions = {"torch.stft": _reference(x, n_fft, hop), **cases}
            budget = 120 if mode in BIN_MODES else 40
            samples, rounds = interleaved(functions, reps=ctx.reps, device="cpu", budget_s=budget)
            ratios = _ratios(samples, "torch.stft")
            mine, theirs = ratios["step"], ratios["stft step"]
            metrics["steps"][(length, mode)] = (mine[0], theirs[0])
            step_rows.append([fmt_size(length), mode, f"`{loss}`", _fmt(mine), _fmt(theirs),
                              f"{theirs[0] / mine[0]:.2f}×", str(rounds)])
        loads.append(_load())
    body = (provenance(ctx, "python -m benchmarks --only s") + "\n\n"
            + f"n_fft {n_fft}, hop {hop}, Hann, float32, white noise, θ = {THETA0 * n_fft / N_FFT}. "
            "Every figure is a **ratio to `torch.stft` forward** of the same signal, measured "
            "interleaved in one process: the median over the rounds, (lowest–highest) in brackets. "
            f"Machine load while measuring: {'; '.join(loads)} (the machine is shared).\n\n"
            "### Losses alone, forward+backward, on a fixed complex S of the per-frame transform\n\n"
            + md_table(["Ls", "loss", "fwd+bwd / torch.stft fwd", "rounds"], loss_rows)
            + "\n\n### The whole step of each recipe (transform + its loss + penalties, fwd+bwd)\n\n"
            "*step*: the recipe's objective as `recipes.run` builds it, backward to every "
            "parameter; *torch.stft step*: `torch.stft` with a learnable n_fft-sample window and "
            "the same loss written naively with autograd.\n\n"
            + md_table(["Ls", "recipe", "loss", "step / torch.stft fwd",
                        "torch.stft step / torch.stft fwd", "speed-up over the torch.stft step",
                        "rounds"], step_rows))
    return Section("s", "s. The optimisation step per recipe vs torch.stft (cpu)", body)


def table_o(ctx: Context) -> Section:
    from benchmarks.cli_runs import table_o as cli_table_o  # table o lives with the CLI tables

    return cli_table_o(ctx)


def run(ctx: Context, which: str = "so") -> list[Section]:
    sections = []
    if "s" in which:
        sections.append(table_s(ctx))
    if "o" in which:
        sections.append(table_o(ctx))
    return sections


if __name__ == "__main__":
    from benchmarks.common import run_standalone

    run_standalone(run, "steps")
