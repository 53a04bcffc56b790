"""``dstft reassign``: reassigned and synchrosqueezed spectrograms beside each result."""

from __future__ import annotations

import click

from ..config import MODES
from . import options
from .optimize import MODE_HELP
from .params import Integer


@click.command("reassign", context_settings=options.CONTEXT_SETTINGS)
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT|RESULT_DIR...")
@click.option("--mode", "-m", type=click.Choice(MODES), default=None,
              help=MODE_HELP + " Used for inputs that are not result folders.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              metavar="FILE", help="TOML recipe file for inputs that are optimised first.")
@options.transform_options
@click.option("--iters", type=Integer(1, 10**7), default=None, metavar="N",
              help="At most N iterations per optimisation stage (inputs only).")
@options.device_option(default=None)
@options.batch_options(out_help="Inputs that are not result folders are optimised into OUT/<stem>/.",
                       plots_help="Write no reassigned.png / synchrosqueezed.png.")
def reassign(inputs, mode, config_file, device, settings, **recipe):
    """Reassigned and synchrosqueezed spectrograms of each result folder (or input).

    A RESULT_DIR of optimize or apply gets reassigned.npz and synchrosqueezed.npz (magnitude,
    times, freqs on the result's grid), their PNGs and reassign.json (Rényi-3 entropies), written
    last. Any other INPUT is first optimised as by dstft optimize (same options) into
    OUT/<stem>/. The maps use the result's own θ and frame positions.

    \b
    Examples:
      dstft optimize sample_data/three_components.wav --mode tf -o runs
      dstft reassign runs/three_components
      dstft reassign sample_data/harmonics.wav --mode time -o runs
    """
    from .. import postprocess

    config = options.resolve_config(mode, config_file, device=device, **recipe)
    options.finish(postprocess.reassign, inputs, config, options.resolve_device(config.device), settings)
