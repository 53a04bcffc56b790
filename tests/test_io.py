"""dstft_cli.io: readers (every format, every bad input) and the atomic writers / result folders."""

from __future__ import annotations

import hashlib
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dstft_cli import io
from dstft_cli.io import InputError, ResultExists, load_signal

SAMPLE_DATA = Path(__file__).resolve().parent.parent / "sample_data"


def tone(n: int = 800, f: float = 440.0, fs: float = 8000.0) -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * f * np.arange(n) / fs)


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def assert_input_error(exc_info, path: Path, *fragments: str) -> None:
    msg = str(exc_info.value)
    assert msg.startswith(f"{path}: "), msg
    assert "\n" not in msg
    for fragment in fragments:
        assert fragment in msg, msg


# ---------------------------------------------------------------------------------------------
# audio
# ---------------------------------------------------------------------------------------------

def test_wav_int16_round_trip_gives_exact_floats(tmp_path):
    pcm = np.array([0, 16384, -16384, -32768, 32767, 1, -1], dtype=np.int16)
    path = tmp_path / "pcm.wav"
    sf.write(path, pcm, 8000, subtype="PCM_16")
    sig = load_signal(path)
    assert sig.data.dtype == np.float64
    assert sig.data.shape == (1, pcm.size)
    np.testing.assert_array_equal(sig.data[0], pcm / 32768.0)
    assert sig.sample_rate == 8000.0
    assert sig.channels_in_file == 1
    assert sig.path == path
    assert sig.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert sig.frames == pcm.size and sig.channels == 1
    assert not sig.data.flags.writeable


def test_wav_pcm24_and_float(tmp_path):
    x = tone()
    sf.write(tmp_path / "a.wav", x, 16000, subtype="PCM_24")
    sf.write(tmp_path / "b.wav", x, 16000, subtype="FLOAT")
    a, b = load_signal(tmp_path / "a.wav"), load_signal(tmp_path / "b.wav")
    np.testing.assert_allclose(a.data[0], x, atol=2 ** -23)
    np.testing.assert_allclose(b.data[0], x, atol=1e-7)
    assert a.sample_rate == b.sample_rate == 16000


def test_stereo_channel_selection(tmp_path):
    left, right = tone(f=300), tone(f=900) * 0.5
    path = tmp_path / "st.wav"
    sf.write(path, np.column_stack([left, right]), 8000, subtype="FLOAT")
    mix = load_signal(path)
    np.testing.assert_allclose(mix.data[0], (left + right) / 2, atol=1e-7)
    assert mix.channels_in_file == 2 and mix.channels == 1
    one = load_signal(path, channel=1)
    np.testing.assert_allclose(one.data[0], right, atol=1e-7)
    assert load_signal(path, channel="0").data.shape == (1, left.size)
    both = load_signal(path, channel="all")
    assert both.data.shape == (2, left.size)
    with pytest.raises(InputError) as err:
        load_signal(path, channel=2)
    assert_input_error(err, path, "channel 2 out of range", "2 channels")
    with pytest.raises(InputError) as err:
        load_signal(path, channel="left")
    assert_input_error(err, path, "bad channel 'left'")


@pytest.mark.parametrize("ext,fmt", [(".flac", "FLAC"), (".ogg", "OGG")])
def test_flac_and_ogg(tmp_path, ext, fmt):
    x = tone(4000)
    path = tmp_path / f"x{ext}"
    sf.write(path, x, 8000, format=fmt)
    sig = load_signal(path)
    assert sig.sample_rate == 8000
    assert sig.data.shape[0] == 1
    if fmt == "FLAC":
        np.testing.assert_allclose(sig.data[0], x, atol=2 ** -15)
    else:  # lossy: same length, similar energy
        assert abs(sig.data.shape[1] - x.size) < 100
        assert np.std(sig.data) == pytest.approx(np.std(x), rel=0.2)


def test_shipped_samples_load():
    for name in ("three_components.wav", "shocks.wav", "harmonics.wav"):
        sig = load_signal(SAMPLE_DATA / name)
        assert sig.sample_rate == 8000 and sig.channels == 1
    vib = load_signal(SAMPLE_DATA / "vibration.csv")
    assert vib.sample_rate == 2000 and vib.frames == 4000
    npy = load_signal(SAMPLE_DATA / "stereo_chirp.npy", sample_rate=8000, channel="all")
    assert npy.data.shape == (2, 8000)
    fsdd = io.iter_inputs([SAMPLE_DATA / "fsdd"])
    assert len(fsdd) >= 6
    assert len({p.name.split("_")[0] for p in fsdd}) >= 2


# ---------------------------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------------------------

def test_csv_single_column_no_header(tmp_path):
    path = write_csv(tmp_path / "a.csv", "0.5\n-0.25\n1e-3\n\n")
    sig = load_signal(path, sample_rate=100)
    np.testing.assert_array_equal(sig.data, [[0.5, -0.25, 1e-3]])
    assert sig.sample_rate == 100


def test_csv_needs_a_sample_rate(tmp_path):
    path = write_csv(tmp_path / "a.csv", "1\n2\n3\n")
    with pytest.raises(InputError) as err:
        load_signal(path)
    assert_input_error(err, path, "no sample rate", "--sample-rate")


def test_csv_header_and_time_column(tmp_path):
    t = np.arange(50) / 250.0
    x = np.cos(t * 30)
    lines = ["time_s,acceleration,other"]
    lines += [f"{a:.6f},{float(b)!r},{float(2 * b)!r}" for a, b in zip(t, x, strict=True)]
    path = write_csv(tmp_path / "v.csv", "\n".join(lines) + "\n")
    sig = load_signal(path, column="acceleration")
    assert sig.sample_rate == 250.0
    np.testing.assert_array_equal(sig.data[0], x)
    np.testing.assert_array_equal(load_signal(path, column=2).data[0], 2 * x)
    np.testing.assert_array_equal(load_signal(path, column="2").data[0], 2 * x)
    np.testing.assert_array_equal(load_signal(path, column="OTHER").data[0], 2 * x)
    # the file's own rate wins over the argument
    assert load_signal(path, column=1, sample_rate=8000).sample_rate == 250.0
    with pytest.raises(InputError) as err:
        load_signal(path)
    assert_input_error(err, path, "3 columns", "time_s, acceleration, other", "--column")
    with pytest.raises(InputError) as err:
        load_signal(path, column="pressure")
    assert_input_error(err, path, "no column named 'pressure'")
    with pytest.raises(InputError) as err:
        load_signal(path, column=7)
    assert_input_error(err, path, "column 7 out of range")


def test_csv_time_plus_one_column_needs_no_choice(tmp_path):
    path = write_csv(tmp_path / "v.csv", "t;x\n0;1\n0.5;2\n1.0;3\n")
    sig = load_signal(path)
    assert sig.sample_rate == 2.0
    np.testing.assert_array_equal(sig.data, [[1, 2, 3]])


def test_csv_time_in_ms(tmp_path):
    path = write_csv(tmp_path / "v.csv", "time_ms,x\n0,1\n0.125,2\n0.25,3\n")
    assert load_signal(path).sample_rate == 8000.0


def test_csv_unnamed_uniform_first_column_gives_rate(tmp_path):
    path = write_csv(tmp_path / "v.csv", "0.0,1\n0.001,2\n0.002,3\n0.003,4\n")
    sig = load_signal(path, column=1)
    assert sig.sample_rate == 1000.0
    # an explicit rate is preferred over a guessed time column
    assert load_signal(path, column=1, sample_rate=50).sample_rate == 50


def test_csv_named_time_column_must_be_uniform(tmp_path):
    path = write_csv(tmp_path / "v.csv", "time,x\n0,1\n0.1,2\n0.5,3\n")
    with pytest.raises(InputError) as err:
        load_signal(path)
    assert_input_error(err, path, "not uniformly spaced")
    path = write_csv(tmp_path / "w.csv", "time,x\n0,1\n0.1,2\n0.1,3\n")
    with pytest.raises(InputError) as err:
        load_signal(path)
    assert_input_error(err, path, "not strictly increasing")


def test_csv_name_on_headerless_file(tmp_path):
    path = write_csv(tmp_path / "a.csv", "1,2\n3,4\n")
    with pytest.raises(InputError) as err:
        load_signal(path, column="x", sample_rate=1)
    assert_input_error(err, path, "no header row")


@pytest.mark.parametrize("text,fragment", [
    ("x\n1\n2\nabc\n", "line 4, column 1: 'abc' is not a number"),
    ("1,2\n3\n", "line 2 has 1 fields, expected 2"),
    ("x\n", "a header but no data rows"),
    ("# only a comment\n\n", "no data rows"),
])
def test_csv_unparsable(tmp_path, text, fragment):
    path = write_csv(tmp_path / "bad.csv", text)
    with pytest.raises(InputError) as err:
        load_signal(path, sample_rate=10, column=0)
    assert_input_error(err, path, "unparsable CSV", fragment)


def test_csv_binary_content(tmp_path):
    path = tmp_path / "bin.csv"
    path.write_bytes(b"\x00\xff\xfe\x01" * 20)
    with pytest.raises(InputError) as err:
        load_signal(path, sample_rate=10)
    assert_input_error(err, path, "unparsable CSV")


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=hnp.arrays(np.float64, st.integers(1, 60), elements=finite),
       header=st.booleans(), delimiter=st.sampled_from([",", ";", "\t"]))
def test_csv_round_trip(tmp_path, values, header, delimiter):
    if not np.any(values):
        values = values.copy()
        values[0] = 1.0
    rows = [f"{i / 100!r}{delimiter}{float(v)!r}" for i, v in enumerate(values)]
    text = ("time" + delimiter + "value\n" if header else "") + "\n".join(rows) + "\n"
    path = write_csv(tmp_path / "rt.csv", text)
    sig = load_signal(path, column=1, sample_rate=None if values.size > 1 else 100.0)
    np.testing.assert_array_equal(sig.data[0], values)
    if values.size > 1:
        assert sig.sample_rate == 100.0


# ---------------------------------------------------------------------------------------------
# NPY / NPZ
# ---------------------------------------------------------------------------------------------

def test_npy_1d_and_2d_orientation(tmp_path):
    x = tone(100)
    np.save(tmp_path / "a.npy", x.astype(np.float32))
    sig = load_signal(tmp_path / "a.npy", sample_rate=8000)
    assert sig.data.shape == (1, 100) and sig.data.dtype == np.float64
    np.testing.assert_allclose(sig.data[0], x, rtol=1e-6)
    frames_first = np.column_stack([x, 2 * x, 3 * x])           # (frames, channels)
    np.save(tmp_path / "b.npy", frames_first)
    sig = load_signal(tmp_path / "b.npy", sample_rate=8000, channel="all")
    assert sig.data.shape == (3, 100)
    np.testing.assert_array_equal(sig.data[2], 3 * x)
    np.save(tmp_path / "c.npy", np.arange(1, 11, dtype=np.int16))
    np.testing.assert_array_equal(load_signal(tmp_path / "c.npy", sample_rate=1).data[0],
                                  np.arange(1, 11))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=st.tuples(st.integers(1, 5), st.integers(6, 40)), transpose=st.booleans())
def test_npy_shorter_axis_is_channels(tmp_path, shape, transpose):
    arr = np.random.default_rng(0).standard_normal(shape) + 1.0
    np.save(tmp_path / "r.npy", arr.T if transpose else arr)
    sig = load_signal(tmp_path / "r.npy", sample_rate=10, channel="all")
    np.testing.assert_array_equal(sig.data, arr)


def test_npy_needs_sample_rate(tmp_path):
    np.save(tmp_path / "a.npy", tone(50))
    with pytest.raises(InputError) as err:
        load_signal(tmp_path / "a.npy")
    assert_input_error(err, tmp_path / "a.npy", "no sample rate", "--sample-rate")
    with pytest.raises(InputError) as err:
        load_signal(tmp_path / "a.npy", sample_rate=-5)
    assert_input_error(err, tmp_path / "a.npy", "positive")


def test_npy_more_than_2d(tmp_path):
    path = tmp_path / "cube.npy"
    np.save(path, np.ones((2, 3, 4)))
    with pytest.raises(InputError) as err:
        load_signal(path, sample_rate=10)
    assert_input_error(err, path, "3 dimensions", "(2, 3, 4)")


def test_npy_object_array_refused(tmp_path):
    path = tmp_path / "obj.npy"
    np.save(path, np.array([1, "a", None], dtype=object), allow_pickle=True)
    with pytest.raises(InputError) as err:
        load_signal(path, sample_rate=10)
    assert_input_error(err, path, "pickled data", "refused")


def test_raw_pickle_with_npy_extension_refused(tmp_path):
    path = tmp_path / "evil.npy"
    path.write_bytes(pickle.dumps([1.0, 2.0]))
    with pytest.raises(InputError) as err:
        load_signal(path, sample_rate=10)
    assert_input_error(err, path, "pickled data")


def test_truncated_and_fake_npy(tmp_path):
    good = tmp_path / "good.npy"
    np.save(good, np.arange(1000.0))
    cut = tmp_path / "cut.npy"
    cut.write_bytes(good.read_bytes()[:500])
    with pytest.raises(InputError) as err:
        load_signal(cut, sample_rate=10)
    assert_input_error(err, cut, "corrupt or truncated .npy")
    fake = write_csv(tmp_path / "fake.npy", "hello")
    with pytest.raises(InputError) as err:
        load_signal(fake, sample_rate=10)
    assert_input_error(err, fake, "not a NumPy .npy file")


def test_npz_key_selection(tmp_path):
    path = tmp_path / "z.npz"
    np.savez(path, left=tone(64), right=2 * tone(64))
    with pytest.raises(InputError) as err:
        load_signal(path, sample_rate=8000)
    assert_input_error(err, path, "holds 2 arrays", "left, right", "--key")
    np.testing.assert_array_equal(load_signal(path, key="right", sample_rate=8000).data[0],
                                  2 * tone(64))
    with pytest.raises(InputError) as err:
        load_signal(path, key="centre", sample_rate=8000)
    assert_input_error(err, path, "no array named 'centre'", "left, right")


def test_npz_single_array_and_rate_entry(tmp_path):
    path = tmp_path / "one.npz"
    np.savez(path, signal=tone(64), sample_rate=np.float64(4000))
    sig = load_signal(path)
    assert sig.sample_rate == 4000
    np.testing.assert_array_equal(sig.data[0], tone(64))
    path2 = tmp_path / "two.npz"
    np.savez_compressed(path2, x=tone(64))
    assert load_signal(path2, sample_rate=10).data.shape == (1, 64)


def test_npz_object_array_and_corrupt_zip(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(InputError) as err:
        load_signal(path, sample_rate=10)
    assert_input_error(err, path, "pickled data")
    cut = tmp_path / "cut.npz"
    np.savez(tmp_path / "ok.npz", x=np.arange(5000.0))
    cut.write_bytes((tmp_path / "ok.npz").read_bytes()[:3000])
    with pytest.raises(InputError) as err:
        load_signal(cut, sample_rate=10)
    assert_input_error(err, cut, "corrupt or truncated .npz")


def test_npz_with_bad_zip_member(tmp_path):
    path = tmp_path / "junk.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", b"not an array")
    with pytest.raises(InputError) as err:
        load_signal(path, sample_rate=10)
    assert_input_error(err, path, ".npz")


# ---------------------------------------------------------------------------------------------
# bad inputs common to every format
# ---------------------------------------------------------------------------------------------

def _truncated_wav(tmp_path: Path) -> Path:
    full = tmp_path / "full.wav"
    sf.write(full, tone(4000), 8000, subtype="PCM_16")
    path = tmp_path / "truncated.wav"
    path.write_bytes(full.read_bytes()[:3000])
    return path


def _truncated_flac(tmp_path: Path) -> Path:
    full = tmp_path / "full.flac"
    sf.write(full, np.random.default_rng(0).standard_normal(8000) * 0.1, 8000, format="FLAC")
    path = tmp_path / "truncated.flac"
    path.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    return path


def _header_only_wav(tmp_path: Path) -> Path:
    path = tmp_path / "header.wav"
    sf.write(path, np.zeros(0), 8000, subtype="PCM_16")
    return path


def _nan_wav(tmp_path: Path) -> Path:
    x = tone(100)
    x[37] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, x, 8000, subtype="FLOAT")
    return path


def _inf_npy(tmp_path: Path) -> Path:
    x = tone(100)
    x[5] = np.inf
    np.save(tmp_path / "inf.npy", x)
    return tmp_path / "inf.npy"


def _nan_csv(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "nan.csv", "1\nnan\n2\n")


def _zeros_wav(tmp_path: Path) -> Path:
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(800), 8000, subtype="PCM_16")
    return path


def _zeros_csv(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "zeros.csv", "x\n0\n0.0\n-0\n")


def _empty(name: str):
    def make(tmp_path: Path) -> Path:
        path = tmp_path / name
        path.write_bytes(b"")
        return path
    return make


def _text_as(name: str):
    def make(tmp_path: Path) -> Path:
        return write_csv(tmp_path / name, "this is not audio, just some text\n" * 5)
    return make


BAD_INPUTS = {
    "missing": (lambda p: p / "nope.wav", "no such file"),
    "directory": (lambda p: (p / "adir.wav").mkdir() or p / "adir.wav", "is a directory"),
    "unsupported": (lambda p: write_csv(p / "notes.txt", "1\n2\n"), "unsupported file type .txt"),
    "no-extension": (lambda p: write_csv(p / "README", "1\n"), "unsupported file type"),
    "empty-wav": (_empty("e.wav"), "empty file"),
    "empty-csv": (_empty("e.csv"), "empty file"),
    "empty-npy": (_empty("e.npy"), "empty file"),
    "text-as-wav": (_text_as("speech.wav"), "not a WAV audio file"),
    "text-as-flac": (_text_as("speech.flac"), "not a FLAC audio file"),
    "text-as-ogg": (_text_as("speech.ogg"), "not a Ogg audio file"),
    "truncated-wav": (_truncated_wav, "truncated WAV file"),
    "truncated-flac": (_truncated_flac, "corrupt or truncated FLAC"),
    "header-only-wav": (_header_only_wav, "no audio samples"),
    "nan-wav": (_nan_wav, "non-finite values (NaN; first at sample 37"),
    "inf-npy": (_inf_npy, "non-finite values (Inf; first at sample 5"),
    "nan-csv": (_nan_csv, "non-finite values"),
    "all-zero-wav": (_zeros_wav, "all zeros"),
    "all-zero-csv": (_zeros_csv, "all zeros"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_names_file_and_problem(tmp_path, case):
    make, fragment = BAD_INPUTS[case]
    path = make(tmp_path)
    with pytest.raises(InputError) as err:
        load_signal(path, sample_rate=8000)
    assert_input_error(err, path, fragment)
    assert path.name in str(err.value)


def test_unreadable_file(tmp_path, monkeypatch):
    path = tmp_path / "locked.wav"
    sf.write(path, tone(), 8000)
    real_open = open

    def deny(file, *args, **kwargs):
        if Path(file) == path:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(io, "open", deny, raising=False)
    with pytest.raises(InputError) as err:
        load_signal(path)
    assert_input_error(err, path, "cannot read file (permission denied)")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads anything")
def test_unreadable_file_chmod(tmp_path):
    path = tmp_path / "locked.wav"
    sf.write(path, tone(), 8000)
    path.chmod(0)
    try:
        with pytest.raises(InputError) as err:
            load_signal(path)
        assert_input_error(err, path, "permission denied")
    finally:
        path.chmod(0o644)


def test_check_length(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, tone(300), 8000)
    sig = load_signal(path)
    io.check_length(sig, 300)
    with pytest.raises(InputError) as err:
        io.check_length(sig, 1024)
    assert_input_error(err, path, "too short for the window (300 samples < n_fft 1024)")
    with pytest.raises(InputError, match=r"^x\.npy: too short"):
        io.check_length(np.zeros((1, 10)), 11, "x.npy")


def test_input_error_is_one_line():
    err = InputError("a/b.wav", "libsndfile said:\n  bad\tthings")
    assert str(err) == "a/b.wav: libsndfile said: bad things"
    assert err.path == Path("a/b.wav")


# ---------------------------------------------------------------------------------------------
# inputs, hashes
# ---------------------------------------------------------------------------------------------

def test_iter_inputs(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / ".hidden").mkdir()
    for rel in ["d/b.wav", "d/a.CSV", "d/sub/c.npz", "d/sub/z.npy", "d/notes.txt",
                "d/.x.wav", "d/.hidden/h.wav", "lone.txt"]:
        (tmp_path / rel).write_bytes(b"x")
    got = io.iter_inputs([tmp_path / "d", tmp_path / "lone.txt", tmp_path / "d" / "b.wav"])
    rel = [p.relative_to(tmp_path).as_posix() for p in got]
    assert rel == ["d/a.CSV", "d/b.wav", "d/sub/c.npz", "d/sub/z.npy", "lone.txt"]
    with pytest.raises(InputError) as err:
        io.iter_inputs([tmp_path / "d", tmp_path / "gone"])
    assert_input_error(err, tmp_path / "gone", "no such file or directory")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "readme.md").write_text("x")
    with pytest.raises(InputError) as err:
        io.iter_inputs([tmp_path / "empty"])
    assert_input_error(err, tmp_path / "empty", "no supported files")


def test_sha256_file(tmp_path):
    data = os.urandom(3 * 1024 + 7)
    (tmp_path / "f").write_bytes(data)
    assert io.sha256_file(tmp_path / "f", chunk_size=1024) == hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------
# atomic writes
# ---------------------------------------------------------------------------------------------

def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_atomic_writes(tmp_path):
    io.atomic_write_text(tmp_path / "a.txt", "héllo\n")
    io.atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    io.atomic_save_npz(tmp_path / "c.npz", magnitude=np.ones((2, 3), np.float32), t=np.arange(3))
    io.atomic_write_json(tmp_path / "d.json", {"x": np.float32(1.5), "a": np.arange(2),
                                               "nan": float("nan"), "p": Path("q")})
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    with np.load(tmp_path / "c.npz") as z:
        assert z["magnitude"].dtype == np.float32 and z["t"].tolist() == [0, 1, 2]
    assert (tmp_path / "d.json").read_text() == (
        '{\n  "x": 1.5,\n  "a": [\n    0,\n    1\n  ],\n  "nan": null,\n  "p": "q"\n}\n')
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.bin", "c.npz", "d.json"]
    mode = (tmp_path / "a.txt").stat().st_mode & 0o777
    assert mode == 0o666 & ~io._umask()


def test_atomic_failure_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "result.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with io.atomic_open(target, "w") as fh:
            fh.write("new half")
            raise RuntimeError("disk on fire")
    assert target.read_text() == "old"
    assert _no_temp_files(tmp_path)

    class Boom:
        def __array__(self, *args, **kwargs):
            raise ValueError("cannot convert")

    with pytest.raises(ValueError):
        io.atomic_save_npz(tmp_path / "s.npz", good=np.ones(3), bad=Boom())
    assert not (tmp_path / "s.npz").exists()
    assert _no_temp_files(tmp_path)

    class BadFigure:
        def savefig(self, fh, **kwargs):
            fh.write(b"partial png")
            raise OSError("renderer crashed")

    with pytest.raises(OSError, match="renderer crashed"):
        io.atomic_savefig(BadFigure(), tmp_path / "fig.png")
    assert not (tmp_path / "fig.png").exists()
    assert _no_temp_files(tmp_path)


def test_atomic_savefig_format_from_suffix(tmp_path):
    seen = {}

    class Fig:
        def savefig(self, fh, **kwargs):
            seen.update(kwargs)
            fh.write(b"data")

    io.atomic_savefig(Fig(), tmp_path / "x.SVG", dpi=50)
    assert seen == {"format": "svg", "dpi": 50}


# ---------------------------------------------------------------------------------------------
# result folders
# ---------------------------------------------------------------------------------------------

def test_result_dir_success(tmp_path):
    out = tmp_path / "out"
    with io.result_dir(out, "speech", overwrite=False) as rd:
        assert rd.path.parent == out and rd.path.name.startswith(".speech.tmp-")
        assert not (out / "speech").exists()
        rd.save_npz("spectrogram.npz", magnitude=np.ones((3, 4)))
        rd.write_text("note.txt", "hi")
        rd.set_params({"mode": "constant", "window_length": np.float64(401.5)})
        assert not (rd.path / "params.json").exists()      # written last, at commit
    final = out / "speech"
    assert sorted(p.name for p in final.iterdir()) == ["note.txt", "params.json", "spectrogram.npz"]
    assert '"window_length": 401.5' in (final / "params.json").read_text()
    assert [p.name for p in out.iterdir()] == ["speech"]
    assert final.stat().st_mode & 0o777 == 0o777 & ~io._umask()


def test_result_dir_params_json_is_last(tmp_path, monkeypatch):
    order = []
    real = io.atomic_write_text

    def spy(path, text, encoding="utf-8"):
        order.append(Path(path).name)
        return real(path, text, encoding)

    monkeypatch.setattr(io, "atomic_write_text", spy)
    with io.result_dir(tmp_path, "r") as rd:
        rd.set_params({"a": 1})
        rd.write_text("late.txt", "x")
    assert order == ["late.txt", "params.json"]


def test_result_dir_failure_leaves_nothing(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with io.result_dir(tmp_path, "bad") as rd:
            rd.write_text("partial.txt", "x")
            rd.set_params({"a": 1})
            1 / 0  # noqa: B018
    assert list(tmp_path.iterdir()) == []


def test_result_dir_refuses_to_clobber(tmp_path):
    (tmp_path / "speech").mkdir()
    (tmp_path / "speech" / "params.json").write_text("{}")
    with pytest.raises(ResultExists) as err:
        io.result_dir(tmp_path, "speech")
    assert str(err.value) == f"{tmp_path / 'speech'}: result folder exists (use --overwrite to replace it)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["speech"]


def test_result_dir_overwrite_replaces_only_on_success(tmp_path):
    old = tmp_path / "speech"
    old.mkdir()
    (old / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with io.result_dir(tmp_path, "speech", overwrite=True) as rd:
            rd.write_text("new.txt", "new")
            raise RuntimeError("optimiser failed")
    assert [p.name for p in old.iterdir()] == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["speech"]

    with io.result_dir(tmp_path, "speech", overwrite=True) as rd:
        assert (old / "old.txt").exists()                  # old one kept until success
        rd.write_text("new.txt", "new")
    assert [p.name for p in old.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["speech"]


def test_result_dir_race_without_overwrite(tmp_path):
    rd = io.result_dir(tmp_path, "speech")
    rd.write_text("a.txt", "a")
    (tmp_path / "speech").mkdir()                           # appeared meanwhile
    (tmp_path / "speech" / "other.txt").write_text("theirs")
    with pytest.raises(ResultExists):
        rd.commit()
    assert [p.name for p in (tmp_path / "speech").iterdir()] == ["other.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["speech"]


@pytest.mark.parametrize("stem", ["", ".", "..", "a/b"])
def test_result_dir_bad_stem(tmp_path, stem):
    with pytest.raises(ValueError):
        io.result_dir(tmp_path, stem)
