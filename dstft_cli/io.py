"""Reading signals and writing results, safely.

Readers: :func:`load_signal` turns a WAV/FLAC/OGG, CSV, NPY or NPZ file into a :class:`Signal`
(float64, shape ``(channels, frames)``). Every bad input — missing, unreadable, empty, truncated,
not what its extension says, non-finite, all-zero, >2-D, pickled, unparsable, bad column/key/channel,
no sample rate — raises :class:`InputError`, whose ``str`` is one line ``"{path}: {problem}"``.

Writers: :func:`write_signal` (WAV, FLAC, NPY, CSV) and :func:`write_truth` /
:func:`read_truth_csv` for ground-truth files beside a signal. Every result file is written to a
temporary name in the target folder and renamed into place (:func:`atomic_write_bytes`,
:func:`atomic_write_text`, :func:`atomic_save_npz`, :func:`atomic_savefig`), and a result folder
is assembled in a hidden sibling and renamed into place only when everything succeeded
(:func:`result_dir`), with ``params.json`` written last.

This module never imports click, torch or matplotlib (figures are duck-typed: ``fig.savefig``).
"""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import math
import os
import shutil
import stat
import struct
import tempfile
import uuid
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "SUPPORTED_EXTENSIONS", "AUDIO_EXTENSIONS", "TIME_COLUMN_NAMES",
    "InputError", "ResultExists", "Signal",
    "load_signal", "check_length", "iter_inputs", "is_dstft_output", "sha256_file",
    "atomic_open", "atomic_write_bytes", "atomic_write_text", "atomic_write_json",
    "atomic_save_npz", "atomic_savefig", "ResultDir", "result_dir",
    "SIGNAL_FORMATS", "write_signal", "csv_text", "read_truth_csv", "write_truth",
    "truth_beside", "is_truth_file", "one_line",
]

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg"})
SUPPORTED_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".csv", ".npy", ".npz"})
#: Header names (case-insensitive) recognised as a time column in CSV files, with their unit in s.
TIME_COLUMN_NAMES = {
    "time": 1.0, "t": 1.0, "time_s": 1.0, "times": 1.0, "time (s)": 1.0, "time[s]": 1.0,
    "time [s]": 1.0, "seconds": 1.0, "time_ms": 1e-3, "time (ms)": 1e-3,
}
#: Scalar arrays with these names in an NPZ file are read as its sample rate, not as signals.
NPZ_RATE_KEYS = ("sample_rate", "sr", "fs", "samplerate")

_MAGIC = {
    ".wav": (b"RIFF", b"RIFX", b"RF64", b"BW64"),
    ".flac": (b"fLaC", b"ID3"),
    ".ogg": (b"OggS",),
}
_FORMAT_NAME = {".wav": "WAV", ".flac": "FLAC", ".ogg": "Ogg"}


def one_line(text: Any) -> str:
    """``text`` with every run of whitespace (newlines included) made one space."""
    return " ".join(str(text).split())


class InputError(Exception):
    """A bad input file; ``str(err) == f"{path}: {message}"`` (one line)."""

    def __init__(self, path: str | os.PathLike | None, message: str):
        self.path = None if path is None else Path(path)
        self.message = one_line(message)  # whatever a library said
        super().__init__(self.path, self.message)

    def __str__(self) -> str:
        return self.message if self.path is None else f"{self.path}: {self.message}"


class ResultExists(Exception):
    """The result folder exists and overwriting was not asked for."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        super().__init__(self.path)

    def __str__(self) -> str:
        return f"{self.path}: result folder exists (use --overwrite to replace it)"


@dataclass(frozen=True, eq=False)
class Signal:
    """A loaded signal. ``data`` is float64 ``(channels, frames)`` after channel selection."""

    data: np.ndarray
    sample_rate: float
    path: Path
    sha256: str
    channels_in_file: int

    @property
    def channels(self) -> int:
        return int(self.data.shape[0])

    @property
    def frames(self) -> int:
        return int(self.data.shape[1])

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------

def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def load_signal(
    path: str | os.PathLike,
    *,
    sample_rate: float | None = None,
    column: str | int | None = None,
    key: str | None = None,
    channel: str | int = "mix",
) -> Signal:
    """Read one signal file.

    Parameters
    ----------
    path : WAV/FLAC/OGG (soundfile; integer PCM scaled to [-1, 1]), CSV, NPY or NPZ.
    sample_rate : Hz, for files that carry none (CSV without a time column, NPY, NPZ without a
        ``sample_rate`` entry). A file's own rate (audio header, CSV time column named like
        ``time``/``t``/``time_s``, NPZ ``sample_rate``) always wins. A first CSV column that is
        strictly increasing and uniformly spaced is taken as time only when this is None.
    column : CSV column, a header name or a 0-based index (``"2"`` counts as an index).
    key : NPZ array name (not needed when the file holds one signal array).
    channel : ``"mix"`` (mean of the channels → one row), ``"all"`` (every row) or a 0-based
        channel index.

    Returns a :class:`Signal` with float64 ``data`` of shape ``(channels, frames)``.
    Raises :class:`InputError` for every bad input.
    """
    path = Path(path)
    _check_file(path)
    ext = path.suffix.lower()
    if sample_rate is not None:
        sample_rate = _check_rate(path, sample_rate, "sample rate")
    try:
        digest = sha256_file(path)
    except OSError as exc:
        raise InputError(path, f"cannot read file ({_os_reason(exc)})") from None

    if ext in AUDIO_EXTENSIONS:
        data, rate = _read_audio(path, ext)
    elif ext == ".csv":
        data, rate = _read_csv(path, column, sample_rate)
    elif ext == ".npy":
        data, rate = _read_npy(path), None
    else:  # .npz
        data, rate = _read_npz(path, key)

    if rate is None:
        rate = sample_rate
    if rate is None:
        why = {".csv": "the CSV has no time column", ".npy": ".npy files carry none",
               ".npz": "the .npz has no scalar 'sample_rate' entry"}.get(ext, "none in the file")
        raise InputError(path, f"no sample rate ({why}); give one with --sample-rate")
    channels_in_file = int(data.shape[0])
    if data.shape[1] == 0:
        raise InputError(path, "contains no samples")
    data = _select_channel(path, data, channel)
    _check_values(path, data)
    data = np.ascontiguousarray(data, dtype=np.float64)
    data.setflags(write=False)
    return Signal(data=data, sample_rate=float(rate), path=path, sha256=digest,
                  channels_in_file=channels_in_file)


def check_length(signal: Signal | np.ndarray, min_frames: int,
                 path: str | os.PathLike | None = None) -> None:
    """Raise :class:`InputError` when the signal has fewer than ``min_frames`` samples (n_fft)."""
    data = signal.data if isinstance(signal, Signal) else np.asarray(signal)
    if path is None and isinstance(signal, Signal):
        path = signal.path
    frames = int(data.shape[-1]) if data.ndim else 0
    if frames < int(min_frames):
        raise InputError(path, f"too short for the window ({frames} samples < n_fft {int(min_frames)})")


def iter_inputs(paths: Iterable[str | os.PathLike], *,
                exclude: Iterable[str | os.PathLike] = ()) -> list[Path]:
    """Expand input paths: files as given, directories recursively (every supported extension,
    sorted, hidden files and folders skipped). Duplicates (the same file under two names) are
    dropped; a missing path or a directory without supported files raises :class:`InputError`.

    Inside directories, what ``dstft`` itself writes is never taken as an input: the folders in
    ``exclude`` (the output folder), result folders (holding ``params.json``) and batch summaries
    and scan curves (:func:`is_dstft_output`). Entries that are not regular files — FIFOs,
    devices, broken or looping links — are listed, and reading them is an error of that input.
    """
    out: list[Path] = []
    seen: set[Any] = set()
    excluded = {os.path.realpath(e) for e in exclude}

    def add(p: Path) -> None:
        key = _identity(p)
        if key not in seen:
            seen.add(key)
            out.append(p)

    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = []
            for root, dirs, files in os.walk(p):
                dirs[:] = [d for d in dirs if not d.startswith(".")
                           and os.path.realpath(os.path.join(root, d)) not in excluded
                           and not os.path.isfile(os.path.join(root, d, "params.json"))]
                for name in files:
                    f = Path(root) / name
                    if (not name.startswith(".") and f.suffix.lower() in SUPPORTED_EXTENSIONS
                            and not is_dstft_output(f)):
                        found.append(f)
            if not found:
                raise InputError(p, "directory holds no supported files "
                                    f"({', '.join(sorted(SUPPORTED_EXTENSIONS))})")
            for f in sorted(found):
                add(f)
        elif os.path.lexists(p):
            add(p)
        else:
            raise InputError(p, "no such file or directory")
    return out


def _identity(p: Path) -> Any:
    """The file behind a path (device, inode), or its absolute name when it cannot be reached."""
    try:
        st = os.stat(p)
    except OSError:
        return os.path.abspath(p)
    return (st.st_dev, st.st_ino)


#: First lines of the CSV files ``dstft`` writes beside results (batch summaries, scan curves).
_OUTPUT_HEADERS = ("input,status,", "window_length,loss")


def is_dstft_output(path: str | os.PathLike) -> bool:
    """A CSV that ``dstft`` wrote (``summary*.csv``, ``*.scan.csv``), recognised by its name and
    first line; never opens anything but a regular file."""
    path = Path(path)
    name = path.name.lower()
    if not (name.startswith("summary") or name.endswith(".scan.csv")) or not name.endswith(".csv"):
        return False
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, encoding="utf-8", errors="replace") as fh:
            first = fh.readline(200)
    except OSError:
        return False
    return first.startswith(_OUTPUT_HEADERS)


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    return exc.strerror or type(exc).__name__


_FILE_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _check_file(path: Path) -> None:
    """Only regular files are read (opening a FIFO or a device could block or never end)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(path, "broken link" if os.path.islink(path) else "no such file") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(path, "symbolic link loop") from None
        raise InputError(path, f"cannot access file ({_os_reason(exc)})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(path, "is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        kind = next((k for test, k in _FILE_KINDS if test(st.st_mode)), "a special file")
        raise InputError(path, f"not a regular file ({kind})")
    ext = path.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        shown = ext or "(no extension)"
        raise InputError(path, f"unsupported file type {shown} "
                               f"(supported: {', '.join(sorted(SUPPORTED_EXTENSIONS))})")
    try:
        with open(path, "rb") as fh:
            first = fh.read(1)
    except OSError as exc:
        raise InputError(path, f"cannot read file ({_os_reason(exc)})") from None
    if not first:
        raise InputError(path, "empty file (0 bytes)")


def _check_rate(path: Path, rate: Any, what: str) -> float:
    try:
        value = float(rate)
    except (TypeError, ValueError):
        raise InputError(path, f"{what} {rate!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise InputError(path, f"{what} must be a positive finite number, got {rate!r}")
    return value


def _select_channel(path: Path, data: np.ndarray, channel: str | int) -> np.ndarray:
    n = data.shape[0]
    if isinstance(channel, str):
        c = channel.strip().lower()
        if c == "mix":
            return data.mean(axis=0, keepdims=True) if n > 1 else data
        if c == "all":
            return data
        try:
            channel = int(c)
        except ValueError:
            raise InputError(path, f"bad channel {channel!r} (expected mix, all or an index)") from None
    if isinstance(channel, bool) or not isinstance(channel, (int, np.integer)):
        raise InputError(path, f"bad channel {channel!r} (expected mix, all or an index)")
    if not 0 <= channel < n:
        raise InputError(path, f"channel {channel} out of range (the file has {n} "
                               f"channel{'s' if n != 1 else ''}: 0..{n - 1})")
    return data[channel:channel + 1]


def _check_values(path: Path, data: np.ndarray) -> None:
    finite = np.isfinite(data)
    if not finite.all():
        bad = np.argwhere(~finite)[0]
        kinds = "NaN" if np.isnan(data).any() else "Inf"
        if np.isnan(data).any() and np.isinf(data).any():
            kinds = "NaN and Inf"
        raise InputError(path, f"contains non-finite values ({kinds}; first at sample {bad[-1]}, "
                               f"channel {bad[0]})")
    if not np.any(data):
        raise InputError(path, "signal is all zeros")


# --- audio -------------------------------------------------------------------------------------

def _read_audio(path: Path, ext: str) -> tuple[np.ndarray, float]:
    import soundfile as sf

    with open(path, "rb") as fh:
        head = fh.read(12)
    magic_ok = head.startswith(_MAGIC[ext]) and (ext != ".wav" or head[8:12] in (b"WAVE", b"BW64"))
    try:
        data, rate = sf.read(str(path), always_2d=True, dtype="float64")
    except (sf.SoundFileError, RuntimeError, ValueError) as exc:
        if not magic_ok:
            raise InputError(path, f"not a {_FORMAT_NAME[ext]} audio file "
                                   f"(unrecognised header {head[:4]!r})") from None
        raise InputError(path, f"corrupt or truncated {_FORMAT_NAME[ext]} file "
                               f"({_sf_reason(exc)})") from None
    if ext == ".wav" and magic_ok:
        _check_wav_complete(path)
    if data.shape[0] == 0:
        raise InputError(path, "contains no audio samples (empty or truncated)")
    return data.T, float(rate)


def _sf_reason(exc: Exception) -> str:
    msg = str(exc)
    if ": " in msg and msg.startswith("Error opening"):
        msg = msg.split(": ", 1)[1]
    return msg.strip().rstrip(".") or type(exc).__name__


def _check_wav_complete(path: Path) -> None:
    """libsndfile silently reads what is there of a truncated WAV; compare the declared ``data``
    chunk size with the bytes present."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        riff = fh.read(12)
        if riff[:4] not in (b"RIFF", b"RIFX"):
            return  # RF64/BW64 sizes live in ds64; libsndfile checks those itself
        endian = "<" if riff[:4] == b"RIFF" else ">"
        pos = 12
        while pos + 8 <= size:
            fh.seek(pos)
            header = fh.read(8)
            chunk_id = header[:4]
            (chunk_size,) = struct.unpack(endian + "I", header[4:8])
            if chunk_id == b"data":
                present = size - (pos + 8)
                if chunk_size not in (0, 0xFFFFFFFF) and chunk_size > present:
                    raise InputError(path, f"truncated WAV file (data chunk declares {chunk_size} "
                                           f"bytes, only {present} present)")
                return
            pos += 8 + chunk_size + (chunk_size & 1)


# --- CSV ---------------------------------------------------------------------------------------

def _parse_float(cell: str) -> float | None:
    if "_" in cell:  # Python reads 1_000 as 1000; a CSV number never has one
        return None
    try:
        return float(cell)
    except ValueError:
        return None


def _read_csv(path: Path, column: str | int | None, sample_rate: float | None
              ) -> tuple[np.ndarray, float | None]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(path, "unparsable CSV (not UTF-8 text)") from None
    except OSError as exc:
        raise InputError(path, f"cannot read file ({_os_reason(exc)})") from None
    if "\x00" in text:
        raise InputError(path, "unparsable CSV (binary data)")

    lines = [(i + 1, ln) for i, ln in enumerate(text.splitlines())
             if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise InputError(path, "unparsable CSV (no data rows)")
    delimiter = _sniff_delimiter([ln for _, ln in lines[:20]])
    reader = csv.reader([ln for _, ln in lines], delimiter=delimiter, skipinitialspace=True)
    try:
        rows = [[c.strip() for c in row] for row in reader]
    except csv.Error as exc:
        raise InputError(path, f"unparsable CSV ({exc})") from None
    if delimiter == " ":
        rows = [[c for c in row if c] for row in rows]
    line_numbers = [n for n, _ in lines]

    header: list[str] | None = None
    if any(_parse_float(c) is None for c in rows[0]):
        header = rows[0]
        rows, line_numbers = rows[1:], line_numbers[1:]
    if not rows:
        raise InputError(path, "unparsable CSV (a header but no data rows)")
    width = len(header) if header is not None else len(rows[0])
    try:  # fast path; on failure, walk the cells to say where the problem is
        if any("_" in cell for row in rows for cell in row):
            raise ValueError
        values = np.array(rows, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != width:
            raise ValueError
    except ValueError:
        values = _parse_rows(path, rows, line_numbers, width)

    names = [h.strip().lower() for h in header] if header is not None else None
    time_col = None
    if names is not None:
        time_col = next((i for i, n in enumerate(names) if n in TIME_COLUMN_NAMES), None)

    chosen = _choose_column(path, column, header, width, time_col)
    if chosen == time_col and column is not None:
        raise InputError(path, f"column {column!r} is the time column (it gives the sample "
                               f"rate); choose a signal column (columns: {', '.join(header)})")
    rate = None
    if time_col is not None and time_col != chosen and (values.shape[0] > 1 or sample_rate is None):
        rate = _rate_from_time(path, values[:, time_col], TIME_COLUMN_NAMES[names[time_col]],
                               header[time_col], strict=True)
    elif sample_rate is None and chosen != 0 and width >= 2:
        rate = _rate_from_time(path, values[:, 0], 1.0, "first column", strict=False)
    return values[:, chosen][None, :], rate


def _parse_rows(path: Path, rows: list[list[str]], line_numbers: list[int], width: int
                ) -> np.ndarray:
    values = np.empty((len(rows), width), dtype=np.float64)
    for r, (row, line_no) in enumerate(zip(rows, line_numbers, strict=True)):
        if len(row) != width:
            raise InputError(path, f"unparsable CSV (line {line_no} has {len(row)} fields, "
                                   f"expected {width})")
        for c, cell in enumerate(row):
            v = _parse_float(cell)
            if v is None:
                raise InputError(path, f"unparsable CSV (line {line_no}, column {c + 1}: "
                                       f"{cell!r} is not a number)")
            values[r, c] = v
    return values


def _sniff_delimiter(sample_lines: list[str]) -> str:
    for delim in (",", ";", "\t"):
        counts = {ln.count(delim) for ln in sample_lines}
        if len(counts) == 1 and counts.pop() > 0:
            return delim
    if all(len(ln.split()) > 1 for ln in sample_lines):
        return " "
    return ","


def _choose_column(path: Path, column: str | int | None, header: list[str] | None,
                   width: int, time_col: int | None) -> int:
    described = ", ".join(header) if header is not None else f"{width} unnamed columns"
    if column is None:
        candidates = [i for i in range(width) if i != time_col]
        if len(candidates) == 1:
            return candidates[0]
        if not candidates:
            raise InputError(path, "CSV has only a time column, no signal column")
        raise InputError(path, f"CSV has {width} columns ({described}); "
                               "choose one with --column NAME|INDEX")
    if isinstance(column, str) and column.strip().lstrip("-").isdigit():
        column = int(column.strip())
    if isinstance(column, (int, np.integer)) and not isinstance(column, bool):
        if not 0 <= column < width:
            raise InputError(path, f"column {column} out of range (CSV has {width} "
                                   f"column{'s' if width != 1 else ''}: 0..{width - 1})")
        return int(column)
    if not isinstance(column, str):
        raise InputError(path, f"bad column {column!r} (expected a name or an index)")
    if header is None:
        raise InputError(path, f"no column named {column!r}: the CSV has no header row "
                               "(give the column as an index)")
    wanted = column.strip().lower()
    for i, h in enumerate(header):
        if h.strip().lower() == wanted:
            return i
    raise InputError(path, f"no column named {column!r} (columns: {described})")


def _rate_from_time(path: Path, t: np.ndarray, unit: float, label: str,
                    strict: bool) -> float | None:
    """Sample rate from a time column; ``strict`` (a named time column) raises when the column is
    not usable, otherwise (a guessed first column) returns None."""
    t = t * unit
    if t.size < 2:
        if strict:
            raise InputError(path, f"time column {label!r} needs at least 2 rows to give a sample rate")
        return None
    d = np.diff(t)
    if not np.all(np.isfinite(t)) or np.any(d <= 0):
        if strict:
            raise InputError(path, f"time column {label!r} is not strictly increasing")
        return None
    step = (t[-1] - t[0]) / (t.size - 1)
    # printed time stamps are rounded, so allow some jitter (5 % named, 1 % guessed)
    tol = (0.05 if strict else 0.01) * step
    if np.max(np.abs(d - step)) > tol:
        if strict:
            raise InputError(path, f"time column {label!r} is not uniformly spaced (steps from "
                                   f"{d.min():.6g} to {d.max():.6g} s); resample it first")
        return None
    rate = 1.0 / step
    if abs(rate - round(rate)) <= 1e-4 * rate:
        rate = float(round(rate))
    return rate


# --- NumPy -------------------------------------------------------------------------------------

def _as_signal_array(path: Path, arr: np.ndarray, what: str = "array") -> np.ndarray:
    if not isinstance(arr, np.ndarray):
        raise InputError(path, f"{what} is not a NumPy array (corrupt .npz member)")
    if arr.dtype == object:
        raise InputError(path, f"{what} holds Python objects (pickled data), refused")
    if np.iscomplexobj(arr):
        raise InputError(path, f"{what} is complex; a real signal is expected")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise InputError(path, f"{what} has non-numeric dtype {arr.dtype}")
    if arr.ndim == 0:
        raise InputError(path, f"{what} is a scalar, not a signal")
    if arr.ndim > 2:
        raise InputError(path, f"{what} has {arr.ndim} dimensions (shape {tuple(arr.shape)}); "
                               "expected 1-D or 2-D (channels, frames)")
    if arr.size == 0:
        raise InputError(path, f"{what} contains no samples (shape {tuple(arr.shape)})")
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim == 1:
        return arr[None, :]
    return arr if arr.shape[0] <= arr.shape[1] else arr.T


def _read_npy(path: Path) -> np.ndarray:
    with open(path, "rb") as fh:
        head = fh.read(6)
    if head != b"\x93NUMPY":
        if head[:1] == b"\x80":
            raise InputError(path, "pickled data, refused (not a plain .npy array)")
        raise InputError(path, f"not a NumPy .npy file (unrecognised header {head[:4]!r})")
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object" in str(exc).lower():
            raise InputError(path, "holds Python objects (pickled data), refused") from None
        raise InputError(path, f"corrupt or truncated .npy file ({exc})") from None
    except (OSError, EOFError) as exc:
        raise InputError(path, f"corrupt or truncated .npy file ({exc})") from None
    return _as_signal_array(path, arr)


def _read_npz(path: Path, key: str | None) -> tuple[np.ndarray, float | None]:
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head != b"PK\x03\x04":
        raise InputError(path, f"not a NumPy .npz file (unrecognised header {head!r})")
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.files)
            rate, rate_key = None, None
            for k in keys:
                if k.lower() in NPZ_RATE_KEYS and key != k:
                    try:
                        value = npz[k]
                    except ValueError:
                        continue
                    if value.ndim == 0:
                        rate, rate_key = _check_rate(path, value, f"{k!r} entry"), k
                        break
            arrays = [k for k in keys if k != rate_key]
            if key is None:
                if len(arrays) != 1:
                    listed = ", ".join(arrays) if arrays else "none"
                    raise InputError(path, f"holds {len(arrays)} arrays ({listed}); "
                                           "choose one with --key NAME")
                key = arrays[0]
            elif key not in keys:
                raise InputError(path, f"no array named {key!r} "
                                       f"(available: {', '.join(keys) or 'none'})")
            try:
                arr = npz[key]
            except ValueError as exc:
                if "pickle" in str(exc).lower() or "object" in str(exc).lower():
                    raise InputError(path, f"array {key!r} holds Python objects (pickled data), "
                                           "refused") from None
                raise
            return _as_signal_array(path, arr, f"array {key!r}"), rate
    except InputError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise InputError(path, f"corrupt or truncated .npz file ({exc})") from None


# ----------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------

def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()
_DIR_MODE = 0o777 & ~_umask()


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", **kwargs: Any) -> Iterator[Any]:
    """Open a temporary file beside ``path``; on clean exit flush, fsync and rename it to ``path``;
    on an exception remove it and leave ``path`` untouched."""
    if "r" in mode or "a" in mode or "+" in mode:
        raise ValueError(f"atomic_open is for writing, got {mode=}")
    path = Path(path)
    tmp = tempfile.NamedTemporaryFile(mode, dir=path.parent, prefix=f".{path.name}.",
                                      suffix=".tmp", delete=False, **kwargs)
    try:
        with tmp:
            yield tmp
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp.name, _FILE_MODE)
        os.replace(tmp.name, path)
    except BaseException:
        try:
            os.unlink(tmp.name)
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    with atomic_open(path, "w", encoding=encoding, newline="") as fh:
        fh.write(text)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """JSON (indent 2, numpy scalars/arrays converted, non-finite floats written as null)."""
    text = json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n"
    return atomic_write_text(path, text)


def atomic_save_npz(path: str | os.PathLike, *, compress: bool = False,
                    **arrays: np.ndarray) -> Path:
    """``np.savez`` (or ``savez_compressed``) to exactly ``path`` (no ``.npz`` appended)."""
    save = np.savez_compressed if compress else np.savez
    with atomic_open(path, "wb") as fh:
        save(fh, **arrays)
    return Path(path)


def atomic_savefig(fig: Any, path: str | os.PathLike, **kwargs: Any) -> Path:
    """``fig.savefig`` to a temporary file then rename; the format comes from the suffix."""
    path = Path(path)
    kwargs.setdefault("format", path.suffix.lstrip(".").lower() or "png")
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, **kwargs)
    return path


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


class ResultDir:
    """A result folder built in a hidden temporary sibling ``.{stem}.tmp-XXXX`` and renamed to
    ``out_root/stem`` by :meth:`commit`; :meth:`abort` removes it. Use through :func:`result_dir`.

    ``params`` (set with :meth:`set_params`) is written as ``params.json`` last, at commit, so its
    presence means the run finished.
    """

    PARAMS_NAME = "params.json"

    def __init__(self, out_root: str | os.PathLike, stem: str, overwrite: bool = False):
        if not stem or stem in (".", "..") or "/" in stem or os.sep in stem:
            raise ValueError(f"bad result folder name {stem!r}")
        self.out_root = Path(out_root)
        self.final = self.out_root / stem
        self.overwrite = overwrite
        self.params: dict | None = None
        if self.final.exists() and not overwrite:
            raise ResultExists(self.final)
        self.out_root.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=f".{stem}.tmp-", dir=self.out_root))
        os.chmod(self.path, _DIR_MODE)  # mkdtemp makes it 0700
        self._done = False

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def file(self, name: str) -> Path:
        return self.path / name

    def write_bytes(self, name: str, data: bytes) -> Path:
        return atomic_write_bytes(self.path / name, data)

    def write_text(self, name: str, text: str) -> Path:
        return atomic_write_text(self.path / name, text)

    def write_json(self, name: str, obj: Any) -> Path:
        return atomic_write_json(self.path / name, obj)

    def save_npz(self, name: str, **arrays: np.ndarray) -> Path:
        return atomic_save_npz(self.path / name, **arrays)

    def savefig(self, name: str, fig: Any, **kwargs: Any) -> Path:
        return atomic_savefig(fig, self.path / name, **kwargs)

    def set_params(self, params: dict) -> None:
        """params.json to write at commit; each length in samples gets its value in ms beside
        it (:func:`~dstft_cli.units.with_ms`) when ``params["sample_rate"]`` is known."""
        from .units import with_ms

        self.params = with_ms(params, params.get("sample_rate"))

    def commit(self) -> Path:
        """Write ``params.json`` (if set) and move the folder into place."""
        if self._done:
            raise RuntimeError("result folder already committed or aborted")
        try:
            if self.params is not None:
                self.write_json(self.PARAMS_NAME, self.params)
            backup = None
            if os.path.lexists(self.final):
                if not self.overwrite:
                    raise ResultExists(self.final)
                backup = self.out_root / f".{self.final.name}.old-{uuid.uuid4().hex[:8]}"
                os.replace(self.final, backup)
            try:
                os.replace(self.path, self.final)
            except BaseException:
                if backup is not None:
                    os.replace(backup, self.final)
                raise
        except BaseException:
            self.abort()
            raise
        self._done = True
        if backup is not None:
            if backup.is_dir() and not backup.is_symlink():
                shutil.rmtree(backup, ignore_errors=True)
            else:
                backup.unlink(missing_ok=True)
        return self.final

    def abort(self) -> None:
        """Remove the temporary folder (the final folder, if any, is untouched)."""
        self._done = True
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> ResultDir:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._done:
            return
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def result_dir(out_root: str | os.PathLike, stem: str, overwrite: bool = False) -> ResultDir:
    """Context manager for one input's result folder ``out_root/stem``.

    >>> with result_dir("dstft_out", "speech", overwrite=False) as rd:   # doctest: +SKIP
    ...     rd.save_npz("spectrogram.npz", magnitude=mag)
    ...     rd.set_params({...})            # params.json is written last, at commit

    Raises :class:`ResultExists` on entry when the folder exists and ``overwrite`` is false. On an
    exception nothing is left behind (an existing folder is kept); on success the folder appears
    (replacing an existing one only then).
    """
    return ResultDir(out_root, stem, overwrite)



# ----------------------------------------------------------------------------------------------
# signals and ground truth
# ----------------------------------------------------------------------------------------------

#: Extensions :func:`write_signal` can write.
SIGNAL_FORMATS = (".wav", ".flac", ".npy", ".csv")
#: Truth-CSV columns read as the frequency, in order of preference.
TRUTH_FREQUENCY_COLUMNS = ("f0_hz", "f_hz", "frequency_hz", "freq_hz", "frequency", "f0")


def write_signal(path: str | os.PathLike, x: np.ndarray, sample_rate: float) -> Path:
    """Write a 1-D signal atomically: WAV 32-bit float, FLAC 24-bit PCM scaled to a 0.9 peak
    (integer sample rates only), NPY, or CSV ``time_s,signal``. ValueError for other suffixes."""
    path = Path(path)
    suffix = path.suffix.lower()
    x = np.asarray(x, dtype=np.float64)
    if suffix not in SIGNAL_FORMATS:
        raise ValueError(f"{path}: unsupported extension {suffix or '(none)'}; use one of "
                         f"{', '.join(SIGNAL_FORMATS)}")
    if suffix == ".flac" and int(sample_rate) != sample_rate:
        raise ValueError(f"{path}: FLAC needs an integer sample rate, got {sample_rate}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix in (".wav", ".flac"):
        import soundfile as sf

        if suffix == ".flac":
            data, subtype = 0.9 * x / max(float(np.max(np.abs(x))), 1e-300), "PCM_24"
        else:
            data, subtype = x.astype(np.float32), "FLOAT"
        with atomic_open(path, "wb") as fh:
            sf.write(fh, data, int(round(sample_rate)), subtype=subtype, format=suffix[1:].upper())
    elif suffix == ".npy":
        with atomic_open(path, "wb") as fh:
            np.save(fh, x, allow_pickle=False)
    else:
        t = np.arange(x.size) / sample_rate
        atomic_write_text(path, csv_text(["time_s", "signal"], zip(t.tolist(), x.tolist(),
                                                                    strict=True), exact=True))
    return path


def csv_text(header: Iterable[str], rows: Iterable[Iterable[Any]], *, exact: bool = False) -> str:
    """CSV text with a header; floats with 9 significant digits, or round-trip exact."""
    import io as _io

    buf = _io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(list(header))
    for row in rows:
        writer.writerow([(repr(float(v)) if exact else f"{v:.9g}") if isinstance(v, float) else v
                         for v in row])
    return buf.getvalue()


def write_truth(path: str | os.PathLike, columns: dict[str, np.ndarray]) -> Path:
    """Per-sample truth columns (``time_s`` first) as an exact CSV."""
    rows = np.column_stack([np.asarray(v, dtype=np.float64) for v in columns.values()])
    return atomic_write_text(path, csv_text(list(columns), rows.tolist(), exact=True))


def truth_beside(path: str | os.PathLike) -> Path | None:
    """``<stem>_truth.csv`` (or ``<stem>.truth.csv``) beside a signal file, if there is one."""
    path = Path(path)
    for name in (f"{path.stem}_truth.csv", f"{path.stem}.truth.csv"):
        candidate = path.with_name(name)
        if candidate.is_file():
            return candidate
    return None


def is_truth_file(path: str | os.PathLike) -> bool:
    """A ground-truth CSV (``*_truth.csv``, ``*.truth.csv``): beside an input, not an input."""
    name = Path(path).name
    return name.endswith("_truth.csv") or name.endswith(".truth.csv")


def read_truth_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(time_s, frequency_hz)`` from a truth CSV with a header: ``time_s`` and one of
    :data:`TRUTH_FREQUENCY_COLUMNS` (else the second column). Raises :class:`InputError`."""
    path = Path(path)
    try:
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise InputError(path, f"cannot read truth file ({_os_reason(exc)})") from None
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if len(rows) < 3:
        raise InputError(path, "truth CSV needs a header and at least two rows")
    header = [c.strip().lower() for c in rows[0]]
    if "time_s" not in header:
        raise InputError(path, f"truth CSV has no 'time_s' column (columns: {', '.join(header)})")
    ti = header.index("time_s")
    fi = next((header.index(c) for c in TRUTH_FREQUENCY_COLUMNS if c in header), None)
    if fi is None:
        others = [i for i in range(len(header)) if i != ti]
        if not others:
            raise InputError(path, "truth CSV has no frequency column")
        fi = others[0]
    try:
        data = np.array([[float(r[ti]), float(r[fi])] for r in rows[1:]], dtype=np.float64)
    except (ValueError, IndexError):
        raise InputError(path, "truth CSV holds a non-numeric or missing value") from None
    if not np.all(np.isfinite(data)):
        raise InputError(path, "truth CSV holds non-finite values")
    if np.any(np.diff(data[:, 0]) <= 0):
        raise InputError(path, "truth CSV times are not strictly increasing")
    return data[:, 0], data[:, 1]
