"""The batch summary: ``OUT/summary.csv``, one row per input of every command over inputs.

Columns (:data:`COLUMNS`): ``input`` (the path as given), ``status`` (``ok``, ``skipped`` — the
result was there already, its values are read from it — or ``failed``), ``error`` (the one-line
message), ``sample_rate``, ``n_fft``, ``hop``, θ ``min / median / max`` in samples and in ms,
``loss_initial`` and ``loss_final``, ``converged``, ``warnings`` (``; ``-separated), ``elapsed_s``
(this run's time for the input) and ``result`` (the result folder or file).

The file is written atomically and merged with the rows already in it, keyed by ``input``, so
that reruns and resumed batches keep one row per input. :func:`row_from_params` fills a row from
a result's ``params.json``, which is how skipped inputs get their values and how
:func:`rebuild` recreates a summary from the result folders alone.
"""

from __future__ import annotations

import csv
import io as _io
import json
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .io import atomic_write_text

__all__ = ["COLUMNS", "SUMMARY_NAME", "summary_name", "row_from_params", "read_rows",
           "merge_write", "rebuild", "merge_parts", "MergeReport"]

SUMMARY_NAME = "summary.csv"
_PART_RE = re.compile(r"^summary\.(\d+)-of-(\d+)\.csv$")


def summary_name(shard: tuple[int, int] | None = None) -> str:
    """``summary.csv``, or ``summary.K-of-N.csv`` for shard K of N."""
    return SUMMARY_NAME if shard is None else f"summary.{shard[0]}-of-{shard[1]}.csv"
COLUMNS = (
    "input", "status", "error", "sample_rate", "n_fft", "hop",
    "theta_min", "theta_median", "theta_max", "theta_min_ms", "theta_median_ms", "theta_max_ms",
    "loss_initial", "loss_final", "converged", "warnings", "elapsed_s", "result",
)


def _number(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)) and math.isfinite(value):
        return value
    return None


def row_from_params(params: dict, *, result: str = "") -> dict:
    """The summary columns a result's params.json gives (θ, rates, losses, warnings)."""
    row: dict[str, Any] = {"result": result}
    rate = _number(params.get("sample_rate"))
    row["sample_rate"] = rate
    row["n_fft"] = _number(params.get("n_fft"))
    row["hop"] = _number(params.get("hop"))
    theta = params.get("window_length")
    if isinstance(theta, dict):
        values = {k: _number(theta.get(k)) for k in ("min", "median", "max")}
    else:
        values = dict.fromkeys(("min", "median", "max"), _number(theta))
    for key, value in values.items():
        row[f"theta_{key}"] = value
        row[f"theta_{key}_ms"] = (None if value is None or not rate else 1000.0 * value / rate)
    row["loss_initial"] = _number(params.get("loss_initial", params.get("entropy_constant")))
    row["loss_final"] = _number(params.get("loss_final", params.get("loss_value",
                                                                    params.get("entropy_final"))))
    row["converged"] = params.get("converged")
    warnings = params.get("warnings") or []
    if not isinstance(warnings, list):
        warnings = [warnings]
    row["warnings"] = [w if isinstance(w, str) else str(w.get("message", w))
                       if isinstance(w, dict) else str(w) for w in warnings]
    return row


def row_from_result(folder: str | os.PathLike) -> dict | None:
    """:func:`row_from_params` of a result folder, or None when it has no readable params.json."""
    try:
        params = json.loads((Path(folder) / "params.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return row_from_params(params, result=str(folder)) if isinstance(params, dict) else None


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.10g}"
    if isinstance(value, (list, tuple)):
        return "; ".join(_cell(v) for v in value)
    return " ".join(str(value).split())


def read_rows(path: str | os.PathLike) -> list[dict]:
    """The rows of a summary file (empty when there is none or it is unreadable)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return [dict(r) for r in csv.DictReader(fh) if r.get("input")]
    except (OSError, csv.Error, UnicodeDecodeError):
        return []


def merge_write(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    """Merge ``rows`` into the summary at ``path`` (a row per input, the new one wins; sorted by
    input) and write it atomically."""
    merged = {r["input"]: r for r in read_rows(path)}
    for row in rows:
        merged[str(row["input"])] = {c: row.get(c) if isinstance(row.get(c), str) else
                                     _cell(row.get(c)) for c in COLUMNS}
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for key in sorted(merged):
        writer.writerow({c: merged[key].get(c, "") for c in COLUMNS})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, buf.getvalue())


def rebuild(out: str | os.PathLike) -> list[dict]:
    """Rows for every finished result folder in ``out`` (status ok), from their params.json."""
    rows = []
    for entry in sorted(Path(out).iterdir()):
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        row = row_from_result(entry)
        if row is None:
            continue
        with open(entry / "params.json", encoding="utf-8") as fh:
            params = json.load(fh)
        source = params.get("input", {}) if isinstance(params.get("input"), dict) else {}
        row.update(input=source.get("path", entry.name), status="ok", error="")
        rows.append(row)
    return rows


@dataclass
class MergeReport:
    """What :func:`merge_parts` found and wrote."""

    path: Path
    rows: int
    parts: list[str]
    missing_parts: list[str]
    rebuilt: int
    counts: dict[str, int]


def merge_parts(out: str | os.PathLike) -> MergeReport:
    """Merge the shards' ``summary.K-of-N.csv`` into ``OUT/summary.csv``.

    Rows come, later ones winning for the same input, from the result folders' params.json
    (:func:`rebuild`: so results whose shard summary is missing are still listed), the existing
    ``summary.csv``, and the parts. Missing parts (``K`` of ``N`` absent) are reported.
    """
    out = Path(out)
    if not out.is_dir():
        raise FileNotFoundError(f"{out}: no such folder")
    parts = sorted((p for p in out.iterdir() if _PART_RE.match(p.name)),
                   key=lambda p: tuple(int(g) for g in _PART_RE.match(p.name).groups()[::-1]))
    counts_n = {int(_PART_RE.match(p.name).group(2)) for p in parts}
    present = {p.name for p in parts}
    missing = sorted({summary_name((k, n)) for n in counts_n for k in range(1, n + 1)} - present)
    rebuilt = rebuild(out)
    merged: dict[str, dict] = {}
    for row in rebuilt:
        merged[str(row["input"])] = {c: _cell(row.get(c)) for c in COLUMNS}
    rebuilt_inputs = set(merged)
    for source in [out / SUMMARY_NAME, *parts]:
        for row in read_rows(source):
            merged[row["input"]] = {c: row.get(c, "") for c in COLUMNS}
            rebuilt_inputs.discard(row["input"])
    path = out / SUMMARY_NAME
    if path.exists():
        path.unlink()
    merge_write(path, merged.values())
    counts: dict[str, int] = {}
    for row in merged.values():
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return MergeReport(path, len(merged), [p.name for p in parts], missing,
                       len(rebuilt_inputs), counts)
