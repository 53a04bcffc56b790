"""``OUT/index.html``: one static page over a batch's results (no scripts, every link relative).

The page holds the batch summary table (``OUT/summary.csv``, read tolerantly: whatever columns it
has, in a preferred order first) and one entry per result folder: a thumbnail of its main figure
linking to the full-size file, links to every figure (PNG, SVG, PDF) and to ``params.json``, and
its warnings or error in plain sight. Without a summary file the entries come from the result
folders themselves (every subfolder of OUT that holds a ``params.json``).

This module never imports click, torch or matplotlib.
"""

from __future__ import annotations

import csv
import html
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .io import atomic_write_text

__all__ = ["write_gallery", "GALLERY_NAME", "SUMMARY_NAME"]

GALLERY_NAME = "index.html"
SUMMARY_NAME = "summary.csv"
#: Summary columns shown first, in this order, when present; others follow as they come.
PREFERRED_COLUMNS = ("input", "status", "error", "sample_rate", "n_fft", "hop", "theta_min",
                     "theta_median", "theta_max", "loss_initial", "loss_final", "converged",
                     "warnings", "elapsed_s")
#: Columns that may name a row's result folder (relative to OUT, or a path inside it).
FOLDER_COLUMNS = ("output", "result", "result_dir", "folder", "name")
#: The figure shown as the thumbnail, the first that exists.
THUMBNAIL_STEMS = ("compare", "spectrogram", "tracking", "window_lengths", "loss")
FIGURE_SUFFIXES = (".png", ".svg", ".pdf")

_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin-bottom: 2em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
tr.failed td { background: #fde8e8; }
.entries { display: flex; flex-wrap: wrap; gap: 1.5em; }
.entry { width: 340px; }
.entry img { width: 320px; border: 1px solid #ccc; }
.warning { color: #8a4b00; background: #fff4e0; padding: 0.2em 0.4em; margin: 0.2em 0; }
.error { color: #a00000; background: #fde8e8; padding: 0.2em 0.4em; margin: 0.2em 0; }
"""


def _read_summary(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Columns and rows of a summary CSV; a missing or unreadable file gives no rows."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            rows = [{str(k): ("" if v is None else str(v)) for k, v in row.items() if k is not None}
                    for row in reader]
            columns = [c for c in (reader.fieldnames or []) if c]
    except (OSError, UnicodeDecodeError, csv.Error):
        return [], []
    ordered = [c for c in PREFERRED_COLUMNS if c in columns]
    return ordered + [c for c in columns if c not in ordered], rows


def _inside(root: Path, candidate: Path) -> bool:
    try:
        candidate.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def _row_folder(root: Path, row: dict[str, str], folders: dict[str, Path]) -> Path | None:
    """The result folder a summary row describes, if it is inside OUT."""
    for column in FOLDER_COLUMNS:
        value = row.get(column, "").strip()
        if value:
            for candidate in (Path(value), root / value, root / Path(value).name):
                if candidate.is_dir() and _inside(root, candidate):
                    return candidate
    source = row.get("input", "").strip()
    if source:
        for folder in folders.values():
            recorded = _params(folder).get("input", {})
            if isinstance(recorded, dict) and recorded.get("path") == source:
                return folder
        return folders.get(Path(source).stem)
    return None


def _params(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / "params.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _href(root: Path, target: Path) -> str:
    return quote(Path(os.path.relpath(target, root)).as_posix())


def _figures(folder: Path) -> list[Path]:
    found = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FIGURE_SUFFIXES
             and not p.name.startswith(".")]
    return sorted(found, key=lambda p: (p.stem, FIGURE_SUFFIXES.index(p.suffix.lower())))


def _warnings(row: dict[str, str], params: dict[str, Any]) -> list[str]:
    """The result's warnings: params.json's list (whole sentences), else the summary cell, whose
    items are joined with "; "."""
    recorded = params.get("warnings")
    if isinstance(recorded, list) and recorded:
        return [str(w.get("message", w)) if isinstance(w, dict) else str(w) for w in recorded]
    text = row.get("warnings", "").strip()
    return [w.strip() for w in text.split("; ") if w.strip()] if text else []


def _entry(root: Path, folder: Path, row: dict[str, str]) -> str:
    e = html.escape
    params = _params(folder)
    title = row.get("input") or (params.get("input") or {}).get("path") or folder.name
    parts = [f'<div class="entry" id="{e(quote(folder.name))}">', f"<h3>{e(str(title))}</h3>"]
    figures = _figures(folder)
    pngs = {p.stem: p for p in figures if p.suffix.lower() == ".png"}
    thumb = next((pngs[s] for s in THUMBNAIL_STEMS if s in pngs), next(iter(pngs.values()), None))
    if thumb is not None:
        href = _href(root, thumb)
        parts.append(f'<a href="{href}"><img src="{href}" alt="{e(thumb.stem)} of '
                     f'{e(str(title))}"></a>')
    if row.get("error"):
        parts.append(f'<p class="error">{e(row["error"])}</p>')
    parts += [f'<p class="warning">warning: {e(w)}</p>' for w in _warnings(row, params)]
    links = [f'<a href="{_href(root, p)}">{e(p.name)}</a>' for p in figures]
    if (folder / "params.json").is_file():
        links.append(f'<a href="{_href(root, folder / "params.json")}">params.json</a>')
    if links:
        parts.append("<p>" + " · ".join(links) + "</p>")
    parts.append("</div>")
    return "\n".join(parts)


def _table(root: Path, columns: list[str], rows: list[dict[str, str]],
           folders_of_rows: list[Path | None]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in columns)
    body = []
    for row, folder in zip(rows, folders_of_rows, strict=True):
        failed = row.get("status", "").strip().lower() == "failed"
        cells = []
        for c in columns:
            value = e(row.get(c, ""))
            if c == "input" and folder is not None:
                value = f'<a href="#{e(quote(folder.name))}">{value}</a>'
            cells.append(f"<td>{value}</td>")
        opening = '<tr class="failed">' if failed else "<tr>"
        body.append(opening + "".join(cells) + "</tr>")
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + \
        "\n</tbody>\n</table>"


def write_gallery(out_root: str | os.PathLike, title: str | None = None) -> Path:
    """Write ``out_root/index.html`` (atomically) over the results in ``out_root``."""
    root = Path(out_root)
    folders = {p.name: p for p in sorted(root.iterdir())
               if p.is_dir() and not p.name.startswith(".") and (p / "params.json").is_file()}
    columns, rows = _read_summary(root / SUMMARY_NAME)
    row_folders: list[Path | None] = []
    for row in rows:  # each folder is described by one row at most
        folder = _row_folder(root, row, folders)
        row_folders.append(None if folder in row_folders else folder)
    described = {f.resolve() for f in row_folders if f is not None}
    entries = [_entry(root, f, row) for row, f in zip(rows, row_folders, strict=True)
               if f is not None]
    entries += [_entry(root, f, {}) for f in folders.values() if f.resolve() not in described]
    heading = html.escape(title or f"dstft results: {root.name or root.resolve().name}")
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>{heading}</title>", f"<style>{_STYLE}</style>", "</head>", "<body>",
             f"<h1>{heading}</h1>"]
    if rows:
        summary_link = f'<a href="{_href(root, root / SUMMARY_NAME)}">{SUMMARY_NAME}</a>'
        parts += [f"<h2>Summary ({summary_link})</h2>", _table(root, columns, rows, row_folders)]
    parts += ["<h2>Results</h2>", '<div class="entries">', *entries, "</div>", "</body>",
              "</html>"]
    return atomic_write_text(root / GALLERY_NAME, "\n".join(parts) + "\n")
