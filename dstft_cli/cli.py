"""The ``dstft`` command line: ``optimize``, ``scan``, ``apply``, ``synth`` (+ the task commands).

This is the only module of the package that imports click. Library errors become one line on
stderr here: ``InputError`` / ``RecipeError`` per input (the batch goes on, exit status 1), bad
options and config files are usage errors (exit status 2). No traceback unless ``--debug``.
torch and the recipes are imported inside the commands, so ``dstft --help`` stays fast.
"""

from __future__ import annotations

import concurrent.futures as cf
import math
import multiprocessing
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from . import __version__
from .cli_params import SAMPLE_RATE, SEED, Finite, Integer, Length
from .config import (
    DTYPES,
    MODES,
    OPTIMIZERS,
    Config,
    ConfigError,
    default_config,
    load_config,
    override,
    resolve,
    to_dict,
)
from .runtime import tune_allocator
from .synth import SIGNALS
from .units import to_samples

__all__ = ["main"]

DEFAULT_OUT = "dstft_out"
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


# ============================================================================================
# errors: one line on stderr, exit 2 for usage errors, 1 for failures


def _debug_requested(args: Sequence[str] | None) -> bool:
    argv = sys.argv[1:] if args is None else list(args)
    return "--debug" in argv or os.environ.get("DSTFT_DEBUG", "") not in ("", "0")


class DstftGroup(click.Group):
    """A click group whose errors are one line: ``Error: <message>`` (no usage block)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        debug = _debug_requested(args)
        tune_allocator()
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            hint = ""
            if exc.ctx is not None:
                hint = f" (see '{exc.ctx.command_path} --help')"
            click.echo(f"Error: {_one_line(exc.format_message())}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"Error: {_one_line(exc.format_message())}", err=True)
            sys.exit(exc.exit_code)
        except (click.Abort, KeyboardInterrupt):
            click.echo("Aborted.", err=True)
            sys.exit(130)
        except Exception as exc:  # a bug: one line unless --debug
            if debug:
                raise
            click.echo(f"Error: unexpected {type(exc).__name__}: {_one_line(str(exc))} "
                       "(run with --debug for the traceback)", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# ============================================================================================
# option bundles


def _parse_channel(ctx, param, value):
    if value is None:
        return "mix"
    v = str(value).strip().lower()
    if v in ("mix", "all"):
        return v
    try:
        index = int(v)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not mix, all or a channel index") from None
    if index < 0:
        raise click.BadParameter(f"channel index must be ≥ 0, got {index}")
    return index


def _parse_column(ctx, param, value):
    if value is None:
        return None
    return int(value) if value.strip().lstrip("-").isdigit() else value


def reader_options(f: Callable) -> Callable:
    """--channel --column --key --sample-rate: how to read an input."""
    f = click.option("--sample-rate", type=SAMPLE_RATE, default=None,
                     metavar="HZ",
                     help="Sample rate for inputs that carry none (NPY, NPZ, CSV without a "
                          "time column).")(f)
    f = click.option("--key", default=None, metavar="NAME",
                     help="Array to read from an NPZ file.")(f)
    f = click.option("--column", default=None, metavar="NAME|INDEX", callback=_parse_column,
                     help="CSV column (header name or 0-based index).")(f)
    f = click.option("--channel", default="mix", show_default=True, metavar="mix|N|all",
                     callback=_parse_channel,
                     help="Multichannel inputs: mean of the channels, channel N (0-based), or "
                          "all channels with shared parameters.")(f)
    return f


#: --device for commands that compute without a recipe (optimize's default comes from its config).
device_option = click.option("--device", default="auto", show_default=True,
                             type=click.Choice(["auto", "cpu", "cuda"]), help="Where to compute.")


def common_options(f: Callable) -> Callable:
    """--quiet --debug."""
    f = click.option("--debug", is_flag=True,
                     help="Show tracebacks for unexpected errors.")(f)
    f = click.option("--quiet", "-q", is_flag=True,
                     help="No progress bars and no per-input summary lines.")(f)
    return f


def transform_options(f: Callable) -> Callable:
    """--window --n-fft --hop --loss (shared by optimize and scan)."""
    f = click.option("--loss", default=None, metavar="shannon|renyi:ALPHA|kurtosis",
                     help="Criterion: Shannon entropy (Eq. 26), Rényi entropy of order ALPHA, "
                          "or kurtosis (Eq. 30, maximised).")(f)
    f = click.option("--hop", type=Length(integer=True), default=None, metavar="LENGTH",
                     help="Hop H of the frame grid tₙ = n·H, in samples or a duration such as "
                          "10ms (default n_fft / 8 of the sample rate's default n_fft).")(f)
    f = click.option("--n-fft", type=Length(integer=True, allow_auto=True), default=None,
                     metavar="LENGTH|auto",
                     help="DFT size L (θ ≤ L): samples, a duration (rounded to an even number of "
                          "samples) or auto (the default: the largest power of two within "
                          "128 ms, doubled while the optimum sits at the bound).")(f)
    f = click.option("--window", default=None, metavar="NAME",
                     help="Window family: hann (default), gaussian, hamming, blackman.")(f)
    return f


# ============================================================================================
# config resolution


def _resolve_config(mode: str | None, config_file: str | None, **flags: Any) -> Config:
    """Built-in recipe ← TOML file ← flags; ConfigError → usage error (exit 2)."""
    try:
        if config_file:  # the file's mode (or --mode) chooses the built-in recipe below it
            config = load_config(config_file, mode=mode)
        else:
            config = default_config(mode or "constant")
        config = override(config, **flags)
    except ConfigError as exc:
        if exc.source is None and exc.key and flags.get(exc.key) is not None:
            option = "--" + exc.key.replace("_", "-")
            raise click.BadParameter(exc.problem, param_hint=f"'{option}'") from None
        if exc.source is None and config_file:  # a file value that the options made invalid
            raise click.UsageError(f"{config_file} with the given options: {exc}") from None
        hint = ""
        if exc.key and exc.source is None:
            hint = f" (a recipe default; set it with --{exc.key.replace('_', '-')})"
        raise click.UsageError(f"{exc}{hint}") from None
    _check_window(config.window, None if flags.get("window") else config_file)
    return config


def _check_window(window: str, source: str | None) -> None:
    from .core import available_windows

    if window not in available_windows():
        where = f"{source}: " if source else ""
        raise click.UsageError(f"{where}unknown window {window!r}; available: "
                               f"{', '.join(available_windows())}")


def _resolve_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise click.BadParameter("CUDA is not available on this machine (torch "
                                     f"{torch.__version__}); use --device cpu or auto",
                                     param_hint="'--device'")
        if ":" in requested and int(requested.split(":")[1]) >= torch.cuda.device_count():
            raise click.BadParameter(f"{requested}: only {torch.cuda.device_count()} CUDA "
                                     "device(s)", param_hint="'--device'")
    return requested


# ============================================================================================
# batch machinery (shared by optimize, scan and apply)


@dataclass
class Outcome:
    """What happened to one input (returned by the workers, so plain data only)."""

    path: str
    status: str  # "ok" | "skipped" | "failed"
    message: str = ""
    detail: str = ""  # traceback with --debug
    output: str = ""
    warnings: list[str] = field(default_factory=list)  # one stderr line each


@dataclass
class Job:
    """One input to process; picklable so that --jobs can send it to a worker process."""

    path: str
    name: str
    out_root: str
    overwrite: bool
    reader: dict
    options: dict = field(default_factory=dict)
    progress: bool = False
    debug: bool = False


def _result_names(paths: Sequence[Path]) -> list[str]:
    """One result folder name per input: its stem, made unique within the batch."""
    names = [p.stem or p.name for p in paths]
    counts: dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    out = []
    used: set[str] = set()
    for p, n in zip(paths, names, strict=True):
        if counts[n] > 1:
            n = f"{n}_{p.suffix.lstrip('.').lower()}" if p.suffix else n
            if n in used:
                parent = p.resolve().parent.name or "root"
                n = f"{parent}_{n}"
            k = 2
            base = n
            while n in used:
                n, k = f"{base}_{k}", k + 1
        used.add(n)
        out.append(n)
    return out


def _tqdm_enabled(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


def _say(text: str, *, err: bool = False) -> None:
    from tqdm import tqdm

    tqdm.write(text, file=sys.stderr if err else sys.stdout)


def _init_worker() -> None:
    import torch

    tune_allocator()  # spawned workers start from a fresh process
    torch.set_num_threads(1)


def _guarded(worker: Callable[[Job], Outcome], job: Job) -> Outcome:
    """Run ``worker`` turning every expected error into a failed Outcome (one line)."""
    from .io import InputError, ResultExists
    from .recipes import RecipeError

    try:
        return worker(job)
    except ResultExists as exc:
        return Outcome(job.path, "skipped", f"{job.path}: skipped, {exc}")
    except InputError as exc:
        return Outcome(job.path, "failed", str(exc))
    except (RecipeError, ValueError, TypeError, OSError) as exc:
        detail = traceback.format_exc() if job.debug else ""
        return Outcome(job.path, "failed", f"{job.path}: {_one_line(str(exc))}", detail)
    except MemoryError:
        return Outcome(job.path, "failed", f"{job.path}: out of memory")
    except Exception as exc:  # noqa: BLE001 - one bad file never stops a batch
        detail = traceback.format_exc() if job.debug else ""
        return Outcome(job.path, "failed",
                       f"{job.path}: unexpected {type(exc).__name__}: {_one_line(str(exc))}",
                       detail)


def _run_batch(ctx: click.Context, worker: Callable[[Job], Outcome], jobs: list[Job],
               n_jobs: int, quiet: bool, failed_early: list[Outcome]) -> None:
    """Process ``jobs`` (in parallel with n_jobs > 1), report, and exit 1 if any failed."""
    from tqdm import tqdm

    outcomes: list[Outcome] = list(failed_early)
    for o in failed_early:
        _say(o.message, err=True)
    show_bar = _tqdm_enabled(quiet) and len(jobs) > 1
    bar = tqdm(total=len(jobs), desc="inputs", unit="file", disable=not show_bar,
               file=sys.stderr, dynamic_ncols=True, leave=False)

    def report(o: Outcome) -> None:
        outcomes.append(o)
        if o.status == "ok":
            if not quiet:
                _say(o.message)
            for warning in o.warnings if not quiet else ():  # all kept in params.json
                _say(f"{o.path}: warning: {warning}", err=True)
        else:
            _say(o.message, err=True)
            if o.detail:
                _say(o.detail.rstrip(), err=True)
        bar.update(1)

    try:
        if n_jobs > 1 and len(jobs) > 1:
            for job in jobs:
                job.progress = False
            context = multiprocessing.get_context("spawn")
            with cf.ProcessPoolExecutor(max_workers=min(n_jobs, len(jobs)), mp_context=context,
                                        initializer=_init_worker) as pool:
                futures = {pool.submit(_guarded, worker, job): job for job in jobs}
                for future in cf.as_completed(futures):
                    job = futures[future]
                    try:
                        report(future.result())
                    except Exception as exc:  # noqa: BLE001 - a crashed worker
                        report(Outcome(job.path, "failed",
                                       f"{job.path}: worker process failed "
                                       f"({type(exc).__name__}: {_one_line(str(exc))})"))
        else:
            for job in jobs:
                report(_guarded(worker, job))
    finally:
        bar.close()

    n_ok = sum(o.status == "ok" for o in outcomes)
    n_skip = sum(o.status == "skipped" for o in outcomes)
    n_fail = sum(o.status == "failed" for o in outcomes)
    if len(outcomes) > 1 and not quiet:
        _say(f"{n_ok} done, {n_skip} skipped, {n_fail} failed", err=True)
    if n_fail:
        ctx.exit(1)


def _expand_inputs(inputs: Sequence[str]) -> tuple[list[Path], list[Outcome]]:
    """Files as given, directories recursively; missing paths become failed outcomes."""
    from .io import InputError, iter_inputs

    paths: list[Path] = []
    failed: list[Outcome] = []
    for raw in inputs:
        try:
            found = iter_inputs([raw])
        except InputError as exc:
            failed.append(Outcome(raw, "failed", str(exc)))
            continue
        if not found and Path(raw).is_dir():
            failed.append(Outcome(raw, "failed", f"{raw}: no supported files in this folder"))
        seen = {p.resolve() for p in paths}
        paths += [p for p in found if p.resolve() not in seen]
    return paths, failed


def _load(job: Job):
    from .io import load_signal

    return load_signal(job.path, **job.reader)


def _input_record(signal, reader: dict) -> dict:
    return {
        "path": str(signal.path), "sha256": signal.sha256, "sample_rate": signal.sample_rate,
        "frames": signal.frames, "channels": signal.channels_in_file,
        "channel": reader.get("channel", "mix"),
    }


def _axes(n_fft: int, frame_positions, sample_rate: float):
    import numpy as np

    times = np.asarray(frame_positions, dtype=np.float64) / sample_rate
    freqs = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)
    return times, freqs


def _theta_title(summary, sample_rate: float) -> str:
    ms = 1000.0 / sample_rate
    if isinstance(summary, dict):
        return (f"θ ∈ [{summary['min']:.1f}, {summary['max']:.1f}] "
                f"(median {summary['median']:.1f}) samples "
                f"({summary['min'] * ms:.1f}–{summary['max'] * ms:.1f} ms)")
    return f"θ = {summary:.1f} samples ({summary * ms:.1f} ms)"


def _plot_magnitude(magnitude):
    """A 2-D map for the spectrogram figure (the channel mean for multichannel results)."""
    return magnitude if magnitude.ndim == 2 else magnitude.mean(axis=0)


# ============================================================================================
# optimize


class _Progress:
    """tqdm bar per optimisation stage, showing loss and a θ summary."""

    def __init__(self, enabled: bool, name: str, total: int):
        self.enabled, self.name, self.total = enabled, name, total
        self.bar = None
        self.stage = None

    def __call__(self, stage: str, iteration: int, loss: float, theta: str) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if stage != self.stage:
            if self.bar is not None:
                self.bar.close()
            self.stage = stage
            self.bar = tqdm(total=self.total, desc=f"{self.name} [{stage}]", unit="it",
                            file=sys.stderr, dynamic_ncols=True, leave=False)
        self.bar.set_postfix_str(f"loss={loss:.5g} {theta}", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _optimize_worker(job: Job) -> Outcome:
    import numpy as np
    import torch

    from . import plots
    from .io import ResultExists, check_length, result_dir
    from .recipes import run

    config: Config = job.options["config"]
    final = Path(job.out_root) / job.name
    if final.exists() and not job.overwrite:
        raise ResultExists(final)
    signal = _load(job)
    check_length(signal, resolve(config, signal.sample_rate, signal_length=signal.frames).n_fft)
    device = job.options["device"]
    x = torch.from_numpy(np.array(signal.data)).to(device)
    if x.shape[0] == 1:
        x = x[0]
    progress = _Progress(job.progress, Path(job.path).name, config.iters)
    try:
        result = run(x, config, sample_rate=signal.sample_rate, progress=progress)
    finally:
        progress.close()

    magnitude = result.magnitude.numpy().astype(np.float32)
    positions = result.frame_positions.numpy()
    times, freqs = _axes(result.n_fft, positions, signal.sample_rate)
    theta_grid = result.window_length_grid.numpy()
    summary = result.window_length_summary()
    rate = signal.sample_rate
    params = {
        "version": __version__,
        "mode": config.mode,
        "window": config.window,
        "n_fft": result.n_fft,
        "n_fft_ms": 1000.0 * result.n_fft / rate,
        "n_fft_reason": result.n_fft_reason,
        "hop": result.hop,
        "hop_ms": 1000.0 * result.hop / rate,
        "sample_rate": rate,
        "window_length": summary,
        "window_length_ms": (1000.0 * summary / rate if not isinstance(summary, dict)
                             else {k: 1000.0 * v / rate for k, v in summary.items()}),
        "loss": config.loss,
        "loss_initial": result.loss_initial,
        "loss_final": result.loss_final,
        "iterations": result.iterations,
        "converged": result.converged,
        "elapsed_s": round(result.elapsed_s, 4),
        "device": str(device),
        "seed": config.seed,
        "input": _input_record(signal, job.reader),
        "config": to_dict(config),
        "resolved_config": to_dict(result.config),
        "scale": result.scale,
        "warnings": result.warnings,
        "scan_minima": result.scan_minima,
        "events": result.events,
    }
    with result_dir(job.out_root, job.name, overwrite=job.overwrite) as rd:
        rd.save_npz("spectrogram.npz", magnitude=magnitude, window_length=theta_grid,
                    frame_positions=positions, times=times, freqs=freqs)
        if job.options["plots"]:
            title = f"{Path(job.path).name} — {config.mode}, {_theta_title(summary, rate)}"
            rd.savefig("spectrogram.png", plots.spectrogram_figure(
                _plot_magnitude(magnitude), times, freqs, title=title), dpi=110)
            loss_label = f"{config.loss} loss" + (" (−kurtosis + penalty)"
                                                  if config.loss == "kurtosis" else "")
            rd.savefig("loss.png", plots.loss_figure(
                result.loss_history, title=f"{Path(job.path).name} — {config.mode}",
                ylabel=loss_label), dpi=110)
            if result.window_length.numel() > 1:
                rd.savefig("window_lengths.png", plots.window_lengths_figure(
                    theta_grid, times, freqs, title=f"window lengths — {config.mode}"), dpi=110)
            if config.mode == "hop":
                lengths = result.window_length.numpy().reshape(-1) / signal.sample_rate
                rd.savefig("frames.png", plots.frames_figure(
                    times, lengths, signal.duration_s, title="frame positions and lengths",
                    signal=signal.data.mean(axis=0)), dpi=110)
        rd.set_params(params)
    ms = 1000.0 / rate
    theta_text = (f"θ = {summary:.2f} ({summary * ms:.1f} ms)" if not isinstance(summary, dict)
                  else f"θ ∈ [{summary['min']:.1f}, {summary['max']:.1f}] "
                       f"({summary['min'] * ms:.1f}–{summary['max'] * ms:.1f} ms)")
    message = (f"{job.path} → {final}: {config.mode}, {theta_text}, n_fft {result.n_fft}, "
               f"hop {result.hop}, loss {result.loss_initial:.5g} → {result.loss_final:.5g} "
               f"({result.iterations} iteration{'s' if result.iterations != 1 else ''}, "
               f"{'converged' if result.converged else 'not converged'}, "
               f"{result.elapsed_s:.2f} s)")
    return Outcome(job.path, "ok", message, output=str(final), warnings=list(result.warnings))


def _mode_help() -> str:
    return ("Recipe: constant (one θ), time (θ per frame), freq (θ per bin), tf (θ per bin and "
            "frame), hop (frame positions and lengths). Default: constant, or the config file's.")


@click.group(cls=DstftGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="dstft")
@click.option("--debug", is_flag=True, hidden=True)
def main(debug: bool) -> None:
    """Differentiable STFT: optimise spectrogram window lengths and frame positions.

    \b
    dstft optimize signal.wav --mode tf      optimise, write dstft_out/signal/
    dstft scan signal.wav                    loss against a constant window length
    dstft apply dstft_out/signal other.wav   reuse saved parameters
    dstft synth three-components x.wav       the paper's test signals
    """


@main.command(context_settings=CONTEXT_SETTINGS)
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("--mode", "-m", type=click.Choice(MODES), default=None, help=_mode_help())
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              metavar="FILE", help="TOML recipe file (see configs/); options override it.")
@transform_options
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=None,
              help="adam (the paper's), lbfgs, or scalar (a line search; constant mode only).")
@click.option("--iters", type=Integer(1, 10**7), default=None, metavar="N",
              help="At most N iterations per optimisation stage.")
@click.option("--lr", type=Finite(0.0, 1e6, low_open=True), default=None,
              help="Learning rate (samples per step for Adam).")
@click.option("--tol", type=Finite(0.0, 1.0), default=None,
              help="Stop when the loss improves by less than this (relative) for --patience "
                   "iterations.")
@click.option("--patience", type=Integer(1, 10**7), default=None, metavar="N",
              help="Iterations without improvement before stopping.")
@click.option("--tv-weight", type=Finite(0.0, 1e12), default=None, metavar="λ",
              help="Weight of the total-variation regulariser of θ (Eqs. 27-28).")
@click.option("--coverage-weight", type=Finite(0.0, 1e12), default=None, metavar="λ",
              help="Weight of the coverage penalty 1 − C (Eqs. 29-32).")
@click.option("--init-length", type=Length(), default=None, metavar="LENGTH",
              help="Initial window length, samples or a duration (default: the constant "
                   "optimum, or n_fft/2).")
@click.option("--min-length", type=Length(), default=None, metavar="LENGTH",
              help="Smallest allowed window length (default: the hop for --mode constant, so "
                   "that the windows cover the signal; 16 samples otherwise).")
@click.option("--max-length", type=Length(), default=None, metavar="LENGTH",
              help="Largest allowed window length (default n_fft).")
@click.option("--seed", type=SEED, default=None, help="Random seed (default 0).")
@click.option("--device", default=None, type=click.Choice(["auto", "cpu", "cuda"]),
              help="Where to compute: auto (CUDA when available; the default), cpu or cuda.")
@click.option("--dtype", type=click.Choice(DTYPES), default=None,
              help="Precision of the optimisation (the saved spectrogram is computed in float64).")
@reader_options
@click.option("--out", "-o", type=click.Path(file_okay=False), default=DEFAULT_OUT,
              show_default=True, help="Results go to OUT/<input stem>/.")
@click.option("--overwrite", is_flag=True, help="Replace existing result folders.")
@click.option("--no-plots", is_flag=True, help="Write no PNG files.")
@click.option("--jobs", "-j", type=Integer(1, 1024), default=1, show_default=True,
              help="Process this many inputs in parallel (one process each).")
@common_options
@click.pass_context
def optimize(ctx, inputs, mode, config_file, window, n_fft, hop, loss, optimizer, iters, lr, tol,
             patience, tv_weight, coverage_weight, init_length, min_length, max_length, seed,
             device, dtype, channel, column, key, sample_rate, out, overwrite, no_plots, jobs,
             quiet, debug):
    """Optimise the DSTFT parameters of each INPUT (files or folders) and save the results.

    For every input, OUT/<stem>/ gets params.json (written last), spectrogram.npz and, unless
    --no-plots, spectrogram.png, loss.png, window_lengths.png and (hop mode) frames.png.

    \b
    Examples:
      dstft optimize sample_data/three_components.wav --mode tf
      dstft optimize sample_data/shocks.wav --mode hop --coverage-weight 20
      dstft optimize sample_data/fsdd/ --mode constant --jobs 2 --no-plots
      dstft optimize data.npy --sample-rate 8000 --channel all --config configs/time.toml
    """
    config = _resolve_config(
        mode, config_file, window=window, n_fft=n_fft, hop=hop, loss=loss, optimizer=optimizer,
        iters=iters, lr=lr, tol=tol, patience=patience, tv_weight=tv_weight,
        coverage_weight=coverage_weight, init_length=init_length, min_length=min_length,
        max_length=max_length, seed=seed, dtype=dtype,
        device=device,
    )
    resolved_device = _resolve_device(config.device)
    paths, failed = _expand_inputs(inputs)
    names = _result_names(paths)
    reader = {"channel": channel, "column": column, "key": key, "sample_rate": sample_rate}
    options = {"config": config, "device": resolved_device, "plots": not no_plots}
    batch = [Job(str(p), n, out, overwrite, reader, options,
                 progress=_tqdm_enabled(quiet), debug=debug)
             for p, n in zip(paths, names, strict=True)]
    _run_batch(ctx, _optimize_worker, batch, jobs, quiet, failed)


# ============================================================================================
# scan


def _scan_lengths(config: Config, step: float) -> list[float]:
    """The scanned θ: min_length, min_length + step, … up to max_length (samples)."""
    top = config.n_fft if config.max_length is None else config.max_length
    count = int(math.floor((top - config.min_length) / step + 1e-9)) + 1
    if count > 100_000:
        raise click.BadParameter(f"{count} lengths: use a larger step", param_hint="'--step'")
    return [config.min_length + i * step for i in range(count)]


def _scan_worker(job: Job) -> Outcome:
    import numpy as np
    import torch

    from . import plots
    from .io import ResultExists, atomic_savefig, atomic_write_text, check_length
    from .recipes import scan

    config: Config = job.options["config"]
    out_root = Path(job.out_root)
    csv_path = out_root / f"{job.name}.scan.csv"
    png_path = out_root / f"{job.name}.scan.png"
    if csv_path.exists() and not job.overwrite:
        raise ResultExists(csv_path)
    signal = _load(job)
    config = resolve(config, signal.sample_rate, signal_length=signal.frames)
    check_length(signal, config.n_fft)
    x = torch.from_numpy(np.array(signal.data)).to(job.options["device"])
    lengths = _scan_lengths(config, to_samples(job.options["step"], signal.sample_rate))
    result = scan(x, config, lengths)
    out_root.mkdir(parents=True, exist_ok=True)
    lines = ["window_length,loss"] + [
        f"{t:.6g},{'' if not math.isfinite(v) else repr(v)}"
        for t, v in zip(result.lengths, result.losses, strict=True)
    ]
    if job.options["plots"]:
        fig = plots.scan_figure(np.array(result.lengths), np.array(result.losses),
                                best=result.best_length,
                                title=f"{Path(job.path).name} — {config.loss}, "
                                      f"n_fft {config.n_fft}, hop {config.hop}",
                                ylabel=f"{config.loss} loss")
        atomic_savefig(fig, png_path, dpi=110)
    atomic_write_text(csv_path, "\n".join(lines) + "\n")
    message = (f"{job.path} → {csv_path}: best θ = {result.best_length:.6g} "
               f"(loss {result.best_loss:.6g}) over {len(lengths)} lengths")
    return Outcome(job.path, "ok", message, output=str(csv_path))


@main.command(context_settings=CONTEXT_SETTINGS)
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("--min-length", type=Length(), default=16.0, show_default=True, metavar="LENGTH",
              help="Smallest window length of the scan (samples or a duration).")
@click.option("--max-length", type=Length(), default=None, metavar="LENGTH",
              help="Largest window length (default n_fft).")
@click.option("--step", type=Length(), default=8.0, show_default=True, metavar="LENGTH",
              help="Spacing of the scanned lengths (samples or a duration).")
@transform_options
@device_option
@reader_options
@click.option("--out", "-o", type=click.Path(file_okay=False), default=DEFAULT_OUT,
              show_default=True, help="Writes OUT/<stem>.scan.csv and OUT/<stem>.scan.png.")
@click.option("--overwrite", is_flag=True, help="Replace existing scan files.")
@click.option("--no-plots", is_flag=True, help="Write the CSV only.")
@common_options
@click.pass_context
def scan(ctx, inputs, min_length, max_length, step, window, n_fft, hop, loss, device, channel,
         column, key, sample_rate, out, overwrite, no_plots, quiet, debug):
    """Loss against a constant window length θ for each INPUT (the paper's Fig. 2).

    Writes a CSV (window_length,loss) and a PNG per input, and prints the best θ: the grid
    search that `dstft optimize --mode constant` replaces.

    \b
    Examples:
      dstft scan sample_data/three_components.wav --min-length 100 --max-length 1000 --step 10
      dstft scan sample_data/vibration.csv --n-fft 512 --loss renyi:3
    """
    config = _resolve_config("constant", None, window=window, n_fft=n_fft, hop=hop, loss=loss,
                             min_length=min_length, max_length=max_length)
    if isinstance(config.n_fft, int) and not isinstance(step, str) and not isinstance(
            config.min_length, str) and not isinstance(config.max_length, str):
        _scan_lengths(config, step)  # the count is known before any input: fail early
    options = {"config": config, "device": _resolve_device(device), "step": step,
               "plots": not no_plots}
    paths, failed = _expand_inputs(inputs)
    names = _result_names(paths)
    reader = {"channel": channel, "column": column, "key": key, "sample_rate": sample_rate}
    batch = [Job(str(p), n, out, overwrite, reader, options, debug=debug)
             for p, n in zip(paths, names, strict=True)]
    _run_batch(ctx, _scan_worker, batch, 1, quiet, failed)


# ============================================================================================
# apply


@dataclass(frozen=True)
class SavedParams:
    """Parameters read back from a result folder."""

    source: str
    params: dict
    window_length: Any  # numpy, broadcastable to (M, N)
    frame_positions: Any  # numpy (N,)

    @property
    def mode(self) -> str:
        return self.params["mode"]


def read_result(result_dir: str | os.PathLike) -> SavedParams:
    """Read params.json and spectrogram.npz of a result folder (ValueError if incomplete)."""
    import json

    import numpy as np

    folder = Path(result_dir)
    params_path, npz_path = folder / "params.json", folder / "spectrogram.npz"
    if not params_path.is_file():
        raise ValueError(f"{folder}: not a finished result folder (no params.json)")
    try:
        params = json.loads(params_path.read_text(encoding="utf-8"))
        with np.load(npz_path, allow_pickle=False) as npz:
            theta = np.array(npz["window_length"])
            positions = np.array(npz["frame_positions"])
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{folder}: unreadable result ({_one_line(str(exc))})") from None
    missing = [k for k in ("mode", "n_fft", "hop", "window") if k not in params]
    if missing:
        raise ValueError(f"{params_path}: missing {', '.join(missing)}")
    return SavedParams(str(folder), params, theta, positions)


def _apply_worker(job: Job) -> Outcome:
    import numpy as np
    import torch

    from . import plots
    from .core import frame_count
    from .io import ResultExists, check_length, result_dir
    from .recipes import LENGTH_MODE, spectrogram

    saved: SavedParams = job.options["saved"]
    p = saved.params
    n_fft, hop, mode = int(p["n_fft"]), int(p["hop"]), p["mode"]
    final = Path(job.out_root) / job.name
    if final.exists() and not job.overwrite:
        raise ResultExists(final)
    signal = _load(job)
    check_length(signal, n_fft)
    device = job.options["device"]
    theta = saved.window_length
    positions = saved.frame_positions
    per_frame = LENGTH_MODE.get(mode) in ("frame", "tf")
    if per_frame or mode == "hop":
        n_frames = frame_count(signal.frames, hop)
        if n_frames != positions.shape[0]:
            raise ValueError(
                f"the {mode!r} result in {saved.source} has {positions.shape[0]} frames but this "
                f"input gives {n_frames} (at hop {hop}); only constant and freq results apply "
                "to signals of another length")
        frame_positions = torch.from_numpy(positions).to(device)
    else:
        frame_positions = None
        positions = None
    if theta.size == 1:
        theta_t = torch.tensor(float(theta.reshape(())), dtype=torch.float64)
    elif theta.shape[0] == 1:
        theta_t = torch.from_numpy(theta.reshape(-1))
    else:
        theta_t = torch.from_numpy(theta)
    x = torch.from_numpy(np.array(signal.data)).to(device)
    if x.shape[0] == 1:
        x = x[0]
    mag = spectrogram(x, n_fft=n_fft, window_length=theta_t.to(device),
                      frame_positions=frame_positions, hop_length=hop,
                      window=p["window"]).cpu()
    if positions is None:
        from .core import default_frame_positions

        positions = default_frame_positions(signal.frames, hop).numpy()
    from .recipes import _base_loss

    loss_value = float(_base_loss(mag, p.get("loss", "shannon")))
    magnitude = mag.numpy().astype(np.float32)
    times, freqs = _axes(n_fft, positions, signal.sample_rate)
    summary = p.get("window_length")
    params = {
        "version": __version__,
        "mode": mode,
        "window": p["window"],
        "n_fft": n_fft,
        "hop": hop,
        "sample_rate": signal.sample_rate,
        "window_length": summary,
        "loss": p.get("loss", "shannon"),
        "loss_value": loss_value,
        "device": str(device),
        "source": {"path": saved.source, "input": p.get("input", {})},
        "input": _input_record(signal, job.reader),
    }
    with result_dir(job.out_root, job.name, overwrite=job.overwrite) as rd:
        rd.save_npz("spectrogram.npz", magnitude=magnitude, window_length=theta,
                    frame_positions=positions, times=times, freqs=freqs)
        if job.options["plots"]:
            title = f"{Path(job.path).name} — {mode} parameters of {Path(saved.source).name}"
            rd.savefig("spectrogram.png", plots.spectrogram_figure(
                _plot_magnitude(magnitude), times, freqs, title=title), dpi=110)
        rd.set_params(params)
    return Outcome(job.path, "ok", f"{job.path} → {final}: {mode} parameters of "
                                   f"{saved.source}, loss {loss_value:.5g}", output=str(final))


@main.command(context_settings=CONTEXT_SETTINGS)
@click.argument("result", type=click.Path(exists=True, file_okay=False), metavar="RESULT_DIR")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@device_option
@reader_options
@click.option("--out", "-o", type=click.Path(file_okay=False), default=DEFAULT_OUT,
              show_default=True, help="Results go to OUT/<input stem>/.")
@click.option("--overwrite", is_flag=True, help="Replace existing result folders.")
@click.option("--no-plots", is_flag=True, help="Write no PNG file.")
@common_options
@click.pass_context
def apply(ctx, result, inputs, device, channel, column, key, sample_rate, out, overwrite,
          no_plots, quiet, debug):
    """Spectrogram of each INPUT with the parameters saved in RESULT_DIR.

    Constant and per-bin (freq) parameters apply to signals of any length; per-frame ones
    (time, tf, hop) to signals with the same number of frames. OUT/<stem>/ gets
    spectrogram.npz, spectrogram.png and params.json.

    \b
    Example:
      dstft optimize sample_data/fsdd/0_george_0.wav --mode freq -o runs
      dstft apply runs/0_george_0 sample_data/fsdd/1_george_0.wav -o applied
    """
    try:
        saved = read_result(result)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'RESULT_DIR'") from None
    options = {"saved": saved, "device": _resolve_device(device), "plots": not no_plots}
    paths, failed = _expand_inputs(inputs)
    names = _result_names(paths)
    reader = {"channel": channel, "column": column, "key": key, "sample_rate": sample_rate}
    batch = [Job(str(p), n, out, overwrite, reader, options, debug=debug)
             for p, n in zip(paths, names, strict=True)]
    _run_batch(ctx, _apply_worker, batch, 1, quiet, failed)


# ============================================================================================
# synth


SYNTH_FORMATS = (".wav", ".flac", ".npy", ".csv")


@main.command(context_settings=CONTEXT_SETTINGS)
@click.argument("name", type=click.Choice(sorted(SIGNALS)))
@click.argument("out", type=click.Path(dir_okay=False), metavar="OUT")
@click.option("--duration", type=Finite(0.0, 3600.0, low_open=True), default=None,
              metavar="SECONDS", help="Length of the signal (default: the generator's).")
@click.option("--sample-rate", type=SAMPLE_RATE, default=None,
              metavar="HZ", help="Sample rate (default 8000).")
@click.option("--snr-db", type=Finite(-300.0, 300.0), default=None, metavar="DB",
              help="Signal-to-noise ratio of the added white noise (default: the generator's).")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Seed of the random components and noise.")
@click.option("--overwrite", is_flag=True, help="Replace existing files.")
@common_options
def synth(name, out, duration, sample_rate, snr_db, seed, overwrite, quiet, debug):
    """Write the paper's test signal NAME to OUT (.wav, .flac, .npy or .csv) with its truth.

    \b
    three-components  Sec. VI-A: FM component, close tone, transient
    shocks            Sec. VI-B: damped oscillations at irregular times, 20 dB SNR
    harmonics         Sec. VI-C: harmonics of a varying fundamental, in noise

    The ground truth goes beside OUT: <stem>_truth.csv (per-sample columns such as time_s and
    the instantaneous frequencies) and <stem>_truth.json (everything else). WAV files are
    32-bit float, FLAC 24-bit PCM scaled to a 0.9 peak.

    \b
    Example:
      dstft synth shocks shocks.wav --seed 3 && dstft optimize shocks.wav --mode hop
    """
    import json

    import numpy as np

    from .io import atomic_open, atomic_write_text
    from .synth import truth_columns, truth_metadata

    out_path = Path(out)
    suffix = out_path.suffix.lower()
    if suffix not in SYNTH_FORMATS:
        raise click.BadParameter(f"{out}: unsupported extension {suffix or '(none)'}; use one of "
                                 f"{', '.join(SYNTH_FORMATS)}", param_hint="'OUT'")
    truth_csv = out_path.with_name(out_path.stem + "_truth.csv")
    truth_json = out_path.with_name(out_path.stem + "_truth.json")
    if not overwrite:
        for p in (out_path, truth_csv, truth_json):
            if p.exists():
                raise click.ClickException(f"{p}: exists (use --overwrite to replace it)")
    kwargs: dict[str, Any] = {"seed": seed}
    if duration is not None:
        kwargs["duration"] = duration
    if sample_rate is not None:
        kwargs["sample_rate"] = sample_rate
    if snr_db is not None:
        kwargs["snr_db"] = snr_db
    try:
        x, fs, truth = SIGNALS[name](**kwargs)
    except ValueError as exc:
        raise click.UsageError(f"{name}: {_one_line(str(exc))}") from None
    x = np.asarray(x, dtype=np.float64)
    if out_path.parent and not out_path.parent.exists():
        out_path.parent.mkdir(parents=True, exist_ok=True)
    if suffix in (".wav", ".flac"):
        import soundfile as sf

        if suffix == ".flac":
            if int(fs) != fs:
                raise click.UsageError(f"{out}: FLAC needs an integer sample rate, got {fs}")
            data, subtype = 0.9 * x / max(float(np.max(np.abs(x))), 1e-300), "PCM_24"
        else:
            data, subtype = x.astype(np.float32), "FLOAT"
        with atomic_open(out_path, "wb") as fh:
            sf.write(fh, data, int(round(fs)), subtype=subtype, format=suffix[1:].upper())
    elif suffix == ".npy":
        with atomic_open(out_path, "wb") as fh:
            np.save(fh, x, allow_pickle=False)
    else:
        t = np.arange(x.size) / fs
        text = "time_s,signal\n" + "\n".join(f"{float(a)!r},{float(b)!r}"
                                              for a, b in zip(t, x, strict=True))
        atomic_write_text(out_path, text + "\n")
    columns = truth_columns(truth)
    header = ",".join(columns)
    rows = np.column_stack(list(columns.values()))
    body = "\n".join(",".join(repr(float(v)) for v in row) for row in rows)
    atomic_write_text(truth_csv, header + "\n" + body + "\n")
    meta = {"signal": name, "sample_rate": fs, "frames": int(x.size), "seed": seed,
            **truth_metadata(truth)}
    atomic_write_text(truth_json, json.dumps(meta, indent=2, default=str) + "\n")
    if not quiet:
        click.echo(f"{name} → {out_path} ({x.size} samples at {fs:g} Hz); truth in "
                   f"{truth_csv.name}, {truth_json.name}")


# ============================================================================================
# task commands (dstft_cli.cli_tasks) — registered when present


def _register_task_commands() -> None:
    import importlib
    import importlib.util

    if importlib.util.find_spec(f"{__package__}.cli_tasks") is None:
        return  # not part of this installation
    cli_tasks = importlib.import_module(f"{__package__}.cli_tasks")
    for attr in ("track", "fit_window", "train"):
        command = getattr(cli_tasks, attr, None)
        if isinstance(command, click.Command):
            main.add_command(command)


_register_task_commands()


if __name__ == "__main__":  # pragma: no cover
    main(prog_name="dstft")
