"""What ``dstft reassign`` and ``dstft extract`` do: workers over result folders (and inputs).

Both work *beside* a result folder of ``dstft optimize`` (or ``apply``): they read its θ and
frame positions (:func:`dstft_cli.results.read_result`) and the input it was computed from
(``params.json`` → ``input``: path, channel, SHA-256, checked), and add their files to the
folder, each written atomically, their own JSON record last. ``dstft reassign`` given an input
file instead optimises it first exactly as ``dstft optimize`` (same options, same result folder).

This module never imports click; torch and the tasks are imported when used.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from . import __version__
from .batch import BatchSettings, Job, Outcome, run_batch
from .io import (
    InputError,
    ResultExists,
    atomic_save_npz,
    atomic_write_json,
    load_signal,
    read_truth_csv,
    sha256_file,
    write_signal,
)
from .results import axes, plot_magnitude, read_result

__all__ = ["is_result_dir", "reassign", "extract", "REASSIGN_RECORD"]

#: Written last by ``dstft reassign``: its presence means the folder's reassigned maps are complete.
REASSIGN_RECORD = "reassign.json"


def is_result_dir(path: Path) -> bool:
    """A finished result folder: a directory holding ``params.json``."""
    return path.is_dir() and (path / "params.json").is_file()


def _with_result_folders(inputs) -> list[str]:
    """A folder of result folders (``dstft_out/``) stands for the result folders in it."""
    out = []
    for raw in inputs:
        path = Path(raw)
        inner = sorted(p for p in path.iterdir() if is_result_dir(p)) if (
            path.is_dir() and not is_result_dir(path)) else []
        if inner:
            out.extend(str(p) for p in inner)
        else:
            out.append(raw)
    return out


def _is_dir(path: Path) -> bool:
    return path.is_dir()


def _source_signal(folder: Path, params: dict):
    """The input a result was computed from, read the same way, unchanged since."""
    record = params.get("input") or {}
    path = record.get("path")
    if not path:
        raise InputError(folder, "params.json names no input signal (key 'input')")
    if not Path(path).is_file():
        raise InputError(folder, f"its input {path} is missing")
    if record.get("sha256") and sha256_file(path) != record["sha256"]:
        raise InputError(folder, f"its input {path} changed since the result was made (SHA-256)")
    channel = record.get("channel", "mix")
    reader = {"channel": channel}
    if Path(path).suffix.lower() in (".npy", ".csv", ".npz"):
        reader["sample_rate"] = record.get("sample_rate")
    return load_signal(path, **reader)


def _transform_params(folder: Path, device: str):
    """(signal, x tensor, TransformParams) of a result folder; InputError when incomplete."""
    import torch

    from .results import applied_parameters
    from .tasks.extract import TransformParams

    if not (folder / "spectrogram.npz").is_file():
        raise InputError(folder, "result folder without spectrogram.npz (its window lengths and "
                                 "frame positions)")
    try:
        saved = read_result(folder)
    except ValueError as exc:
        raise InputError(folder, str(exc).removeprefix(f"{folder}: ")) from None
    signal = _source_signal(folder, saved.params)
    try:
        applied = applied_parameters(saved, signal.frames, device)
    except ValueError as exc:
        raise InputError(folder, str(exc)) from None
    x = torch.from_numpy(np.array(signal.data)).to(device)
    x = x[0] if x.shape[0] == 1 else x
    positions = torch.as_tensor(applied.positions, device=device)
    theta = applied.window_length.to(device=device, dtype=x.dtype)
    params = TransformParams(int(saved.params["n_fft"]), theta, positions, signal.sample_rate,
                             saved.params["window"])
    return signal, x, params


# ============================================================================================
# reassign


def reassign(inputs, config, device: str, settings: BatchSettings) -> int:
    """``dstft reassign``: reassigned and synchrosqueezed maps beside each result folder; inputs
    that are not result folders are optimised first (``config``) into OUT/<stem>/."""
    options = {"config": config, "device": device, "plots": settings.plots}
    return run_batch(_reassign_one, _with_result_folders(inputs), settings, options,
                     whole=is_result_dir, progress=True)


def _reassign_one(job: Job) -> Outcome:
    path = Path(job.path)
    prefix = ""
    if not is_result_dir(path):
        if path.is_dir():
            raise InputError(path, "folder without params.json: not a result folder")
        from .runs import _optimize_one  # the optimize worker, so the folder is optimize's own

        optimised = _optimize_one(job)
        if optimised.status != "ok":
            return optimised
        path, prefix = Path(optimised.output), f"{job.path} → {optimised.output}: optimised, "
    record = path / REASSIGN_RECORD
    if record.exists() and not job.overwrite:
        raise ResultExists(record)
    from .tasks.extract import sharpened_maps

    signal, x, params = _transform_params(path, job.options["device"])
    maps = sharpened_maps(x, params)
    times, freqs = axes(params.n_fft, params.frame_positions.cpu().numpy(), signal.sample_rate)
    for name in ("reassigned", "synchrosqueezed"):
        magnitude = getattr(maps, name).cpu().numpy().astype(np.float32)
        atomic_save_npz(path / f"{name}.npz", magnitude=magnitude, times=times, freqs=freqs)
        if job.options["plots"]:
            from functools import partial

            from .runs import _figures

            figures = _figures()
            figures.save_figure(partial(
                figures.plots.spectrogram_figure, plot_magnitude(magnitude), times, freqs,
                title=f"{path.name} — {name}, Rényi-3 {maps.renyi3[name]:.3f}"), path, name)
    atomic_write_json(record, {"version": __version__, "command": "reassign",
                               "renyi3": maps.renyi3, "files": ["reassigned.npz",
                                                                "synchrosqueezed.npz"]})
    r = maps.renyi3
    message = (f"{prefix or f'{job.path}: '}Rényi-3 {r['dstft']:.3f} (DSTFT) → "
               f"{r['reassigned']:.3f} reassigned, {r['synchrosqueezed']:.3f} synchrosqueezed")
    return Outcome(job.path, "ok", message, output=str(path))


# ============================================================================================
# extract


def extract(results, selection: dict, name: str | None, method: str, device: str,
            settings: BatchSettings) -> int:
    """``dstft extract``: one component per result folder, as ``<name>.wav`` and
    ``<name>.json`` (selection, method, SNRs) beside the result.

    ``selection``: ``{"band": (fmin, fmax), "time": (t0, t1) | None}`` or
    ``{"ridge": path, "width": hz}``.
    """
    options = {"selection": selection, "name": name, "method": method, "device": device}
    return run_batch(_extract_one, _with_result_folders(results), settings, options, whole=_is_dir)


def _component_name(selection: dict) -> str:
    if "band" in selection:
        fmin, fmax = selection["band"]
        name = f"band_{fmin:g}-{fmax:g}Hz"
        if selection.get("time") is not None:
            name += f"_{selection['time'][0]:g}-{selection['time'][1]:g}s"
        return name
    return f"ridge_{Path(selection['ridge']).stem}_{selection['width']:g}Hz"


def _extract_one(job: Job) -> Outcome:
    from .tasks.extract import (
        band_mask,
        check_band,
        extract_component,
        resynthesis_snr_db,
        ridge_mask,
        ridge_on_frames,
    )

    folder = Path(job.path)
    if not is_result_dir(folder):
        raise InputError(folder, "not a result folder (no params.json)")
    selection, method = job.options["selection"], job.options["method"]
    name = job.options["name"] or _component_name(selection)
    audio, record = folder / f"{name}.wav", folder / f"{name}.json"
    if record.exists() and not job.overwrite:
        raise ResultExists(record)
    signal, x, params = _transform_params(folder, job.options["device"])
    try:
        if "band" in selection:
            check_band(*selection["band"], signal.sample_rate)
            mask = band_mask(params.freqs, params.times, selection["band"], selection.get("time"))
        else:
            ridge_t, ridge_f = read_truth_csv(selection["ridge"])
            ridge = ridge_on_frames(ridge_t, ridge_f, params.times, signal.sample_rate)
            mask = ridge_mask(params.freqs, ridge, selection["width"])
    except ValueError as exc:
        source = selection.get("ridge", folder)
        raise InputError(source, str(exc)) from None
    component = extract_component(x, params, mask, method=method)
    full_band = resynthesis_snr_db(x, params, method=method)
    out = component.signal.detach().cpu().numpy()
    write_signal(audio, out if out.ndim == 1 else out.mean(axis=0), signal.sample_rate)
    atomic_write_json(record, {
        "version": __version__, "command": "extract", "method": method,
        "selection": {k: (str(v) if k == "ridge" else v) for k, v in selection.items()},
        "energy_fraction": component.energy_fraction,
        "full_band_snr_db": full_band if math.isfinite(full_band) else None,
        "sample_rate": signal.sample_rate, "audio": audio.name,
    })
    message = (f"{folder} → {audio}: {100 * component.energy_fraction:.1f} % of the energy; "
               f"full-band resynthesis SNR {full_band:.1f} dB ({method})")
    return Outcome(job.path, "ok", message, output=str(audio))
