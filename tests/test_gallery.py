"""dstft_cli.gallery: OUT/index.html parses, has no scripts, and every link resolves."""

from __future__ import annotations

import csv
import json
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from test_figures import make_result

from dstft_cli import figures, gallery


class Page(HTMLParser):
    """Tags, links, ids, table cells and text of a page; fails on unbalanced tags."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__()
        self.stack, self.tags, self.links, self.ids, self.text = [], [], [], set(), []
        self.rows: list[list[str]] = []
        self.row_classes: list[str | None] = []
        self.thumbnails: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag not in self.VOID:
            self.stack.append(tag)
        if "id" in a:
            self.ids.add(a["id"])
        for key in ("href", "src"):
            if key in a:
                self.links.append(a[key])
        if tag == "img":
            self.thumbnails.append(a["src"])
        if tag == "tr":
            self.rows.append([])
            self.row_classes.append(a.get("class"))

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"unbalanced </{tag}> in {self.stack}"
        self.stack.pop()

    def handle_data(self, data):
        if data.strip():
            self.text.append(data.strip())
            if "td" in self.stack or "th" in self.stack:
                self.rows[-1].append(data.strip())


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    assert not page.stack, page.stack
    return page


def check_links(root: Path, page: Page) -> None:
    for link in page.links:
        parts = urlsplit(link)
        assert not parts.scheme and not parts.netloc and not link.startswith("/"), link
        if link.startswith("#"):
            assert unquote(link[1:]) in {unquote(i) for i in page.ids}, link
        else:
            target = (root / unquote(parts.path)).resolve()
            assert target.is_file(), link
            assert target.is_relative_to(root.resolve()), link


@pytest.mark.slow
def test_gallery_from_summary(tmp_path):
    out = tmp_path / "out"
    for name, mode in (("a b", "tf"), ("c", "constant")):
        folder = make_result(out / name, mode)
        params = json.loads((folder / "params.json").read_text())
        params["input"]["path"] = f"data/{name}.wav"
        if name == "c":
            params["warnings"] = ["θ at a bound; see --max-length"]
        (folder / "params.json").write_text(json.dumps(params))
        figures.render_result(folder, None, figures.FigureOptions(formats=("png", "svg")))
    columns = ["extra", "input", "status", "error", "sample_rate", "theta_median", "warnings",
               "elapsed_s"]
    rows = [
        {"input": "data/a b.wav", "status": "ok", "sample_rate": "8000", "theta_median": "40",
         "warnings": "clipped samples; 3 s of silence", "elapsed_s": "1.5", "extra": "x",
         "output": ""},
        {"input": "data/c.wav", "status": "ok", "sample_rate": "8000"},
        {"input": "data/c.wav", "status": "ok", "sample_rate": "8000"},   # a repeated row
        {"input": "data/broken.wav", "status": "failed", "error": "data/broken.wav: not a WAV file"},
    ]
    with open(out / "summary.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    path = gallery.write_gallery(out)
    assert path == out / "index.html"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]        # nothing half-written
    page = parse(path)
    assert "script" not in page.tags
    check_links(out, page)
    # the summary table: preferred columns first, then the rest; the failed row marked
    assert page.rows[0] == ["input", "status", "error", "sample_rate", "theta_median", "warnings",
                            "elapsed_s", "extra"]
    assert page.row_classes[4] == "failed" and "data/broken.wav: not a WAV file" in page.rows[4]
    # one thumbnail per result folder, each a figure of that folder
    assert sorted(Path(unquote(t)).parent.name for t in page.thumbnails) == ["a b", "c"]
    linked = {unquote(link) for link in page.links}
    for folder in ("a b", "c"):
        assert f"{folder}/params.json" in linked and f"{folder}/spectrogram.svg" in linked
    assert "a b/window_lengths.png" in linked and "a b/loss.svg" in linked
    # warnings visible as text (params.json's whole sentences win over the summary cell)
    assert "warning: clipped samples" in page.text and "warning: 3 s of silence" in page.text
    assert "warning: θ at a bound; see --max-length" in page.text
    assert "summary.csv" in page.text


def test_gallery_without_summary(tmp_path):
    out = tmp_path / "out"
    figures.render_result(make_result(out / "one", "time"))
    (out / "stray").mkdir()                                  # not a result: left out
    page = parse(gallery.write_gallery(out))
    check_links(out, page)
    assert not page.rows and len(page.thumbnails) == 1
    assert {unquote(link) for link in page.links} >= {"one/spectrogram.png", "one/params.json"}
