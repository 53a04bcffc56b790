"""The `dstft` command line, end to end through click's CliRunner.

Every mode runs on a short signal; the files, their contents (the saved magnitude is recomputed
from the saved parameters with Eq. (6)) and the loss improvement are checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from dstft_cli import __version__, recipes
from dstft_cli.batch import result_names as _result_names
from dstft_cli.cli import main
from dstft_cli.config import config_from_mapping
from dstft_cli.core import dstft, losses
from dstft_cli.io import load_signal
from dstft_cli.results import read_result

ROOT = Path(__file__).resolve().parents[2]
PARAMS_FIELDS = {
    "version", "mode", "window", "n_fft", "hop", "sample_rate", "window_length", "loss",
    "loss_initial", "loss_final", "iterations", "converged", "elapsed_s", "device", "seed",
    "input", "config", "events", "n_fft_ms", "n_fft_reason", "hop_ms", "window_length_ms",
    "resolved_config", "scale", "warnings", "scan_minima",
}
INPUT_FIELDS = {"path", "sha256", "sample_rate", "frames", "channels"}
FAST = ["--n-fft", "64", "--hop", "16", "--min-length", "8", "--iters", "4", "--no-plots"]


def fm_signal(n: int = 2000, seed: int = 0) -> np.ndarray:
    """Sinusoidal FM + close tone + transient in light noise: an interior constant optimum."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / n
    x = np.sin(2 * np.pi * (300 * t + 15 * np.sin(2 * np.pi * 4 * t)))
    x += 0.8 * np.sin(2 * np.pi * 250 * t)
    x[n // 2:n // 2 + 8] += 4 * np.hanning(10)[1:9]
    return 0.2 * (x + 0.05 * rng.standard_normal(n))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("inputs")
    x = fm_signal()
    sf.write(d / "fm.wav", x, 2000, subtype="FLOAT")
    sf.write(d / "short.wav", x[:1200], 2000, subtype="PCM_16")
    stereo = np.stack([x, 0.5 * x[::-1]]).astype(np.float32)
    np.save(d / "stereo.npy", stereo)
    np.savez(d / "bundle.npz", left=stereo[0], right=stereo[1], sample_rate=np.array(2000.0))
    t = np.arange(x.size) / 2000
    rows = "\n".join(f"{a:.17g},{b:.17g},{c:.17g}" for a, b, c in zip(t, x, x[::-1], strict=True))
    (d / "table.csv").write_text("time_s,first,second\n" + rows + "\n")
    return d


def run(args, **kw):
    result = CliRunner().invoke(main, [str(a) for a in args], **kw)
    return result


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def load_result(folder: Path):
    params = json.loads((folder / "params.json").read_text())
    with np.load(folder / "spectrogram.npz", allow_pickle=False) as npz:
        arrays = {k: np.array(npz[k]) for k in npz.files}
    return params, arrays


def recompute(path: Path, params: dict, arrays: dict, channel="mix") -> np.ndarray:
    """|S| of Eq. (6) from the saved parameters, in float64."""
    signal = load_signal(path, channel=channel)
    x = torch.from_numpy(np.array(signal.data))
    x = x[0] if x.shape[0] == 1 else x
    theta = arrays["window_length"]
    if theta.shape == (1, 1):
        theta_t = torch.tensor(float(theta[0, 0]), dtype=torch.float64)
    elif theta.shape[0] == 1:
        theta_t = torch.from_numpy(theta[0])
    else:
        theta_t = torch.from_numpy(theta)
    mag = dstft(x, n_fft=params["n_fft"], window_length=theta_t,
                frame_positions=torch.from_numpy(arrays["frame_positions"]),
                window=params["window"]).abs()
    return mag.numpy()


# --------------------------------------------------------------------------------------------
# end to end, every mode


EXPECTED_PNGS = {
    "constant": {"spectrogram.png", "loss.png"},
    "time": {"spectrogram.png", "loss.png", "window_lengths.png"},
    "freq": {"spectrogram.png", "loss.png", "window_lengths.png"},
    "tf": {"spectrogram.png", "loss.png", "window_lengths.png"},
    "hop": {"spectrogram.png", "loss.png", "window_lengths.png", "frames.png"},
}


@pytest.mark.parametrize("mode", ["constant", "time", "freq", "tf", "hop"])
def test_optimize_every_mode_end_to_end(data, tmp_path, mode):
    out = tmp_path / "out"
    args = ["optimize", data / "fm.wav", "--mode", mode, "--n-fft", "128", "--hop", "32",
            "--min-length", "8", "--iters", "10", "--out", out]
    res = run(args)
    assert res.exit_code == 0, res.output
    assert "fm.wav" in res.stdout
    # stderr holds at most the result's diagnostics (10 iterations are few: "not converged")
    assert all(": warning: " in line for line in res.stderr.splitlines()), res.stderr
    folder = out / "fm"
    names = {p.name for p in folder.iterdir()}
    assert names == {"params.json", "spectrogram.npz"} | EXPECTED_PNGS[mode]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary left
    for png in EXPECTED_PNGS[mode]:
        assert (folder / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    params, arrays = load_result(folder)
    assert set(params) == PARAMS_FIELDS
    assert INPUT_FIELDS <= set(params["input"])
    assert params["mode"] == mode and params["n_fft"] == 128 and params["hop"] == 32
    assert params["sample_rate"] == 2000 and params["input"]["sample_rate"] == 2000
    assert params["input"]["frames"] == 2000 and params["input"]["channels"] == 1
    assert params["version"] == __version__ and params["device"] == "cpu"
    assert len(params["input"]["sha256"]) == 64
    assert params["loss"] == ("kurtosis" if mode == "hop" else "shannon")
    assert params["loss_final"] < params["loss_initial"]  # the optimisation improved the loss
    assert params["iterations"] >= 1 and isinstance(params["converged"], bool)
    assert params["elapsed_s"] > 0 and params["events"] == []
    if mode == "constant":
        assert isinstance(params["window_length"], float)
    else:
        wl = params["window_length"]
        assert set(wl) == {"min", "median", "max"} and wl["min"] <= wl["median"] <= wl["max"]
    # the resolved config reproduces the run
    cfg = config_from_mapping({k: v for k, v in params["config"].items() if v is not None})
    assert cfg.mode == mode and cfg.n_fft == 128 and cfg.iters == 10

    M, N = 65, 1 + 2000 // 32
    mag = arrays["magnitude"]
    assert mag.dtype == np.float32 and mag.shape == (M, N)
    assert np.broadcast_shapes(arrays["window_length"].shape, (M, N)) == (M, N)
    assert arrays["frame_positions"].shape == (N,)
    np.testing.assert_allclose(arrays["times"], arrays["frame_positions"] / 2000)
    np.testing.assert_allclose(arrays["freqs"], np.fft.rfftfreq(128, 1 / 2000))
    expected = recompute(data / "fm.wav", params, arrays)
    np.testing.assert_allclose(mag, expected.astype(np.float32), rtol=1e-6,
                               atol=1e-6 * expected.max())
    # the recorded final loss is the loss of the saved parameters (float32 optimisation)
    if mode in ("constant", "time"):
        value = float(losses.shannon_entropy(torch.from_numpy(expected)))
        assert value == pytest.approx(params["loss_final"], rel=1e-4)


def test_constant_result_matches_the_grid_search(data, tmp_path):
    res = run(["optimize", data / "fm.wav", "--n-fft", "128", "--hop", "16", "--min-length", "8",
               "--no-plots", "-o", tmp_path, "-q"])
    assert res.exit_code == 0, res.output
    params, _ = load_result(tmp_path / "fm")
    signal = torch.from_numpy(np.array(load_signal(data / "fm.wav").data[0]))
    cfg = config_from_mapping({k: v for k, v in params["config"].items() if v is not None})
    best = recipes.scan(signal, cfg, list(range(8, 129))).best_length
    assert abs(params["window_length"] - best) <= 0.01 * best


# --------------------------------------------------------------------------------------------
# optimize options


def test_config_file_and_flag_overrides(data, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('mode = "time"\nn_fft = 64\nhop = 16\nmin_length = 8.0\niters = 3\n'
                      'lr = 0.5\nseed = 7\n')
    res = run(["optimize", data / "fm.wav", "--config", recipe, "--lr", "1.5", "--no-plots",
               "-o", tmp_path / "o", "-q"])
    assert res.exit_code == 0, res.output
    params, _ = load_result(tmp_path / "o" / "fm")
    assert params["mode"] == "time" and params["seed"] == 7
    assert params["config"]["lr"] == 1.5 and params["config"]["iters"] == 3
    assert params["config"]["tv_weight"] == 0.0  # from the built-in time recipe


def test_mode_flag_overrides_the_config_files_mode(data, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('mode = "tf"\niters = 2\n')
    res = run(["optimize", data / "fm.wav", "--config", recipe, "--mode", "constant", *FAST,
               "-o", tmp_path / "o", "-q"])
    assert res.exit_code == 0, res.output
    params, _ = load_result(tmp_path / "o" / "fm")
    assert params["mode"] == "constant" and params["config"]["iters"] == 4


@pytest.mark.parametrize("loss", ["renyi:2", "kurtosis", "shannon"])
def test_loss_option(data, tmp_path, loss):
    res = run(["optimize", data / "fm.wav", "--loss", loss, *FAST, "-o", tmp_path, "-q"])
    assert res.exit_code == 0, res.output
    params, _ = load_result(tmp_path / "fm")
    assert params["loss"] == loss and params["config"]["loss"] == loss


def test_every_option_lands_in_the_config(data, tmp_path):
    res = run(["optimize", data / "fm.wav", "--mode", "hop", "--window", "gaussian",
               "--n-fft", "64", "--hop", "16", "--iters", "3", "--lr", "0.5", "--tol", "1e-3",
               "--patience", "2", "--tv-weight", "0.01", "--coverage-weight", "3",
               "--init-length", "40", "--min-length", "10", "--max-length", "60", "--seed", "3",
               "--device", "cpu", "--dtype", "float64", "--optimizer", "adam", "--no-plots",
               "-o", tmp_path, "-q"])
    assert res.exit_code == 0, res.output
    params, arrays = load_result(tmp_path / "fm")
    c = params["config"]
    assert (c["window"], c["n_fft"], c["hop"], c["iters"], c["lr"], c["tol"], c["patience"],
            c["tv_weight"], c["coverage_weight"], c["init_length"], c["min_length"],
            c["max_length"], c["seed"], c["device"], c["dtype"]) == (
        "gaussian", 64, 16, 3, 0.5, 1e-3, 2, 0.01, 3.0, 40.0, 10.0, 60.0, 3, "cpu", "float64")
    assert 10 <= arrays["window_length"].min() <= arrays["window_length"].max() <= 60


def test_non_finite_steps_are_recorded_in_params(data, tmp_path, monkeypatch):
    real = losses.shannon_entropy
    calls = {"n": 0}

    def flaky(mag):
        calls["n"] += 1
        return real(mag) * float("nan") if calls["n"] == 3 else real(mag)

    monkeypatch.setattr(losses, "shannon_entropy", flaky)
    res = run(["optimize", data / "fm.wav", *FAST, "--optimizer", "adam", "--init-length", "30",
               "--iters", "8", "-o", tmp_path, "-q"])
    assert res.exit_code == 0, res.output
    params, arrays = load_result(tmp_path / "fm")
    assert params["events"] and params["events"][0]["event"].startswith("non-finite")
    assert np.isfinite(arrays["magnitude"]).all() and np.isfinite(params["loss_final"])


def test_channels_columns_keys_and_sample_rates(data, tmp_path):
    res = run(["optimize", data / "stereo.npy", "--sample-rate", "2000", "--channel", "all",
               *FAST, "-o", tmp_path / "all", "-q"])
    assert res.exit_code == 0, res.output
    params, arrays = load_result(tmp_path / "all" / "stereo")
    assert arrays["magnitude"].shape == (2, 33, 1 + 2000 // 16)
    assert params["input"]["channels"] == 2 and params["input"]["channel"] == "all"
    signal = load_signal(data / "stereo.npy", channel="all", sample_rate=2000)
    expected = dstft(torch.from_numpy(np.array(signal.data)), n_fft=64,
                     window_length=float(arrays["window_length"][0, 0]), hop_length=16).abs()
    np.testing.assert_allclose(arrays["magnitude"], expected.numpy().astype(np.float32),
                               rtol=1e-6, atol=1e-6 * float(expected.max()))

    res = run(["optimize", data / "stereo.npy", "--sample-rate", "2000", "--channel", "1",
               *FAST, "-o", tmp_path / "one", "-q"])
    assert res.exit_code == 0, res.output
    params, arrays = load_result(tmp_path / "one" / "stereo")
    assert arrays["magnitude"].shape == (33, 126) and params["input"]["channel"] == 1

    res = run(["optimize", data / "table.csv", "--column", "second", *FAST, "-o",
               tmp_path / "csv", "-q"])
    assert res.exit_code == 0, res.output
    params, _ = load_result(tmp_path / "csv" / "table")
    assert params["sample_rate"] == pytest.approx(2000)

    res = run(["optimize", data / "table.csv", "--column", "1", *FAST, "-o",
               tmp_path / "csv1", "-q"])
    assert res.exit_code == 0, res.output

    res = run(["optimize", data / "bundle.npz", "--key", "right", *FAST, "-o",
               tmp_path / "npz", "-q"])
    assert res.exit_code == 0, res.output
    params, _ = load_result(tmp_path / "npz" / "bundle")
    assert params["sample_rate"] == 2000


def test_existing_results_are_skipped_unless_overwrite(data, tmp_path):
    args = ["optimize", data / "short.wav", *FAST, "-o", tmp_path]
    assert run(args).exit_code == 0
    params_path = tmp_path / "short" / "params.json"
    before = params_path.read_text()
    (tmp_path / "short" / "marker").write_text("x")
    res = run(args)
    assert res.exit_code == 0
    assert "skipped" in res.stderr and "--overwrite" in res.stderr
    assert len(lines(res.stderr)) == 1 and (tmp_path / "short" / "marker").exists()
    res = run([*args, "--overwrite", "--seed", "5"])
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "short" / "marker").exists()
    assert params_path.read_text() != before


def test_directory_batch_with_a_bad_file_goes_on(data, tmp_path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.wav").write_bytes((data / "short.wav").read_bytes())
    (folder / "sub" / "b.wav").write_bytes((data / "short.wav").read_bytes())
    (folder / "bad.wav").write_text("not audio at all")
    (folder / "notes.txt").write_text("ignored: unsupported extension in a folder")
    res = run(["optimize", folder, *FAST, "-o", tmp_path / "out"])
    assert res.exit_code == 1
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"a", "b", "summary.csv"}
    err = lines(res.stderr)
    assert any("bad.wav" in e for e in err) and not any("Traceback" in e for e in err)
    assert err[-1] == "2 done, 0 skipped, 1 failed"
    assert len(lines(res.stdout)) == 2


def test_same_stem_inputs_get_distinct_folders(data, tmp_path):
    res = run(["optimize", data / "stereo.npy", data / "fm.wav", *FAST, "--sample-rate", "2000",
               "-o", tmp_path, "-q"])
    assert res.exit_code == 0, res.output
    (tmp_path / "x").mkdir()
    a, b = tmp_path / "x" / "fm.wav", tmp_path / "fm.npy"
    a.write_bytes((data / "fm.wav").read_bytes())
    np.save(b, fm_signal())
    res = run(["optimize", a, b, *FAST, "--sample-rate", "2000", "-o", tmp_path / "o", "-q"])
    assert res.exit_code == 0, res.output
    assert {p.name for p in (tmp_path / "o").iterdir()} == {"fm_wav", "fm_npy", "summary.csv"}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d"]),
                          st.sampled_from(["x", "y"]),
                          st.sampled_from([".wav", ".csv", ".npy"])), min_size=1, max_size=12))
def test_result_names_are_unique(parts):
    paths = [Path(f"/data/{d}/{s}{e}") for s, d, e in parts]
    paths = list(dict.fromkeys(paths))  # inputs are deduplicated before naming
    names = _result_names(paths)
    assert len(set(names)) == len(names) == len(paths)
    assert all(n and "/" not in n for n in names)
    for p, n in zip(paths, names, strict=True):
        assert n.startswith(p.stem) or p.stem in n


@pytest.mark.slow
def test_jobs_process_in_parallel(data, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("one", "two", "three"):
        (folder / f"{name}.wav").write_bytes((data / "short.wav").read_bytes())
    (folder / "broken.npy").write_bytes(b"\x93NUMPY garbage")
    res = run(["optimize", folder, *FAST, "--jobs", "2", "-o", tmp_path / "out"])
    assert res.exit_code == 1, res.output
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"one", "two", "three", "summary.csv"}
    assert any("broken.npy" in e for e in lines(res.stderr))
    for name in ("one", "two", "three"):
        params, _ = load_result(tmp_path / "out" / name)
        assert params["input"]["path"].endswith(f"{name}.wav")


def test_quiet_and_no_progress_without_a_tty(data, tmp_path):
    res = run(["optimize", data / "short.wav", *FAST, "-o", tmp_path / "a"])
    assert res.exit_code == 0  # not a TTY: no progress bars; only the result's diagnostics
    assert all(": warning: " in line for line in res.stderr.splitlines()), res.stderr
    assert "\r" not in res.output and "it/s" not in res.output
    res = run(["optimize", data / "short.wav", *FAST, "-o", tmp_path / "b", "--quiet"])
    assert res.exit_code == 0 and res.output == ""


def test_progress_bars_on_a_terminal(data, tmp_path, monkeypatch):
    import dstft_cli.batch as batch_module

    monkeypatch.setattr(batch_module, "tqdm_enabled", lambda quiet: not quiet)
    res = run(["optimize", data / "short.wav", data / "fm.wav", *FAST, "--mode", "time",
               "-o", tmp_path])
    assert res.exit_code == 0, res.output
    assert "short.wav [constant]" in res.stderr and "short.wav [time]" in res.stderr
    assert "inputs" in res.stderr and "it/s" in res.stderr
    res = run(["optimize", data / "short.wav", *FAST, "-o", tmp_path / "q", "-q"])
    assert res.output == ""


# --------------------------------------------------------------------------------------------
# scan, apply, synth


def test_scan_writes_the_curve(data, tmp_path):
    res = run(["scan", data / "fm.wav", "--n-fft", "128", "--hop", "16", "--min-length", "8",
               "--max-length", "128", "--step", "4", "-o", tmp_path])
    assert res.exit_code == 0, res.output
    rows = np.loadtxt(tmp_path / "fm.scan.csv", delimiter=",", skiprows=1)
    assert (tmp_path / "fm.scan.csv").read_text().startswith("window_length,loss\n")
    assert rows.shape == (31, 2) and rows[0, 0] == 8 and rows[-1, 0] == 128
    assert (tmp_path / "fm.scan.png").read_bytes()[:4] == b"\x89PNG"
    best = rows[np.argmin(rows[:, 1]), 0]
    rate = sf.info(str(data / "fm.wav")).samplerate
    assert f"best θ = {best:.2f} samples ({1000 * best / rate:.1f} ms)" in res.stdout
    assert 60 <= best <= 100
    res = run(["scan", data / "fm.wav", "-o", tmp_path])
    assert res.exit_code == 0 and "skipped" in res.stderr


def test_apply_reuses_saved_parameters(data, tmp_path):
    assert run(["optimize", data / "fm.wav", "--mode", "freq", *FAST, "-o", tmp_path / "r",
                "-q"]).exit_code == 0
    res = run(["apply", tmp_path / "r" / "fm", data / "short.wav", "-o", tmp_path / "a"])
    assert res.exit_code == 0, res.output
    folder = tmp_path / "a" / "short"
    assert {p.name for p in folder.iterdir()} == {"params.json", "spectrogram.npz",
                                                  "spectrogram.png"}
    params, arrays = load_result(folder)
    _, saved = load_result(tmp_path / "r" / "fm")
    assert params["mode"] == "freq" and params["input"]["frames"] == 1200
    np.testing.assert_array_equal(arrays["window_length"], saved["window_length"])
    assert arrays["magnitude"].shape == (33, 1 + 1200 // 16)
    expected = recompute(data / "short.wav", params, arrays)
    np.testing.assert_allclose(arrays["magnitude"], expected.astype(np.float32), rtol=1e-6,
                               atol=1e-6 * expected.max())
    assert read_result(tmp_path / "r" / "fm").mode == "freq"


def test_apply_per_frame_parameters_need_the_same_frame_count(data, tmp_path):
    assert run(["optimize", data / "fm.wav", "--mode", "time", *FAST, "-o", tmp_path / "r",
                "-q"]).exit_code == 0
    res = run(["apply", tmp_path / "r" / "fm", data / "short.wav", "-o", tmp_path / "a"])
    assert res.exit_code == 1
    assert "short.wav" in res.stderr and "frames" in res.stderr
    assert len(lines(res.stderr)) == 1 and not (tmp_path / "a" / "short").exists()
    res = run(["apply", tmp_path / "r" / "fm", data / "fm.wav", "-o", tmp_path / "b", "-q"])
    assert res.exit_code == 0, res.output
    params, arrays = load_result(tmp_path / "b" / "fm")
    original = np.load(tmp_path / "r" / "fm" / "spectrogram.npz")["magnitude"]
    np.testing.assert_allclose(arrays["magnitude"], original, rtol=1e-6,
                               atol=1e-6 * original.max())


def test_apply_needs_a_finished_result_folder(data, tmp_path):
    res = run(["apply", tmp_path, data / "fm.wav"])
    assert res.exit_code == 2
    assert "params.json" in res.stderr and len(lines(res.stderr)) == 1


@pytest.mark.parametrize("name", ["three-components", "shocks", "harmonics"])
@pytest.mark.parametrize("ext", [".wav", ".npy"])
def test_synth_writes_signal_and_truth(tmp_path, name, ext):
    out = tmp_path / f"sig{ext}"
    res = run(["synth", name, out, "--duration", "0.25", "--seed", "2"])
    assert res.exit_code == 0, res.output
    signal = load_signal(out, sample_rate=8000)
    assert signal.frames == 2000 and signal.sample_rate == 8000
    truth = np.genfromtxt(tmp_path / "sig_truth.csv", delimiter=",", names=True)
    assert truth.shape == (2000,) and "time_s" in truth.dtype.names
    meta = json.loads((tmp_path / "sig_truth.json").read_text())
    assert meta["signal"] == name and meta["seed"] == 2
    res = run(["synth", name, out])
    assert res.exit_code == 1 and "exists" in res.stderr and len(lines(res.stderr)) == 1
    assert run(["synth", name, out, "--overwrite", "-q"]).exit_code == 0


def test_synth_csv_and_flac(tmp_path):
    assert run(["synth", "shocks", tmp_path / "s.csv", "--duration", "0.1", "-q"]).exit_code == 0
    assert load_signal(tmp_path / "s.csv").sample_rate == pytest.approx(8000)
    assert run(["synth", "shocks", tmp_path / "f.flac", "--duration", "0.1", "-q"]).exit_code == 0
    assert load_signal(tmp_path / "f.flac").frames == 800


def test_synth_then_optimize_hop(tmp_path):
    assert run(["synth", "shocks", tmp_path / "s.wav", "--duration", "0.2", "-q"]).exit_code == 0
    res = run(["optimize", tmp_path / "s.wav", "--mode", "hop", "--n-fft", "128", "--hop", "32",
               "--iters", "8", "-o", tmp_path / "o", "-q"])
    assert res.exit_code == 0, res.output
    params, arrays = load_result(tmp_path / "o" / "s")
    assert params["loss_final"] < params["loss_initial"]
    assert arrays["frame_positions"].dtype == np.float64
    assert (tmp_path / "o" / "s" / "frames.png").exists()


# --------------------------------------------------------------------------------------------
# help, docs, entry points


def all_commands():
    return sorted(main.commands)


def test_every_command_has_help_and_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    assert {"optimize", "scan", "apply", "synth"} <= set(main.commands)
    for name in all_commands():
        command = main.commands[name]
        assert command.help and command.help.strip(), name
        res = run([name, "--help"])
        assert res.exit_code == 0 and "Usage:" in res.stdout
        assert f"dstft {name.replace('_', '-')}" in readme or f"dstft {name}" in readme, name
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.help, f"{name} {param.opts}"


def test_readme_documents_every_optimize_option():
    readme = (ROOT / "README.md").read_text()
    for param in main.commands["optimize"].params:
        if isinstance(param, click.Option):
            assert param.opts[-1] in readme or param.opts[0] in readme, param.opts


def test_version_and_group_help():
    res = run(["--version"])
    assert res.exit_code == 0 and __version__ in res.stdout
    res = run(["--help"])
    assert res.exit_code == 0 and "optimize" in res.stdout


@pytest.mark.slow
def test_python_dash_m(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    out = subprocess.run([sys.executable, "-m", "dstft_cli", "--version"], capture_output=True,
                         text=True, env=env, timeout=120)
    assert out.returncode == 0 and __version__ in out.stdout
    out = subprocess.run([sys.executable, "-m", "dstft_cli", "optimize", str(tmp_path / "nope.wav")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 1
    assert out.stderr.strip() == f"{tmp_path / 'nope.wav'}: no such file or directory"
