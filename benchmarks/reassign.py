"""Reassignment and synchrosqueezing on fixed and optimised window lengths: sharpness and IF error.

    .venv/bin/python benchmarks/reassign.py [--jfk PATH] [--jfk-seconds S] [--mode time]
    .venv/bin/python benchmarks/reassign.py --resynthesis

For each signal, five maps on one grid (Hann, n_fft 1024, hop 128): the fixed-window STFT
(θ = n_fft/2, the recipes' starting length), the DSTFT optimised by ``recipes.run`` (``--mode``,
default per-frame θ), the reassigned spectrograms of both, and the synchrosqueezed transform of the
optimised one. Printed as a Markdown table:

* Rényi-3: the Rényi entropy of order 3 of each map as a magnitude distribution (as the loss
  ``renyi:3``); lower is sharper. The reassigned map is compared as √(reassigned power).
* IF error (where the truth is known): for every true component and frame (frames within n_fft/2
  of the ends, or where the component is absent, left out), the largest bin of the map within
  ±40 Hz of the truth, refined by the power centroid of it and its two neighbours; the RMS of
  (estimate − truth) in Hz over all components and frames.
* IF error of the reassignment operator (reassigned rows): the same largest bin, taken in the
  map *before* reassignment, gives f̂ and t̂ unbinned; the RMS of f̂ − f(t̂). This is the precision
  reassignment offers, which the binned map (previous column) gives away to the frequency grid.
* full-band SST resynthesis SNR (dB) of the optimised parameters, hop 1 (synchrosqueezed
  row only, constant and per-frame θ; per-bin/TF θ only approximate).

Signals: ``dstft synth``'s three-components (FM + tone + burst; truth: the FM and tone IFs) and
harmonics (10 harmonics of a moving f0 at 20 dB SNR; truth: k·f0), shocks (no IF truth), and the
first ``--jfk-seconds`` of the speech recording (mono mix, no truth).

``--resynthesis`` prints instead the full-band resynthesis SNR of ``tasks.extract`` for every
θ parameterisation, float64 and float32, by the inverse and by the synchrosqueezed transform, on
0.75 s of a chirp + tone + 5 % noise (8 kHz, n_fft 256, hop 64; per-frame θ uniform in 100…256,
per-bin θ 256 → 100, per-TF θ uniform in 150…256, seed 0).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dstft_cli import recipes, synth  # noqa: E402
from dstft_cli.config import default_config, override  # noqa: E402
from dstft_cli.core import dstft  # noqa: E402
from dstft_cli.core.losses import renyi_entropy  # noqa: E402
from dstft_cli.core.reassign import reassigned_spectrogram, synchrosqueeze  # noqa: E402
from dstft_cli.tasks.extract import TransformParams, resynthesis_snr_db  # noqa: E402

N_FFT, HOP, SEARCH_HZ = 1024, 128, 40.0


def signals(jfk: Path | None, jfk_seconds: float):
    x, fs, truth = synth.three_components()
    t = truth["time_s"]
    yield "three_components (synth)", x, fs, [(t, truth["fm_hz"]), (t, truth["tone_hz"])]
    x, fs, truth = synth.harmonics()
    t = truth["time_s"]
    yield "harmonics (synth, 20 dB SNR)", x, fs, [(t, k * truth["f0_hz"]) for k in range(1, 11)]
    x, fs, _ = synth.shocks()
    yield "shocks (synth, 20 dB SNR)", x, fs, []
    if jfk is not None and jfk.is_file():
        import soundfile as sf

        data, fs = sf.read(jfk, always_2d=True)
        x = data.mean(axis=1)[: int(jfk_seconds * fs)]
        yield f"jfk.flac, first {jfk_seconds:g} s (speech, 44.1 kHz)", x, float(fs), []


def if_error(power: np.ndarray, freqs: np.ndarray, times: np.ndarray, tracks, edge_s: float
             ) -> float:
    errors = []
    df = freqs[1] - freqs[0]
    for t_truth, f_truth in tracks:
        f_at = np.interp(times, t_truth, f_truth, left=np.nan, right=np.nan)
        keep = np.isfinite(f_at) & (times >= edge_s) & (times <= t_truth[-1] - edge_s)
        for n in np.flatnonzero(keep):
            lo = max(1, int(math.ceil((f_at[n] - SEARCH_HZ) / df)))
            hi = min(len(freqs) - 2, int(math.floor((f_at[n] + SEARCH_HZ) / df)))
            if hi < lo:
                continue
            m = lo + int(np.argmax(power[lo:hi + 1, n]))
            w = power[m - 1:m + 2, n]
            estimate = freqs[m] + df * float((w * np.array([-1, 0, 1])).sum() / max(w.sum(), 1e-300))
            errors.append(estimate - f_at[n])
    return float(np.sqrt(np.mean(np.square(errors)))) if errors else math.nan


def operator_if_errors(power: np.ndarray, ops, fs: float, freqs: np.ndarray, times: np.ndarray,
                       tracks, edge_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Errors f̂ − f(t̂) (Hz) and the frame index of each."""
    errors, frames = [], []
    df = freqs[1] - freqs[0]
    f_hat = ops.freqs.numpy() * df
    t_hat = ops.times.numpy() / fs
    for t_truth, f_truth in tracks:
        f_at = np.interp(times, t_truth, f_truth, left=np.nan, right=np.nan)
        keep = np.isfinite(f_at) & (times >= edge_s) & (times <= t_truth[-1] - edge_s)
        for n in np.flatnonzero(keep):
            lo = max(0, int(math.ceil((f_at[n] - SEARCH_HZ) / df)))
            hi = min(len(freqs) - 1, int(math.floor((f_at[n] + SEARCH_HZ) / df)))
            if hi < lo:
                continue
            m = lo + int(np.argmax(power[lo:hi + 1, n]))
            truth = np.interp(t_hat[m, n], t_truth, f_truth, left=np.nan, right=np.nan)
            if np.isfinite(truth):
                errors.append(f_hat[m, n] - truth)
                frames.append(n)
    return np.array(errors), np.array(frames, dtype=np.int64)


def rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(values)))) if len(values) else math.nan


def measure(name, x, fs, tracks, mode):
    xt = torch.from_numpy(np.asarray(x, dtype=np.float64))
    config = override(default_config(mode), n_fft=N_FFT, hop=HOP)
    started = time.perf_counter()
    result = recipes.run(xt, config, sample_rate=fs)
    optimise_s = time.perf_counter() - started
    theta_opt = result.window_length
    positions = result.frame_positions
    fixed = torch.tensor(N_FFT / 2, dtype=torch.float64)
    rows = {}
    operators = {}
    for label, theta in (("fixed", fixed), ("optimised", theta_opt)):
        common = dict(n_fft=N_FFT, window_length=theta, frame_positions=positions)
        with torch.no_grad():
            power, ops = reassigned_spectrogram(xt, **common)
            rows[f"{label} STFT" if label == "fixed" else "optimised DSTFT"] = ops.spec.abs() ** 2
            rows[f"reassigned {label}"] = power
            operators[f"reassigned {label}"] = (ops.spec.abs().square().numpy(), ops)
            if label == "optimised":
                sst, _ = synchrosqueeze(xt, **common)
                rows["synchrosqueezed optimised"] = sst.abs() ** 2
    assert torch.allclose(rows["optimised DSTFT"].sqrt(),
                          dstft(xt, n_fft=N_FFT, window_length=theta_opt,
                                frame_positions=positions).abs())
    freqs = np.arange(N_FFT // 2 + 1) * fs / N_FFT
    times = positions.numpy().astype(np.float64) / fs
    params = TransformParams(N_FFT, theta_opt, positions, fs)
    snr = (resynthesis_snr_db(xt, params, method="sst")
           if theta_opt.dim() <= 1 else math.nan)
    out = []
    short_note = ""
    for row, power in rows.items():
        renyi = float(renyi_entropy(power.sqrt(), 3.0))
        edge = N_FFT / 2 / fs
        err = if_error(power.numpy(), freqs, times, tracks, edge) if tracks else math.nan
        op_err = math.nan
        if tracks and row in operators:
            errors, frames = operator_if_errors(*operators[row], fs, freqs, times, tracks, edge)
            op_err = rms(errors)
            if row == "reassigned optimised" and theta_opt.dim() == 1:
                short = theta_opt.numpy()[frames] < N_FFT / 8
                n_short = len(np.unique(frames[short]))
                short_note = (f"; reassigned optimised f̂ error over the {n_short} frames with "
                              f"θ < n_fft/8: RMS {rms(errors[short]):.1f} Hz, over the others "
                              f"{rms(errors[~short]):.2f} Hz, median of all "
                              f"{np.median(np.abs(errors)):.2f} Hz")
        out.append((name, row, renyi, err, op_err,
                    snr if row.startswith("synchro") else math.nan))
    summary = theta_opt.numpy().reshape(-1)
    theta_text = (f"{summary[0]:.0f}" if summary.size == 1 else
                  f"{summary.min():.0f}…{summary.max():.0f} (median {np.median(summary):.0f})")
    return out, f"{theta_text} samples{short_note}", optimise_s


def resynthesis_table() -> None:
    from dstft_cli.tasks.extract import METHODS

    fs, n_fft, length, hop = 8000.0, 256, 6000, 64
    t = torch.arange(length, dtype=torch.float64) / fs
    noise = torch.randn(length, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x = (torch.cos(2 * math.pi * (300 * t + 400 * t * t)) + 0.5 * torch.cos(2 * math.pi * 2500 * t)
         + 0.05 * noise)
    n_frames, n_bins = 1 + length // hop, n_fft // 2 + 1
    rng = np.random.default_rng(0)
    thetas = {"constant": torch.tensor(200.0, dtype=torch.float64),
              "frame": torch.tensor(rng.uniform(100, 256, n_frames)),
              "bin": torch.linspace(256, 100, n_bins, dtype=torch.float64)[:, None],
              "tf": torch.tensor(rng.uniform(150, 256, (n_bins, n_frames)))}
    print("| θ | method | float64 SNR (dB) | float32 SNR (dB) |")
    print("| --- | --- | ---: | ---: |")
    positions = torch.arange(n_frames) * hop
    for kind, theta in thetas.items():
        for method in METHODS:
            snr = [resynthesis_snr_db(x.to(dtype), TransformParams(n_fft, theta.to(dtype), positions, fs),
                                      method=method) for dtype in (torch.float64, torch.float32)]
            print(f"| {kind} | {method} | {snr[0]:.1f} | {snr[1]:.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jfk", type=Path, default=ROOT.parent.parent / "shared" / "data" / "real"
                        / "jfk.flac")
    parser.add_argument("--jfk-seconds", type=float, default=11.0)
    parser.add_argument("--mode", default="time")
    parser.add_argument("--resynthesis", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.resynthesis:
        resynthesis_table()
        return
    print(f"mode {args.mode}, n_fft {N_FFT}, hop {HOP}, fixed θ = {N_FFT // 2}, torch "
          f"{torch.__version__}\n")
    print("| signal | map | Rényi-3 | IF RMS error, map (Hz) | IF RMS error, f̂ (Hz) "
          "| SST full-band SNR (dB) |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    notes = []
    for name, x, fs, tracks in signals(args.jfk, args.jfk_seconds):
        rows, theta_text, seconds = measure(name, x, fs, tracks, args.mode)
        notes.append(f"{name}: optimised θ {theta_text} ({seconds:.0f} s to optimise)")
        for signal_name, row, renyi, err, op_err, snr in rows:
            err_text = "—" if math.isnan(err) else f"{err:.2f}"
            op_text = "" if math.isnan(op_err) else f"{op_err:.2f}"
            snr_text = "" if math.isnan(snr) else f"{snr:.0f}"
            print(f"| {signal_name} | {row} | {renyi:.3f} | {err_text} | {op_text} | {snr_text} |",
                  flush=True)
    print()
    for line in notes:
        print(f"- {line}")


if __name__ == "__main__":
    main()
