"""``dstft apply`` across sample rates: parameters carried as durations, or kept in samples."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from dstft_cli.cli import main
from dstft_cli.core import dstft
from dstft_cli.results import converted_to_rate, read_result


def tone_sweep(path, rate: float, seconds: float = 0.5):
    t = np.arange(int(seconds * rate)) / rate
    x = np.cos(2 * np.pi * (300 * t + 800 * t * t)) + 0.5 * np.cos(2 * np.pi * 1200 * t)
    sf.write(path, (0.5 * x).astype(np.float32), int(rate), subtype="FLOAT")
    return path


def run(args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def optimised_8k(tmp_path_factory):
    """One freq-mode result of an 8 kHz sweep, optimised once for the module."""
    folder = tmp_path_factory.mktemp("saved_8k")
    src = tone_sweep(folder / "a.wav", 8000)
    res = run(["optimize", src, "--mode", "freq", "--n-fft", "256", "--iters", "3", "--no-plots",
               "-o", folder / "runs"])
    assert res.exit_code == 0, res.output
    return folder


@pytest.fixture
def saved_8k(tmp_path, optimised_8k):
    """A copy of that result (and its input) that a test may change."""
    shutil.copytree(optimised_8k, tmp_path / "saved")
    return tmp_path / "saved" / "runs" / "a"


def test_apply_at_another_rate_carries_durations(tmp_path, saved_8k):
    target = tone_sweep(tmp_path / "b.wav", 44100)
    res = run(["apply", saved_8k, target, "--no-plots", "-o", tmp_path / "applied"])
    assert res.exit_code == 0, res.output
    assert "from 8000 Hz to 44100 Hz" in res.stdout and "--keep-samples" in res.stdout
    source = json.loads((saved_8k / "params.json").read_text())
    params = json.loads((tmp_path / "applied" / "b" / "params.json").read_text())
    factor = 44100 / 8000
    assert params["converted"]["factor"] == pytest.approx(factor)
    assert params["n_fft"] == 2 * round(256 * factor / 2) and params["hop"] == round(
        source["hop"] * factor)
    # θ in milliseconds is what was carried
    assert params["window_length"]["median"] / 44100 == pytest.approx(
        source["window_length"]["median"] / 8000, rel=0.02)
    # the saved spectrogram is |S| of the input with the converted parameters
    with np.load(tmp_path / "applied" / "b" / "spectrogram.npz") as npz:
        magnitude, theta = npz["magnitude"], npz["window_length"]
    assert theta.shape == (params["n_fft"] // 2 + 1, 1)
    x = torch.from_numpy(sf.read(target, dtype="float64")[0])
    expected = dstft(x, n_fft=params["n_fft"], window_length=torch.from_numpy(theta),
                     hop_length=params["hop"]).abs().numpy()
    np.testing.assert_allclose(magnitude, expected, rtol=1e-4, atol=1e-6 * expected.max())


def test_keep_samples_keeps_samples(tmp_path, saved_8k):
    target = tone_sweep(tmp_path / "b.wav", 44100)
    res = run(["apply", saved_8k, target, "--keep-samples", "--no-plots", "-o", tmp_path / "k"])
    assert res.exit_code == 0, res.output
    source = json.loads((saved_8k / "params.json").read_text())
    params = json.loads((tmp_path / "k" / "b" / "params.json").read_text())
    assert params["converted"] is None and "Hz to" not in res.stdout
    assert (params["n_fft"], params["hop"]) == (source["n_fft"], source["hop"])
    assert params["window_length"] == source["window_length"]


def test_same_rate_is_not_converted(tmp_path, saved_8k):
    saved = read_result(saved_8k)
    same, conversion = converted_to_rate(saved, 8000)
    assert conversion is None and same is saved


def test_constant_theta_scales_with_the_rate(tmp_path):
    src = tone_sweep(tmp_path / "a.wav", 16000)
    assert run(["optimize", src, "--n-fft", "512", "--no-plots", "-o", tmp_path / "r"]
               ).exit_code == 0
    saved = read_result(tmp_path / "r" / "a")
    converted, conversion = converted_to_rate(saved, 8000)
    assert conversion.factor == 0.5 and converted.params["n_fft"] == 256
    assert float(converted.window_length.reshape(())) == pytest.approx(
        float(saved.window_length.reshape(())) / 2)


def _tamper(folder, *, params=None, arrays=None):
    if params is not None:
        (folder / "params.json").write_text(params, encoding="utf-8")
    if arrays is not None:
        with np.load(folder / "spectrogram.npz") as npz:
            data = {k: np.array(npz[k]) for k in npz.files}
        arrays(data)
        np.savez(folder / "spectrogram.npz", **data)


def _nan_position(d):
    d["frame_positions"] = d["frame_positions"].astype(float)
    d["frame_positions"][2] = np.nan


def _far_position(d):
    d["frame_positions"] = d["frame_positions"].astype(float)
    d["frame_positions"][2] = 1e12


def _mode(value):
    def change(folder):
        p = json.loads((folder / "params.json").read_text())
        p["mode"] = value
        (folder / "params.json").write_text(json.dumps(p))
    return change


@pytest.mark.parametrize("tamper, words", [
    (lambda f: _tamper(f, params="5"), "not a table of parameters"),
    (lambda f: _tamper(f, params="null"), "not a table of parameters"),
    (lambda f: _tamper(f, arrays=_nan_position), "frame_positions must be finite"),
    (lambda f: _tamper(f, arrays=_far_position), "frame_positions must be finite"),
    (lambda f: _tamper(f, arrays=lambda d: d.update(window_length=d["window_length"] * np.nan)),
     "window_length must be finite"),
    (lambda f: _tamper(f, arrays=lambda d: d.update(window_length=np.ones((3, 3)))),
     "does not fit"),
    (_mode("wavelet"), "mode = 'wavelet' is not one of"),
])
def test_a_tampered_result_is_one_usage_error(tmp_path, saved_8k, tamper, words):
    tamper(saved_8k)
    a, b = tone_sweep(tmp_path / "x.wav", 8000), tone_sweep(tmp_path / "y.wav", 8000)
    res = run(["apply", saved_8k, a, b, "--no-plots", "-o", tmp_path / "applied"])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "RESULT_DIR" in lines[0] and words in lines[0], lines
    assert "Traceback" not in res.output and not (tmp_path / "applied").exists()
