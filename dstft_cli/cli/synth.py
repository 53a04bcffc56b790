"""``dstft synth``: the paper's test signals with their ground truth."""

from __future__ import annotations

from pathlib import Path

import click

from ..io import SIGNAL_FORMATS
from ..synth import SIGNALS
from .options import CONTEXT_SETTINGS, finish, quiet_debug_options
from .params import SAMPLE_RATE, SEED, Finite


@click.command("synth", context_settings=CONTEXT_SETTINGS)
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
@quiet_debug_options
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
    from .. import runs

    suffix = Path(out).suffix.lower()
    if suffix not in SIGNAL_FORMATS:
        raise click.BadParameter(f"{out}: unsupported extension {suffix or '(none)'}; use one of "
                                 f"{', '.join(SIGNAL_FORMATS)}", param_hint="'OUT'")
    given = {"duration": duration, "sample_rate": sample_rate, "snr_db": snr_db}
    generator_args = {"seed": seed, **{k: v for k, v in given.items() if v is not None}}
    finish(runs.synth, name, out, generator_args, overwrite, quiet)
