"""``dstft scan``: the loss against a constant window length (the paper's Fig. 2)."""

from __future__ import annotations

import click

from . import options
from .params import Length


@click.command("scan", context_settings=options.CONTEXT_SETTINGS)
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("--min-length", type=Length(), default=16.0, show_default=True, metavar="LENGTH",
              help="Smallest window length of the scan (samples or a duration).")
@click.option("--max-length", type=Length(), default=None, metavar="LENGTH",
              help="Largest window length (default n_fft).")
@click.option("--step", type=Length(), default=8.0, show_default=True, metavar="LENGTH",
              help="Spacing of the scanned lengths (samples or a duration).")
@options.transform_options
@options.device_option()
@options.batch_options(out_help="Writes OUT/<stem>.scan.csv and OUT/<stem>.scan.png.",
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
    from ..batch import UsageProblem
    from ..config import needs_sample_rate, resolve

    config = options.resolve_config("constant", None, min_length=min_length,
                                    max_length=max_length, **transform)
    if not needs_sample_rate(config) and not isinstance(step, str):  # known before any input
        try:
            runs.scan_lengths(resolve(config, None), step)
        except UsageProblem as exc:
            raise click.BadParameter(str(exc), param_hint="'--step'") from None
    options.finish(runs.scan, inputs, config, step, options.resolve_device(device), settings)
