"""The options shared by the commands, each defined once, and how their values are resolved.

* :func:`batch_options` — every command over inputs: ``-o/--out``, ``--overwrite``, ``--jobs``,
  ``--quiet``, ``--debug``, ``--no-plots`` and the reader options ``--channel``, ``--column``,
  ``--key``, ``--sample-rate``. The command receives them as one
  :class:`~dstft_cli.batch.BatchSettings` argument named ``settings``.
* :func:`device_option` and :func:`resolve_device` — ``--device auto|cpu|cuda|cuda:N``.
* :func:`quiet_debug_options` — ``--quiet`` and ``--debug`` for commands without inputs.
* :func:`transform_options` and :func:`resolve_config` — the recipe options of optimize and scan.
* :func:`figure_options` — the figure settings (limits, dB range and reference, colour map, size,
  resolution, formats, frequency scale, θ unit, title) of every command that draws, passed to
  it as one :class:`~dstft_cli.plots.FigureOptions` argument named ``figure_options``; a recipe
  file's ``[plot]`` table (``--config``) supplies defaults.
* :func:`finish` — call the command's one function and turn its result into the exit status.

torch is imported only when a device is resolved.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from typing import Any

import click

from ..batch import BatchSettings, CommandError, UsageProblem, one_line
from ..config import Config, ConfigError, default_config, load_config, override
from .params import SAMPLE_RATE, Finite, Integer, Length

__all__ = [
    "CONTEXT_SETTINGS", "DEFAULT_OUT", "batch_options", "reader_options", "device_option",
    "resolve_device", "quiet_debug_options", "transform_options", "resolve_config", "finish",
    "check_window", "DEVICE_HELP", "figure_options",
]

DEFAULT_OUT = "dstft_out"
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
DEVICE_HELP = "Where to compute: auto (CUDA when available), cpu, cuda or cuda:N."
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


# --------------------------------------------------------------------------------------------
# running the command's function


def finish(function: Callable[..., int], *args: Any, **kwargs: Any) -> None:
    """Call ``function`` and exit with the status it returns; a :class:`CommandError` becomes
    ``Error: <message>`` and exit status 1, a :class:`UsageProblem` a usage error (2)."""
    try:
        status = function(*args, **kwargs)
    except UsageProblem as exc:
        raise click.UsageError(one_line(exc)) from None
    except CommandError as exc:
        raise click.ClickException(one_line(exc)) from None
    click.get_current_context().exit(status or 0)


# --------------------------------------------------------------------------------------------
# devices


class DeviceType(click.ParamType):
    name = "auto|cpu|cuda|cuda:N"

    def convert(self, value, param, ctx):
        text = str(value).strip().lower()
        if not _DEVICE_RE.match(text):
            self.fail(f"{value!r} is not auto, cpu, cuda or cuda:N", param, ctx)
        return text


def device_option(default: str | None = "auto") -> Callable:
    """``--device``; ``default=None`` leaves the choice to a recipe file."""
    return click.option("--device", type=DeviceType(), default=default,
                        show_default=default is not None, help=DEVICE_HELP)


def resolve_device(requested: str) -> str:
    """``auto`` → cuda when available, else cpu; a CUDA device that is not there is a usage
    error naming ``--device``."""
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


# --------------------------------------------------------------------------------------------
# reading inputs


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


def reader_options(f: Callable, sample_rate_help: str | None = None) -> Callable:
    """--channel --column --key --sample-rate: how to read an input."""
    f = click.option("--sample-rate", type=SAMPLE_RATE, default=None,
                     metavar="HZ",
                     help=sample_rate_help or "Sample rate for inputs that carry none (NPY, NPZ, "
                                              "CSV without a time column).")(f)
    f = click.option("--key", default=None, metavar="NAME",
                     help="Array to read from an NPZ file.")(f)
    f = click.option("--column", default=None, metavar="NAME|INDEX", callback=_parse_column,
                     help="CSV column (header name or 0-based index).")(f)
    f = click.option("--channel", default="mix", show_default=True, metavar="mix|N|all",
                     callback=_parse_channel,
                     help="Multichannel inputs: mean of the channels, channel N (0-based), or "
                          "all channels with shared parameters.")(f)
    return f


def quiet_debug_options(f: Callable) -> Callable:
    """--quiet --debug."""
    f = click.option("--debug", is_flag=True,
                     help="Show tracebacks for unexpected errors.")(f)
    f = click.option("--quiet", "-q", is_flag=True,
                     help="No progress bars and no per-input summary lines.")(f)
    return f


_SETTINGS_KEYS = ("out", "overwrite", "jobs", "quiet", "debug", "no_plots", "channel", "column",
                  "key", "sample_rate")


class ShardType(click.ParamType):
    """``K/N`` (1 ≤ K ≤ N) or ``slurm``: the array task's ``SLURM_ARRAY_TASK_ID`` counted from
    ``SLURM_ARRAY_TASK_MIN`` (1-based K) and ``SLURM_ARRAY_TASK_COUNT``."""

    name = "K/N|slurm"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        text = str(value).strip().lower()
        if text == "slurm":
            env = os.environ
            try:
                task, count = int(env["SLURM_ARRAY_TASK_ID"]), int(env["SLURM_ARRAY_TASK_COUNT"])
                first = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
            except (KeyError, ValueError):
                self.fail("slurm: SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT are not set "
                          "(not in a Slurm job array?)", param, ctx)
            k, n = task - first + 1, count
        else:
            k_text, sep, n_text = text.partition("/")
            if not (sep and k_text.isdigit() and n_text.isdigit()):
                self.fail(f"{value!r} is not K/N (e.g. 2/8) or slurm", param, ctx)
            k, n = int(k_text), int(n_text)
        if not 1 <= k <= n <= 100_000:
            self.fail(f"{value!r}: shard K/N needs 1 ≤ K ≤ N (N ≤ 100000)", param, ctx)
        return (k, n)


def batch_options(*, out_help: str, plots_help: str = "Write no PNG files.",
                  sample_rate_help: str | None = None, shards: bool = True) -> Callable:
    """The options of a command over inputs, passed to it as ``settings: BatchSettings``."""

    def decorate(f: Callable) -> Callable:
        @functools.wraps(f)
        def command(*args: Any, **kwargs: Any) -> Any:
            values = {k: kwargs.pop(k) for k in _SETTINGS_KEYS}
            reader = {k: values[k] for k in ("channel", "column", "key", "sample_rate")}
            settings = BatchSettings(out=values["out"], overwrite=values["overwrite"],
                                     jobs=values["jobs"], quiet=values["quiet"],
                                     debug=values["debug"], plots=not values["no_plots"],
                                     reader=reader, shard=kwargs.pop("shard", None))
            return f(*args, settings=settings, **kwargs)

        command = reader_options(command, sample_rate_help)
        if shards:
            command = click.option(
                "--shard", type=ShardType(), default=None, metavar="K/N|slurm",
                help="Process only shard K of N of the inputs (a fixed split by a hash of each "
                     "input's path), or 'slurm' for the Slurm array task's; the summary goes "
                     "to OUT/summary.K-of-N.csv (merge with 'dstft summary OUT')."
            )(command)
        command = click.option("--jobs", "-j", type=Integer(1, 1024), default=1,
                               show_default=True,
                               help="Process this many inputs in parallel (one process each)."
                               )(command)
        command = click.option("--no-plots", is_flag=True, help=plots_help)(command)
        command = click.option("--overwrite", is_flag=True,
                               help="Replace existing results instead of skipping them.")(command)
        command = click.option("--out", "-o", type=click.Path(file_okay=False),
                               default=DEFAULT_OUT, show_default=True, help=out_help)(command)
        return quiet_debug_options(command)

    return decorate


# --------------------------------------------------------------------------------------------
# recipes (optimize, scan)


def transform_options(f: Callable) -> Callable:
    """--window --n-fft --hop --loss (shared by optimize and scan)."""
    f = click.option("--loss", default=None, metavar="NAME[:PARAM]",
                     help="Criterion: shannon (Eq. 26, default), shannon-energy, renyi:ALPHA, "
                          "renyi-energy:ALPHA, stankovic[:P] or kurtosis (Eq. 30, maximised); "
                          "see the README's Losses section.")(f)
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


def resolve_config(mode: str | None, config_file: str | None, **flags: Any) -> Config:
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
    check_window(config.window, None if flags.get("window") else config_file)
    return config


def check_window(window: str, source: str | None = None, option: str | None = None) -> None:
    """A usage error unless ``window`` is a known window family."""
    from ..core.windows import available_windows

    if window not in available_windows():
        where = f"{source}: " if source else ""
        message = (f"{where}unknown window {window!r}; available: "
                   f"{', '.join(available_windows())}")
        if option:
            raise click.BadParameter(message, param_hint=f"'{option}'")
        raise click.UsageError(message)


# --------------------------------------------------------------------------------------------
# figures

#: FigureOptions field → its option.
FIGURE_FLAGS = {"fmin": "--fmin", "fmax": "--fmax", "tmin": "--tmin", "tmax": "--tmax",
                "db_range": "--db-range", "ref": "--ref", "cmap": "--cmap", "figsize": "--figsize",
                "dpi": "--dpi", "formats": "--format", "freq_scale": "--freq-scale",
                "theta_unit": "--theta-unit", "title": "--title"}


def _split_formats(ctx, param, value):
    return tuple(part.strip() for item in value or () for part in item.split(",") if part.strip())


def _parse_figsize(ctx, param, value):
    if value is None:
        return None
    parts = value.replace("x", ",").split(",")
    try:
        size = tuple(float(p) for p in parts)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not WIDTH,HEIGHT in inches") from None
    if len(size) != 2:
        raise click.BadParameter(f"{value!r} is not WIDTH,HEIGHT in inches")
    return size


def _figure_settings(flags: dict[str, Any], config_file: str | None):
    """The FigureOptions of the flags on top of the ``[plot]`` table of ``config_file``."""
    import dataclasses

    from ..config import ConfigError, read_plot_table
    from ..plots import FigureOptionError, FigureOptions

    base = FigureOptions()
    if config_file:
        try:
            base = FigureOptions.from_mapping(read_plot_table(config_file))
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from None
        except (FigureOptionError, TypeError) as exc:
            raise click.UsageError(f"{config_file}: [plot] {one_line(exc)}") from None
    given = {k: v for k, v in flags.items() if v is not None and v != ()}
    try:
        return dataclasses.replace(base, **given)
    except FigureOptionError as exc:
        raise click.BadParameter(exc.problem, param_hint=f"'{FIGURE_FLAGS[exc.option]}'") from None


def figure_options(*, frequency_limits: bool = True) -> Callable:
    """The figure options, handed to the command as ``figure_options``. ``frequency_limits=False``
    leaves out --fmin/--fmax for a command that uses them otherwise (track's search band)."""

    def decorate(f: Callable) -> Callable:
        names = [k for k in FIGURE_FLAGS if frequency_limits or k not in ("fmin", "fmax")]

        @functools.wraps(f)
        def command(*args: Any, **kwargs: Any) -> Any:
            flags = {k: kwargs.pop(k) for k in names}
            kwargs["figure_options"] = _figure_settings(flags, kwargs.get("config_file"))
            return f(*args, **kwargs)

        specs = [
            ("--title", dict(default=None, metavar="TEXT",
                             help="Title of every figure (default: input, mode and θ).")),
            ("--theta-unit", dict(type=click.Choice(["ms", "samples"]), default=None,
                                  help="Unit of window lengths θ (the other one on a second "
                                       "axis; default ms).")),
            ("--freq-scale", dict(type=click.Choice(["linear", "log"]), default=None,
                                  help="Frequency axis scale (default linear).")),
            ("--format", dict(multiple=True, callback=_split_formats, metavar="png|svg|pdf",
                              help="Figure file format; repeat or comma-separate for several "
                                   "(default png).")),
            ("--dpi", dict(type=Finite(1.0, 2400.0), default=None, metavar="N",
                           help="Resolution of PNG files (default 110).")),
            ("--figsize", dict(default=None, callback=_parse_figsize, metavar="W,H",
                               help="Figure size in inches (default: each figure's own).")),
            ("--cmap", dict(default=None, metavar="NAME",
                            help="Matplotlib colour map of spectrograms (default magma).")),
            ("--ref", dict(default=None, metavar="peak|VALUE",
                           help="0 dB reference: the largest magnitude (peak, the default) or "
                                "an absolute magnitude; stated on the colour bar.")),
            ("--db-range", dict(type=Finite(0.0, 1000.0, low_open=True), default=None, metavar="DB",
                                help="Dynamic range shown below the top of the colour bar "
                                     "(default 100).")),
            ("--tmax", dict(type=Finite(0.0, 1e9), default=None, metavar="S", help="Last time shown (s).")),
            ("--tmin", dict(type=Finite(0.0, 1e9), default=None, metavar="S", help="First time shown (s).")),
        ]
        if frequency_limits:
            specs += [("--fmax", dict(type=Finite(0.0, 1e9), default=None, metavar="HZ",
                                      help="Highest frequency shown (Hz).")),
                      ("--fmin", dict(type=Finite(0.0, 1e9), default=None, metavar="HZ",
                                      help="Lowest frequency shown (Hz)."))]
        for flag, spec in specs:
            field = next(k for k, v in FIGURE_FLAGS.items() if v == flag)
            command = click.option(flag, field, **spec)(command)
        return command

    return decorate
