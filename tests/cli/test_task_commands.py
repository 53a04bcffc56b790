"""CliRunner tests of the task commands: track, fit-window, train (files, contents, bad input)."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from dstft_cli.cli.fit_window import fit_window
from dstft_cli.cli.track import track
from dstft_cli.cli.train import train

SR = 4000
ROOT = Path(__file__).resolve().parents[2]


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


@pytest.fixture
def chirp_wav(tmp_path):
    t = np.arange(SR) / SR
    f = 150 + 100 * t
    x = np.cos(3 * 2 * np.pi * np.cumsum(f) / SR) + 0.3 * np.cos(2 * np.pi * np.cumsum(f) / SR)
    path = tmp_path / "chirp.wav"
    sf.write(path, 0.5 * x, SR, subtype="FLOAT")
    with open(tmp_path / "chirp_truth.csv", "w") as fh:
        fh.write("time_s,f0_hz\n" + "".join(f"{a},{b}\n" for a, b in zip(t[::10], f[::10], strict=False)))
    return path


TRACK_FAST = ["--n-fft", "256", "--hop", "32", "--harmonic", "3", "--fmin", "120", "--fmax", "280"]


def test_track_writes_csv_plot_params(chirp_wav, tmp_path):
    out = tmp_path / "out"
    res = CliRunner().invoke(track, [str(chirp_wav), "--mode", "constant", "--out", str(out),
                                     *TRACK_FAST, "--quiet"])
    assert res.exit_code == 0, res.output
    folder = out / "chirp.track"
    rows = _rows(folder / "frequency.csv")
    assert rows[0] == ["time_s", "frequency_hz"] and len(rows) == 1 + 1 + SR // 32
    freq = np.array([float(r[1]) for r in rows[1:]])
    assert np.all((freq >= 120) & (freq <= 280))
    params = json.loads((folder / "params.json").read_text())
    assert params["mode"] == "constant" and params["harmonic"] == 3
    assert params["truth"].endswith("chirp_truth.csv")
    assert params["mse_hz2"] < (SR / 256 / 3) ** 2
    assert (folder / "tracking.png").stat().st_size > 1000


def test_track_time_mode_and_skip_existing(chirp_wav, tmp_path):
    out = tmp_path / "out"
    args = [str(chirp_wav), "--mode", "time", "--iters", "3", "--out", str(out), *TRACK_FAST,
            "--no-plots", "-q"]
    assert CliRunner().invoke(track, args).exit_code == 0
    folder = out / "chirp.track"
    assert (folder / "window_lengths.csv").is_file() and not (folder / "tracking.png").exists()
    assert set(json.loads((folder / "params.json").read_text())["window_length"]) == {"min", "median", "max"}
    res = CliRunner().invoke(track, args)
    assert res.exit_code == 0 and "skipped" in res.output
    res = CliRunner().invoke(track, [*args, "--overwrite", "--mode", "constant"])
    assert res.exit_code == 0
    assert json.loads((folder / "params.json").read_text())["mode"] == "constant"


@pytest.mark.parametrize(
    "extra, code, message",
    [
        (["--fmin", "300", "--fmax", "100"], 2, "fmax"),
        (["--harmonic", "0"], 2, "harmonic"),
        (["--window", "nope"], 2, "unknown window"),
        (["--n-fft", "7"], 2, "n_fft"),
    ],
)
def test_track_bad_options(chirp_wav, tmp_path, extra, code, message):
    res = CliRunner().invoke(track, [str(chirp_wav), "--out", str(tmp_path / "o"), *extra])
    assert res.exit_code == code
    assert message in res.output


def test_track_bad_inputs(tmp_path, chirp_wav):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    short = tmp_path / "short.wav"
    sf.write(short, np.ones(50) * 0.1, SR)
    res = CliRunner().invoke(track, [str(bad), str(short), str(chirp_wav), "--out",
                                     str(tmp_path / "o"), "--mode", "constant", *TRACK_FAST, "-q"])
    assert res.exit_code == 1
    assert "bad.wav" in res.output and "short.wav" in res.output and "too short" in res.output
    assert (tmp_path / "o" / "chirp.track" / "params.json").is_file()  # the good file was processed
    assert not (tmp_path / "o" / "bad.track").exists() and not (tmp_path / "o" / "short.track").exists()
    res = CliRunner().invoke(track, [str(tmp_path / "missing.wav")])
    assert res.exit_code == 2


def test_fit_window_generate(tmp_path):
    out = tmp_path / "out"
    res = CliRunner().invoke(fit_window, [
        "--generate", "3", "--duration", "0.25", "--sample-rate", "2000", "--n-fft", "64",
        "--iters", "15", "--grid-points", "6", "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    folder = out / "fit_window"
    params = json.loads((folder / "params.json").read_text())
    assert 64 / 64 <= params["window_length"] <= 64 and params["n_signals"] == 3
    assert params["loss_final"] <= params["loss_initial"]
    curve = _rows(folder / "loss_curve.csv")
    assert curve[0] == ["window_length", "loss"] and len(curve) == 7
    hist = _rows(folder / "loss_history.csv")
    assert hist[0] == ["iteration", "window_length", "loss"] and len(hist) >= 2
    for png in ("loss_curve.png", "loss_history.png"):
        assert (folder / png).stat().st_size > 1000


def test_fit_window_data_dir_and_errors(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    from dstft_cli.synth import variable_period_sines

    for j, (sig, f) in enumerate(variable_period_sines(n_signals=2, duration=0.25, sample_rate=2000)):
        sf.write(data / f"s{j}.wav", 0.5 * sig / np.abs(sig).max(), 2000, subtype="FLOAT")
        t = np.arange(sig.size) / 2000
        np.savetxt(data / f"s{j}_truth.csv", np.c_[t, f], delimiter=",", header="time_s,f_hz",
                   comments="")
    args = ["--n-fft", "64", "--iters", "5", "--grid-points", "4", "--out", str(tmp_path / "o"),
            "--no-plots", "-q"]
    res = CliRunner().invoke(fit_window, [str(data), *args])
    assert res.exit_code == 0, res.output
    params = json.loads((tmp_path / "o" / "fit_window" / "params.json").read_text())
    assert params["n_signals"] == 2 and params["inputs"][0]["truth"].endswith("s0_truth.csv")
    (data / "s1_truth.csv").unlink()
    res = CliRunner().invoke(fit_window, [str(data), *args, "--overwrite"])
    assert res.exit_code == 1 and "s1.wav" in res.output and "no ground truth" in res.output
    res = CliRunner().invoke(fit_window, [str(data), "--generate", "2"])
    assert res.exit_code == 2
    res = CliRunner().invoke(fit_window, [])
    assert res.exit_code == 2


def test_train_writes_every_file_and_checkpoints_reload(tmp_path, fsdd_dir):
    data = fsdd_dir
    out = tmp_path / "out"
    res = CliRunner().invoke(train, [
        str(data), "--fixed-window", "8,16", "--epochs", "1", "--batch-size", "4",
        "--clip-length", "2000", "--n-fft", "32", "--hop", "16", "--init-length", "12",
        "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    folder = out / "train"
    for name in ("results.csv", "results.md", "theta_trajectory.csv", "history.csv", "split.csv",
                 "params.json", "checkpoints/fixed-8.pt", "checkpoints/fixed-16.pt",
                 "checkpoints/learnable.pt"):
        assert (folder / name).is_file(), name
    rows = _rows(folder / "results.csv")
    assert [r[0] for r in rows[1:]] == ["fixed-8", "fixed-16", "learnable"]
    md = (folder / "results.md").read_text()
    assert "Table III" in md and "test acc. (%)" in md and "learnable →" in md and "DSTFT (θ →" in md
    traj = _rows(folder / "theta_trajectory.csv")
    assert traj[0] == ["run", "step", "epoch", "window_length"] and float(traj[1][3]) == 12.0
    split = _rows(folder / "split.csv")[1:]
    assert len(split) == 12 and {r[2] for r in split} == {"train", "val", "test"}
    params = json.loads((folder / "params.json").read_text())
    assert params["config"]["seed"] == 0 and params["split_sizes"]["test"] >= 1
    for ck in ("fixed-8", "learnable"):
        payload = torch.load(folder / "checkpoints" / f"{ck}.pt", weights_only=True)
        assert "frontend.stft.theta" in payload["state_dict"]
    assert (out / ".cache").is_dir()  # decoded-audio cache


@pytest.mark.parametrize(
    "extra, code, message",
    [
        (["--fixed-window", "abc"], 2, "comma-separated"),
        (["--fixed-window", "200"], 2, "n_fft"),
        (["--no-learnable"], 2, "--fixed-window"),
        (["--init-length", "500"], 2, "init_length"),
    ],
)
def test_train_bad_options(tmp_path, extra, code, message, fsdd_dir):
    data = fsdd_dir
    res = CliRunner().invoke(train, [str(data), "--out", str(tmp_path / "o"), *extra])
    assert res.exit_code == code, res.output
    assert message in res.output


def test_train_bad_data_and_config(tmp_path, fsdd_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    res = CliRunner().invoke(train, [str(empty), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "no audio files" in res.output
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[train]\nepochs = 2\nbogus = 1\n")
    data = fsdd_dir
    res = CliRunner().invoke(train, [str(data), "--config", str(cfg), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "bogus" in res.output
    assert not (tmp_path / "o" / "train").exists()


# --------------------------------------------------------------------------------------------
# lengths as durations (converted at the data's sample rate) and θ in samples and ms


def test_fit_window_takes_durations_and_reports_ms(tmp_path):
    out = tmp_path / "out"
    res = CliRunner().invoke(fit_window, [
        "--generate", "3", "--duration", "0.25", "--sample-rate", "2000", "--n-fft", "32ms",
        "--hop", "8ms", "--init-length", "8ms", "--min-length", "1.5ms", "--iters", "5",
        "--grid-points", "4", "--out", str(out)])
    assert res.exit_code == 0, res.output
    params = json.loads((out / "fit_window" / "params.json").read_text())
    assert (params["n_fft"], params["hop"], params["sample_rate"]) == (64, 16, 2000)
    assert params["init_length"] == 16.0 and params["min_length"] == 3.0
    assert params["n_fft_ms"] == 32.0 and params["hop_ms"] == 8.0
    assert params["init_length_ms"] == 8.0 and params["min_length_ms"] == 1.5
    assert params["window_length_ms"] == pytest.approx(params["window_length"] / 2)
    assert params["grid_optimum_ms"] == pytest.approx(params["grid_optimum"] / 2)
    theta = params["window_length"]
    assert f"θ = {theta:.2f} samples ({theta / 2:.1f} ms)" in res.output
    assert "hop 16 (8.0 ms)" in res.output


def test_fit_window_durations_need_one_sample_rate(tmp_path):
    from dstft_cli.synth import variable_period_sines

    data = tmp_path / "data"
    data.mkdir()
    for j, rate in enumerate((2000, 4000)):
        (sig, f), = variable_period_sines(n_signals=1, duration=0.25, sample_rate=rate)
        sf.write(data / f"s{j}.wav", 0.5 * sig / np.abs(sig).max(), rate, subtype="FLOAT")
        np.savetxt(data / f"s{j}_truth.csv", np.c_[np.arange(sig.size) / rate, f], delimiter=",",
                   header="time_s,f_hz", comments="")
    args = [str(data), "--iters", "2", "--grid-points", "3", "--out", str(tmp_path / "o"), "-q"]
    res = CliRunner().invoke(fit_window, [*args, "--n-fft", "32ms"])
    assert res.exit_code == 1 and "mixes sample rates (2000, 4000 Hz)" in res.output
    assert not (tmp_path / "o" / "fit_window").exists()
    res = CliRunner().invoke(fit_window, [*args, "--n-fft", "64"])  # samples: any rates
    assert res.exit_code == 0, res.output
    params = json.loads((tmp_path / "o" / "fit_window" / "params.json").read_text())
    assert params["sample_rate"] is None and "n_fft_ms" not in params


def test_train_takes_durations_in_options_and_config(tmp_path, fsdd_dir):
    rate = sf.info(str(next(fsdd_dir.glob("*.wav")))).samplerate
    ms = 1000.0 / rate  # one sample in ms
    config = tmp_path / "t.toml"
    config.write_text(f'[train]\nclip_length = "{2000 * ms:g}ms"\nmin_length = "{2 * ms:g}ms"\n'
                      f'fixed_window = ["{8 * ms:g}ms"]\n')
    out = tmp_path / "out"
    res = CliRunner().invoke(train, [
        str(fsdd_dir), "--config", str(config), "--epochs", "1", "--batch-size", "4",
        "--n-fft", f"{32 * ms:g}ms", "--hop", f"{16 * ms:g}ms", "--init-length", f"{12 * ms:g}ms",
        "--no-learnable", "--out", str(out)])
    assert res.exit_code == 0, res.output
    params = json.loads((out / "train" / "params.json").read_text())
    c = params["config"]
    assert (c["n_fft"], c["hop_length"], c["clip_length"]) == (32, 16, 2000)
    assert c["init_length"] == pytest.approx(12) and c["min_length"] == pytest.approx(2)
    assert c["n_fft_ms"] == pytest.approx(32 * ms) and c["hop_length_ms"] == pytest.approx(16 * ms)
    assert c["clip_length_ms"] == pytest.approx(2000 * ms)
    assert params["fixed_windows"] == [pytest.approx(8)]
    assert params["fixed_windows_ms"] == [pytest.approx(8 * ms)]
    (run,) = params["runs"]
    assert run["window_length"] == pytest.approx(8) and run["window_length_ms"] == pytest.approx(8 * ms)
    assert f"fixed-8: θ = 8.00 samples ({8 * ms:.1f} ms)" in res.output
    assert [r[0] for r in _rows(out / "train" / "results.csv")[1:]] == ["fixed-8"]


def test_train_durations_on_mixed_rates_and_bad_config_lengths(tmp_path, fsdd_dir):
    clip = next(fsdd_dir.glob("*.wav"))
    data, rate = sf.read(clip)
    sf.write(fsdd_dir / "9_other_0.wav", data, 2 * sf.info(str(clip)).samplerate)
    res = CliRunner().invoke(train, [str(fsdd_dir), "--n-fft", "16ms", "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "different sample rates" in res.output
    bad = tmp_path / "bad.toml"
    bad.write_text('[train]\nhop_length = "10 ms"\n')
    res = CliRunner().invoke(train, [str(fsdd_dir), "--config", str(bad), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "hop_length" in res.output and str(bad) in res.output
    assert not (tmp_path / "o").exists()
