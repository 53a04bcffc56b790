"""The batch engine through the commands: OUT/summary.csv, reruns, progress lines, task folders."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from dstft_cli import batch
from dstft_cli.cli import main
from dstft_cli.summary import COLUMNS

FAST = ["--n-fft", "64", "--hop", "16", "--min-length", "8", "--iters", "4", "--no-plots"]
RATE = 2000


def _signal(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / RATE
    return 0.3 * np.sin(2 * np.pi * (200 + 40 * seed) * t) + 0.01 * rng.standard_normal(n)


@pytest.fixture
def inputs(tmp_path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for k in range(2):
        sf.write(folder / f"s{k}.wav", _signal(1500, k), RATE, subtype="FLOAT")
    (folder / "bad.wav").write_text("not audio")
    return folder


def run(args):
    return CliRunner().invoke(main, [str(a) for a in args])


def summary(out: Path) -> dict[str, dict]:
    with open(out / "summary.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == COLUMNS
        return {Path(r["input"]).name: r for r in reader}


def test_optimize_writes_the_summary_from_its_results(inputs, tmp_path):
    out = tmp_path / "out"
    res = run(["optimize", inputs, "--mode", "time", *FAST, "-o", out])
    assert res.exit_code == 1
    rows = summary(out)
    assert set(rows) == {"s0.wav", "s1.wav", "bad.wav"}
    assert rows["bad.wav"]["status"] == "failed" and "bad.wav" in rows["bad.wav"]["error"]
    assert rows["bad.wav"]["theta_min"] == ""
    for name in ("s0", "s1"):
        row, params = rows[f"{name}.wav"], json.loads((out / name / "params.json").read_text())
        assert row["status"] == "ok" and row["error"] == "" and row["result"] == str(out / name)
        assert float(row["sample_rate"]) == RATE and int(row["n_fft"]) == 64
        assert int(row["hop"]) == 16
        for key in ("min", "median", "max"):
            theta = params["window_length"][key]
            assert float(row[f"theta_{key}"]) == pytest.approx(theta, rel=1e-9)
            assert float(row[f"theta_{key}_ms"]) == pytest.approx(1000 * theta / RATE, rel=1e-9)
        assert float(row["loss_initial"]) == pytest.approx(params["loss_initial"], rel=1e-9)
        assert float(row["loss_final"]) == pytest.approx(params["loss_final"], rel=1e-9)
        assert row["converged"] == str(params["converged"]).lower()
        assert float(row["elapsed_s"]) > 0
    with np.load(out / "s0" / "spectrogram.npz") as npz:
        theta = npz["window_length"].reshape(-1)
    assert float(rows["s0.wav"]["theta_median"]) == np.sort(theta)[(theta.size - 1) // 2]
    assert res.stderr.splitlines()[-1] == "2 done, 0 skipped, 1 failed"


def test_reruns_merge_rows_and_skipped_inputs_keep_their_values(inputs, tmp_path):
    out = tmp_path / "out"
    run(["optimize", inputs / "s0.wav", *FAST, "-o", out, "-q"])
    first = summary(out)["s0.wav"]
    res = run(["optimize", inputs, *FAST, "-o", out, "-q"])
    assert res.exit_code == 1
    rows = summary(out)
    assert len(rows) == 3 and rows["s1.wav"]["status"] == "ok"
    again = rows["s0.wav"]
    assert again["status"] == "skipped"
    for key in ("theta_min", "theta_max_ms", "loss_final", "n_fft", "result"):
        assert again[key] == first[key] != ""
    (inputs / "bad.wav").unlink()
    sf.write(inputs / "bad.wav", _signal(1500, 3), RATE, subtype="FLOAT")
    assert run(["optimize", inputs / "bad.wav", *FAST, "-o", out, "-q"]).exit_code == 0
    rows = summary(out)
    assert len(rows) == 3 and rows["bad.wav"]["status"] == "ok" and rows["bad.wav"]["error"] == ""


def test_scan_and_apply_and_track_summaries(inputs, tmp_path):
    res = run(["scan", inputs / "s0.wav", "--n-fft", "64", "--hop", "16", "--min-length", "8",
               "--step", "8", "-o", tmp_path / "scan", "--no-plots"])
    assert res.exit_code == 0
    row = summary(tmp_path / "scan")["s0.wav"]
    curve = np.loadtxt(tmp_path / "scan" / "s0.scan.csv", delimiter=",", skiprows=1)
    best = np.argmin(curve[:, 1])
    assert float(row["theta_min"]) == curve[best, 0] == float(row["theta_max"])
    assert float(row["loss_final"]) == pytest.approx(curve[best, 1], rel=1e-9)
    assert run(["optimize", inputs / "s0.wav", *FAST, "-o", tmp_path / "r", "-q"]).exit_code == 0
    res = run(["apply", tmp_path / "r" / "s0", inputs / "s1.wav", "-o", tmp_path / "a", "-q",
               "--no-plots"])
    assert res.exit_code == 0
    applied = json.loads((tmp_path / "a" / "s1" / "params.json").read_text())
    row = summary(tmp_path / "a")["s1.wav"]
    assert float(row["loss_final"]) == pytest.approx(applied["loss_value"], rel=1e-9)
    assert float(row["theta_min"]) == pytest.approx(applied["window_length"], rel=1e-9)


def test_track_results_do_not_collide_with_optimize_results(inputs, tmp_path):
    out = tmp_path / "out"
    assert run(["optimize", inputs / "s0.wav", *FAST, "-o", out, "-q"]).exit_code == 0
    res = run(["track", inputs / "s0.wav", "--mode", "constant", "--n-fft", "64", "--hop", "16",
               "-o", out, "-q", "--no-plots"])
    assert res.exit_code == 0, res.output
    assert "skipped" not in res.output
    assert (out / "s0" / "spectrogram.npz").is_file()
    params = json.loads((out / "s0.track" / "params.json").read_text())
    assert params["command"] == "track"
    row = summary(out)["s0.wav"]  # the latest command's row
    assert row["result"] == str(out / "s0.track")
    assert float(row["theta_min"]) == pytest.approx(params["window_length"], rel=1e-9)


def test_progress_lines_without_a_terminal(inputs, tmp_path, monkeypatch):
    args = ["optimize", inputs / "s0.wav", inputs / "s1.wav", *FAST]
    res = run([*args, "-o", tmp_path / "a"])
    assert not [ln for ln in res.stderr.splitlines() if ln.startswith("progress:")]
    monkeypatch.setattr(batch, "PROGRESS_INTERVAL_S", 0.0)
    res = run([*args, "-o", tmp_path / "b"])
    progress = [ln for ln in res.stderr.splitlines() if ln.startswith("progress:")]
    assert all(re.fullmatch(r".* \([0-9]+ s\)", ln) for ln in progress)
    assert [re.sub(r" \([0-9]+ s\)$", "", ln) for ln in progress] == [
        "progress: 1 done, 0 skipped, 0 failed of 2 inputs",
        "progress: 2 done, 0 skipped, 0 failed of 2 inputs"]
    res = run([*args, "-o", tmp_path / "c", "-q"])
    assert res.stderr == ""


def test_an_unwritable_summary_is_one_line_and_exit_1(inputs, tmp_path):
    out = tmp_path / "out"
    (out / "summary.csv").mkdir(parents=True)  # a folder where the file should go
    res = run(["optimize", inputs / "s0.wav", *FAST, "-o", out, "-q"])
    assert res.exit_code == 1
    assert "summary.csv: cannot write the batch summary" in res.stderr
    assert (out / "s0" / "params.json").is_file()
