"""``dstft track``: an instantaneous frequency on an entropy-optimised spectrogram (Sec. VI-C)."""

from __future__ import annotations

import click

from . import options
from .params import SEED, Finite, Integer, Length


@click.command("track", context_settings=options.CONTEXT_SETTINGS)
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--mode", type=click.Choice(["constant", "time"]), default="time", show_default=True,
              help="Entropy-optimised single θ, or one θₙ per frame initialised from it.")
@click.option("--harmonic", "-k", type=Integer(1, 10**4), default=1, show_default=True,
              help="Track the K-th harmonic and divide its frequency by K.")
@click.option("--fmin", type=Finite(0.0, 1e9), default=None, metavar="HZ",
              help="Lowest fundamental frequency searched (the ridge is searched from K·fmin).")
@click.option("--fmax", type=Finite(0.0, 1e9, low_open=True), default=None, metavar="HZ",
              help="Highest fundamental frequency searched (up to K·fmax).")
@click.option("--smoothness", type=Finite(0.0, 1e12), default=None,
              help="Ridge penalty λ per squared bin jump of the tracked harmonic (log-magnitude "
                   "units; default 0.05/K).")
@click.option("--n-fft", type=Length(integer=True), default=1024, show_default=True,
              metavar="LENGTH", help="DFT size (even; samples or a duration); θ ≤ L.")
@click.option("--hop", type=Length(integer=True), default=None, metavar="LENGTH",
              help="Hop between frames, samples or a duration (default n_fft/16).")
@click.option("--window", default="hann", show_default=True, help="Window family.")
@click.option("--min-length", type=Length(), default=None, metavar="LENGTH",
              help="Smallest θ allowed (default n_fft/8: shorter windows blur the ridge in "
                   "frequency more than they sharpen it in time).")
@click.option("--entropy", type=click.Choice(["global", "frame"]), default="global",
              show_default=True,
              help="Criterion for θ: Shannon entropy of the whole map (Eq. 26) or the mean "
                   "entropy of each frame.")
@click.option("--tv-weight", type=Finite(0.0, 1e12), default=0.0, show_default=True,
              help="Total-variation penalty on θₙ across frames (mode time).")
@click.option("--iters", type=Integer(0, 10**7), default=200, show_default=True,
              help="Adam steps of the per-frame θ (mode time).")
@click.option("--lr", type=Finite(0.0, 1e6, low_open=True), default=None,
              help="Adam step for θₙ in samples (default n_fft/100).")
@click.option("--truth", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Ground-truth CSV (time_s, f0_hz); default: INPUT_truth.csv beside the input "
                   "if present. Adds the MSE to params.json and the plot.")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Random seed of torch and numpy, set before each input.")
@click.option("--ridges", type=Integer(1, 64), default=1, show_default=True, metavar="K",
              help="Also follow K components (ridge_1.csv … ridge_K.csv, strongest first) with a "
                   "slope penalty, so components that cross keep their identity.")
@options.device_option()
@options.batch_options(out_help="Results go to OUT/<input stem>/.", plots_help="Do not write tracking.png.")
@options.figure_options(frequency_limits=False)
def track(inputs, window, truth, seed, device, settings, figure_options, **flags):
    """Track an instantaneous frequency on an entropy-optimised spectrogram (Sec. VI-C).

    Writes OUT/<stem>.track/frequency.csv (time_s, frequency_hz), tracking.png (overlay),
    spectrogram.npz and params.json (--fmin/--fmax bound the search; `dstft plot` crops).
    Example: dstft track sample_data/harmonics.wav --harmonic 10
    """
    from .. import runs
    from ..tasks.tracking import TrackConfig
    from ..units import is_duration

    ridges = flags.pop("ridges")
    options.check_window(window, option="--window")
    flags["hop_length"] = flags.pop("hop")
    # lengths given as durations are converted per input (runs.track); checked here: the rest
    durations = {k: flags.pop(k) for k in ("n_fft", "hop_length", "min_length")
                 if is_duration(flags[k])}
    try:
        config = TrackConfig(window=window, **flags)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if truth is not None and len(inputs) > 1:
        raise click.UsageError("--truth needs a single input (or put INPUT_truth.csv beside each)")
    options.finish(runs.track, inputs, config, truth, seed, options.resolve_device(device),
                   settings, durations, figure_options, ridges=ridges)
