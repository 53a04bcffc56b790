"""Table c — scaling: seconds per forward+backward iteration against signal length and n_fft.

Per mode (constant, per-frame, per-bin, per-TF-bin θ, learnable hop), the fused engine, one
optimisation iteration (forward, Shannon entropy of |S|, backward), float32: (1) signal length
16 k → 16 M samples at n_fft 1024, hop 256 (per-bin and per-TF-bin θ stop at 160 k: O(M·N·L),
minutes per pass beyond); (2) n_fft 256 → 4096 with hop n_fft/4 at 160 k samples (per-bin and
per-TF-bin θ at 8 k). A straight line fitted to log t against log size gives
the exponent; ``benchmarks/scaling.png`` plots both sweeps.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

if __package__ in (None, ""):
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
    median,
    provenance,
    run_standalone,
)
from benchmarks.transform import CASES, build_case

MODES = ("constant", "frame", "bin", "tf", "hop")
FULL = {
    "lengths": {"constant": (16_000, 160_000, 1_600_000, 16_000_000),
                "frame": (16_000, 160_000, 1_600_000, 16_000_000),
                "hop": (16_000, 160_000, 1_600_000, 16_000_000),
                "bin": (16_000, 50_000, 160_000), "tf": (16_000, 50_000, 160_000)},
    "n_ffts": (256, 512, 1024, 2048, 4096),
    "nfft_length": {"constant": 160_000, "frame": 160_000, "hop": 160_000, "bin": 8_000,
                    "tf": 8_000},
}
QUICK = {
    "lengths": {m: (1_000, 4_000) for m in MODES},
    "n_ffts": (64, 128),
    "nfft_length": {m: 2_000 for m in MODES},
}
PLOT = REPO_ROOT / "benchmarks" / "scaling.png"


def fit_exponent(xs: list[float], ys: list[float]) -> float:
    """Slope of the least-squares line through (log x, log y)."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if y > 0]
    if len(pts) < 2:
        return math.nan
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    sxy = sum((p[0] - mx) * (p[1] - my) for p in pts)
    return sxy / sxx if sxx else math.nan


def _measure(ctx: Context, mode: str, length: int, n_fft: int, hop: int, budget: float):
    ref = build_case("ref", mode, length, n_fft=n_fft, hop=hop, device=ctx.device)["fwd"]
    fb = build_case("fused", mode, length, n_fft=n_fft, hop=hop, device=ctx.device)["iter"]
    samples, rounds = interleaved({"ref": ref, "fb": fb}, reps=ctx.reps, device=ctx.device,
                                  budget_s=budget)
    t = median(samples["fb"])
    return t, t / median(samples["ref"]), rounds


def run(ctx: Context, *, plot_path: Path | None = None) -> list[Section]:
    cfg = QUICK if ctx.quick else FULL
    budget = 2.0 if ctx.quick else 15.0
    by_length: dict[str, list[tuple[int, float, float, int]]] = {}
    by_nfft: dict[str, list[tuple[int, float, float, int]]] = {}
    for mode in MODES:
        for length in cfg["lengths"][mode]:
            ctx.log(f"table c: {mode} Ls={fmt_size(length)}")
            by_length.setdefault(mode, []).append(
                (length, *_measure(ctx, mode, length, 1024 if not ctx.quick else 64,
                                   256 if not ctx.quick else 16, budget)))
        for n_fft in cfg["n_ffts"]:
            length = cfg["nfft_length"][mode]
            ctx.log(f"table c: {mode} n_fft={n_fft}")
            by_nfft.setdefault(mode, []).append(
                (n_fft, *_measure(ctx, mode, length, n_fft, n_fft // 4, budget)))

    exp_len = {m: fit_exponent([r[0] for r in rows], [r[1] for r in rows])
               for m, rows in by_length.items()}
    exp_fft = {m: fit_exponent([r[0] for r in rows], [r[1] for r in rows])
               for m, rows in by_nfft.items()}
    plot_path = plot_path or PLOT
    plotted = _plot(by_length, by_nfft, exp_len, exp_fft, plot_path)

    def label(mode):
        return CASES[mode][0]

    rows_len = []
    for mode, rows in by_length.items():
        for length, t, ratio, rounds in rows:
            rows_len.append([label(mode), fmt_size(length), f"{t:.3g}", fmt_ratio(ratio),
                             str(rounds)])
    rows_fft = []
    for mode, rows in by_nfft.items():
        for n_fft, t, ratio, rounds in rows:
            rows_fft.append([label(mode), fmt_size(cfg["nfft_length"][mode]), str(n_fft),
                             f"{t:.3g}", fmt_ratio(ratio), str(rounds)])
    exps = md_table(["mode", "exponent vs signal length", "exponent vs n_fft"],
                    [[label(m), f"{exp_len[m]:.2f}", f"{exp_fft[m]:.2f}"] for m in MODES])
    body = [
        provenance(ctx),
        "",
        "Fused engine; one iteration = forward, Shannon entropy of |S|, backward to the mode's "
        "parameters; float32. *s/iter* is "
        "seconds per iteration (median); *× stft* divides it by `torch.stft` forward at the same "
        "size, timed interleaved. Exponents: least-squares slope of log t against log size over "
        "all points (fixed overheads at small sizes lower it). Expected: 1 in Ls for every mode; "
        "in n_fft at hop n_fft/4 (N ∝ 1/L), ≈ 0 (+ log L) for the FFT modes (N·L log L) and 1 "
        "for per-bin / per-TF-bin θ (N·M·L).",
        "",
        exps,
        "",
        f"Plot: `{plot_path.relative_to(REPO_ROOT) if plot_path.is_relative_to(REPO_ROOT) else plot_path}`"
        + ("" if plotted else " (not written: matplotlib unavailable)"),
        "",
        "Against signal length (n_fft " + ("1024, hop 256; per-bin and per-TF-bin θ stop at "
                                           "160 k: O(M·N·L), a pass at 1.6 M takes minutes):"
                                           if not ctx.quick else "64, hop 16):"),
        "",
        md_table(["mode", "Ls", "s/iter", "× stft fwd", "rounds"], rows_len),
        "",
        "Against n_fft (hop n_fft/4; Ls in the table):",
        "",
        md_table(["mode", "Ls", "n_fft", "s/iter", "× stft fwd", "rounds"], rows_fft),
    ]
    suffix = "" if ctx.device == "cpu" else f"-{ctx.device}"
    return [Section(f"c{suffix}", f"c. Scaling with signal length and n_fft ({ctx.device})",
                    "\n".join(body))]


def _plot(by_length, by_nfft, exp_len, exp_fft, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:  # noqa: BLE001
        return False
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for mode, rows in by_length.items():
        axes[0].loglog([r[0] for r in rows], [r[1] for r in rows], "o-",
                       label=f"{CASES[mode][0]} (slope {exp_len[mode]:.2f})")
    for mode, rows in by_nfft.items():
        axes[1].loglog([r[0] for r in rows], [r[1] for r in rows], "o-",
                       label=f"{CASES[mode][0]} (slope {exp_fft[mode]:.2f})")
    axes[0].set_xlabel("signal length (samples)")
    axes[1].set_xlabel("n_fft (hop n_fft/4)")
    for ax in axes:
        ax.set_ylabel("seconds per fwd+bwd iteration")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"dstft_cli fused engine scaling — torch {torch.__version__}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


if __name__ == "__main__":
    run_standalone(run, "scaling")
