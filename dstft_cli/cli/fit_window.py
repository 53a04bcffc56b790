"""``dstft fit-window``: one window length learnt for a data set (Sec. VII-A)."""

from __future__ import annotations

import click

from . import options
from .params import SEED, Finite, Integer, Length, SafeName


@click.command("fit-window", context_settings=options.CONTEXT_SETTINGS)
@click.argument("data", nargs=-1, type=click.Path(exists=True))
@click.option("--generate", type=Integer(1, 10**6), default=None, metavar="J",
              help="Instead of DATA, learn on J synthetic variable-period sines with noise "
                   "(dstft_cli.synth.variable_period_sines, seeded by --seed).")
@click.option("--snr", type=Finite(-300.0, 300.0), default=10.0, show_default=True,
              help="SNR (dB) of the generated signals.")
@click.option("--duration", type=Finite(0.0, 3600.0, low_open=True), default=1.0,
              show_default=True, help="Length (s) of the generated signals.")
@click.option("--n-fft", type=Length(integer=True), default=512, show_default=True,
              metavar="LENGTH", help="DFT size: samples or a duration such as 64ms (rounded to "
                                     "an even number of samples at the data's sample rate).")
@click.option("--hop", type=Length(integer=True), default=None, metavar="LENGTH",
              help="Hop, samples or a duration (default n_fft/4).")
@click.option("--window", default="hann", show_default=True, help="Window family.")
@click.option("--init-length", type=Length(), default=None, metavar="LENGTH",
              help="θ at the start, samples or a duration (default n_fft/4).")
@click.option("--min-length", type=Length(), default=None, metavar="LENGTH",
              help="Smallest θ, samples or a duration (default n_fft/64).")
@click.option("--iters", type=Integer(0, 10**7), default=150, show_default=True,
              help="Adam steps.")
@click.option("--lr", type=Finite(0.0, 1e6, low_open=True), default=None,
              help="Initial Adam step in samples (default n_fft/32), decayed to 1 %.")
@click.option("--grid-points", type=Integer(2, 10**5), default=64, show_default=True,
              help="Points of the loss-vs-θ curve (min-length … n_fft).")
@click.option("--name", type=SafeName(), default="fit_window", show_default=True, help="Result folder name.")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Random seed of torch and numpy (and of the generated signals).")
@options.device_option()
@options.batch_options(out_help="Folder in which the result folder NAME is created.",
                       plots_help="Do not write the PNGs.",
                       sample_rate_help="Sample rate of the generated signals (default 8000), or of "
                                        "inputs that carry none.", shards=False)
def fit_window(data, generate, snr, duration, window, hop, name, seed, device, settings,
               **flags):
    """Learn one window length for a data set: min MSE of the Eq. (34) frequency (Sec. VII-A).

    DATA: signal files or folders; each signal needs its truth beside it as <stem>_truth.csv
    (time_s, f_hz). Writes OUT/NAME/params.json (θ), loss_history.csv, loss_curve.csv and the
    PNGs. Lengths are samples or durations (20ms), converted at the data's sample rate; θ is
    reported in both. Example: dstft fit-window --generate 16 --snr 10 --n-fft 64ms
    """
    from .. import runs

    options.check_window(window, option="--window")
    if bool(data) == (generate is not None):
        raise click.UsageError("give DATA (signals with <stem>_truth.csv beside them) or "
                               "--generate J, not both and not neither")
    synthetic = None if generate is None else {
        "count": generate, "snr_db": snr, "duration": duration,
        "sample_rate": settings.reader["sample_rate"] or 8000.0}
    values = dict(window=window, hop_length=hop, **flags)
    options.finish(runs.fit_window, data, synthetic, values, name, seed,
                   options.resolve_device(device), settings)
