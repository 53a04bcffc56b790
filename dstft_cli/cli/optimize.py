"""``dstft optimize``: optimise the DSTFT parameters of each input and save the results."""

from __future__ import annotations

import click

from ..config import DTYPES, LR_UNITS, MODES, OPTIMIZERS
from . import options
from .params import SEED, Finite, Integer, Length

MODE_HELP = ("Recipe: constant (one θ), time (θ per frame), freq (θ per bin), tf (θ per bin and "
             "frame), hop (frame positions and lengths). Default: constant, or the config file's.")


@click.command("optimize", context_settings=options.CONTEXT_SETTINGS)
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("--mode", "-m", type=click.Choice(MODES), default=None, help=MODE_HELP)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              metavar="FILE", help="TOML recipe file (see configs/); options override it.")
@options.transform_options
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=None,
              help="adam (the paper's), lbfgs, or scalar (a line search; constant mode only).")
@click.option("--iters", type=Integer(1, 10**7), default=None, metavar="N",
              help="At most N iterations per optimisation stage.")
@click.option("--lr", type=Finite(0.0, 1e6, low_open=True), default=None,
              help="Adam's step: samples per step, or with --lr-unit relative a fraction of "
                   "each θ per step (time, freq and tf recipes: 0.05).")
@click.option("--lr-unit", type=click.Choice(LR_UNITS), default=None,
              help="Unit of --lr for Adam (default: the recipe's).")
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
@options.device_option(default=None)
@click.option("--dtype", type=click.Choice(DTYPES), default=None,
              help="Precision of the optimisation (the saved spectrogram is computed in float64).")
@options.batch_options(out_help="Results go to OUT/<input stem>/.")
@options.figure_options()
def optimize(inputs, mode, config_file, device, settings, figure_options, **recipe):
    """Optimise the DSTFT parameters of each INPUT (files or folders) and save the results.

    For every input, OUT/<stem>/ gets params.json (written last), spectrogram.npz and, unless
    --no-plots, spectrogram.png, loss.png, window_lengths.png and (hop mode) frames.png
    (--format for SVG or PDF too); OUT/index.html shows them all.

    \b
    Examples:
      dstft optimize sample_data/three_components.wav --mode tf
      dstft optimize sample_data/shocks.wav --mode hop --coverage-weight 20
      dstft optimize sample_data/fsdd/ --mode constant --jobs 2 --no-plots
      dstft optimize data.npy --sample-rate 8000 --channel all --config configs/time.toml
    """
    from .. import runs

    config = options.resolve_config(mode, config_file, device=device, **recipe)
    options.finish(runs.optimize, inputs, config, options.resolve_device(config.device),
                   settings, figure_options)
