"""dstft_cli.figures: result folders re-rendered from their files, reproducible bytes, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dstft_cli import figures
from dstft_cli.plots import FigureOptions
from dstft_cli.results import theta_summary, theta_title

M, N, FS, HOP, NFFT = 65, 40, 8000.0, 32, 128


def make_result(folder: Path, mode: str = "tf", *, loss: bool = True) -> Path:
    """A result folder as `dstft optimize` writes it, with made-up numbers."""
    folder.mkdir(parents=True)
    times = np.arange(N) * HOP / FS
    freqs = np.fft.rfftfreq(NFFT, 1 / FS)
    rng = np.random.default_rng(0)
    magnitude = 1e-5 * rng.random((M, N))
    magnitude[np.linspace(5, M - 5, N).astype(int), np.arange(N)] = 1.0
    theta = {"tf": 16 + 100 * rng.random((M, N)), "time": 20 + 80 * rng.random((1, N)),
             "hop": 20 + 80 * rng.random((1, N)), "constant": np.full((1, 1), 64.0)}[mode]
    arrays = {"magnitude": magnitude.astype(np.float32), "window_length": theta,
              "frame_positions": np.arange(N) * HOP, "times": times, "freqs": freqs}
    if loss:
        arrays.update(loss_history=np.r_[5.0, np.linspace(4.8, 4.0, 12)],
                      loss_stage_names=np.array(["constant", mode]),
                      loss_stage_starts=np.array([1, 6]))
    np.savez(folder / "spectrogram.npz", **arrays)
    params = {"mode": mode, "window": "hann", "n_fft": NFFT, "hop": HOP, "sample_rate": FS,
              "loss": "shannon", "input": {"path": "somewhere/x.wav", "frames": N * HOP}}
    (folder / "params.json").write_text(json.dumps(params))
    return folder


@pytest.mark.slow
def test_render_result_every_figure(tmp_path):
    result = make_result(tmp_path / "x")
    written = figures.render_result(result, tmp_path / "out",
                                    FigureOptions(formats=("png", "svg", "pdf")))
    names = sorted(p.name for p in written)
    assert names == sorted(f"{s}.{f}" for s in ("spectrogram", "loss", "window_lengths")
                           for f in ("png", "svg", "pdf"))
    assert (tmp_path / "out" / "loss.pdf").read_bytes().startswith(b"%PDF")
    assert b"<svg" in (tmp_path / "out" / "spectrogram.svg").read_bytes()[:2000]
    saved = figures.read_saved(result)
    figs = figures.result_figures(saved, FigureOptions(fmax=2000))
    spec = figs["spectrogram"].axes[0]
    assert spec.get_ylim()[1] == pytest.approx(2000)
    assert spec.get_title() == "x.wav — tf\n" + theta_title(
        theta_summary(saved.window_length), saved.sample_rate, hop=saved.params["hop"])
    assert " ms)" in spec.get_title() and "samples" in spec.get_title()
    loss_ax = figs["loss"].axes[0]
    assert [t.get_text() for t in loss_ax.child_axes[0].get_xticklabels()] == ["constant", "tf"]
    assert [line.get_xdata()[0] for line in loss_ax.lines[2:]] == [pytest.approx(0.5),
                                                                  pytest.approx(5.5)]
    hop = figures.result_figures(figures.read_saved(make_result(tmp_path / "h", "hop", loss=False)))
    assert sorted(hop) == ["frames", "spectrogram", "window_lengths"]
    constant = figures.result_figures(figures.read_saved(make_result(tmp_path / "c", "constant")))
    assert sorted(constant) == ["loss", "spectrogram"]


def test_render_in_place_by_default(tmp_path):
    result = make_result(tmp_path / "x", "time", loss=False)
    written = figures.render_result(result)
    assert {p.parent for p in written} == {result}
    assert sorted(p.name for p in written) == ["spectrogram.png", "window_lengths.png"]


RENDER = ("import sys; from dstft_cli import figures; from dstft_cli.plots import FigureOptions; "
          "figures.render_result(sys.argv[1], sys.argv[2], "
          "FigureOptions(formats=('png', 'svg', 'pdf'), fmax=3000, title='t'))")


@pytest.mark.slow
def test_bytes_identical_across_processes(tmp_path):
    result = make_result(tmp_path / "x")
    for out in ("a", "b"):
        subprocess.run([sys.executable, "-c", RENDER, str(result), str(tmp_path / out)],
                       check=True, capture_output=True)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert len(files) == 9
    for name in files:
        first, second = (tmp_path / "a" / name).read_bytes(), (tmp_path / "b" / name).read_bytes()
        assert first == second, name
        assert b"CreationDate" not in first and b"<dc:date>" not in first
        assert b"Software" not in first and b"Matplotlib" not in first, name
    # and the bytes do follow the data
    figures.render_result(result, tmp_path / "c", FigureOptions(fmax=2500, title="t"))
    assert (tmp_path / "c" / "spectrogram.png").read_bytes() != \
        (tmp_path / "a" / "spectrogram.png").read_bytes()


@pytest.mark.parametrize("damage,problem", [
    (lambda f: (f / "params.json").unlink(), "no params.json"),
    (lambda f: (f / "params.json").write_text("{not json"), "unreadable params.json"),
    (lambda f: (f / "params.json").write_text("[1, 2]"), "does not hold an object"),
    (lambda f: (f / "params.json").write_text('{"mode": "tf"}'), "lacks n_fft, sample_rate"),
    (lambda f: (f / "spectrogram.npz").unlink(), "no spectrogram.npz"),
    (lambda f: (f / "spectrogram.npz").write_bytes(b"PK\x03\x04 truncated"), "unreadable spectrogram.npz"),
    (lambda f: np.savez(f / "spectrogram.npz", magnitude=np.ones((3, 3))), "lacks times, freqs"),
    (lambda f: np.savez(f / "spectrogram.npz", magnitude=np.ones((3, 3)), times=np.arange(2),
                        freqs=np.arange(3), window_length=np.ones(1), frame_positions=np.arange(2)),
     "does not match"),
    (lambda f: np.savez(f / "spectrogram.npz", magnitude=np.full((3, 2), np.nan), times=np.arange(2),
                        freqs=np.arange(3), window_length=np.ones(1), frame_positions=np.arange(2)),
     "non-finite"),
])
def test_corrupt_folder_one_line_error(tmp_path, damage, problem):
    result = make_result(tmp_path / "bad")
    damage(result)
    with pytest.raises(figures.ResultFolderError) as info:
        figures.render_result(result, tmp_path / "out")
    message = str(info.value)
    assert message.startswith(f"{result}: ") and problem in message and "\n" not in message
    assert isinstance(info.value, ValueError)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_not_a_folder(tmp_path):
    with pytest.raises(figures.ResultFolderError, match="not a folder"):
        figures.read_saved(tmp_path / "missing")


def test_track_result(tmp_path):
    """A `dstft track` folder: spectrogram.npz, frequency.csv and the truth named in params."""
    folder = make_result(tmp_path / "h.track", "time", loss=False)
    times = (np.arange(N) * HOP / FS).tolist()
    (folder / "frequency.csv").write_text(
        "time_s,frequency_hz\n" + "".join(f"{t!r},{100 + 50 * t!r}\n" for t in times))
    truth = tmp_path / "h_truth.csv"
    truth.write_text("time_s,f0_hz\n" + "".join(f"{t!r},{100 + 50 * t + 2!r}\n" for t in times))
    params = json.loads((folder / "params.json").read_text())
    params.update(command="track", harmonic=2, truth=str(truth))
    (folder / "params.json").write_text(json.dumps(params))
    figs = figures.result_figures(figures.read_saved(folder), FigureOptions(tmax=0.1))
    assert list(figs) == ["tracking"]
    ax = figs["tracking"].axes[0]
    assert "MSE 4 Hz²" in ax.get_title() and "harmonic 2" in ax.get_title()
    assert ax.get_xlim()[1] == pytest.approx(0.1)
    assert ax.get_ylim()[1] == pytest.approx(FS / 2 / 2 + FS / NFFT / 4)   # bins ÷ harmonic
    (folder / "frequency.csv").write_text("time_s,hz\n0,1\n")
    with pytest.raises(figures.ResultFolderError, match="frequency.csv lacks"):
        figures.read_saved(folder)
