"""``dstft train``: a DSTFT layer with learnable θ trained with a small CNN (Sec. VII-B)."""

from __future__ import annotations

import math

import click

from .options import (
    CONTEXT_SETTINGS,
    DEFAULT_OUT,
    device_option,
    finish,
    quiet_debug_options,
    resolve_device,
)


def _parse_fixed(ctx, param, value):
    if value is None or value.strip() == "":
        return ()
    try:
        lengths = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of numbers") from None
    if any(not (v > 0 and math.isfinite(v)) for v in lengths):
        raise click.BadParameter(f"window lengths must be positive, got {value!r}")
    return lengths


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
    raw = raw.get("train", raw)
    known = {f.name for f in fields(TrainConfig)} - {"seed", "split"}
    unknown = sorted(set(raw) - known - {"fixed_window"})
    if unknown:
        raise click.BadOptionUsage("--config", f"{path}: unknown key(s) {', '.join(unknown)}; "
                                   f"known: {', '.join(sorted(known | {'fixed_window'}))}")
    return raw


def _fixed_from_file(path: str, fixed) -> tuple[float, ...]:
    try:
        return _parse_fixed(None, None, ",".join(str(v) for v in fixed))
    except (TypeError, click.BadParameter):
        raise click.BadOptionUsage("--config", f"{path}: fixed_window must be a list of "
                                   f"positive numbers, got {fixed!r}") from None


@click.command("train", context_settings=CONTEXT_SETTINGS)
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="TOML file with train settings (e.g. configs/train.toml); options override it.")
@click.option("--fixed-window", callback=_parse_fixed, default=None, metavar="θ1,θ2,…",
              help="Also train fixed-θ baselines with the same split and seed (e.g. 10,20,30,40,50).")
@click.option("--no-learnable", is_flag=True, help="Train only the --fixed-window baselines.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Epochs per run (20).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Batch size (32).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Adam step of the network weights (3e-3).")
@click.option("--theta-lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Adam step of θ in samples (0.25).")
@click.option("--init-length", type=click.FloatRange(min=0, min_open=True), default=None,
              help="θ at the start of the learnable run (32).")
@click.option("--n-fft", type=int, default=None, help="DFT size (128); θ ≤ n_fft.")
@click.option("--hop", "hop_length", type=click.IntRange(min=1), default=None, help="Hop (16).")
@click.option("--clip-length", type=click.IntRange(min=2), default=None,
              help="Samples per clip: zero-padded or cropped at the end (8000 = 1 s at 8 kHz).")
@click.option("--limit", type=click.IntRange(min=3), default=None,
              help="Use a random subset of this many clips (seeded), for quick runs.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Where the decoded-audio cache (.npy) is kept (default OUT/.cache).")
@click.option("--name", default="train", show_default=True, help="Result folder name.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Random seed: torch, numpy, the data split and the --limit subset.")
@click.option("--out", "-o", type=click.Path(file_okay=False), default=DEFAULT_OUT,
              show_default=True, help="Folder in which the result folder NAME is created.")
@click.option("--overwrite", is_flag=True, help="Replace an existing result folder.")
@device_option()
@quiet_debug_options
def train(data_dir, config_file, fixed_window, no_learnable, limit, cache_dir, name, seed, out,
          overwrite, device, quiet, debug, **flags):
    """Train a DSTFT layer with learnable θ jointly with a small CNN (Sec. VII-B, Tables II–III).

    DATA_DIR holds FSDD-style files {label}_{speaker}_{index}.wav or one sub-folder per class.
    Writes OUT/NAME/: checkpoints/<run>.pt, theta_trajectory.csv, history.csv, results.csv,
    results.md, split.csv and params.json. Example:
    dstft train ../shared/data/fsdd/recordings --fixed-window 10,20,30,40,50
    """
    from .. import runs
    from ..batch import BatchSettings
    from ..tasks.classify import TrainConfig

    from_file = read_train_settings(config_file)
    fixed_in_file = from_file.pop("fixed_window", None)
    if not fixed_window and fixed_in_file:
        fixed_window = _fixed_from_file(config_file, fixed_in_file)
    from_file.update({k: v for k, v in flags.items() if v is not None})
    try:
        config = TrainConfig(seed=seed, **from_file)
    except (ValueError, TypeError) as exc:
        raise click.UsageError(f"train settings: {exc}") from None
    if any(v > config.n_fft for v in fixed_window):
        raise click.BadParameter(f"fixed window lengths must be ≤ n_fft={config.n_fft}",
                                 param_hint="'--fixed-window'")
    if no_learnable and not fixed_window:
        raise click.UsageError("--no-learnable needs --fixed-window")
    batch = BatchSettings(out=out, overwrite=overwrite, quiet=quiet, debug=debug)
    finish(runs.train, data_dir, config, fixed_window, not no_learnable, limit, cache_dir, name,
           resolve_device(device), batch)
