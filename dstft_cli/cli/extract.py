"""``dstft extract``: a component of a result (a band or a ridge), resynthesised as audio."""

from __future__ import annotations

import math

import click

from . import options
from .params import Finite, SafeName


def _range(text: str, option: str, unit: str) -> tuple[float, float]:
    parts = text.split(":")
    try:
        low, high = (float(p) for p in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        low = high = None
    if low is None or not (math.isfinite(low) and math.isfinite(high)):
        raise click.BadParameter(f"{text!r} is not LOW:HIGH in {unit} (two numbers)",
                                 param_hint=f"'{option}'")
    if low < 0 or high <= low:
        raise click.BadParameter(f"{text!r} is empty or negative: need 0 ≤ LOW < HIGH",
                                 param_hint=f"'{option}'")
    return low, high


@click.command("extract", context_settings=options.CONTEXT_SETTINGS)
@click.argument("results", nargs=-1, required=True, metavar="RESULT_DIR...")
@click.option("--band", default=None, metavar="FMIN:FMAX", help="Frequency band in Hz.")
@click.option("--time", "time_range", default=None, metavar="T0:T1",
              help="Only frames between T0 and T1 seconds (with --band).")
@click.option("--ridge", type=click.Path(exists=True, dir_okay=False), default=None,
              metavar="CSV", help="A ridge: time_s, frequency_hz (frequency.csv of dstft track).")
@click.option("--width", type=Finite(0.0, 1e9), default=None, metavar="HZ",
              help="Half-width around the ridge in Hz (with --ridge).")
@click.option("--method", type=click.Choice(["inverse", "sst"]), default="inverse",
              show_default=True, help="Resynthesis: least-squares inverse DSTFT of the masked "
                                      "coefficients, or the synchrosqueezed transform's bins.")
@click.option("--name", type=SafeName(), default=None, metavar="NAME",
              help="Output name (default band_FMIN-FMAXHz or ridge_STEM_WIDTHHz).")
@options.device_option()
@options.batch_options(out_help="Unused: components are written into each RESULT_DIR.")
def extract(results, band, time_range, ridge, width, method, name, device, settings):
    """Resynthesise one component of each RESULT_DIR: a band or a ridge ± width.

    Writes RESULT_DIR/NAME.wav and NAME.json (selection, energy fraction, full-band resynthesis
    SNR of the method for this result).

    \b
    Examples:
      dstft extract runs/three_components --band 0:1500 --time 0.2:0.8
      dstft extract runs/harmonics --ridge dstft_out/harmonics.track/frequency.csv --width 40
    """
    from .. import postprocess

    if (band is None) == (ridge is None):
        raise click.UsageError("give either --band FMIN:FMAX or --ridge CSV --width HZ")
    if ridge is not None and (width is None or time_range is not None):
        raise click.UsageError("--ridge needs --width HZ and takes no --time")
    if band is not None and width is not None:
        raise click.BadParameter("--width goes with --ridge", param_hint="'--width'")
    if band is not None:
        selection = {"band": _range(band, "--band", "Hz"),
                     "time": None if time_range is None else _range(time_range, "--time", "s")}
    else:
        selection = {"ridge": ridge, "width": width}
    options.finish(postprocess.extract, results, selection, name, method,
                   options.resolve_device(device), settings)
