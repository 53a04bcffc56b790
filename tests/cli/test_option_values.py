"""Every numeric option of every command refuses NaN, infinities and overflowing values as a
usage error naming the option (exit status 2), before any input is read or output written."""

from __future__ import annotations

import click
import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from dstft_cli.cli import main
from dstft_cli.cli.params import is_checked


@pytest.fixture
def wav(tmp_path):
    path = tmp_path / "x.wav"
    sf.write(path, 0.1 * np.random.default_rng(0).standard_normal(4000), 8000)
    return path


CASES = [
    (["optimize", "{wav}", "--seed", "18446744073709551616"], "--seed"),
    (["optimize", "{wav}", "--seed", "-1"], "--seed"),
    (["optimize", "{wav}", "--lr", "1e39"], "--lr"),
    (["optimize", "{wav}", "--lr", "nan"], "--lr"),
    (["optimize", "{wav}", "--tol", "inf"], "--tol"),
    (["optimize", "{wav}", "--tv-weight", "nan"], "--tv-weight"),
    (["optimize", "{wav}", "--coverage-weight", "-inf"], "--coverage-weight"),
    (["optimize", "{wav}", "--iters", "1e30"], "--iters"),
    (["optimize", "{wav}", "--iters", "100000000000000000000000"], "--iters"),
    (["optimize", "{wav}", "--patience", "nan"], "--patience"),
    (["optimize", "{wav}", "--min-length", "1e-300"], "--min-length"),
    (["optimize", "{wav}", "--min-length", "nan"], "--min-length"),
    (["optimize", "{wav}", "--max-length", "1e9s"], "--max-length"),
    (["optimize", "{wav}", "--init-length", "-5ms"], "--init-length"),
    (["optimize", "{wav}", "--hop", "10 ms"], "--hop"),
    (["optimize", "{wav}", "--hop", "inf"], "--hop"),
    (["optimize", "{wav}", "--n-fft", "abc"], "--n-fft"),
    (["optimize", "{wav}", "--n-fft", "1e40"], "--n-fft"),
    (["optimize", "{wav}", "--sample-rate", "nan"], "--sample-rate"),
    (["optimize", "{wav}", "--sample-rate", "inf"], "--sample-rate"),
    (["optimize", "{wav}", "--jobs", "1e9"], "--jobs"),
    (["optimize", "{wav}", "--loss", "renyi:1e300"], "ALPHA"),
    (["optimize", "{wav}", "--loss", "renyi:nan"], "ALPHA"),
    (["scan", "{wav}", "--step", "nan"], "--step"),
    (["scan", "{wav}", "--min-length", "inf"], "--min-length"),
    (["scan", "{wav}", "--sample-rate", "nan"], "--sample-rate"),
    (["apply", "{tmp}", "{wav}", "--sample-rate", "nan"], "--sample-rate"),
    (["synth", "harmonics", "{tmp}/s.wav", "--duration", "inf"], "--duration"),
    (["synth", "harmonics", "{tmp}/s.wav", "--duration", "nan"], "--duration"),
    (["synth", "harmonics", "{tmp}/s.wav", "--snr-db", "nan"], "--snr-db"),
    (["synth", "harmonics", "{tmp}/s.wav", "--snr-db", "1e308"], "--snr-db"),
    (["synth", "harmonics", "{tmp}/s.wav", "--sample-rate", "nan"], "--sample-rate"),
    (["synth", "harmonics", "{tmp}/s.wav", "--seed", "18446744073709551616"], "--seed"),
    (["track", "{wav}", "--smoothness", "nan"], "--smoothness"),
    (["track", "{wav}", "--fmax", "inf"], "--fmax"),
    (["track", "{wav}", "--fmin", "nan"], "--fmin"),
    (["track", "{wav}", "--lr", "1e39"], "--lr"),
    (["track", "{wav}", "--min-length", "1e-300"], "--min-length"),
    (["track", "{wav}", "--sample-rate", "nan"], "--sample-rate"),
    (["track", "{wav}", "--seed", "18446744073709551616"], "--seed"),
    (["fit-window", "{wav}", "--name", "../x"], "--name"),
    (["fit-window", "{wav}", "--name", ".."], "--name"),
    (["fit-window", "--generate", "2", "--snr", "nan"], "--snr"),
    (["fit-window", "--generate", "2", "--duration", "inf"], "--duration"),
    (["fit-window", "--generate", "2", "--init-length", "nan"], "--init-length"),
    (["train", "{tmp}", "--lr", "nan"], "--lr"),
    (["train", "{tmp}", "--theta-lr", "inf"], "--theta-lr"),
    (["train", "{tmp}", "--name", "a/b"], "--name"),
    (["fit-window", "--generate", "2", "--n-fft", "10 ms"], "--n-fft"),
    (["fit-window", "--generate", "2", "--hop", "-5ms"], "--hop"),
    (["fit-window", "--generate", "2", "--min-length", "1e9s"], "--min-length"),
    (["fit-window", "--generate", "2", "--init-length", "abc"], "--init-length"),
    (["train", "{tmp}", "--n-fft", "10 ms"], "--n-fft"),
    (["train", "{tmp}", "--hop", "-5ms"], "--hop"),
    (["train", "{tmp}", "--clip-length", "1e9s"], "--clip-length"),
    (["train", "{tmp}", "--init-length", "abc"], "--init-length"),
    (["train", "{tmp}", "--min-length", "nan"], "--min-length"),
    (["train", "{tmp}", "--fixed-window", "10ms,5 ms"], "--fixed-window"),
    (["extract", "{tmp}", "--band", "0:100", "--name", "../x"], "--name"),
    (["extract", "{tmp}", "--ridge", "{wav}", "--width", "nan"], "--width"),
    (["reassign", "{wav}", "--iters", "1e30"], "--iters"),
    (["plot", "{tmp}", "--dpi", "nan"], "--dpi"),
    (["plot", "{tmp}", "--fixed-length", "inf"], "--fixed-length"),
    (["optimize", "{wav}", "--db-range", "nan"], "--db-range"),
]


@pytest.mark.parametrize("args, option", CASES, ids=[" ".join(a[:1] + a[2:]) for a, _ in CASES])
def test_bad_values_are_usage_errors_naming_the_option(tmp_path, wav, args, option):
    out = tmp_path / "out"
    argv = [a.format(wav=wav, tmp=tmp_path) for a in args]
    if argv[0] not in ("synth",):
        argv += ["--out", str(out)] if argv[0] != "optimize" else ["-o", str(out)]
    res = CliRunner().invoke(main, argv)
    assert res.exit_code == 2, res.output
    assert option in res.output, res.output
    assert "Traceback" not in res.output
    assert not out.exists() and not (tmp_path / "s.wav").exists()


def _commands(group: click.Group):
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from _commands(command)
        else:
            yield name, command


def test_every_numeric_option_uses_a_checked_type():
    """The pattern, not the instances: no option takes click's plain float or int types, which
    let nan, inf and unbounded integers through."""
    unchecked = [f"{name} {param.opts[0]}: {param.type!r}"
                 for name, command in _commands(main) for param in command.params
                 if isinstance(param, click.Option) and not param.is_flag
                 and not is_checked(param.type)]
    assert unchecked == []


@pytest.mark.parametrize("value", ["10ms", "0.01s", "80"])
def test_durations_are_accepted_where_lengths_are(tmp_path, wav, value):
    res = CliRunner().invoke(main, ["optimize", str(wav), "--hop", value, "--n-fft", "512",
                                    "--iters", "2", "--no-plots", "-o", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    import json

    params = json.loads((tmp_path / "o" / "x" / "params.json").read_text())
    assert params["hop"] == 80 and params["hop_ms"] == pytest.approx(10.0)


# --------------------------------------------------------------------------------------------
# config files, CSV cells and names


def test_config_file_errors_name_the_file_and_key(tmp_path, wav):
    recipe = tmp_path / "r.toml"
    recipe.write_text("n_fft = 1024\nhop = 2048\n", encoding="utf-8")
    res = CliRunner().invoke(main, ["optimize", str(wav), "--config", str(recipe),
                                    "-o", str(tmp_path / "o")])
    assert res.exit_code == 2
    error = [line for line in res.output.splitlines() if line.startswith("Error")]
    assert len(error) == 1 and f"{recipe}: hop = 2048" in error[0]
    assert "recipe default" not in error[0]


def test_toml_errors_never_echo_huge_arrays(tmp_path, wav):
    recipe = tmp_path / "big.toml"
    recipe.write_text("n_fft = [" + ", ".join(["1"] * 20_000) + "]\n", encoding="utf-8")
    res = CliRunner().invoke(main, ["optimize", str(wav), "--config", str(recipe),
                                    "-o", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "n_fft" in res.output and str(recipe) in res.output
    assert len(res.output) < 600, len(res.output)


def test_loss_names_are_stored_normalised(tmp_path, wav):
    import json

    res = CliRunner().invoke(main, ["optimize", str(wav), "--loss", " Shannon ", "--n-fft", "256",
                                    "--iters", "2", "--no-plots", "-o", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    params = json.loads((tmp_path / "o" / "x" / "params.json").read_text())
    assert params["loss"] == "shannon" and params["config"]["loss"] == "shannon"


def test_the_time_column_is_not_a_signal_column(tmp_path):
    path = tmp_path / "v.csv"
    t = np.arange(2000) / 1000
    path.write_text("time,value\n" + "\n".join(f"{a},{np.sin(40 * a)}" for a in t) + "\n",
                    encoding="utf-8")
    res = CliRunner().invoke(main, ["optimize", str(path), "--column", "time", "-o",
                                    str(tmp_path / "o")])
    assert res.exit_code == 1
    assert "'time' is the time column" in res.output and "no time column" not in res.output


def test_underscored_numbers_are_not_csv_numbers(tmp_path):
    from dstft_cli.io import InputError, load_signal

    path = tmp_path / "u.csv"
    path.write_text("value\n" + "\n".join(["0.5", "1_000", "0.25"] * 200) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match="'1_000' is not a number"):
        load_signal(path, sample_rate=1000)


def test_track_takes_durations_per_input(tmp_path):
    import json

    rate = 8000
    t = np.arange(int(0.6 * rate)) / rate
    path = tmp_path / "tone.wav"
    sf.write(path, 0.5 * np.cos(2 * np.pi * (200 * t + 100 * t * t)), rate)
    res = CliRunner().invoke(main, ["track", str(path), "--mode", "constant", "--n-fft", "64ms",
                                    "--hop", "4ms", "--min-length", "10ms", "--no-plots",
                                    "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    [params_path] = (tmp_path / "o").glob("*/params.json")
    params = json.loads(params_path.read_text())
    assert (params["n_fft"], params["hop"], params["min_length"]) == (512, 32, 80.0)


def test_a_lone_tiny_sample_is_not_a_signal(tmp_path, wav):
    lone = np.zeros(4000)
    lone[1234] = 1e-300
    np.save(tmp_path / "lone.npy", lone)
    res = CliRunner().invoke(main, ["optimize", str(tmp_path / "lone.npy"), str(wav),
                                    "--sample-rate", "8000", "--n-fft", "256", "--iters", "2",
                                    "--no-plots", "-o", str(tmp_path / "o")])
    assert res.exit_code == 1
    assert "lone.npy: the signal has a single non-zero sample" in res.output
    assert [p.name for p in (tmp_path / "o").iterdir() if p.is_dir()] == ["x"]
