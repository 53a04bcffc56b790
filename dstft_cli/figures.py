"""The figures of a result folder, re-rendered from what the folder holds, with reproducible bytes.

A result folder (``dstft optimize``, ``apply`` or ``track``) holds ``spectrogram.npz`` and
``params.json``; :func:`read_saved` reads them, :func:`result_figures` builds every figure the
command draws, and :func:`render_result` writes them in each requested format. The commands
themselves write their figures through :func:`result_figures` too, so ``dstft plot`` on an
unchanged folder with the same options reproduces them byte for byte.

Bytes depend only on the data and the options: PNG without the ``Software`` text chunk, SVG
without ``dc:date`` and with fixed element ids (``svg.hashsalt``), PDF without creation date,
creator or producer, fonts embedded as TrueType subsets (:func:`save_figure`).

:func:`compare_result` draws the comparison figure: a fixed-window spectrogram of the input (the
only thing computed here) beside the optimised one and the θ map.

This module never imports click; torch only inside :func:`compare_result`.
"""

from __future__ import annotations

import csv
import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from . import plots
from .io import InputError, atomic_open
from .plots import FigureOptions
from .results import plot_magnitude, theta_summary, theta_text, theta_title

__all__ = [
    "ResultFolderError", "SavedResult", "read_saved", "saved_result", "loss_arrays",
    "figure_makers", "result_figures", "save_figure", "write_figures", "render_result", "compare_result",
    "SAVE_RC", "save_metadata", "find_results",
]

#: Settings under which every figure is saved: stable SVG ids, fonts as paths in SVG and as
#: embedded TrueType in PDF (no Type 3 procedures that depend on the glyph cache).
SAVE_RC = {"svg.hashsalt": "dstft", "svg.fonttype": "path", "pdf.fonttype": 42,
           "ps.fonttype": 42, "path.simplify": True}


class ResultFolderError(InputError, ValueError):
    """A result folder that cannot be rendered: ``str(err) == f"{folder}: {problem}"``, one line
    (an :class:`~dstft_cli.io.InputError`, so a batch reports it as that input's failure)."""

    def __init__(self, folder: str | os.PathLike, problem: str):
        self.folder = str(folder)
        super().__init__(folder, problem)


@dataclass
class SavedResult:
    """What a result folder holds that its figures need (numpy arrays; θ in samples)."""

    folder: Path
    params: dict
    magnitude: np.ndarray  # (M, N), the channel mean for multichannel results
    times: np.ndarray  # frame centres (s)
    freqs: np.ndarray  # bin frequencies (Hz)
    window_length: np.ndarray  # broadcastable to (M, N)
    frame_positions: np.ndarray  # samples
    loss_history: np.ndarray | None = None
    loss_stages: list[tuple[str, int]] = field(default_factory=list)
    estimate: tuple[np.ndarray, np.ndarray] | None = None  # track: (time_s, frequency_hz)
    truth: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def command(self) -> str:
        if self.params.get("command"):
            return str(self.params["command"])
        return "apply" if "source" in self.params else "optimize"

    @property
    def sample_rate(self) -> float:
        return float(self.params["sample_rate"])

    @property
    def duration_s(self) -> float | None:
        frames = (self.params.get("input") or {}).get("frames")
        return None if frames is None else float(frames) / self.sample_rate

    @property
    def input_name(self) -> str:
        path = (self.params.get("input") or {}).get("path")
        return Path(path).name if path else self.folder.name


# --------------------------------------------------------------------------------------------
# reading


def _read_csv_columns(path: Path, folder: Path) -> dict[str, np.ndarray]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh) if r]
        header = [c.strip() for c in rows[0]]
        data = np.array([[float(c) for c in r] for r in rows[1:]], dtype=np.float64)
    except (OSError, IndexError, ValueError) as exc:
        raise ResultFolderError(folder, f"unreadable {path.name} ({_one_line(exc)})") from None
    data = data.reshape(-1, len(header))
    return {name: data[:, i] for i, name in enumerate(header)}


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def read_saved(folder: str | os.PathLike) -> SavedResult:
    """Read a finished result folder; :class:`ResultFolderError` if it is not one or is damaged."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ResultFolderError(folder, "not a folder")
    params_path = folder / "params.json"
    if not params_path.is_file():
        raise ResultFolderError(folder, "not a finished result folder (no params.json)")
    try:
        params = json.loads(params_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ResultFolderError(folder, f"unreadable params.json ({_one_line(exc)})") from None
    return saved_result(folder, params)


def loss_arrays(history: Any, stages: Any = ()) -> dict[str, np.ndarray]:
    """The entries of spectrogram.npz that keep the loss curve and its stages for re-rendering."""
    stages = list(stages)
    return {"loss_history": np.asarray(history, dtype=np.float64).reshape(-1),
            "loss_stage_names": np.array([str(name) for name, _ in stages], dtype=str),
            "loss_stage_starts": np.array([int(start) for _, start in stages], dtype=np.int64)}


def saved_result(folder: str | os.PathLike, params: Any) -> SavedResult:
    """A result from its ``params`` and the files in ``folder`` (spectrogram.npz, and for track
    frequency.csv); the commands call this on the folder they are writing, before params.json."""
    folder = Path(folder)
    if not isinstance(params, dict):
        raise ResultFolderError(folder, "params.json does not hold an object")
    missing = [k for k in ("n_fft", "sample_rate") if k not in params]
    if missing:
        raise ResultFolderError(folder, f"params.json lacks {', '.join(missing)}")
    npz_path = folder / "spectrogram.npz"
    if not npz_path.is_file():
        raise ResultFolderError(folder, "no spectrogram.npz")
    if not zipfile.is_zipfile(npz_path):
        raise ResultFolderError(folder, "unreadable spectrogram.npz (not an NPZ archive)")
    try:
        with np.load(npz_path, allow_pickle=False) as npz:
            arrays = {k: np.array(npz[k]) for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ResultFolderError(folder, f"unreadable spectrogram.npz ({_one_line(exc)})") from None
    need = [k for k in ("magnitude", "times", "freqs", "window_length", "frame_positions")
            if k not in arrays]
    if need:
        raise ResultFolderError(folder, f"spectrogram.npz lacks {', '.join(need)}")
    magnitude = plot_magnitude(arrays["magnitude"])
    times = arrays["times"].reshape(-1)
    freqs = arrays["freqs"].reshape(-1)
    theta = arrays["window_length"]
    if magnitude.shape != (freqs.size, times.size):
        raise ResultFolderError(folder, f"spectrogram.npz: magnitude {magnitude.shape} does not "
                                        f"match {freqs.size} frequencies × {times.size} times")
    try:
        np.broadcast_shapes(np.atleast_2d(theta).shape, magnitude.shape)
    except ValueError:
        raise ResultFolderError(folder, f"spectrogram.npz: window_length {theta.shape} does not "
                                        f"fit the spectrogram {magnitude.shape}") from None
    if not (np.all(np.isfinite(magnitude)) and np.all(np.isfinite(theta))):
        raise ResultFolderError(folder, "spectrogram.npz holds non-finite values")
    saved = SavedResult(folder, params, magnitude, times, freqs, theta, arrays["frame_positions"])
    if "loss_history" in arrays:
        saved.loss_history = arrays["loss_history"].astype(np.float64).reshape(-1)
        names = arrays.get("loss_stage_names", np.array([], dtype=str)).reshape(-1)
        starts = arrays.get("loss_stage_starts", np.array([], dtype=np.int64)).reshape(-1)
        saved.loss_stages = [(str(n), int(s)) for n, s in zip(names, starts, strict=False)]
    if saved.command == "track":
        estimate = _read_csv_columns(folder / "frequency.csv", folder)
        if "time_s" not in estimate or "frequency_hz" not in estimate:
            raise ResultFolderError(folder, "frequency.csv lacks time_s or frequency_hz")
        saved.estimate = (estimate["time_s"], estimate["frequency_hz"])
        truth = params.get("truth")
        if truth and Path(truth).is_file():
            columns = _read_csv_columns(Path(truth), folder)
            f = next((columns[c] for c in ("f0_hz", "f_hz", "frequency_hz", "freq_hz")
                      if c in columns), None)
            if "time_s" in columns and f is not None:
                saved.truth = (columns["time_s"], f)
    return saved


# --------------------------------------------------------------------------------------------
# figures


def figure_makers(saved: SavedResult, options: FigureOptions | None = None
                  ) -> dict[str, Callable[[], Any]]:
    """Every figure of ``saved``: file stem → a function that draws it (a fresh figure per call,
    so that each file format is drawn from scratch)."""
    o = options or FigureOptions()
    p = saved.params
    mode = p.get("mode", "")
    fs = saved.sample_rate
    theta = np.asarray(saved.window_length, dtype=np.float64)
    makers: dict[str, Callable[[], Any]] = {}
    lengths = theta_title(theta_summary(theta), fs, hop=p.get("hop"))
    if saved.command == "track":
        harmonic = float(p.get("harmonic", 1) or 1)
        title = (f"{saved.input_name}: mode {mode}" if harmonic == 1 else
                 f"{saved.input_name}: harmonic {harmonic:g} ÷ {harmonic:g} (axis ÷ {harmonic:g}), "
                 f"mode {mode}") + f"\n{lengths}"
        makers["tracking"] = partial(
            plots.tracking_figure, saved.magnitude, saved.times, saved.freqs / harmonic,
            *saved.estimate, truth=saved.truth, title=title, options=o)
        return makers
    if saved.command == "apply":
        source = Path(str((p.get("source") or {}).get("path", "?"))).name
        title = f"{saved.input_name} — {mode} parameters of {source}\n{lengths}"
    else:
        title = f"{saved.input_name} — {mode}\n{lengths}"
    grid = np.broadcast_to(np.atleast_2d(theta), saved.magnitude.shape)
    makers["spectrogram"] = partial(
        plots.spectrogram_figure, saved.magnitude, saved.times, saved.freqs, title, options=o,
        half_window_s=grid.max(axis=0) / 2 / fs, duration_s=saved.duration_s)
    if saved.loss_history is not None:
        loss = str(p.get("loss", "loss"))
        ylabel = f"{loss} loss" + (" (−kurtosis + penalty)" if loss == "kurtosis" else "")
        makers["loss"] = partial(plots.loss_figure, saved.loss_history,
                                 f"{saved.input_name} — {mode}", ylabel=ylabel,
                                 stages=saved.loss_stages, options=o)
    if theta.size > 1 and saved.command != "apply":  # apply's θ is its source's, drawn there
        makers["window_lengths"] = partial(
            plots.window_lengths_figure, theta, saved.times, saved.freqs,
            f"window lengths — {mode}", sample_rate=fs, options=o)
    if mode == "hop" and saved.duration_s is not None:
        lengths = np.broadcast_to(theta.reshape(-1), saved.times.shape) / fs
        makers["frames"] = partial(plots.frames_figure, saved.times, lengths, saved.duration_s,
                                   "frame positions and lengths", options=o)
    return makers


def result_figures(saved: SavedResult, options: FigureOptions | None = None) -> dict[str, Any]:
    """Every figure of ``saved``: file stem → matplotlib Figure."""
    return {stem: make() for stem, make in figure_makers(saved, options).items()}


# --------------------------------------------------------------------------------------------
# saving


def save_metadata(fmt: str) -> dict[str, None]:
    """savefig metadata that leaves out everything that changes from run to run."""
    if fmt == "png":
        return {"Software": None}
    if fmt == "svg":
        return {"Date": None, "Creator": None}
    if fmt == "pdf":
        return {"CreationDate": None, "Creator": None, "Producer": None}
    return {}


def save_figure(figure: Any, folder: str | os.PathLike, stem: str,
                options: FigureOptions | None = None) -> list[Path]:
    """Write ``folder/stem.<format>`` for each of the options' formats, each file atomically,
    with bytes that depend only on the figure and the options.

    ``figure`` is a Figure or a function that draws one; a function is called once per format.
    Prefer it: drawing a figure lays it out for that format's renderer, so the second format
    saved from the same Figure object can differ from the same format saved first.
    """
    import matplotlib

    o = options or FigureOptions()
    written = []
    with matplotlib.rc_context(SAVE_RC):
        for fmt in o.formats:
            fig = figure() if callable(figure) else figure
            path = Path(folder) / f"{stem}.{fmt}"
            with atomic_open(path, "wb") as fh:
                fig.savefig(fh, format=fmt, dpi=o.dpi, metadata=save_metadata(fmt))
            written.append(path)
    return written


def render_result(result_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                  options: FigureOptions | None = None) -> list[Path]:
    """Re-render every figure of a result folder into ``out_dir`` (default: the folder itself)
    without recomputing anything; returns the files written."""
    saved = read_saved(result_dir)
    target = Path(result_dir if out_dir is None else out_dir)
    target.mkdir(parents=True, exist_ok=True)
    return write_figures(saved, target, options)


def write_figures(saved: SavedResult, folder: str | os.PathLike,
                  options: FigureOptions | None = None) -> list[Path]:
    """Every figure of ``saved`` into ``folder``, in each of the options' formats."""
    written: list[Path] = []
    for stem, make in figure_makers(saved, options).items():
        written += save_figure(make, folder, stem, options)
    return written


def find_results(paths: Any) -> tuple[list[Path], list[str]]:
    """Result folders named by ``paths``: a folder with params.json is one; any other folder
    stands for the result folders below it. Returns (folders, one-line problems)."""
    found: list[Path] = []
    problems: list[str] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            problems.append(f"{raw}: {'not a folder' if path.exists() else 'no such folder'}")
            continue
        if (path / "params.json").is_file():
            below = [path]
        else:
            below = sorted(p.parent for p in path.rglob("params.json")
                           if not any(part.startswith(".") for part in p.parent.parts[-1:]))
        if not below:
            problems.append(f"{raw}: no result folders (params.json) in this folder")
        for folder in below:
            if folder.resolve() not in seen:
                seen.add(folder.resolve())
                found.append(folder)
    return found, problems


# --------------------------------------------------------------------------------------------
# comparison


def compare_result(result_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                   options: FigureOptions | None = None, *, fixed_length: float | None = None,
                   stem: str = "compare", device: Any = "cpu") -> list[Path]:
    """The comparison figure of a result: the input's spectrogram with one fixed window length
    (default n_fft / 2, the recipes' start) on the result's frame grid, beside the optimised
    spectrogram and the θ map. Reads the input named in params.json (it must be unchanged)."""
    import torch

    from . import recipes
    from .core import default_frame_positions
    from .io import load_signal

    saved = read_saved(result_dir)
    p = saved.params
    if saved.command == "track":
        raise ResultFolderError(saved.folder, "a track result has no optimised spectrogram to compare")
    record = p.get("input") or {}
    if not record.get("path"):
        raise ResultFolderError(saved.folder, "params.json does not name the input signal")
    try:
        signal = load_signal(record["path"], channel=record.get("channel", "mix"),
                             sample_rate=record.get("sample_rate"))
    except InputError as exc:
        raise ResultFolderError(saved.folder, f"cannot read its input ({exc})") from None
    if record.get("sha256") and signal.sha256 != record["sha256"]:
        raise ResultFolderError(saved.folder, f"its input {record['path']} changed since the run")
    n_fft = int(p["n_fft"])
    length = float(n_fft / 2 if fixed_length is None else fixed_length)
    if not 0 < length <= n_fft:
        raise ValueError(f"fixed window length {length:g} is not in (0, n_fft = {n_fft}]")
    x = torch.from_numpy(np.array(signal.data, dtype=np.float64)).to(device)
    fixed_times = None
    if p.get("mode") == "hop":  # the baseline is the regular grid that hop mode moves away from
        positions = None
        fixed_times = default_frame_positions(signal.frames, int(p["hop"])).numpy() / signal.sample_rate
    else:
        positions = torch.from_numpy(np.rint(saved.frame_positions).astype(np.int64)).to(device)
    fixed = recipes.spectrogram(x, n_fft=n_fft, window_length=length, frame_positions=positions,
                                hop_length=int(p["hop"]), window=p.get("window", "hann")).cpu()
    fixed_np = plot_magnitude(fixed.numpy())
    loss = str(p.get("loss", "shannon"))
    fixed_loss = recipes.loss_value(torch.from_numpy(fixed_np), loss)
    optimised_loss = recipes.loss_value(torch.from_numpy(saved.magnitude.astype(np.float64)), loss)
    symbol = "H" if loss == "shannon" else loss
    fs = saved.sample_rate
    make = partial(
        plots.comparison_figure, fixed_np, saved.magnitude, saved.times, saved.freqs,
        fixed_label=f"fixed {theta_text(length, 1, fs)}\n{symbol} = {fixed_loss:.4g}",
        optimised_label=f"{p.get('mode', 'optimised')}: "
                        f"{theta_text(theta_summary(saved.window_length), 1, fs)}\n"
                        f"{symbol} = {optimised_loss:.4g}",
        window_length=saved.window_length, sample_rate=fs, fixed_times_s=fixed_times,
        title=f"{saved.input_name} — hop {int(p['hop'])} ({1000 * int(p['hop']) / fs:.1f} ms)",
        options=options)
    target = Path(result_dir if out_dir is None else out_dir)
    target.mkdir(parents=True, exist_ok=True)
    return save_figure(make, target, stem, options)
