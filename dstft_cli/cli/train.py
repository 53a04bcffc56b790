"""``dstft train``: a DSTFT layer with learnable θ trained with a small CNN (Sec. VII-B)."""

from __future__ import annotations

import click

from ..units import UnitError, parse_length
from . import options
from .params import SEED, Finite, Integer, Length, SafeName

#: The [train] keys (and options) that are lengths: key → whole samples only.
LENGTH_KEYS = {"n_fft": True, "hop_length": True, "clip_length": True, "init_length": False,
               "min_length": False}


def _parse_fixed(ctx, param, value):
    if value is None or value.strip() == "":
        return ()
    try:
        return tuple(parse_length(v) for v in value.split(",") if v.strip())
    except UnitError as exc:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of window lengths "
                                 f"(samples, or durations such as 5ms): {exc}") from None


def _parse_seeds(ctx, param, value):
    from ..tasks.protocol import parse_seeds

    if value is None:
        return None
    try:
        return parse_seeds(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def read_train_settings(path: str | None) -> dict:
    """The [train] table of a TOML file as written; unknown keys are a usage error naming them."""
    from dataclasses import fields

    from ..config import read_toml
    from ..tasks.classify import TrainConfig

    if path is None:
        return {}
    try:
        raw = read_toml(path)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--config'") from None
    raw = dict(raw.get("train", raw))
    known = {f.name for f in fields(TrainConfig)} - {"seed", "split"}
    unknown = sorted(set(raw) - known - {"fixed_window"})
    if unknown:
        raise click.BadOptionUsage("--config", f"{path}: unknown key(s) {', '.join(unknown)}; "
                                   f"known: {', '.join(sorted(known | {'fixed_window'}))}")
    for key, integer in LENGTH_KEYS.items():
        if key in raw:
            try:
                raw[key] = parse_length(raw[key], integer=integer)
            except UnitError as exc:
                raise click.BadOptionUsage("--config", f"{path}: {key}: {exc}") from None
    return raw


def _fixed_from_file(path: str, fixed) -> tuple:
    try:
        return _parse_fixed(None, None, ",".join(str(v) for v in fixed))
    except (TypeError, click.BadParameter):
        raise click.BadOptionUsage("--config", f"{path}: fixed_window must be a list of window "
                                   f"lengths (samples or durations), got {fixed!r}") from None


@click.command("train", context_settings=options.CONTEXT_SETTINGS)
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="TOML file with train settings (e.g. configs/train.toml); options override it.")
@click.option("--fixed-window", callback=_parse_fixed, default=None, metavar="θ1,θ2,…",
              help="Also train fixed-θ baselines with the same split and seed (e.g. 10,20,30,40,50 "
                   "samples, or 2ms,4ms).")
@click.option("--no-learnable", is_flag=True, help="Train only the --fixed-window baselines.")
@click.option("--epochs", type=Integer(1, 10**6), default=None, help="Epochs per run (20).")
@click.option("--batch-size", type=Integer(1, 10**6), default=None, help="Batch size (32).")
@click.option("--lr", type=Finite(0.0, 1e6, low_open=True), default=None,
              help="Adam step of the network weights (3e-3).")
@click.option("--theta-lr", type=Finite(0.0, 1e6, low_open=True), default=None,
              help="Adam step of θ in samples (0.25).")
@click.option("--init-length", type=Length(), default=None, metavar="LENGTH",
              help="θ at the start of the learnable run (32 samples).")
@click.option("--min-length", type=Length(), default=None, metavar="LENGTH",
              help="Smallest θ of the learnable run (4 samples).")
@click.option("--n-fft", type=Length(integer=True), default=None, metavar="LENGTH",
              help="DFT size (128 samples); θ ≤ n_fft.")
@click.option("--hop", "hop_length", type=Length(integer=True), default=None, metavar="LENGTH",
              help="Hop (16 samples).")
@click.option("--clip-length", type=Length(integer=True), default=None, metavar="LENGTH",
              help="Clip length: zero-padded or cropped at the end (8000 samples = 1 s at 8 kHz).")
@click.option("--seeds", callback=_parse_seeds, default=None, metavar="0-4",
              help="Run the Tables II–III protocol over these seeds (ranges and lists: 0-4, 0,3,7): "
                   "a fixed grid (default 10, 20, 40, … n_fft), the learnable run and a fixed run at "
                   "each learned θ per seed; writes protocol.md with mean ± sd, the paired difference "
                   "learnable − grid pick with a 95 % CI, and wall times. Replaces --seed.")
@click.option("--reuse", type=click.Path(exists=True, file_okay=False), default=None,
              help="With --seeds: take the runs of this earlier protocol result (same data and "
                   "settings) instead of training them again, e.g. to extend the grid or add seeds.")
@click.option("--jobs", "-j", "run_jobs", type=Integer(1, 1024), default=1, show_default=True,
              help="With --seeds: train this many runs at once in separate processes.")
@click.option("--split", "split_scheme", type=click.Choice(["random", "fsdd"]), default=None,
              help="random: 80/10/10 drawn from the seed; fsdd: recordings 0–4 of every speaker "
                   "and digit are the test set (random validation from the rest). Default random.")
@click.option("--pooling", type=click.Choice(["grid", "bands", "global"]), default=None,
              help="Feature map → dense layer: average-pooled to 8×16 cells (grid), to 8 frequency "
                   "bands (bands) or to one value per filter (global). Default grid.")
@click.option("--limit", type=Integer(3, 10**9), default=None,
              help="Use a random subset of this many clips (seeded), for quick runs.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Where the decoded-audio cache (.npy) is kept (default OUT/.cache).")
@click.option("--name", type=SafeName(), default="train", show_default=True, help="Result folder name.")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Random seed: torch, numpy, the data split and the --limit subset.")
@click.option("--out", "-o", type=click.Path(file_okay=False), default=options.DEFAULT_OUT,
              show_default=True, help="Folder in which the result folder NAME is created.")
@click.option("--overwrite", is_flag=True, help="Replace an existing result folder.")
@options.device_option()
@options.quiet_debug_options
def train(data_dir, config_file, fixed_window, no_learnable, seeds, reuse, run_jobs, limit, cache_dir,
          name, seed, out, overwrite, device, quiet, debug, **flags):
    """Train a DSTFT layer with learnable θ jointly with a small CNN (Sec. VII-B, Tables II–III).

    DATA_DIR holds FSDD-style files {label}_{speaker}_{index}.wav or one sub-folder per class.
    Writes OUT/NAME/: checkpoints/<run>.pt, theta_trajectory.csv, history.csv, results.csv,
    results.md, split.csv and params.json; with --seeds, OUT/NAME/protocol.md, runs.csv and
    params.json. Lengths (options and [train] keys) are samples or durations (2ms), converted at
    the data's sample rate; θ is reported in both. Examples:
    dstft train ../shared/data/fsdd/recordings --fixed-window 10,20,30,40,50;
    dstft train ../shared/data/fsdd/recordings --seeds 0-4 --jobs 2 --pooling global
    """
    from .. import runs
    from ..batch import BatchSettings

    from_file = read_train_settings(config_file)
    fixed_in_file = from_file.pop("fixed_window", None)
    if not fixed_window and fixed_in_file:
        fixed_window = _fixed_from_file(config_file, fixed_in_file)
    values = {**from_file, **{k: v for k, v in flags.items() if v is not None}, "seed": seed}
    if no_learnable and not fixed_window:
        raise click.UsageError("--no-learnable needs --fixed-window")
    batch = BatchSettings(out=out, overwrite=overwrite, quiet=quiet, debug=debug)
    if seeds is not None:
        options.finish(runs.train_protocol, data_dir, values, seeds, fixed_window, limit,
                       cache_dir, name, run_jobs, batch, reuse)
        return
    if reuse is not None:
        raise click.UsageError("--reuse goes with --seeds")
    options.finish(runs.train, data_dir, values, fixed_window, not no_learnable, limit,
                   cache_dir, name, options.resolve_device(device), batch)
