"""``dstft apply``: spectrograms of new inputs with the parameters of a saved result."""

from __future__ import annotations

import click

from . import options


@click.command("apply", context_settings=options.CONTEXT_SETTINGS)
@click.argument("result", type=click.Path(exists=True, file_okay=False), metavar="RESULT_DIR")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("--keep-samples", is_flag=True,
              help="At another sample rate keep θ, hop and n_fft in samples (default: carry "
                   "them as durations, converted to the input's rate).")
@options.device_option()
@options.batch_options(out_help="Results go to OUT/<input stem>/.", plots_help="Write no figures.")
@options.figure_options()
def apply(result, inputs, keep_samples, device, settings, figure_options):
    """Spectrogram of each INPUT with the parameters saved in RESULT_DIR.

    Constant and per-bin (freq) parameters apply to signals of any length; per-frame ones
    (time, tf, hop) to signals with the same number of frames. At another sample rate the
    parameters are carried as durations (θ in ms stays), unless --keep-samples. OUT/<stem>/
    gets spectrogram.npz, spectrogram.png and params.json.

    \b
    Example:
      dstft optimize sample_data/fsdd/0_george_0.wav --mode freq -o runs
      dstft apply runs/0_george_0 sample_data/fsdd/1_george_0.wav -o applied
    """
    from .. import runs
    from ..results import read_result

    try:
        saved = read_result(result)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'RESULT_DIR'") from None
    options.finish(runs.apply, saved, inputs, options.resolve_device(device), settings,
                   keep_samples, figure_options)
