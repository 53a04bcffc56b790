"""--shard K/N and `dstft summary`: shards together give exactly one process's results."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from dstft_cli.batch import shard_of
from dstft_cli.cli import main

FAST = ["--n-fft", "64", "--hop", "16", "--min-length", "8", "--iters", "3", "--no-plots", "-q"]
TIMINGS = {"elapsed_s"}


def run(args, **kw):
    return CliRunner().invoke(main, [str(a) for a in args], **kw)


@pytest.fixture
def inputs(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(1)
    t = np.arange(1200) / 2000
    for k in range(12):
        x = 0.3 * np.sin(2 * np.pi * (150 + 37 * k) * t) + 0.02 * rng.standard_normal(t.size)
        sf.write(folder / f"clip{k:02d}.wav", x, 2000, subtype="FLOAT")
    return Path("in")


def _params(folder: Path) -> dict:
    params = json.loads((folder / "params.json").read_text())
    return {k: v for k, v in params.items() if k not in TIMINGS}


def _rows(path: Path) -> dict[str, dict]:
    """Summary rows without timings, the result folder by name (the -o folders differ)."""
    with open(path, newline="") as fh:
        return {r["input"]: {**{k: v for k, v in r.items() if k not in TIMINGS},
                             "result": Path(r["result"]).name} for r in csv.DictReader(fh)}


def test_three_shards_equal_one_process_file_for_file(inputs):
    assert run(["optimize", inputs, *FAST, "-o", "whole"]).exit_code == 0
    for k in (1, 2, 3):
        res = run(["optimize", inputs, *FAST, "--shard", f"{k}/3", "-o", "sharded"])
        assert res.exit_code == 0, res.output
        assert Path(f"sharded/summary.{k}-of-3.csv").is_file()
    parts = [set(_rows(Path(f"sharded/summary.{k}-of-3.csv"))) for k in (1, 2, 3)]
    assert sum(len(p) for p in parts) == 12 and len(set().union(*parts)) == 12  # disjoint, covering
    assert all(parts)  # 12 inputs over 3 shards: none empty for these names
    whole = sorted(p.name for p in Path("whole").iterdir() if p.is_dir())
    sharded = sorted(p.name for p in Path("sharded").iterdir() if p.is_dir())
    assert whole == sharded and len(whole) == 12
    for name in whole:
        assert _params(Path("whole") / name) == _params(Path("sharded") / name)
        with np.load(Path("whole") / name / "spectrogram.npz") as a, \
                np.load(Path("sharded") / name / "spectrogram.npz") as b:
            assert a.files == b.files
            for key in a.files:
                np.testing.assert_array_equal(a[key], b[key])
    res = run(["summary", "sharded"])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == "sharded/summary.csv: 12 inputs (12 ok) from 3 part(s)"
    assert _rows(Path("sharded/summary.csv")) == _rows(Path("whole/summary.csv"))


def test_missing_parts_are_rebuilt_from_the_result_folders(inputs):
    for k in (1, 2):
        assert run(["optimize", inputs, *FAST, "--shard", f"{k}/2", "-o", "out"]).exit_code == 0
    Path("out/summary.2-of-2.csv").unlink()
    res = run(["summary", "out"])
    assert res.exit_code == 0
    assert "missing summary.2-of-2.csv" in res.stderr
    rows = _rows(Path("out/summary.csv"))
    assert len(rows) == 12 and {r["status"] for r in rows.values()} == {"ok"}
    shard2 = [i for i in rows if shard_of(i, 2) == 2]
    assert shard2
    for i in shard2:  # rebuilt: θ and losses from params.json
        params = json.loads((Path("out") / rows[i]["result"] / "params.json").read_text())
        assert float(rows[i]["theta_min"]) == pytest.approx(params["window_length"], rel=1e-9)
        assert float(rows[i]["loss_final"]) == pytest.approx(params["loss_final"], rel=1e-9)


def test_shard_assignment_is_stable_when_inputs_are_added():
    names = [f"data/x{i}.wav" for i in range(200)]
    before = {n: shard_of(n, 8) for n in names}
    assert set(before.values()) == set(range(1, 9))
    assert {n: shard_of(n, 8) for n in names + ["data/new.wav"]} | before == \
        {n: shard_of(n, 8) for n in names + ["data/new.wav"]}


def test_shard_from_slurm_and_bad_shards(inputs, monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "4")
    assert run(["optimize", inputs, *FAST, "--shard", "slurm", "-o", "out"]).exit_code == 0
    assert [p.name for p in Path("out").glob("summary*")] == ["summary.3-of-4.csv"]
    expected = {f"in/clip{k:02d}.wav" for k in range(12) if shard_of(f"in/clip{k:02d}.wav", 4) == 3}
    assert set(_rows(Path("out/summary.3-of-4.csv"))) == expected
    for bad in ("0/3", "4/3", "x", "1/0"):
        res = run(["optimize", inputs, *FAST, "--shard", bad])
        assert res.exit_code == 2 and "--shard" in res.stderr
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID")
    res = run(["optimize", inputs, *FAST, "--shard", "slurm"])
    assert res.exit_code == 2 and "SLURM_ARRAY_TASK_ID" in res.stderr


@pytest.mark.slow
def test_shards_running_at_once_on_one_out_folder(inputs):
    import subprocess
    import sys

    procs = [subprocess.Popen([sys.executable, "-m", "dstft_cli", "optimize", str(inputs), *FAST,
                               "--shard", f"{k}/3", "-o", "out"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k in (1, 2, 3)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    assert run(["summary", "out", "-q"]).exit_code == 0
    rows = _rows(Path("out/summary.csv"))
    assert len(rows) == 12 and {r["status"] for r in rows.values()} == {"ok"}
    folders = [p for p in Path("out").iterdir() if p.is_dir()]
    assert len(folders) == 12 and all((p / "params.json").is_file() for p in folders)
    assert not [p for p in Path("out").iterdir() if p.name.startswith(".")]
