"""Bad input through the command line: one line on stderr naming the file and the problem,
no traceback (unless --debug), exit 2 for usage errors and 1 when an input failed, and no result
folder for a failed input."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from dstft_cli import recipes
from dstft_cli.cli import main

FAST = ["--n-fft", "64", "--hop", "16", "--min-length", "8", "--iters", "3", "--no-plots"]


def run(args):
    return CliRunner().invoke(main, [str(a) for a in args])


def error_lines(res) -> list[str]:
    """stderr without the result diagnostics (``<input>: warning: …``), which are not errors."""
    return [line for line in res.stderr.splitlines() if line.strip() and ": warning: " not in line]


@pytest.fixture
def good(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "good.wav"
    sf.write(path, 0.3 * rng.standard_normal(1500), 4000, subtype="PCM_16")
    return path


def make_truncated(tmp_path, good):
    data = good.read_bytes()
    path = tmp_path / "truncated.wav"
    path.write_bytes(data[: len(data) // 2])
    return path


def pickled_npy(tmp_path):
    path = tmp_path / "pickled.npy"
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    return path


def npy(tmp_path, name, array):
    path = tmp_path / name
    np.save(path, array)
    return path


BAD_INPUTS = {
    "missing": (lambda d, g: d / "missing.wav", "no such file"),
    "empty": (lambda d, g: (d / "empty.wav").write_bytes(b"") and None or d / "empty.wav",
              "empty"),
    "truncated": (make_truncated, "truncated"),
    "non-audio": (lambda d, g: (d / "text.wav").write_text("hello, I am text " * 20) and None
                  or d / "text.wav", "WAV"),
    "non-finite": (lambda d, g: npy(d, "nan.npy", np.array([0.1, np.nan] * 500)), "non-finite"),
    "all-zero": (lambda d, g: npy(d, "zeros.npy", np.zeros(1000)), "zero"),
    "too-short": (lambda d, g: npy(d, "short.npy", np.ones(40) * 0.1), "too short"),
    "3-d": (lambda d, g: npy(d, "cube.npy", np.ones((2, 3, 400))), "3"),
    "pickled": (lambda d, g: pickled_npy(d), "pickle"),
    "bad-csv": (lambda d, g: (d / "bad.csv").write_text("a,b\n1,x\ny,2\n;;;\n") and None
                or d / "bad.csv", "bad.csv"),
    "unsupported": (lambda d, g: (d / "notes.txt").write_text("x") and None or d / "notes.txt",
                    "unsupported"),
    "directory-without-inputs": (lambda d, g: (d / "emptydir").mkdir() or d / "emptydir",
                                 "no supported files"),
}


def _summary_status(out) -> dict[str, str]:
    import csv

    with open(out / "summary.csv", newline="") as fh:
        return {row["input"]: row["status"] for row in csv.DictReader(fh)}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_and_exit_1(tmp_path, good, case):
    make, words = BAD_INPUTS[case]
    path = make(tmp_path, good)
    out = tmp_path / "out"
    res = run(["optimize", path, *FAST, "--sample-rate", "4000", "-o", out])
    assert res.exit_code == 1, res.output
    err = error_lines(res)
    assert len(err) == 1, err
    assert err[0].startswith(str(path)), err
    assert words.lower() in err[0].lower(), err
    assert "Traceback" not in res.output
    assert [p.name for p in out.iterdir()] == ["summary.csv"]  # no result half-written
    assert _summary_status(out) == {str(path): "failed"}


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root can read files without permission")
def test_unreadable_file(tmp_path, good):
    good.chmod(0)
    try:
        res = run(["optimize", good, *FAST, "-o", tmp_path / "out"])
    finally:
        good.chmod(0o644)
    assert res.exit_code == 1
    assert error_lines(res) == [f"{good}: cannot read file (permission denied)"]


def test_a_bad_file_does_not_stop_the_batch(tmp_path, good):
    bad = npy(tmp_path, "zeros.npy", np.zeros(1000))
    missing = tmp_path / "missing.flac"
    res = run(["optimize", bad, missing, good, *FAST, "--sample-rate", "4000",
               "-o", tmp_path / "out"])
    assert res.exit_code == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good", "summary.csv"]
    assert _summary_status(tmp_path / "out") == {str(bad): "failed", str(missing): "failed",
                                                 str(good): "ok"}
    err = error_lines(res)
    assert len(err) == 3 and err[-1] == "1 done, 0 skipped, 2 failed"
    assert any(str(bad) in e for e in err) and any(str(missing) in e for e in err)


def test_failure_during_optimisation_leaves_no_folder(tmp_path, good, monkeypatch):
    def boom(*args, **kwargs):
        raise recipes.RecipeError("the optimisation ended with a non-finite loss")

    monkeypatch.setattr(recipes, "run", boom)
    res = run(["optimize", good, *FAST, "-o", tmp_path / "out"])
    assert res.exit_code == 1
    assert error_lines(res) == [f"{good}: the optimisation ended with a non-finite loss"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["summary.csv"]  # no result folder


def test_unexpected_errors_have_a_traceback_only_with_debug(tmp_path, good, monkeypatch):
    def bug(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(recipes, "run", bug)
    res = run(["optimize", good, *FAST, "-o", tmp_path / "a"])
    assert res.exit_code == 1
    assert error_lines(res) == [f"{good}: unexpected RuntimeError: boom"]
    res = run(["optimize", good, *FAST, "-o", tmp_path / "b", "--debug"])
    assert res.exit_code == 1
    assert "Traceback" in res.stderr and "RuntimeError: boom" in res.stderr


# --------------------------------------------------------------------------------------------
# usage errors: exit 2, one line


@pytest.mark.parametrize(
    "args, words",
    [
        (["--n-fft", "1023"], "'--n-fft': n_fft = 1023: must be an even integer"),
        (["--n-fft", "64", "--hop", "0"], "'--hop'"),
        (["--lr", "-1"], "'--lr': lr = -1.0: must be a number > 0"),
        (["--tol", "-1"], "'--tol'"),
        (["--iters", "0"], "'--iters'"),
        (["--n-fft", "1024", "--init-length", "5000"],
         "'--init-length': init_length = 5000.0: must lie in"),
        (["--min-length", "0"], "'--min-length'"),
        (["--tv-weight", "-2"], "'--tv-weight'"),
        (["--coverage-weight", "-2"], "'--coverage-weight'"),
        (["--loss", "entropy"], "unknown loss 'entropy'"),
        (["--loss", "renyi:-2"], "ALPHA"),
        (["--window", "triangle"], "unknown window 'triangle'"),
        (["--mode", "wavelet"], "'--mode'"),
        (["--mode", "tf", "--optimizer", "scalar"], "scalar"),
        (["--jobs", "0"], "'--jobs'"),
        (["--channel", "left"], "'--channel'"),
        (["--device", "tpu"], "'--device'"),
        (["--sample-rate", "-5"], "'--sample-rate'"),
        (["--bogus"], "No such option '--bogus'"),
    ],
)
def test_out_of_range_options_are_usage_errors(tmp_path, good, args, words):
    res = run(["optimize", good, *args, "-o", tmp_path / "out"])
    assert res.exit_code == 2, res.output
    err = error_lines(res)
    assert len(err) == 1 and err[0].startswith("Error: "), err
    assert words in err[0], err
    assert "Traceback" not in res.output and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "text, words",
    [
        ("learning_rate = 0.1\n", "unknown key 'learning_rate'"),
        ("n_fft = 7\n", "n_fft = 7: must be an even integer"),
        ("lr = \"fast\"\n", "expected a number"),
        ("lr = = 2\n", "not valid TOML"),
        ('window = "triangle"\n', "unknown window 'triangle'"),
    ],
)
def test_bad_config_files_are_usage_errors(tmp_path, good, text, words):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(text)
    res = run(["optimize", good, "--config", recipe, "-o", tmp_path / "out"])
    assert res.exit_code == 2, res.output
    err = error_lines(res)
    assert len(err) == 1 and str(recipe) in err[0] and words in err[0], err


def test_missing_config_file(tmp_path, good):
    res = run(["optimize", good, "--config", tmp_path / "nope.toml"])
    assert res.exit_code == 2
    assert "nope.toml" in res.stderr and len(error_lines(res)) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("command", [["optimize"], ["scan"], ["apply", "."]])
def test_cuda_without_cuda_is_a_usage_error(tmp_path, good, command):
    (tmp_path / "r").mkdir()
    if command[0] == "apply":
        res = run(["optimize", good, *FAST, "-o", tmp_path / "r", "-q"])
        assert res.exit_code == 0
        command = ["apply", tmp_path / "r" / "good"]
    res = run([*command, good, "--device", "cuda", "-o", tmp_path / "out"])
    assert res.exit_code == 2, res.output
    err = error_lines(res)
    assert len(err) == 1 and "'--device': CUDA is not available" in err[0], err
    assert not (tmp_path / "out").exists()


def test_no_inputs_is_a_usage_error():
    res = run(["optimize"])
    assert res.exit_code == 2 and len(error_lines(res)) == 1 and "INPUT" in res.stderr


def test_scan_and_synth_usage_errors(tmp_path, good):
    res = run(["scan", good, "--step", "0"])
    assert res.exit_code == 2 and len(error_lines(res)) == 1
    res = run(["synth", "noise", tmp_path / "x.wav"])
    assert res.exit_code == 2 and "'noise' is not one of" in res.stderr
    res = run(["synth", "shocks", tmp_path / "x.mp3"])
    assert res.exit_code == 2 and "unsupported extension .mp3" in res.stderr
    assert len(error_lines(res)) == 1


def test_scan_bad_input(tmp_path):
    bad = npy(tmp_path, "zeros.npy", np.zeros(1000))
    res = run(["scan", bad, "--sample-rate", "100", "-o", tmp_path / "out"])
    assert res.exit_code == 1
    assert error_lines(res) == [f"{bad}: all samples are zero"] or (
        len(error_lines(res)) == 1 and str(bad) in res.stderr)


def test_apply_bad_result_files(tmp_path, good):
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "params.json").write_text("{not json")
    res = run(["apply", folder, good])
    assert res.exit_code == 2 and "unreadable result" in res.stderr
    assert len(error_lines(res)) == 1
    (folder / "params.json").write_text('{"mode": "constant"}')
    np.savez(folder / "spectrogram.npz", window_length=np.ones((1, 1)) * 32,
             frame_positions=np.arange(3))
    res = run(["apply", folder, good])
    assert res.exit_code == 2 and "missing n_fft, hop, window" in res.stderr
    with open(folder / "spectrogram.npz", "wb") as fh:
        pickle.dump({"x": 1}, fh)
    (folder / "params.json").write_text('{"mode": "constant", "n_fft": 64, "hop": 16, '
                                        '"window": "hann"}')
    res = run(["apply", folder, good])
    assert res.exit_code == 2 and "unreadable result" in res.stderr
