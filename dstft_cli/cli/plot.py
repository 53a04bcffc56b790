"""``dstft plot``: re-render the figures of saved results, and the comparison figure."""

from __future__ import annotations

import click

from . import options
from .params import Finite


@click.command("plot", context_settings=options.CONTEXT_SETTINGS)
@click.argument("results", nargs=-1, required=True, metavar="RESULT_DIR...")
@click.option("--compare", is_flag=True,
              help="Also draw compare.<format>: a fixed-window spectrogram of the input beside "
                   "the optimised one and the θ map (reads the input named in params.json).")
@click.option("--fixed-length", type=Finite(1.0, 2.0**31), default=None,
              metavar="SAMPLES", help="Window length of the fixed spectrogram (default n_fft/2).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              metavar="FILE", help="TOML file whose [plot] table gives figure defaults.")
@options.device_option()
@options.batch_options(out_help="Figures go to OUT/<result name>/ (with a copy of params.json); "
                                "OUT/index.html shows them all.")
@options.figure_options()
def plot(results, compare, fixed_length, config_file, device, settings, figure_options):
    """Draw the figures of each RESULT_DIR again from its spectrogram.npz and params.json.

    Nothing is recomputed (except the fixed-window spectrogram of --compare): the same
    folder and options give byte-identical PNG, SVG and PDF files. A folder without
    params.json stands for every result folder below it.

    \b
    Examples:
      dstft plot dstft_out/three_components --fmax 3000 --format png,pdf -o figures
      dstft plot runs/ --compare --theta-unit samples -o figures --overwrite
    """
    from .. import runs

    if not settings.plots:
        raise click.BadParameter("plot draws figures; --no-plots leaves nothing to do",
                                 param_hint="'--no-plots'")
    device = options.resolve_device(device) if compare else "cpu"
    options.finish(runs.plot, results, settings, figure_options, compare, fixed_length, device)
