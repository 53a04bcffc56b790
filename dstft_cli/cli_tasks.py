"""Task commands of ``dstft`` (Sec. VI-C and VII): ``track``, ``fit-window``, ``train``.

Thin click wrappers around :mod:`dstft_cli.tasks`: they read inputs (:mod:`dstft_cli.io`), call a
task function, and write a result folder atomically (:func:`dstft_cli.io.result_dir`,
``params.json`` last). Register them on the main group with::

    from .cli_tasks import TASK_COMMANDS
    for command in TASK_COMMANDS:
        main.add_command(command)

Errors: bad options are usage errors (exit 2); a bad input file is one line on stderr naming the
file (exit 1; in a batch the other inputs are still processed); an existing result folder is
skipped with a message unless ``--overwrite``. torch and the tasks are imported inside the
commands so ``dstft --help`` stays fast.
"""

from __future__ import annotations

import csv
import io as _io
import math
import sys
import time
from pathlib import Path

import click

from . import __version__

__all__ = ["track", "fit_window", "train", "TASK_COMMANDS"]

DEFAULT_OUT = "dstft_out"
_FREQ_COLUMNS = ("f0_hz", "f_hz", "frequency_hz", "freq_hz", "frequency", "f0")


# --------------------------------------------------------------------------------------------
# shared helpers


def _resolve_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter("CUDA is not available on this machine; use --device cpu or auto",
                                 param_hint="'--device'")
    return requested


def _seed(seed: int) -> None:
    import numpy as np
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def _progress_enabled(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


def _say(text: str, quiet: bool = False, err: bool = False) -> None:
    if err or not quiet:
        click.echo(text, err=err)


def _csv_text(header: list[str], rows) -> str:
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for row in rows:
        w.writerow([f"{v:.9g}" if isinstance(v, float) else v for v in row])
    return buf.getvalue()


def _plots():
    import matplotlib

    matplotlib.use("Agg", force=False)
    from . import plots

    return plots


def read_truth_csv(path: str | Path):
    """``(time_s, frequency_hz)`` from a truth CSV with a header: ``time_s`` and one of
    f0_hz / f_hz / frequency_hz / freq_hz (else the second column). Raises InputError."""
    import numpy as np

    from .io import InputError

    path = Path(path)
    try:
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise InputError(path, f"cannot read truth file ({exc.strerror or exc})") from None
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if len(rows) < 3:
        raise InputError(path, "truth CSV needs a header and at least two rows")
    header = [c.strip().lower() for c in rows[0]]
    if "time_s" not in header:
        raise InputError(path, f"truth CSV has no 'time_s' column (columns: {', '.join(header)})")
    ti = header.index("time_s")
    fi = next((header.index(c) for c in _FREQ_COLUMNS if c in header), None)
    if fi is None:
        others = [i for i in range(len(header)) if i != ti]
        if not others:
            raise InputError(path, "truth CSV has no frequency column")
        fi = others[0]
    try:
        data = np.array([[float(r[ti]), float(r[fi])] for r in rows[1:]], dtype=np.float64)
    except (ValueError, IndexError):
        raise InputError(path, "truth CSV holds a non-numeric or missing value") from None
    if not np.all(np.isfinite(data)):
        raise InputError(path, "truth CSV holds non-finite values")
    if np.any(np.diff(data[:, 0]) <= 0):
        raise InputError(path, "truth CSV times are not strictly increasing")
    return data[:, 0], data[:, 1]


def _truth_beside(path: Path) -> Path | None:
    for name in (f"{path.stem}_truth.csv", f"{path.stem}.truth.csv"):
        candidate = path.with_name(name)
        if candidate.is_file():
            return candidate
    return None


def _is_truth_file(path: Path) -> bool:
    return path.name.endswith("_truth.csv") or path.name.endswith(".truth.csv")


def _mono(signal):
    return signal.data.mean(axis=0)


def common_task_options(f):
    """--out --overwrite --seed --device --quiet (shared by the three task commands)."""
    f = click.option("--quiet", "-q", is_flag=True, help="No progress bars and no summary lines.")(f)
    f = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
                     show_default=True, help="Where to compute.")(f)
    f = click.option("--seed", type=int, default=0, show_default=True,
                     help="Random seed (torch, numpy; the data split of train).")(f)
    f = click.option("--overwrite", is_flag=True,
                     help="Replace an existing result folder instead of skipping it.")(f)
    f = click.option("--out", type=click.Path(file_okay=False), default=DEFAULT_OUT,
                     show_default=True, help="Folder in which the result folder is created.")(f)
    return f


# --------------------------------------------------------------------------------------------
# track


@click.command("track")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--mode", type=click.Choice(["constant", "time"]), default="time", show_default=True,
              help="Entropy-optimised single θ, or one θₙ per frame initialised from it.")
@click.option("--harmonic", "-k", type=click.IntRange(min=1), default=1, show_default=True,
              help="Track the K-th harmonic and divide its frequency by K.")
@click.option("--fmin", type=click.FloatRange(min=0), default=None, metavar="HZ",
              help="Lowest fundamental frequency searched (the ridge is searched from K·fmin).")
@click.option("--fmax", type=click.FloatRange(min=0, min_open=True), default=None, metavar="HZ",
              help="Highest fundamental frequency searched (up to K·fmax).")
@click.option("--smoothness", type=click.FloatRange(min=0), default=None,
              help="Ridge penalty λ per squared bin jump of the tracked harmonic (log-magnitude "
                   "units; default 0.05/K).")
@click.option("--n-fft", type=int, default=1024, show_default=True, metavar="L",
              help="DFT size (even); θ ≤ L.")
@click.option("--hop", type=click.IntRange(min=1), default=None, metavar="SAMPLES",
              help="Hop between frames (default n_fft/16).")
@click.option("--window", default="hann", show_default=True, help="Window family.")
@click.option("--min-length", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Smallest θ allowed (default n_fft/8: shorter windows blur the ridge in "
                   "frequency more than they sharpen it in time).")
@click.option("--entropy", type=click.Choice(["global", "frame"]), default="global",
              show_default=True,
              help="Criterion for θ: Shannon entropy of the whole map (Eq. 26) or the mean "
                   "entropy of each frame.")
@click.option("--tv-weight", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Total-variation penalty on θₙ across frames (mode time).")
@click.option("--iters", type=click.IntRange(min=0), default=200, show_default=True,
              help="Adam steps of the per-frame θ (mode time).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Adam step for θₙ in samples (default n_fft/100).")
@click.option("--truth", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Ground-truth CSV (time_s, f0_hz); default: INPUT_truth.csv beside the input "
                   "if present. Adds the MSE to params.json and the plot.")
@click.option("--sample-rate", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="HZ", help="Sample rate for inputs that carry none (NPY, CSV).")
@click.option("--no-plots", is_flag=True, help="Do not write tracking.png.")
@common_task_options
def track(inputs, mode, harmonic, fmin, fmax, smoothness, n_fft, hop, window, min_length, entropy,
          tv_weight, iters, lr, truth, sample_rate, no_plots, out, overwrite, seed, device, quiet):
    """Track an instantaneous frequency on an entropy-optimised spectrogram (Sec. VI-C).

    Writes OUT/<stem>/frequency.csv (time_s, frequency_hz), tracking.png (overlay) and
    params.json. Example: dstft track sample_data/harmonics.wav --harmonic 10
    """
    from .core import available_windows
    from .io import InputError, ResultExists, iter_inputs, load_signal, result_dir
    from .tasks.tracking import TrackConfig, frequency_mse, track_frequency

    if window not in available_windows():
        raise click.BadParameter(f"unknown window {window!r}; available: "
                                 f"{', '.join(available_windows())}", param_hint="'--window'")
    try:
        config = TrackConfig(mode=mode, n_fft=n_fft, hop_length=hop, window=window,
                             harmonic=harmonic, fmin=fmin, fmax=fmax, smoothness=smoothness,
                             min_length=min_length, iters=iters, lr=lr, entropy=entropy,
                             tv_weight=tv_weight)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    dev = _resolve_device(device)
    try:
        paths = [p for p in iter_inputs(inputs) if not _is_truth_file(p)]
    except InputError as exc:
        raise click.ClickException(str(exc)) from None
    if truth is not None and len(paths) > 1:
        raise click.UsageError("--truth needs a single input (or put INPUT_truth.csv beside each)")
    failed = 0
    for path in paths:
        _seed(seed)
        try:
            signal = load_signal(path, sample_rate=sample_rate)
            x = _mono(signal)
            if x.shape[0] < n_fft:
                raise InputError(path, f"too short for the window ({x.shape[0]} samples < n_fft {n_fft})")
            truth_path = Path(truth) if truth is not None else _truth_beside(path)
            truth_data = read_truth_csv(truth_path) if truth_path is not None else None
            with result_dir(out, path.stem, overwrite=overwrite) as rd:
                bar = None
                if _progress_enabled(quiet) and mode == "time":
                    from tqdm import tqdm

                    bar = tqdm(total=iters + 1, desc=f"{path.stem} θₙ", unit="it", leave=False)
                t0 = time.perf_counter()
                def step(i, v, bar=bar):
                    bar.update(1)
                    bar.set_postfix(entropy=f"{v:.4f}")

                try:
                    result = track_frequency(x, signal.sample_rate, config, device=dev,
                                             callback=step if bar is not None else None)
                except ValueError as exc:
                    raise InputError(path, str(exc)) from None
                finally:
                    if bar is not None:
                        bar.close()
                rows = zip(result.times.tolist(), result.frequency.tolist(), strict=True)
                rd.write_text("frequency.csv", _csv_text(["time_s", "frequency_hz"], rows))
                theta = result.window_length
                if theta.ndim:
                    rd.write_text("window_lengths.csv", _csv_text(
                        ["time_s", "window_length"], zip(result.times.tolist(), theta.tolist(), strict=True)))
                mse = None
                if truth_data is not None:
                    mse = frequency_mse(result.times, result.frequency, *truth_data,
                                        margin_s=config.n_fft / 2 / signal.sample_rate)
                if not no_plots:
                    plots = _plots()
                    fig = plots.tracking_figure(
                        result.magnitude, result.times, result.freqs / harmonic, result.times,
                        result.frequency, truth=truth_data,
                        title=(f"{path.stem}: mode {mode}" if harmonic == 1 else
                               f"{path.stem}: harmonic {harmonic} ÷ {harmonic} (axis ÷ {harmonic}), "
                               f"mode {mode}"),
                    )
                    rd.savefig("tracking.png", fig, dpi=110)
                theta_summary = (float(theta) if theta.ndim == 0 else {
                    "min": float(theta.min()), "median": float(sorted(theta.tolist())[len(theta) // 2]),
                    "max": float(theta.max())})
                rd.set_params({
                    "version": __version__, "command": "track", "mode": mode, "window": window,
                    "n_fft": n_fft, "hop": config.hop, "sample_rate": signal.sample_rate,
                    "harmonic": harmonic, "fmin": fmin, "fmax": fmax, "smoothness": config.ridge_smoothness,
                    "entropy": entropy, "tv_weight": tv_weight, "min_length": config.lower_length,
                    "lr": config.step,
                    "window_length": theta_summary,
                    "constant_window_length": result.constant_length,
                    "entropy_constant": result.entropy_constant, "entropy_final": result.entropy_final,
                    "iterations": len(result.loss_history) - 1 if mode == "time" else 0,
                    "mse_hz2": mse, "mse_margin_s": config.n_fft / 2 / signal.sample_rate,
                    "truth": str(truth_path) if truth_path is not None else None,
                    "elapsed_s": time.perf_counter() - t0, "device": dev, "seed": seed,
                    "input": {"path": str(path), "sha256": signal.sha256,
                              "sample_rate": signal.sample_rate, "frames": signal.frames,
                              "channels": signal.channels_in_file},
                })
            msg = f"{path}: θ {_theta_text(theta)}"
            if mse is not None:
                msg += f", MSE {mse:.4g} Hz²"
            _say(f"{msg} → {Path(out) / path.stem}", quiet)
        except ResultExists as exc:
            _say(f"{path}: skipped, {exc}", err=True)
        except InputError as exc:
            failed += 1
            _say(str(exc), err=True)
    if failed:
        raise click.exceptions.Exit(1)


def _theta_text(theta) -> str:
    if getattr(theta, "ndim", 0) == 0:
        return f"{float(theta):.1f}"
    return f"{float(theta.min()):.1f}–{float(theta.max()):.1f}"


# --------------------------------------------------------------------------------------------
# fit-window


@click.command("fit-window")
@click.argument("data", nargs=-1, type=click.Path(exists=True))
@click.option("--generate", type=click.IntRange(min=1), default=None, metavar="J",
              help="Instead of DATA, learn on J synthetic variable-period sines with noise "
                   "(dstft_cli.synth.variable_period_sines, seeded by --seed).")
@click.option("--snr", type=float, default=10.0, show_default=True,
              help="SNR (dB) of the generated signals.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, help="Length (s) of the generated signals.")
@click.option("--sample-rate", type=click.FloatRange(min=0, min_open=True), default=8000.0,
              show_default=True, metavar="HZ",
              help="Sample rate of the generated signals, or of inputs that carry none.")
@click.option("--n-fft", type=int, default=512, show_default=True, metavar="L", help="DFT size.")
@click.option("--hop", type=click.IntRange(min=1), default=None, help="Hop (default n_fft/4).")
@click.option("--window", default="hann", show_default=True, help="Window family.")
@click.option("--init-length", type=click.FloatRange(min=0, min_open=True), default=None,
              help="θ at the start (default n_fft/4).")
@click.option("--min-length", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Smallest θ (default n_fft/64).")
@click.option("--iters", type=click.IntRange(min=0), default=150, show_default=True,
              help="Adam steps.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Initial Adam step in samples (default n_fft/32), decayed to 1 %.")
@click.option("--grid-points", type=click.IntRange(min=2), default=64, show_default=True,
              help="Points of the loss-vs-θ curve (min-length … n_fft).")
@click.option("--name", default="fit_window", show_default=True, help="Result folder name.")
@click.option("--no-plots", is_flag=True, help="Do not write the PNGs.")
@common_task_options
def fit_window(data, generate, snr, duration, sample_rate, n_fft, hop, window, init_length,
               min_length, iters, lr, grid_points, name, no_plots, out, overwrite, seed, device,
               quiet):
    """Learn one window length for a data set: min MSE of the Eq. (34) frequency (Sec. VII-A).

    DATA: signal files or folders; each signal needs its truth beside it as <stem>_truth.csv
    (time_s, f_hz). Writes OUT/NAME/params.json (θ), loss_history.csv, loss_curve.csv and the
    PNGs. Example: dstft fit-window --generate 16 --snr 10
    """
    import numpy as np

    from .core import available_windows
    from .io import InputError, ResultExists, iter_inputs, load_signal, result_dir
    from .tasks.fit_window import FitConfig, FrequencyExample, fit_window_length

    if window not in available_windows():
        raise click.BadParameter(f"unknown window {window!r}", param_hint="'--window'")
    if bool(data) == (generate is not None):
        raise click.UsageError("give DATA (signals with <stem>_truth.csv beside them) or "
                               "--generate J, not both and not neither")
    try:
        config = FitConfig(n_fft=n_fft, hop_length=hop, window=window, init_length=init_length,
                           min_length=min_length, iters=iters, lr=lr, grid_points=grid_points)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    dev = _resolve_device(device)
    _seed(seed)
    examples = []
    sources: list[dict] = []
    try:
        if generate is not None:
            from .synth import variable_period_sines

            for j, (sig, f_hz) in enumerate(variable_period_sines(
                    n_signals=generate, duration=duration, sample_rate=sample_rate, seed=seed,
                    snr_db=snr)):
                t = np.arange(sig.shape[0]) / sample_rate
                examples.append(FrequencyExample(sig, sample_rate, t, f_hz, f"synthetic-{j}"))
            sources.append({"generated": generate, "snr_db": snr, "duration_s": duration,
                            "sample_rate": sample_rate, "seed": seed})
        else:
            paths = [p for p in iter_inputs(data) if not _is_truth_file(p)]
            for path in paths:
                truth_path = _truth_beside(path)
                if truth_path is None:
                    raise InputError(path, f"no ground truth beside it ({path.stem}_truth.csv)")
                signal = load_signal(path, sample_rate=sample_rate)
                x = _mono(signal)
                if x.shape[0] < n_fft:
                    raise InputError(path, f"too short for the window ({x.shape[0]} samples < "
                                           f"n_fft {n_fft})")
                tt, ff = read_truth_csv(truth_path)
                examples.append(FrequencyExample(x, signal.sample_rate, tt, ff, str(path)))
                sources.append({"path": str(path), "sha256": signal.sha256, "truth": str(truth_path)})
            if not examples:
                raise click.ClickException("no signal found in DATA")
    except InputError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        with result_dir(out, name, overwrite=overwrite) as rd:
            bar = None
            if _progress_enabled(quiet):
                from tqdm import tqdm

                bar = tqdm(total=iters + 1, desc="fit θ", unit="it", leave=False)

            def cb(i, v, t):
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{v:.4g}", theta=f"{t:.2f}")

            try:
                result = fit_window_length(examples, config, device=dev, callback=cb)
            except ValueError as exc:
                raise click.ClickException(str(exc)) from None
            finally:
                if bar is not None:
                    bar.close()
            rd.write_text("loss_history.csv", _csv_text(
                ["iteration", "window_length", "loss"],
                ((i, t, v) for i, (t, v) in enumerate(zip(result.theta_history, result.loss_history,
                                                          strict=True)))))
            rd.write_text("loss_curve.csv", _csv_text(
                ["window_length", "loss"], zip(result.grid_lengths.tolist(),
                                               result.grid_losses.tolist(), strict=True)))
            if not no_plots:
                plots = _plots()
                rd.savefig("loss_curve.png", plots.scan_figure(
                    result.grid_lengths, result.grid_losses, best=result.window_length,
                    title="frequency MSE (Eq. 33) vs window length", ylabel="MSE (Hz²)"), dpi=110)
                rd.savefig("loss_history.png", plots.loss_figure(
                    result.loss_history, title="fit-window: MSE per iteration"), dpi=110)
            rd.set_params({
                "version": __version__, "command": "fit-window", "window": window, "n_fft": n_fft,
                "hop": config.hop, "window_length": result.window_length,
                "loss": "frequency MSE (Hz²), Eq. 33 with Eq. 34",
                "loss_initial": result.loss_initial, "loss_final": result.loss,
                "iterations": result.iterations, "converged": result.converged,
                "grid_optimum": result.grid_optimum,
                "grid_step": float(result.grid_lengths[1] - result.grid_lengths[0]),
                "init_length": config.start_length, "min_length": config.lower_length,
                "lr": config.step, "n_signals": len(examples), "elapsed_s": result.elapsed_s,
                "device": dev, "seed": seed, "inputs": sources,
            })
    except ResultExists as exc:
        _say(f"{name}: skipped, {exc}", err=True)
        return
    _say(f"θ = {result.window_length:.2f} samples, MSE {result.loss:.4g} Hz² "
         f"(from {result.loss_initial:.4g}; grid optimum {result.grid_optimum:.2f}) → "
         f"{Path(out) / name}", quiet)


# --------------------------------------------------------------------------------------------
# train


def _parse_fixed(ctx, param, value):
    if value is None or value.strip() == "":
        return ()
    try:
        lengths = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of numbers") from None
    if any(not (v > 0 and math.isfinite(v)) for v in lengths):
        raise click.BadParameter(f"window lengths must be positive, got {value!r}")
    return lengths


_TRAIN_FIELDS = ("n_fft", "hop_length", "clip_length", "window", "init_length", "min_length",
                 "epochs", "batch_size", "lr", "theta_lr", "dropout", "filters")


def _load_train_config(path: str | None):
    from dataclasses import fields

    from .tasks.classify import TrainConfig

    if path is None:
        return {}
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="'--config'") from None
    raw = raw.get("train", raw)
    known = {f.name for f in fields(TrainConfig)} - {"seed", "split"}
    unknown = sorted(set(raw) - known - {"fixed_window"})
    if unknown:
        raise click.BadOptionUsage("--config", f"{path}: unknown key(s) {', '.join(unknown)}; "
                                   f"known: {', '.join(sorted(known | {'fixed_window'}))}")
    return raw


@click.command("train")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="TOML file with train settings (e.g. configs/train.toml); options override it.")
@click.option("--fixed-window", callback=_parse_fixed, default=None, metavar="θ1,θ2,…",
              help="Also train fixed-θ baselines with the same split and seed (e.g. 10,20,30,40,50).")
@click.option("--no-learnable", is_flag=True, help="Train only the --fixed-window baselines.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Epochs per run (20).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Batch size (32).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Adam step of the network weights (3e-3).")
@click.option("--theta-lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Adam step of θ in samples (0.25).")
@click.option("--init-length", type=click.FloatRange(min=0, min_open=True), default=None,
              help="θ at the start of the learnable run (32).")
@click.option("--n-fft", type=int, default=None, help="DFT size (128); θ ≤ n_fft.")
@click.option("--hop", "hop_length", type=click.IntRange(min=1), default=None, help="Hop (16).")
@click.option("--clip-length", type=click.IntRange(min=2), default=None,
              help="Samples per clip: zero-padded or cropped at the end (8000 = 1 s at 8 kHz).")
@click.option("--limit", type=click.IntRange(min=3), default=None,
              help="Use a random subset of this many clips (seeded), for quick runs.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Where the decoded-audio cache (.npy) is kept (default OUT/.cache).")
@click.option("--name", default="train", show_default=True, help="Result folder name.")
@common_task_options
def train(data_dir, config_file, fixed_window, no_learnable, epochs, batch_size, lr, theta_lr,
          init_length, n_fft, hop_length, clip_length, limit, cache_dir, name, out, overwrite,
          seed, device, quiet):
    """Train a DSTFT layer with learnable θ jointly with a small CNN (Sec. VII-B, Tables II–III).

    DATA_DIR holds FSDD-style files {label}_{speaker}_{index}.wav or one sub-folder per class.
    Writes OUT/NAME/: checkpoints/<run>.pt, theta_trajectory.csv, history.csv, results.csv,
    results.md, split.csv and params.json. Example:
    dstft train ../shared/data/fsdd/recordings --fixed-window 10,20,30,40,50
    """
    import numpy as np
    import torch

    from .io import ResultExists, result_dir
    from .tasks.classify import (
        DatasetError,
        TrainConfig,
        checkpoint_payload,
        discover_dataset,
        load_clips,
        split_indices,
        train_run,
    )

    settings = _load_train_config(config_file)
    file_fixed = settings.pop("fixed_window", None)
    if not fixed_window and file_fixed:
        try:
            fixed_window = tuple(float(v) for v in file_fixed)
        except (TypeError, ValueError):
            raise click.BadOptionUsage("--config", f"{config_file}: fixed_window must be a list "
                                       f"of numbers, got {file_fixed!r}") from None
        if any(not (v > 0 and math.isfinite(v)) for v in fixed_window):
            raise click.BadOptionUsage("--config", f"{config_file}: fixed_window values must be "
                                       f"positive, got {file_fixed!r}")
    flags = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "theta_lr": theta_lr,
             "init_length": init_length, "n_fft": n_fft, "hop_length": hop_length,
             "clip_length": clip_length}
    settings.update({k: v for k, v in flags.items() if v is not None})
    try:
        config = TrainConfig(seed=seed, **settings)
    except (ValueError, TypeError) as exc:
        raise click.UsageError(f"train settings: {exc}") from None
    if any(v > config.n_fft for v in fixed_window):
        raise click.BadParameter(f"fixed window lengths must be ≤ n_fft={config.n_fft}",
                                 param_hint="'--fixed-window'")
    if no_learnable and not fixed_window:
        raise click.UsageError("--no-learnable needs --fixed-window")
    dev = _resolve_device(device)
    final = Path(out) / name
    if final.exists() and not overwrite:
        _say(f"{name}: skipped, {final}: result folder exists (use --overwrite to replace it)",
             err=True)
        return
    t_start = time.perf_counter()
    try:
        ds = discover_dataset(data_dir)
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from None
    chosen = np.arange(len(ds.paths))
    if limit is not None and limit < len(ds.paths):
        chosen = np.sort(np.random.default_rng(seed).permutation(len(ds.paths))[:limit])
    paths = [ds.paths[i] for i in chosen]
    labels_np = ds.labels[chosen]
    bar = None
    if _progress_enabled(quiet):
        from tqdm import tqdm

        bar = tqdm(total=len(paths), desc="decoding", unit="clip", leave=False)
    try:
        clips, sr, cached = load_clips(
            paths, config.clip_length, cache_dir=cache_dir or Path(out) / ".cache",
            progress=bar.update if bar is not None else None)
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if bar is not None:
            bar.close()
    split = split_indices(len(paths), seed, config.split)
    x = torch.from_numpy(clips).to(dev)
    y = torch.from_numpy(labels_np).to(dev)
    runs: list[float | None] = list(fixed_window) + ([] if no_learnable else [None])
    results = []
    try:
        with result_dir(out, name, overwrite=overwrite) as rd:
            (rd.path / "checkpoints").mkdir()
            for fixed in runs:
                label = "learnable" if fixed is None else f"fixed-{fixed:g}"
                ebar = None
                if _progress_enabled(quiet):
                    from tqdm import tqdm

                    ebar = tqdm(total=config.epochs, desc=label, unit="epoch", leave=False)

                def progress(row, ebar=ebar):
                    if ebar is not None:
                        ebar.update(1)
                        ebar.set_postfix(val_acc=f"{row['val_accuracy']:.3f}",
                                         theta=f"{row['window_length']:.2f}")

                try:
                    r = train_run(x, y, split, config, len(ds.classes), fixed_length=fixed,
                                  progress=progress)
                finally:
                    if ebar is not None:
                        ebar.close()
                results.append(r)
                torch.save(checkpoint_payload(r, config, ds.classes),
                           rd.path / "checkpoints" / f"{label}.pt")
                _say(f"{label}: θ {r.window_length:.2f}, test acc. "
                     f"{100 * r.metrics['test']['accuracy']:.1f} %, best epoch {r.best_epoch}, "
                     f"{r.elapsed_s:.0f} s", quiet)
            _write_train_files(rd, results, paths, ds, labels_np, split)
            rd.set_params({
                "version": __version__, "command": "train", "data_dir": str(data_dir),
                "labelling": ds.labelling, "classes": ds.classes, "n_clips": len(paths),
                "sample_rate": sr, "clip_policy": "zero-pad or crop at the end to clip_length",
                "decoded_from_cache": cached,
                "split_sizes": {"train": len(split[0]), "val": len(split[1]), "test": len(split[2])},
                "config": {**{k: getattr(config, k) for k in _TRAIN_FIELDS},
                           "seed": seed, "split": list(config.split)},
                "fixed_windows": list(fixed_window), "learnable": not no_learnable,
                "runs": [{"name": r.name, "window_length": r.window_length,
                          "best_epoch": r.best_epoch, "metrics": r.metrics,
                          "elapsed_s": r.elapsed_s} for r in results],
                "elapsed_s": time.perf_counter() - t_start, "device": dev,
                "torch_threads": torch.get_num_threads(),
            })
    except ResultExists as exc:
        _say(f"{name}: skipped, {exc}", err=True)
        return
    _say(f"{len(results)} run(s) in {time.perf_counter() - t_start:.0f} s → {final}", quiet)


def _write_train_files(rd, results, paths, ds, labels_np, split) -> None:
    from .tasks.classify import results_table_markdown

    rows = []
    for r in results:
        m = r.metrics
        rows.append((r.name, "" if r.fixed_length is None else r.fixed_length, r.window_length,
                     r.best_epoch, m["train"]["loss"], m["val"]["loss"], m["test"]["loss"],
                     m["train"]["accuracy"], m["val"]["accuracy"], m["test"]["accuracy"],
                     r.elapsed_s))
    rd.write_text("results.csv", _csv_text(
        ["run", "fixed_length", "window_length", "best_epoch", "train_loss", "val_loss",
         "test_loss", "train_accuracy", "val_accuracy", "test_accuracy", "elapsed_s"], rows))
    rd.write_text("results.md", results_table_markdown(results))
    traj = [(r.name, s, e, t) for r in results if r.fixed_length is None
            for (s, e, t) in r.theta_trajectory]
    rd.write_text("theta_trajectory.csv", _csv_text(["run", "step", "epoch", "window_length"], traj))
    hist = [(r.name, h["epoch"], h["window_length"], h["train_loss_running"], h["train_acc_running"],
             h["val_loss"], h["val_accuracy"]) for r in results for h in r.history]
    rd.write_text("history.csv", _csv_text(
        ["run", "epoch", "window_length", "train_loss_running", "train_accuracy_running",
         "val_loss", "val_accuracy"], hist))
    which = {}
    for part, idx in zip(("train", "val", "test"), split, strict=True):
        for i in idx:
            which[int(i)] = part
    rd.write_text("split.csv", _csv_text(
        ["file", "label", "split"],
        ((str(p), ds.classes[int(labels_np[i])], which[i]) for i, p in enumerate(paths))))


TASK_COMMANDS = (track, fit_window, train)
