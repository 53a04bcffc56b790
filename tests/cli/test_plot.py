"""`dstft plot` and the figure options of the commands, end to end through click's CliRunner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from test_figures import make_result

from dstft_cli import figures
from dstft_cli.cli import main

FAST = ["--n-fft", "64", "--hop", "16", "--min-length", "8", "--iters", "3"]


def run(args):
    return CliRunner().invoke(main, [str(a) for a in args])


def error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def optimised(tmp_path_factory) -> Path:
    """`dstft optimize --mode time` of a short chirp, figures in PNG and SVG, cropped."""
    d = tmp_path_factory.mktemp("opt")
    t = np.arange(1500) / 2000
    sf.write(d / "chirp.wav", 0.3 * np.sin(2 * np.pi * (100 * t + 300 * t**2)), 2000,
             subtype="FLOAT")
    res = run(["optimize", d / "chirp.wav", "--mode", "time", *FAST, "-o", d / "runs",
               "--format", "png,svg", "--fmax", "800", "--theta-unit", "samples", "-q"])
    assert res.exit_code == 0, res.output
    return d / "runs"


def test_optimize_writes_figures_with_options_and_gallery(optimised):
    folder = optimised / "chirp"
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(["params.json", "spectrogram.npz"] + [
        f"{s}.{f}" for s in ("spectrogram", "loss", "window_lengths") for f in ("png", "svg")])
    with np.load(folder / "spectrogram.npz") as npz:
        assert npz["loss_history"].size >= 2
        assert list(npz["loss_stage_names"]) == ["constant", "time"]
    assert (optimised / "index.html").is_file()
    assert 'href="chirp/params.json"' in (optimised / "index.html").read_text()


@pytest.mark.slow
def test_plot_reproduces_the_commands_bytes(optimised, tmp_path):
    res = run(["plot", optimised / "chirp", "-o", tmp_path, "--format", "svg", "--format", "png",
               "--fmax", "800", "--theta-unit", "samples", "-q"])
    assert res.exit_code == 0, res.output
    for name in ("spectrogram.png", "loss.svg", "window_lengths.png"):
        assert (tmp_path / "chirp" / name).read_bytes() == (optimised / "chirp" / name).read_bytes()
    assert json.loads((tmp_path / "chirp" / "params.json").read_text())["mode"] == "time"
    assert (tmp_path / "index.html").is_file()
    # the options reach the figures
    res = run(["plot", optimised, "-o", tmp_path / "pdf", "--format", "pdf", "--fmin", "100",
               "--title", "Figure 3", "-q"])
    assert res.exit_code == 0, res.output
    pdfs = sorted(p.name for p in (tmp_path / "pdf" / "chirp").glob("*.pdf"))
    assert pdfs == ["loss.pdf", "spectrogram.pdf", "window_lengths.pdf"]


def test_plot_never_clobbers_without_overwrite(tmp_path):
    result = make_result(tmp_path / "r" / "x", "time")
    assert run(["plot", result, "-o", tmp_path / "out", "-q"]).exit_code == 0
    png = tmp_path / "out" / "x" / "spectrogram.png"
    before = png.stat().st_mtime_ns
    res = run(["plot", result, "-o", tmp_path / "out", "--fmax", "1000"])
    assert res.exit_code == 0 and "skipped" in res.stderr
    assert png.stat().st_mtime_ns == before
    res = run(["plot", result, "-o", tmp_path / "out", "--fmax", "1000", "--overwrite", "-q"])
    assert res.exit_code == 0 and png.stat().st_mtime_ns != before


def test_plot_corrupt_folder_is_a_per_input_error(tmp_path):
    good = make_result(tmp_path / "r" / "good", "tf")
    bad = make_result(tmp_path / "r" / "bad", "tf")
    (bad / "spectrogram.npz").write_bytes(b"garbage")
    res = run(["plot", bad, good, tmp_path / "nothing", "-o", tmp_path / "out", "-q"])
    assert res.exit_code == 1
    errors = [line for line in res.stderr.splitlines() if line.strip()]
    assert f"{bad}: unreadable spectrogram.npz (not an NPZ archive)" in errors
    assert f"{tmp_path / 'nothing'}: no such folder" in errors
    assert not any("Traceback" in line for line in errors)
    assert (tmp_path / "out" / "good" / "spectrogram.png").is_file()
    assert not (tmp_path / "out" / "bad").exists()


@pytest.mark.parametrize("args,option", [
    (["--fmin", "2000", "--fmax", "100"], "'--fmax'"), (["--cmap", "nonesuch"], "'--cmap'"),
    (["--format", "png,gif"], "'--format'"), (["--ref", "-1"], "'--ref'"),
    (["--tmin", "1", "--tmax", "0.5"], "'--tmax'"), (["--figsize", "4"], "'--figsize'"),
    (["--freq-scale", "mel"], "'--freq-scale'"),
])
def test_bad_figure_options_are_usage_errors(tmp_path, args, option):
    result = make_result(tmp_path / "x", "time")
    res = run(["plot", result, "-o", tmp_path / "out", *args])
    assert res.exit_code == 2
    line = error_line(res)
    assert line.startswith("Error: ") and option in line
    assert not (tmp_path / "out").exists()


def test_plot_table_in_config(tmp_path):
    result = make_result(tmp_path / "r" / "x", "constant")
    config = tmp_path / "figures.toml"
    config.write_text('mode = "tf"\n[plot]\nfmax = 1500\nformats = ["svg"]\ncmap = "gray_r"\n')
    res = run(["plot", result, "--config", config, "-o", tmp_path / "out", "-q"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "out" / "x").glob("*.svg")) == ["loss.svg",
                                                                            "spectrogram.svg"]
    # flags win over the file
    res = run(["plot", result, "--config", config, "--format", "png", "-o", tmp_path / "o2", "-q"])
    assert res.exit_code == 0 and (tmp_path / "o2" / "x" / "spectrogram.png").is_file()
    config.write_text("[plot]\ncolour = 'red'\n")
    res = run(["plot", result, "--config", config, "-o", tmp_path / "o3"])
    assert res.exit_code == 2 and f"{config}: [plot] colour: unknown figure setting" in error_line(res)


def test_compare_figure_and_docs_example_command(optimised, tmp_path):
    res = run(["plot", optimised / "chirp", "--compare", "--fixed-length", "32", "-o", tmp_path,
               "-q"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "chirp" / "compare.png").read_bytes()[:4] == b"\x89PNG"
    fig = figures.plots.comparison_figure  # the library function behind it
    assert callable(fig)


CI_JOB = """set -e
dstft plot results -o figures --overwrite --format png,svg -q
git add --intent-to-add figures
git diff --exit-code --stat -- figures ':!figures/summary.csv' ':!figures/index.html'
"""


@pytest.mark.slow
def test_readme_ci_job_fails_when_figures_change(tmp_path):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert CI_JOB.strip() in readme                          # the snippet the README shows
    make_result(tmp_path / "results" / "x", "time")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], cwd=tmp_path, check=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    def ci_job():
        return subprocess.run(["bash", "-c", CI_JOB], cwd=tmp_path, capture_output=True, text=True,
                              env=env)

    first = ci_job()
    assert first.returncode == 1, first.stderr               # figures that are not committed yet
    subprocess.run([*git, "add", "figures"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "figures"], cwd=tmp_path, check=True)
    again = ci_job()
    assert again.returncode == 0, again.stdout + again.stderr
    with np.load(tmp_path / "results" / "x" / "spectrogram.npz") as npz:
        arrays = dict(npz)
    arrays["magnitude"] = arrays["magnitude"] * 0.5 + 1e-3
    np.savez(tmp_path / "results" / "x" / "spectrogram.npz", **arrays)
    changed = ci_job()
    assert changed.returncode == 1 and "spectrogram" in changed.stdout


def test_summary_merge_writes_the_gallery(tmp_path):
    make_result(tmp_path / "out" / "x", "time")
    res = run(["summary", tmp_path / "out", "-q"])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "out" / "index.html").read_text()
    assert "<table>" in page and "somewhere/x.wav" in page and 'href="x/params.json"' in page
