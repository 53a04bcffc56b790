"""``dstft reassign`` and ``dstft extract`` end to end: the files they write and their contents,
and one-line errors for bad result folders, bands and ridges."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from dstft_cli.cli import main
from dstft_cli.core.reassign import reassigned_spectrogram, synchrosqueeze

FS = 8000
N_FFT, HOP = 256, 64


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def error_lines(res) -> list[str]:
    return [line for line in res.stderr.splitlines() if line.strip()]


def _write_signal(path: Path) -> np.ndarray:
    t = np.arange(4000) / FS
    x = np.cos(2 * np.pi * 700 * t) + 0.5 * np.cos(2 * np.pi * (2000 * t + 800 * t * t))
    sf.write(path, x.astype(np.float32), FS, subtype="FLOAT")
    return sf.read(path)[0]


@pytest.fixture(scope="module")
def optimised(tmp_path_factory) -> Path:
    """One optimised result (per-frame θ), made once; tests copy it."""
    root = tmp_path_factory.mktemp("reassign")
    _write_signal(root / "tones.wav")
    res = run("optimize", root / "tones.wav", "--mode", "time", "--iters", "5", "--n-fft", N_FFT,
              "--hop", HOP, "-o", root / "runs", "-q", "--no-plots")
    assert res.exit_code == 0, res.output
    return root / "runs" / "tones"


@pytest.fixture
def result(optimised, tmp_path) -> Path:
    shutil.copy(optimised.parent.parent / "tones.wav", tmp_path / "tones.wav")
    folder = tmp_path / "runs" / "tones"
    shutil.copytree(optimised, folder)
    params = json.loads((folder / "params.json").read_text())
    params["input"]["path"] = str(tmp_path / "tones.wav")
    (folder / "params.json").write_text(json.dumps(params))
    return folder


def _saved(folder: Path):
    with np.load(folder / "spectrogram.npz") as npz:
        theta = torch.from_numpy(npz["window_length"].reshape(-1))
        positions = torch.from_numpy(npz["frame_positions"])
        magnitude = npz["magnitude"]
    x = torch.from_numpy(sf.read(folder.parent.parent / "tones.wav")[0])
    return x, theta, positions, magnitude


def test_reassign_writes_the_maps_of_the_saved_parameters(result):
    res = run("reassign", result)
    assert res.exit_code == 0, res.output
    x, theta, positions, magnitude = _saved(result)
    common = dict(n_fft=N_FFT, window_length=theta, frame_positions=positions)
    power, _ = reassigned_spectrogram(x, **common)
    sst, _ = synchrosqueeze(x, **common)
    with np.load(result / "reassigned.npz") as npz:
        assert npz["magnitude"].shape == magnitude.shape
        assert np.allclose(npz["magnitude"], power.sqrt().numpy(), rtol=1e-5, atol=1e-6)
        assert np.allclose(npz["times"], positions.numpy() / FS)
        assert np.allclose(npz["freqs"], np.arange(N_FFT // 2 + 1) * FS / N_FFT)
    with np.load(result / "synchrosqueezed.npz") as npz:
        assert np.allclose(npz["magnitude"], sst.abs().numpy(), rtol=1e-5, atol=1e-6)
    record = json.loads((result / "reassign.json").read_text())
    renyi = record["renyi3"]
    assert renyi["reassigned"] < renyi["dstft"] and renyi["synchrosqueezed"] < renyi["dstft"]
    assert (result / "reassigned.png").is_file() and (result / "synchrosqueezed.png").is_file()
    assert f"{renyi['dstft']:.3f}" in res.stdout


def test_reassign_skips_a_done_folder_unless_overwrite(result):
    assert run("reassign", result, "--no-plots").exit_code == 0
    before = (result / "reassigned.npz").stat().st_mtime_ns
    res = run("reassign", result)
    assert res.exit_code == 0 and "skipped" in res.output
    assert (result / "reassigned.npz").stat().st_mtime_ns == before
    assert not (result / "reassigned.png").exists()
    assert run("reassign", result, "--overwrite").exit_code == 0
    assert (result / "reassigned.png").is_file()


def test_reassign_an_input_optimises_it_first(tmp_path):
    _write_signal(tmp_path / "tones.wav")
    res = run("reassign", tmp_path / "tones.wav", "--mode", "constant", "--n-fft", N_FFT, "--hop",
              HOP, "-o", tmp_path / "out", "--no-plots", "-q")
    assert res.exit_code == 0, res.output
    folder = tmp_path / "out" / "tones"
    params = json.loads((folder / "params.json").read_text())
    assert params["mode"] == "constant"
    with np.load(folder / "synchrosqueezed.npz") as sq, np.load(folder / "spectrogram.npz") as sp:
        assert sq["magnitude"].shape == sp["magnitude"].shape
    assert (folder / "reassign.json").is_file()


def test_a_bad_result_folder_is_one_line_and_does_not_stop_the_batch(result, tmp_path):
    broken = tmp_path / "runs" / "broken"
    shutil.copytree(result, broken)
    (broken / "spectrogram.npz").unlink()
    res = run("reassign", tmp_path / "runs", "--no-plots")  # a folder of result folders
    assert res.exit_code == 1
    assert error_lines(res) == [
        f"{broken}: result folder without spectrogram.npz (its window lengths and frame positions)",
        "1 done, 0 skipped, 1 failed"]
    assert not (broken / "reassign.json").exists() and (result / "reassign.json").is_file()


def test_a_result_whose_input_changed_is_refused(result):
    wav = result.parent.parent / "tones.wav"
    sf.write(wav, np.zeros(4000, dtype=np.float32), FS, subtype="FLOAT")
    res = run("reassign", result)
    assert res.exit_code == 1
    assert error_lines(res) == [f"{result}: its input {wav} changed since the result was made (SHA-256)"]
    wav.unlink()
    res = run("reassign", result)
    assert error_lines(res) == [f"{result}: its input {wav} is missing"]


# --------------------------------------------------------------------------------------------
# extract


def _snr(reference: np.ndarray, estimate: np.ndarray) -> float:
    return 10 * math.log10(np.sum(reference**2) / np.sum((reference - estimate) ** 2))


@pytest.mark.parametrize("method", ["inverse", "sst"])
def test_extract_band_writes_the_component(result, method):
    res = run("extract", result, "--band", "0:1200", "--method", method)
    assert res.exit_code == 0, res.output
    audio, rate = sf.read(result / "band_0-1200Hz.wav")
    assert rate == FS and audio.shape == (4000,)
    t = np.arange(4000) / FS
    tone = np.cos(2 * np.pi * 700 * t)
    inner = slice(N_FFT, -N_FFT)
    assert _snr(tone[inner], audio[inner]) > 25
    record = json.loads((result / "band_0-1200Hz.json").read_text())
    assert record["method"] == method and record["selection"]["band"] == [0.0, 1200.0]
    assert record["full_band_snr_db"] > 60
    assert 0.75 < record["energy_fraction"] < 0.85  # 1 / (1 + 0.5²)


def test_extract_ridge_with_time_and_name(result, tmp_path):
    ridge = tmp_path / "ridge.csv"
    t = np.linspace(0, 0.5, 40)
    ridge.write_text("time_s,frequency_hz\n" + "".join(f"{a},{2000 + 1600 * a}\n" for a in t))
    res = run("extract", result, "--ridge", ridge, "--width", "300", "--name", "chirp")
    assert res.exit_code == 0, res.output
    audio, _ = sf.read(result / "chirp.wav")
    tt = np.arange(4000) / FS
    chirp = 0.5 * np.cos(2 * np.pi * (2000 * tt + 800 * tt * tt))
    inner = slice(N_FFT, -N_FFT)
    assert _snr(chirp[inner], audio[inner]) > 20
    res = run("extract", result, "--band", "500:900", "--time", "0.1:0.2", "--name", "burst")
    audio, _ = sf.read(result / "burst.wav")
    assert np.abs(audio[: int(0.05 * FS)]).max() < 1e-3 < np.abs(audio[int(0.14 * FS)])


@pytest.mark.parametrize("args, message", [
    (["--band", "0:5000"], "band 0:5000 Hz lies outside 0…4000 Hz (Nyquist)"),
    (["--band", "10:20"], "band 10:20 Hz holds no frequency bin (bins are 31.25 Hz apart)"),
    (["--band", "0:1000", "--time", "3:4"], "time range 3:4 s holds no frame"),
])
def test_bad_bands_are_one_line_and_write_nothing(result, args, message):
    before = sorted(p.name for p in result.iterdir())
    res = run("extract", result, *args)
    assert res.exit_code == 1
    assert error_lines(res) == [f"{result}: {message}"]
    assert sorted(p.name for p in result.iterdir()) == before


@pytest.mark.parametrize("rows, message", [
    ([(0.0, 500.0), (0.2, 500.0)], "another recording"),
    ([(0.0, 500.0), (0.5, 4500.0)], "another sample rate"),
])
def test_ridges_of_another_recording_are_refused(result, tmp_path, rows, message):
    ridge = tmp_path / "other.csv"
    ridge.write_text("time_s,frequency_hz\n" + "".join(f"{a},{b}\n" for a, b in rows))
    res = run("extract", result, "--ridge", ridge, "--width", "50")
    assert res.exit_code == 1
    (line,) = error_lines(res)
    assert line.startswith(f"{ridge}: the ridge") and message in line
    assert not list(result.glob("ridge_*"))


@pytest.mark.parametrize("args, words", [
    ([], "either --band"), (["--band", "300:200"], "'--band'"), (["--band", "a:b"], "LOW:HIGH"),
    (["--ridge", "{csv}"], "--width"), (["--band", "0:100", "--width", "3"], "--width"),
])
def test_option_mistakes_are_usage_errors(result, tmp_path, args, words):
    (tmp_path / "r.csv").write_text("time_s,frequency_hz\n0,1\n1,1\n")
    args = [a.replace("{csv}", str(tmp_path / "r.csv")) for a in args]
    res = run("extract", result, *args)
    assert res.exit_code == 2 and len(error_lines(res)) == 1 and words in res.stderr


def test_extract_from_a_folder_that_is_no_result(tmp_path):
    (tmp_path / "plain").mkdir()
    res = run("extract", tmp_path / "plain", "--band", "0:100")
    assert res.exit_code == 1
    assert error_lines(res) == [f"{tmp_path / 'plain'}: not a result folder (no params.json)"]


# --------------------------------------------------------------------------------------------
# track --ridges


def test_track_ridges_keep_crossing_chirps_apart(tmp_path):
    t = np.arange(8000) / FS
    rising = np.linspace(1.0, 0.8, t.size) * np.cos(2 * np.pi * (500 * t + 1500 * t * t))
    falling = np.linspace(0.8, 1.0, t.size) * np.cos(2 * np.pi * (3500 * t - 1500 * t * t))
    sf.write(tmp_path / "cross.wav", (0.45 * (rising + falling)).astype(np.float32), FS,
             subtype="FLOAT")
    res = run("track", tmp_path / "cross.wav", "--mode", "constant", "--n-fft", N_FFT, "--hop", 32,
              "--ridges", 2, "-o", tmp_path / "out", "--no-plots", "-q")
    assert res.exit_code == 0, res.output
    folder = tmp_path / "out" / "cross.track"
    params = json.loads((folder / "params.json").read_text())
    assert params["ridges"] == 2
    ridges = [np.loadtxt(folder / f"ridge_{k}.csv", delimiter=",", skiprows=1) for k in (1, 2)]
    truths = [lambda s: 500 + 3000 * s, lambda s: 3500 - 3000 * s]
    for ridge, truth in zip(ridges, truths, strict=True):
        times, freqs = ridge[:, 0], ridge[:, 1]
        away = (np.abs(times - 0.5) > 0.03) & (times > 0.03) & (times < 0.97)
        assert np.abs(freqs - truth(times))[away].max() < 10  # Hz; bins are 31 Hz apart
    assert not (folder / "ridge_3.csv").exists()
