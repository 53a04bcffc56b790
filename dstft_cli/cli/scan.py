"""``dstft scan``: the loss against a constant window length (the paper's Fig. 2)."""

from __future__ import annotations

import math

import click

from .options import (
    CONTEXT_SETTINGS,
    batch_options,
    device_option,
    finish,
    resolve_config,
    resolve_device,
    transform_options,
)

#: The most lengths one scan evaluates.
MAX_LENGTHS = 100_000


@click.command("scan", context_settings=CONTEXT_SETTINGS)
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("--min-length", type=float, default=16.0, show_default=True, metavar="SAMPLES",
              help="Smallest window length of the scan.")
@click.option("--max-length", type=float, default=None, metavar="SAMPLES",
              help="Largest window length (default n_fft).")
@click.option("--step", type=click.FloatRange(min=0, min_open=True), default=8.0,
              show_default=True, metavar="SAMPLES", help="Spacing of the scanned lengths.")
@transform_options
@device_option()
@batch_options(out_help="Writes OUT/<stem>.scan.csv and OUT/<stem>.scan.png.",
               plots_help="Write the CSV only.")
def scan(inputs, min_length, max_length, step, device, settings, **transform):
    """Loss against a constant window length θ for each INPUT (the paper's Fig. 2).

    Writes a CSV (window_length,loss) and a PNG per input, and prints the best θ: the grid
    search that `dstft optimize --mode constant` replaces.

    \b
    Examples:
      dstft scan sample_data/three_components.wav --min-length 100 --max-length 1000 --step 10
      dstft scan sample_data/vibration.csv --n-fft 512 --loss renyi:3
    """
    from .. import runs

    config = resolve_config("constant", None, min_length=min_length, max_length=max_length,
                            **transform)
    top = config.n_fft if config.max_length is None else config.max_length
    count = int(math.floor((top - config.min_length) / step + 1e-9)) + 1
    if count > MAX_LENGTHS:
        raise click.BadParameter(f"{count} lengths: use a larger step", param_hint="'--step'")
    lengths = [config.min_length + i * step for i in range(count)]
    finish(runs.scan, inputs, config, lengths, resolve_device(device), settings)
