"""What each command does: one function per command, below the command line.

The commands over inputs (``optimize``, ``scan``, ``apply``, ``track``) each have a *worker*
``worker(job) -> Outcome`` that reads one input, computes, and writes its result atomically; the
batch engine (:mod:`dstft_cli.batch`) runs the workers. ``synth``, ``fit-window`` and ``train``
produce one result each and are plain functions. Every function here returns an exit status or
raises :class:`~dstft_cli.batch.CommandError` (one line, exit 1); bad option values are found by
the command line before these are called.

This module never imports click; torch, matplotlib and the tasks are imported when used.
"""

from __future__ import annotations

import math
import os
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .batch import (
    BatchSettings,
    CommandError,
    Job,
    Outcome,
    UsageProblem,
    one_line,
    run_batch,
    say,
    tqdm_enabled,
)
from .config import resolve
from .io import (
    InputError,
    ResultExists,
    atomic_open,
    atomic_write_json,
    atomic_write_text,
    check_length,
    csv_text,
    is_truth_file,
    load_signal,
    read_truth_csv,
    result_dir,
    truth_beside,
    write_signal,
    write_truth,
)
from .results import (
    axes,
    input_record,
    recorded_input,
    theta_summary,
    theta_text,
    theta_title,
)
from .summary import row_from_params
from .units import UnitError, is_duration, to_samples, with_ms

__all__ = ["optimize", "scan", "apply", "track", "plot", "synth", "fit_window", "train"]


def _figures():
    import matplotlib

    matplotlib.use("Agg", force=False)
    from . import figures

    return figures


def _gallery(status: int, settings: BatchSettings) -> int:
    """After a batch with figures: OUT/index.html over the results in OUT."""
    if settings.plots and Path(settings.out).is_dir():
        from .gallery import write_gallery

        write_gallery(settings.out)
    return status


def _write_result_figures(rd, params: dict, options) -> None:
    """The figures of the result being assembled in ``rd``, drawn from the files already in it
    (as ``dstft plot`` draws them later)."""
    figures = _figures()
    figures.write_figures(figures.saved_result(rd.path, params), rd.path, options)


def _load(job: Job):
    return load_signal(job.path, **job.reader)


def _signal_tensor(signal, device):
    import torch

    x = torch.from_numpy(np.array(signal.data)).to(device)
    return x[0] if x.shape[0] == 1 else x


def _ensure_absent(final: Path, job: Job) -> None:
    """Skip an input whose result is there (ResultExists); a result of another input under this
    name is an error of this input, not a reason to skip it."""
    if job.overwrite or not os.path.lexists(final):
        return
    owner = recorded_input(final)
    if owner is not None and not _same_file(owner, job.path):
        raise InputError(job.path, f"{final} holds the result of another input ({owner}); "
                                   "use another -o, or --overwrite to replace it")
    raise ResultExists(final)


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # the recorded input is gone: nothing says it was another one
        return True


# ============================================================================================
# optimize


class _StageBar:
    """A tqdm bar per optimisation stage, showing the loss and a θ summary."""

    def __init__(self, enabled: bool, name: str, total: int):
        self.enabled, self.name, self.total = enabled, name, total
        self.bar = None
        self.stage = None

    def __call__(self, stage: str, iteration: int, loss: float, theta: str) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = tqdm(total=self.total, desc=f"{self.name} [{stage}]", unit="it",
                            file=sys.stderr, dynamic_ncols=True, leave=False)
        self.bar.set_postfix_str(f"loss={loss:.5g} {theta}", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def optimize(inputs, config, device: str, settings: BatchSettings, figure_options=None) -> int:
    """``dstft optimize``: one result folder per input."""
    return _gallery(run_batch(_optimize_one, inputs, settings,
                              {"config": config, "device": device, "plots": settings.plots,
                               "figures": figure_options}, progress=True), settings)


def _optimize_one(job: Job) -> Outcome:
    from . import recipes
    from .config import to_dict

    config = job.options["config"]
    final = Path(job.out_root) / job.name
    _ensure_absent(final, job)
    signal = _load(job)
    rate = signal.sample_rate
    check_length(signal, resolve(config, rate, signal_length=signal.frames).n_fft)
    device = job.options["device"]
    x = _signal_tensor(signal, device)
    bar = _StageBar(job.progress, Path(job.path).name, config.iters)
    try:
        result = recipes.run(x, config, sample_rate=rate, progress=bar)
    finally:
        bar.close()
    magnitude = result.magnitude.numpy().astype(np.float32)
    positions = result.frame_positions.numpy()
    times, freqs = axes(result.n_fft, positions, rate)
    theta_grid = result.window_length_grid.numpy()
    summary = theta_summary(theta_grid)
    params = {
        "version": __version__, "mode": config.mode, "window": config.window,
        "n_fft": result.n_fft, "n_fft_reason": result.n_fft_reason, "hop": result.hop,
        "sample_rate": rate, "window_length": summary,
        "loss": config.loss, "loss_initial": result.loss_initial,
        "loss_final": result.loss_final, "iterations": result.iterations,
        "converged": result.converged, "elapsed_s": round(result.elapsed_s, 4),
        "device": str(device), "seed": config.seed, "input": input_record(signal, job.reader),
        "config": to_dict(config), "resolved_config": to_dict(result.config),
        "scale": result.scale, "warnings": result.warnings, "scan_minima": result.scan_minima,
        "events": result.events,
    }
    from .figures import loss_arrays  # numpy only: matplotlib waits until a figure is drawn

    with result_dir(job.out_root, job.name, overwrite=job.overwrite) as rd:
        rd.save_npz("spectrogram.npz", magnitude=magnitude, window_length=theta_grid,
                    frame_positions=positions, times=times, freqs=freqs,
                    **loss_arrays(result.loss_history, result.stage_starts))
        if job.options["plots"]:
            _write_result_figures(rd, params, job.options["figures"])
        rd.set_params(params)
    iterations = f"{result.iterations} iteration{'s' if result.iterations != 1 else ''}"
    message = (f"{job.path} → {final}: {config.mode}, {theta_text(summary, sample_rate=rate)}, "
               f"n_fft {result.n_fft}, hop {result.hop} ({_ms(result.hop, rate)}), loss "
               f"{result.loss_initial:.5g} → {result.loss_final:.5g} ({iterations}, "
               f"{'converged' if result.converged else 'not converged'}, "
               f"{result.elapsed_s:.2f} s)")
    return Outcome(job.path, "ok", message, output=str(final),
                   summary=row_from_params(params, result=str(final)))


def _ms(samples: float, rate: float) -> str:
    return f"{1000.0 * samples / rate:.1f} ms"


# ============================================================================================
# scan


def scan(inputs, config, step, device: str, settings: BatchSettings,
         figure_options=None) -> int:
    """``dstft scan``: ``<name>.scan.csv`` (and ``.png``) per input; θ from min_length to
    max_length every ``step`` (samples or a duration, resolved per input)."""
    options = {"config": config, "device": device, "step": step, "plots": settings.plots,
               "figures": figure_options}
    return run_batch(_scan_one, inputs, settings, options)


#: The most lengths one scan evaluates.
MAX_SCAN_LENGTHS = 100_000


def scan_lengths(config, step: float) -> list[float]:
    """The θ of a scan in samples: min_length, min_length + step, … up to max_length."""
    top = config.n_fft if config.max_length is None else config.max_length
    count = int(math.floor((top - config.min_length) / step + 1e-9)) + 1
    if count > MAX_SCAN_LENGTHS:
        raise UsageProblem(f"--step: {count} lengths, more than {MAX_SCAN_LENGTHS}; use a larger "
                           "step")
    return [config.min_length + i * step for i in range(count)]


def _scan_one(job: Job) -> Outcome:
    from . import recipes

    config = job.options["config"]
    out_root = Path(job.out_root)
    csv_path = out_root / f"{job.name}.scan.csv"
    if csv_path.exists() and not job.overwrite:
        raise ResultExists(csv_path)
    signal = _load(job)
    config = resolve(config, signal.sample_rate, signal_length=signal.frames)
    check_length(signal, config.n_fft)
    lengths = scan_lengths(config, to_samples(job.options["step"], signal.sample_rate))
    result = recipes.scan(_signal_tensor(signal, job.options["device"]), config, lengths)
    out_root.mkdir(parents=True, exist_ok=True)
    rows = [(f"{t:.6g}", "" if not math.isfinite(v) else repr(v))
            for t, v in zip(result.lengths, result.losses, strict=True)]
    if job.options["plots"]:
        figures, options = _figures(), job.options.get("figures")
        rate = signal.sample_rate
        make = partial(figures.plots.scan_figure, np.array(result.lengths),
                       np.array(result.losses), best=result.best_length,
                       title=f"{Path(job.path).name} — {config.loss}\nn_fft {config.n_fft} "
                             f"({_ms(config.n_fft, rate)}), hop {config.hop} "
                             f"({_ms(config.hop, rate)})",
                       ylabel=f"{config.loss} loss", sample_rate=rate, options=options)
        figures.save_figure(make, out_root, f"{job.name}.scan", options)
    atomic_write_text(csv_path, csv_text(["window_length", "loss"], rows))
    message = (f"{job.path} → {csv_path}: best {theta_text(result.best_length, 2, signal.sample_rate)}"
               f" (loss {result.best_loss:.6g}) over {len(lengths)} lengths")
    row = row_from_params({"sample_rate": signal.sample_rate, "n_fft": config.n_fft,
                           "hop": config.hop, "window_length": result.best_length,
                           "loss_final": result.best_loss}, result=str(csv_path))
    return Outcome(job.path, "ok", message, output=str(csv_path), summary=row)


# ============================================================================================
# apply


def apply(saved, inputs, device: str, settings: BatchSettings, keep_samples: bool = False,
          figure_options=None) -> int:
    """``dstft apply``: the parameters of the result ``saved`` on every input; at another
    sample rate carried as durations unless ``keep_samples``."""
    return _gallery(run_batch(_apply_one, inputs, settings,
                              {"saved": saved, "device": device, "plots": settings.plots,
                               "keep_samples": keep_samples, "figures": figure_options}),
                    settings)


def _apply_one(job: Job) -> Outcome:
    from . import recipes
    from .results import applied_parameters, converted_to_rate

    saved = job.options["saved"]
    final = Path(job.out_root) / job.name
    _ensure_absent(final, job)
    signal = _load(job)
    conversion = None
    if not job.options.get("keep_samples"):
        saved, conversion = converted_to_rate(saved, signal.sample_rate)
    p = saved.params
    n_fft, hop, mode, loss = int(p["n_fft"]), int(p["hop"]), p["mode"], p.get("loss", "shannon")
    check_length(signal, n_fft)
    device = job.options["device"]
    applied = applied_parameters(saved, signal.frames, device)
    mag = recipes.spectrogram(_signal_tensor(signal, device), n_fft=n_fft,
                              window_length=applied.window_length,
                              frame_positions=applied.frame_positions, hop_length=hop,
                              window=p["window"]).cpu()
    loss_value = recipes.loss_value(mag, loss)
    magnitude = mag.numpy().astype(np.float32)
    times, freqs = axes(n_fft, applied.positions, signal.sample_rate)
    params = {
        "version": __version__, "mode": mode, "window": p["window"], "n_fft": n_fft, "hop": hop,
        "sample_rate": signal.sample_rate,
        "window_length": (theta_summary(saved.window_length) if conversion is not None
                          else p.get("window_length")),
        "converted": None if conversion is None else conversion.record(),
        "loss": loss, "loss_value": loss_value, "device": str(device),
        "source": {"path": saved.source, "input": p.get("input", {})},
        "input": input_record(signal, job.reader),
    }
    with result_dir(job.out_root, job.name, overwrite=job.overwrite) as rd:
        rd.save_npz("spectrogram.npz", magnitude=magnitude,
                    window_length=np.asarray(saved.window_length),
                    frame_positions=applied.positions, times=times, freqs=freqs)
        if job.options["plots"]:
            _write_result_figures(rd, params, job.options["figures"])
        rd.set_params(params)
    notice = "" if conversion is None else f" ({conversion.notice()})"
    theta = theta_text(theta_summary(saved.window_length), 2, signal.sample_rate)
    return Outcome(job.path, "ok", f"{job.path} → {final}: {mode} parameters of "
                                   f"{saved.source}, {theta}, hop {hop} "
                                   f"({_ms(hop, signal.sample_rate)}), loss {loss_value:.5g}{notice}",
                   output=str(final), summary=row_from_params(params, result=str(final)))


# ============================================================================================
# plot


def plot(results, settings: BatchSettings, figure_options, compare: bool = False,
         fixed_length: float | None = None, device: str = "cpu") -> int:
    """``dstft plot``: the figures of saved results (and the comparison figure), re-rendered
    into OUT/<result name>/ with the result's params.json beside them."""
    options = {"figures": figure_options, "compare": compare, "fixed_length": fixed_length,
               "device": device}
    return _gallery(run_batch(_plot_one, results, settings, options, expand=_result_folders),
                    settings)


def _result_folders(results) -> tuple[list[Path], list[Outcome]]:
    from .figures import find_results

    folders, problems = find_results(results)
    return folders, [Outcome(p.split(": ", 1)[0], "failed", p) for p in problems]


def _plot_one(job: Job) -> Outcome:
    figures = _figures()
    options = job.options["figures"] or figures.FigureOptions()
    source = Path(job.path)
    saved = figures.read_saved(source)
    target = Path(job.out_root) / job.name
    makers = figures.figure_makers(saved, options)
    stems = list(makers) + (["compare"] if job.options["compare"] else [])
    planned = [target / f"{stem}.{fmt}" for stem in stems for fmt in options.formats]
    same_folder = target.resolve() == source.resolve()
    if not job.overwrite:
        existing = [p for p in planned if p.exists()]
        if existing or (not same_folder and (target / "params.json").exists()):
            raise ResultExists(existing[0] if existing else target / "params.json")
    target.mkdir(parents=True, exist_ok=True)
    written = [p for stem, make in makers.items()
               for p in figures.save_figure(make, target, stem, options)]
    if job.options["compare"]:
        written += figures.compare_result(source, target, options,
                                          fixed_length=job.options["fixed_length"],
                                          device=job.options["device"])
    if not same_folder:
        with atomic_open(target / "params.json", "wb") as fh:
            fh.write((source / "params.json").read_bytes())
    return Outcome(job.path, "ok", f"{job.path} → {target}: {len(written)} figure files",
                   output=str(target), summary=row_from_params(saved.params, result=str(target)))


# ============================================================================================
# synth


def synth(name: str, out: str, generator_args: dict, overwrite: bool, quiet: bool) -> int:
    """``dstft synth``: the signal, ``<stem>_truth.csv`` and ``<stem>_truth.json``."""
    from .synth import SIGNALS, truth_columns, truth_metadata

    out_path = Path(out)
    truth_csv = out_path.with_name(out_path.stem + "_truth.csv")
    truth_json = out_path.with_name(out_path.stem + "_truth.json")
    if not overwrite:
        for p in (out_path, truth_csv, truth_json):
            if p.exists():
                raise CommandError(f"{p}: exists (use --overwrite to replace it)")
    try:
        x, fs, truth = SIGNALS[name](**generator_args)
    except ValueError as exc:
        raise UsageProblem(f"{name}: {exc}") from None
    try:
        write_signal(out_path, x, fs)
    except ValueError as exc:
        raise UsageProblem(str(exc)) from None
    write_truth(truth_csv, truth_columns(truth))
    meta = {"signal": name, "sample_rate": fs, "frames": int(np.size(x)),
            "seed": generator_args.get("seed", 0), **truth_metadata(truth)}
    atomic_write_json(truth_json, meta)
    if not quiet:
        say(f"{name} → {out_path} ({np.size(x)} samples at {fs:g} Hz); truth in "
            f"{truth_csv.name}, {truth_json.name}")
    return 0


# ============================================================================================
# track


def _seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


#: Track results go to OUT/<stem>.track/, apart from optimize's OUT/<stem>/.
TRACK_SUFFIX = ".track"


def track(inputs, config, truth: str | None, seed: int, device: str,
          settings: BatchSettings, durations: dict | None = None, figure_options=None,
          ridges: int = 1) -> int:
    """``dstft track``: ``frequency.csv``, ``tracking.png``, ``spectrogram.npz`` and params.json
    per input (and ``ridge_k.csv`` for ``ridges`` > 1).

    ``durations``: TrackConfig length fields given as durations (``{"hop_length": "5ms"}``),
    converted to samples at each input's sample rate.
    """
    options = {"config": config, "truth": truth, "seed": seed, "device": device,
               "plots": settings.plots, "durations": durations or {}, "figures": figure_options,
               "ridges": ridges}
    return _gallery(run_batch(_track_one, inputs, settings, options, skip=is_truth_file,
                              progress=True, suffix=TRACK_SUFFIX), settings)


def _lengths_at_rate(config, durations: dict, sample_rate: float):
    """A task config with its duration-given lengths in samples at ``sample_rate``."""
    import dataclasses

    if not durations:
        return config
    values = {key: to_samples(spec, sample_rate, integer=key in ("n_fft", "hop_length"),
                              even=key == "n_fft") for key, spec in durations.items()}
    return dataclasses.replace(config, **values)


def _track_one(job: Job) -> Outcome:
    from .tasks.tracking import frequency_mse, track_frequency

    config, device, seed = job.options["config"], job.options["device"], job.options["seed"]
    final = Path(job.out_root) / job.name
    _ensure_absent(final, job)
    _seed(seed)
    signal = load_signal(job.path, **job.reader)
    config = _lengths_at_rate(config, job.options.get("durations", {}), signal.sample_rate)
    x = signal.data.mean(axis=0)
    check_length(x, config.n_fft, job.path)
    given = job.options["truth"]
    truth_path = Path(given) if given is not None else truth_beside(job.path)
    truth_data = read_truth_csv(truth_path) if truth_path is not None else None
    bar = None
    if job.progress and config.mode == "time":
        from tqdm import tqdm

        bar = tqdm(total=config.iters + 1, desc=f"{Path(job.path).stem} θₙ", unit="it", leave=False)
    started = time.perf_counter()
    try:
        result = track_frequency(x, signal.sample_rate, config, device=device,
                                 callback=None if bar is None else
                                 lambda i, v: (bar.update(1), bar.set_postfix(entropy=f"{v:.4f}")))
    except ValueError as exc:
        raise InputError(job.path, str(exc)) from None
    finally:
        if bar is not None:
            bar.close()
    margin_s = config.n_fft / 2 / signal.sample_rate
    mse = None if truth_data is None else frequency_mse(result.times, result.frequency,
                                                        *truth_data, margin_s=margin_s)
    summary = theta_summary(result.window_length)
    with result_dir(job.out_root, job.name, overwrite=job.overwrite) as rd:
        rd.write_text("frequency.csv", csv_text(["time_s", "frequency_hz"], zip(
            result.times.tolist(), result.frequency.tolist(), strict=True)))
        if np.ndim(result.window_length):
            rd.write_text("window_lengths.csv", csv_text(["time_s", "window_length"], zip(
                result.times.tolist(), result.window_length.tolist(), strict=True)))
        if job.options.get("ridges", 1) > 1:
            _write_ridges(rd, result, config, job.options["ridges"])
        theta = np.asarray(result.window_length, dtype=np.float64)
        rd.save_npz("spectrogram.npz", magnitude=np.asarray(result.magnitude, dtype=np.float32),
                    window_length=theta.reshape(1, -1) if theta.ndim else theta.reshape(1, 1),
                    frame_positions=np.asarray(result.times) * signal.sample_rate,
                    times=np.asarray(result.times), freqs=np.asarray(result.freqs))
        params = {
            "version": __version__, "command": "track", "mode": config.mode,
            "window": config.window, "n_fft": config.n_fft, "hop": config.hop,
            "sample_rate": signal.sample_rate, "harmonic": config.harmonic, "fmin": config.fmin,
            "fmax": config.fmax, "smoothness": config.ridge_smoothness, "entropy": config.entropy,
            "tv_weight": config.tv_weight, "min_length": config.lower_length, "lr": config.step,
            "window_length": summary, "constant_window_length": result.constant_length,
            "entropy_constant": result.entropy_constant, "entropy_final": result.entropy_final,
            "iterations": len(result.loss_history) - 1 if config.mode == "time" else 0,
            "mse_hz2": mse, "mse_margin_s": margin_s, "ridges": job.options.get("ridges", 1),
            "truth": str(truth_path) if truth_path is not None else None,
            "elapsed_s": time.perf_counter() - started, "device": device, "seed": seed,
            "input": input_record(signal, job.reader),
        }
        if job.options["plots"]:
            _write_result_figures(rd, params, job.options["figures"])
        rd.set_params(params)
    message = (f"{job.path}: {theta_text(summary, 1, signal.sample_rate)}, hop {config.hop} "
               f"({_ms(config.hop, signal.sample_rate)})")
    if mse is not None:
        message += f", MSE {mse:.4g} Hz²"
    return Outcome(job.path, "ok", f"{message} → {final}", output=str(final),
                   summary=row_from_params(params, result=str(final)))


def _write_ridges(rd, result, config, count: int) -> None:
    from .tasks.ridges import ridges_hz

    k = config.harmonic
    found = ridges_hz(result.magnitude, result.freqs, count,
                      fmin=None if config.fmin is None else k * config.fmin,
                      fmax=None if config.fmax is None else k * config.fmax)
    for i, ridge in enumerate(found, start=1):
        rd.write_text(f"ridge_{i}.csv", csv_text(["time_s", "frequency_hz"], zip(
            result.times.tolist(), ridge.tolist(), strict=True)))


# ============================================================================================
# fit-window


def fit_window(data, generate: dict | None, values: dict, name: str, seed: int, device: str,
               settings: BatchSettings) -> int:
    """``dstft fit-window``: one θ for a data set (files with truth beside them, or generated).

    ``values``: the FitConfig fields as given; lengths may be durations, converted at the data's
    sample rate (one rate: DATA that mixes rates needs lengths in samples). Under torchrun every
    process reads the data set and fits θ on its shard of the signals
    (:func:`~dstft_cli.tasks.fit_window.fit_window_length`); rank 0 alone writes the result."""
    from .tasks.distributed import joined_process_group
    from .tasks.fit_window import FitConfig, fit_window_length

    rate = None if generate is None else generate["sample_rate"]
    durations = any(is_duration(values.get(k)) for k in FIT_LENGTHS)
    if rate is not None or not durations:  # known before any input is read
        task_config(FitConfig, values, FIT_LENGTHS, rate)
    final = Path(settings.out) / name
    if final.exists() and not settings.overwrite:  # every process skips, none waits for the others
        say(f"{name}: skipped, {ResultExists(final)}", err=True)
        return 0
    with joined_process_group(device) as (world, rank, device):
        _seed(seed)
        examples, sources = (_generated_examples(generate, seed) if generate is not None
                             else _file_examples(data, settings.reader))
        config, rate = _fit_config(values, examples, durations)
        if rank > 0:  # the same steps as rank 0, which alone writes the result
            try:
                fit_window_length(examples, config, device=device)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            return 0

        def write(rd) -> str:
            with _ProgressBar(tqdm_enabled(settings.quiet), "fit θ", config.iters + 1, "it") as bar:
                try:
                    result = fit_window_length(
                        examples, config, device=device,
                        callback=lambda i, v, t: bar.update(loss=f"{v:.4g}", theta=f"{t:.2f}"))
                except ValueError as exc:
                    raise CommandError(str(exc)) from None
            _write_fit_files(rd, result, config, rate, settings.plots)
            rd.set_params({
                "version": __version__, "command": "fit-window", "window": config.window,
                "sample_rate": rate, "n_fft": config.n_fft, "hop": config.hop,
                "window_length": result.window_length,
                "loss": "frequency MSE (Hz²), Eq. 33 with Eq. 34",
                "loss_initial": result.loss_initial, "loss_final": result.loss,
                "iterations": result.iterations, "converged": result.converged,
                "grid_optimum": result.grid_optimum,
                "grid_step": float(result.grid_lengths[1] - result.grid_lengths[0]),
                "init_length": config.start_length, "min_length": config.lower_length,
                "lr": config.step, "n_signals": len(examples), "elapsed_s": result.elapsed_s,
                "device": device, "seed": seed, "world_size": world, "inputs": sources,
            })
            return (f"{theta_text(result.window_length, 2, rate)}, MSE {result.loss:.4g} Hz² (from "
                    f"{result.loss_initial:.4g}; grid optimum {result.grid_optimum:.2f} samples), "
                    f"n_fft {config.n_fft}, hop {config.hop}"
                    + (f" ({_ms(config.hop, rate)})" if rate else "") + f" → {rd.final}")

        return _named_result(settings, name, write)


def _fit_config(values: dict, examples, durations: bool):
    """The FitConfig for these examples and their one sample rate (``None`` when they mix rates,
    which lengths given as durations cannot); every signal must hold n_fft samples."""
    from .tasks.fit_window import FitConfig

    rates = sorted({float(e.sample_rate) for e in examples})
    rate = rates[0] if len(rates) == 1 else None
    if durations and rate is None:
        raise CommandError(f"DATA mixes sample rates ({', '.join(f'{r:g}' for r in rates)} Hz); "
                           "give the lengths in samples or resample the data")
    config = task_config(FitConfig, values, FIT_LENGTHS, rate)
    for example in examples:
        try:
            check_length(example.signal, config.n_fft, example.name)
        except InputError as exc:
            raise CommandError(str(exc)) from None
    return config, rate


#: The lengths of the task configs (fit-window, train): field → how a duration is rounded.
FIT_LENGTHS = {"n_fft": "even", "hop_length": "integer", "init_length": "real",
               "min_length": "real"}
TRAIN_LENGTHS = {**FIT_LENGTHS, "clip_length": "integer"}


def task_config(factory, values: dict, lengths: dict[str, str], sample_rate: float | None,
                what: str = ""):
    """``factory(**values)`` with the ``lengths`` given as durations converted to samples at
    ``sample_rate``; a value the factory (or the conversion) refuses is a usage error."""
    converted = dict(values)
    for key, rounding in lengths.items():
        if is_duration(values.get(key)):
            try:
                converted[key] = to_samples(values[key], sample_rate, integer=rounding != "real",
                                            even=rounding == "even")
            except UnitError as exc:
                raise UsageProblem(f"{what}{key}: {exc}") from None
    try:
        return factory(**converted)
    except (TypeError, ValueError) as exc:
        raise UsageProblem(f"{what}{exc}") from None


def _named_result(settings: BatchSettings, name: str, write) -> int:
    """OUT/NAME filled by ``write(rd)``, which returns the line printed at the end (unless
    --quiet); an existing OUT/NAME is skipped unless --overwrite."""
    try:
        with result_dir(settings.out, name, overwrite=settings.overwrite) as rd:
            line = write(rd)
    except ResultExists as exc:
        say(f"{name}: skipped, {exc}", err=True)
        return 0
    if not settings.quiet:
        say(line)
    return 0


class _ProgressBar:
    """A tqdm bar (a no-op when disabled) whose ``update`` advances it by one with a postfix."""

    def __init__(self, enabled: bool, label: str, total: int, unit: str):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=label, unit=unit, leave=False)

    def update(self, **postfix: str) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(**postfix)

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


def _generated_examples(generate: dict, seed: int):
    from .synth import variable_period_sines
    from .tasks.fit_window import FrequencyExample

    rate = generate["sample_rate"]
    examples = []
    for j, (sig, f_hz) in enumerate(variable_period_sines(
            n_signals=generate["count"], duration=generate["duration"], sample_rate=rate,
            seed=seed, snr_db=generate["snr_db"])):
        t = np.arange(sig.shape[0]) / rate
        examples.append(FrequencyExample(sig, rate, t, f_hz, f"synthetic-{j}"))
    source = {"generated": generate["count"], "snr_db": generate["snr_db"],
              "duration_s": generate["duration"], "sample_rate": rate, "seed": seed}
    return examples, [source]


def _file_examples(data, reader: dict):
    """Every signal of DATA with its truth; the first bad file ends the command (a θ fitted
    to part of a data set would be reported as the data set's)."""
    from .batch import expand_inputs
    from .tasks.fit_window import FrequencyExample

    paths, failed = expand_inputs(data, skip=is_truth_file)
    if failed:
        raise CommandError(failed[0].message)
    examples, sources = [], []
    try:
        for path in paths:
            truth_path = truth_beside(path)
            if truth_path is None:
                raise InputError(path, f"no ground truth beside it ({path.stem}_truth.csv)")
            signal = load_signal(path, **reader)
            x = signal.data.mean(axis=0)
            tt, ff = read_truth_csv(truth_path)
            examples.append(FrequencyExample(x, signal.sample_rate, tt, ff, str(path)))
            sources.append({"path": str(path), "sha256": signal.sha256, "truth": str(truth_path)})
    except InputError as exc:
        raise CommandError(str(exc)) from None
    if not examples:
        raise CommandError("no signal found in DATA")
    return examples, sources


def _write_fit_files(rd, result, config, rate: float | None, plots_wanted: bool) -> None:
    rd.write_text("loss_history.csv", csv_text(
        ["iteration", "window_length", "loss"],
        ((i, t, v) for i, (t, v) in enumerate(zip(result.theta_history, result.loss_history,
                                                  strict=True)))))
    rd.write_text("loss_curve.csv", csv_text(
        ["window_length", "loss"], zip(result.grid_lengths.tolist(), result.grid_losses.tolist(),
                                       strict=True)))
    if plots_wanted:
        figures = _figures()
        grid = f"n_fft {config.n_fft}" + (f" ({_ms(config.n_fft, rate)})" if rate else "")
        figures.save_figure(figures.plots.scan_figure(
            result.grid_lengths, result.grid_losses, best=result.window_length,
            title=f"frequency MSE (Eq. 33) vs window length\n{grid}, hop {config.hop}"
                  + (f" ({_ms(config.hop, rate)})" if rate else ""),
            ylabel="MSE (Hz²)", sample_rate=rate), rd.path, "loss_curve")
        theta = theta_title(result.window_length, rate, hop=config.hop)
        figures.save_figure(figures.plots.loss_figure(
            result.loss_history, title=f"fit-window: MSE per iteration\n{theta}"),
            rd.path, "loss_history")


# ============================================================================================
# train


TRAIN_FIELDS = ("n_fft", "hop_length", "clip_length", "window", "init_length", "min_length",
                "epochs", "batch_size", "lr", "theta_lr", "dropout", "filters", "split_scheme",
                "pooling")


def train(data_dir: str, values: dict, fixed_window: tuple, learnable: bool,
          limit: int | None, cache_dir: str | None, name: str, device: str,
          settings: BatchSettings) -> int:
    """``dstft train``: the learnable-θ run and fixed-θ baselines on one split of DATA_DIR.

    ``values``: the TrainConfig fields as given; lengths (and ``fixed_window``) may be durations,
    converted at the data set's sample rate (:func:`train_settings`).
    """
    import torch

    from .tasks.classify import DatasetError, checkpoint_payload, split_for, train_run
    from .tasks.distributed import barrier, joined_process_group

    config, fixed_window = train_settings(data_dir, values, fixed_window)
    final = Path(settings.out) / name
    if final.exists() and not settings.overwrite:
        say(f"{name}: skipped, {ResultExists(final)}", err=True)
        return 0
    started = time.perf_counter()
    with joined_process_group(device) as (world, rank, device):
        if rank > 0:
            barrier()  # rank 0 decodes and caches the clips first; the others read its cache
            settings = BatchSettings(out=settings.out, overwrite=settings.overwrite, quiet=True)
        try:
            ds, paths, labels, clips, rate, cached = _train_data(data_dir, config, limit, cache_dir,
                                                                 settings)
        except DatasetError as exc:
            raise CommandError(str(exc)) from None
        finally:
            if rank == 0 and world > 1:
                barrier()
        try:
            split = split_for(paths, config)
        except DatasetError as exc:
            raise CommandError(str(exc)) from None
        x, y = torch.from_numpy(clips).to(device), torch.from_numpy(labels).to(device)
        runs: list[float | None] = list(fixed_window) + ([None] if learnable else [])
        if rank > 0:  # same steps as rank 0, which alone writes the results
            for fixed in runs:
                train_run(x, y, split, config, len(ds.classes), fixed_length=fixed)
            return 0

        def write(rd) -> str:
            results = []
            (rd.path / "checkpoints").mkdir()
            for fixed in runs:
                label = "learnable" if fixed is None else f"fixed-{fixed:g}"
                with _ProgressBar(tqdm_enabled(settings.quiet), label, config.epochs, "epoch") as bar:
                    r = train_run(x, y, split, config, len(ds.classes), fixed_length=fixed,
                                  progress=lambda row: bar.update(
                                      val_acc=f"{row['val_accuracy']:.3f}",
                                      theta=f"{row['window_length']:.2f}"))
                results.append(r)
                torch.save(checkpoint_payload(r, config, ds.classes),
                           rd.path / "checkpoints" / f"{label}.pt")
                if not settings.quiet:
                    say(f"{label}: {theta_text(r.window_length, 2, rate)}, test acc. "
                        f"{100 * r.metrics['test']['accuracy']:.1f} %, best epoch "
                        f"{r.best_epoch}, {r.elapsed_s:.0f} s")
            _write_train_files(rd, results, paths, ds, labels, split)
            rd.set_params({
                **_train_record(data_dir, config, rate, fixed_window, cached, len(paths)),
                "labelling": ds.labelling, "classes": ds.classes,
                "clip_policy": "zero-pad or crop at the end to clip_length",
                "split_sizes": {"train": len(split[0]), "val": len(split[1]), "test": len(split[2])},
                "learnable": learnable,
                "runs": [with_ms({"name": r.name, "window_length": r.window_length,
                                  "best_epoch": r.best_epoch, "metrics": r.metrics,
                                  "elapsed_s": r.elapsed_s}, rate) for r in results],
                "elapsed_s": time.perf_counter() - started, "device": device,
                "torch_threads": torch.get_num_threads(), "world_size": world,
            })
            return f"{len(results)} run(s) in {time.perf_counter() - started:.0f} s → {final}"

        return _named_result(settings, name, write)


def train_settings(data_dir: str, values: dict, fixed_window: tuple
                   ) -> tuple[Any, tuple[float, ...]]:
    """The TrainConfig of ``values`` and the fixed window lengths, in samples: durations are
    converted at the sample rate of DATA_DIR's audio files (read from their headers; files of
    different rates are an error). Values the config refuses are usage errors."""
    from .tasks.classify import TrainConfig

    specs = [values.get(k) for k in TRAIN_LENGTHS] + list(fixed_window)
    rate = _dataset_rate(data_dir) if any(is_duration(v) for v in specs) else None
    config = task_config(TrainConfig, values, TRAIN_LENGTHS, rate, "train settings: ")
    try:
        fixed = tuple(float(to_samples(v, rate)) for v in fixed_window)
    except UnitError as exc:
        raise UsageProblem(f"--fixed-window: {exc}") from None
    if any(v > config.n_fft for v in fixed):
        raise UsageProblem(f"--fixed-window: fixed window lengths must be ≤ n_fft={config.n_fft}")
    return config, fixed


def _dataset_rate(data_dir: str) -> float:
    """The one sample rate of the audio files of DATA_DIR, read from their headers."""
    import soundfile as sf

    from .tasks.classify import DatasetError, discover_dataset

    try:
        paths = discover_dataset(data_dir).paths
    except DatasetError as exc:
        raise CommandError(str(exc)) from None
    rates: dict[float, str] = {}
    for path in paths:
        try:
            rates.setdefault(float(sf.info(str(path)).samplerate), str(path))
        except Exception as exc:  # soundfile raises several types (RuntimeError, LibsndfileError)
            raise CommandError(f"{path}: cannot read audio ({one_line(exc)})") from None
    if len(rates) > 1:
        named = ", ".join(f"{r:g} Hz ({p})" for r, p in sorted(rates.items()))
        raise CommandError(f"{data_dir}: files of different sample rates ({named}); lengths given "
                           "as durations need one rate: resample them, or give samples")
    return next(iter(rates))


def _train_record(data_dir, config, rate, fixed_window, cached, n_clips: int) -> dict:
    """The data and settings of a train run for its params.json; lengths in samples and ms."""
    return {
        "version": __version__, "command": "train", "data_dir": str(data_dir),
        "n_clips": n_clips, "sample_rate": rate, "decoded_from_cache": cached,
        "fixed_windows": list(fixed_window),
        "config": with_ms({**{k: getattr(config, k) for k in TRAIN_FIELDS}, "seed": config.seed,
                           "split": list(config.split)}, rate),
    }


def _train_data(data_dir, config, limit, cache_dir, settings: BatchSettings):
    from .tasks.classify import discover_dataset, load_clips

    ds = discover_dataset(data_dir)
    chosen = np.arange(len(ds.paths))
    if limit is not None and limit < len(ds.paths):
        chosen = np.sort(np.random.default_rng(config.seed).permutation(len(ds.paths))[:limit])
    paths = [ds.paths[i] for i in chosen]
    bar = None
    if tqdm_enabled(settings.quiet):
        from tqdm import tqdm

        bar = tqdm(total=len(paths), desc="decoding", unit="clip", leave=False)
    try:
        clips, rate, cached = load_clips(
            paths, config.clip_length, cache_dir=cache_dir or Path(settings.out) / ".cache",
            progress=bar.update if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    return ds, paths, ds.labels[chosen], clips, rate, cached


def _write_train_files(rd, results, paths, ds, labels, split) -> None:
    from .tasks.classify import results_table_markdown

    rows = []
    for r in results:
        m = r.metrics
        rows.append((r.name, "" if r.fixed_length is None else r.fixed_length, r.window_length,
                     r.best_epoch, m["train"]["loss"], m["val"]["loss"], m["test"]["loss"],
                     m["train"]["accuracy"], m["val"]["accuracy"], m["test"]["accuracy"],
                     r.elapsed_s))
    rd.write_text("results.csv", csv_text(
        ["run", "fixed_length", "window_length", "best_epoch", "train_loss", "val_loss",
         "test_loss", "train_accuracy", "val_accuracy", "test_accuracy", "elapsed_s"], rows))
    rd.write_text("results.md", results_table_markdown(results))
    trajectory = [(r.name, s, e, t) for r in results if r.fixed_length is None
                  for (s, e, t) in r.theta_trajectory]
    rd.write_text("theta_trajectory.csv",
                  csv_text(["run", "step", "epoch", "window_length"], trajectory))
    history = [(r.name, h["epoch"], h["window_length"], h["train_loss_running"],
                h["train_acc_running"], h["val_loss"], h["val_accuracy"])
               for r in results for h in r.history]
    rd.write_text("history.csv", csv_text(
        ["run", "epoch", "window_length", "train_loss_running", "train_accuracy_running",
         "val_loss", "val_accuracy"], history))
    which = {}
    for part, idx in zip(("train", "val", "test"), split, strict=True):
        for i in idx:
            which[int(i)] = part
    rd.write_text("split.csv", csv_text(
        ["file", "label", "split"],
        ((str(p), ds.classes[int(labels[i])], which[i]) for i, p in enumerate(paths))))


def _protocol_settings(config, n_clips: int, limit: int | None, classes: list[str],
                       seeds: tuple[int, ...]) -> dict:
    """What must match for runs of two protocols to be interchangeable (the seed is per run;
    a ``--limit`` subset is drawn with the first seed, so that one must match too)."""
    matching = {"config": {**{k: getattr(config, k) for k in TRAIN_FIELDS},
                           "split": list(config.split)},
                "n_clips": n_clips, "limit": limit, "classes": list(classes)}
    if limit is not None:
        matching["subset_seed"] = seeds[0]
    return matching


def _earlier_runs(folder: str, settings: dict) -> list:
    """The runs of the protocol result ``folder`` (``--reuse``), after checking that its data and
    settings are ``settings``; a mismatch or an unreadable file is a one-line error naming it."""
    import csv
    import json

    from .tasks.protocol import runs_from_rows

    params_file, runs_file = Path(folder) / "params.json", Path(folder) / "runs.csv"
    try:
        params = json.loads(params_file.read_text(encoding="utf-8"))
        with open(runs_file, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, ValueError) as exc:
        raise CommandError(f"--reuse {folder}: cannot read its protocol result ({exc})") from None
    if not isinstance(params, dict) or not params.get("protocol"):
        raise CommandError(f"{params_file}: not the result of dstft train --seeds")
    differ = sorted(k for k in settings if k != "config" and params.get(k) != settings[k])
    differ += sorted(k for k, v in settings["config"].items()
                     if (params.get("config") or {}).get(k) != v)
    if differ:
        raise CommandError(f"{params_file}: other data or settings than this run "
                           f"({', '.join(differ)}); its runs cannot be reused")
    try:
        return runs_from_rows(rows)
    except ValueError as exc:
        raise CommandError(f"{runs_file}: {exc}") from None


def train_protocol(data_dir: str, values: dict, seeds: tuple[int, ...], fixed_window: tuple,
                   limit: int | None, cache_dir: str | None, name: str, jobs: int,
                   settings: BatchSettings, reuse: str | None = None) -> int:
    """``dstft train --seeds``: the Tables II–III protocol of :mod:`dstft_cli.tasks.protocol`.

    Writes OUT/NAME/protocol.md (the table), runs.csv (one row per run) and params.json (the
    settings and the summary). No ``fixed_window``: :func:`~dstft_cli.tasks.protocol.default_fixed_grid`.
    A ``--limit`` subset is drawn once, with the first seed, and shared by every seed.
    ``reuse``: an earlier protocol result with the same data and settings whose matching runs
    are taken instead of trained (their wall times are theirs).
    """
    from dataclasses import replace

    from .tasks.classify import DatasetError, split_for
    from .tasks.protocol import (
        RUN_FIELDS,
        default_fixed_grid,
        protocol_table_markdown,
        run_protocol,
        run_rows,
        summarise,
    )

    config, fixed_window = train_settings(data_dir, values, fixed_window)
    fixed_window = fixed_window or default_fixed_grid(config)
    final = Path(settings.out) / name
    if final.exists() and not settings.overwrite:
        say(f"{name}: skipped, {ResultExists(final)}", err=True)
        return 0
    started = time.perf_counter()
    try:
        ds, paths, labels, clips, rate, cached = _train_data(
            data_dir, replace(config, seed=seeds[0]), limit, cache_dir, settings)
        splits = {s: split_for(paths, replace(config, seed=s)) for s in seeds}
    except DatasetError as exc:
        raise CommandError(str(exc)) from None
    matching = _protocol_settings(config, len(paths), limit, ds.classes, seeds)
    earlier = _earlier_runs(reuse, matching) if reuse is not None else []
    reused = []

    def report(run, from_earlier: bool) -> None:
        if from_earlier:
            reused.append(run)
        if not settings.quiet:
            say(f"seed {run.seed}, {run.label}: {theta_text(run.window_length, 2, rate)}, test "
                f"acc. {100 * run.metrics['test']['accuracy']:.1f} %, {run.elapsed_s:.0f} s"
                + (" (reused)" if from_earlier else ""))

    def write(rd) -> str:
        results = run_protocol(clips, labels, splits, config, len(ds.classes), seeds=seeds,
                               fixed_grid=fixed_window, jobs=jobs, on_run=report, reuse=earlier)
        results.sort(key=lambda r: (r.seed, r.kind != "fixed", r.kind, r.window_length))
        summary = summarise(results)
        rd.write_text("protocol.md", protocol_table_markdown(summary))
        rd.write_text("runs.csv", csv_text(RUN_FIELDS, run_rows(results), exact=True))
        rd.set_params({
            "version": __version__, "command": "train", "protocol": True,
            "data_dir": str(data_dir), **matching, "config": with_ms(matching["config"], rate),
            "sample_rate": rate, "decoded_from_cache": cached,
            "seeds": list(seeds), "fixed_windows": list(fixed_window), "jobs": jobs,
            "split_sizes": {str(s): [len(part) for part in splits[s]] for s in seeds},
            "reused_from": None if reuse is None else str(reuse),
            "reused_runs": [[r.seed, r.label] for r in reused],
            "summary": summary, "elapsed_s": time.perf_counter() - started,
        })
        return (f"{len(results)} run(s) in {time.perf_counter() - started:.0f} s → "
                f"{final}/protocol.md")

    return _named_result(settings, name, write)


# ============================================================================================
# summary


def merge_summaries(out: str, quiet: bool) -> int:
    """``dstft summary``: the shards' summaries merged into OUT/summary.csv."""
    from .summary import merge_parts

    report = merge_parts(out)
    from .gallery import write_gallery

    write_gallery(out)  # the merged table on the batch's page
    if not quiet:
        counts = ", ".join(f"{v} {k}" for k, v in sorted(report.counts.items())) or "no rows"
        say(f"{report.path}: {report.rows} inputs ({counts}) from {len(report.parts)} part(s)"
            + (f", {report.rebuilt} rebuilt from result folders" if report.rebuilt else ""))
    if report.missing_parts:
        say(f"{out}: missing {', '.join(report.missing_parts)} (those shards have not "
            "finished; their finished results are included)", err=True)
    return 0
