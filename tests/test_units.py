"""Lengths in samples or durations, sample-rate defaults, finite-number checks."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dstft_cli.units import (
    MAX_DURATION_S,
    UnitError,
    auto_n_fft_cap,
    default_hop,
    default_n_fft,
    finite,
    format_length,
    is_duration,
    parse_length,
    to_samples,
)


@pytest.mark.parametrize("text, expected", [
    ("512", 512.0), (512, 512.0), ("24.5", 24.5), ("20ms", "20ms"), ("0.02s", "0.02s"),
    (" 20MS ", "20ms"), ("1e3us", "1e3us"), ("250µs", "250us"), (".5s", ".5s"),
])
def test_parse_length_accepts_samples_and_durations(text, expected):
    assert parse_length(text) == expected


def test_integer_lengths_and_auto():
    assert parse_length("512", integer=True) == 512 and isinstance(parse_length(512.0,
                                                                                integer=True), int)
    assert parse_length("auto", allow_auto=True) == "auto"
    with pytest.raises(UnitError, match="whole number"):
        parse_length("512.5", integer=True)
    with pytest.raises(UnitError):
        parse_length("auto")


@pytest.mark.parametrize("text, words", [
    ("10 ms", "no space between number and unit"), ("-5ms", "must be > 0"), ("1e9s", "longer"),
    ("abc", "is not"), ("nan", "is not"), ("inf", "is not"), (math.nan, "expected"),
    (math.inf, "expected"), ("0ms", "must be > 0"), ("0", "must be > 0"), ("5 kHz", "space"),
    ("5min", "unknown unit"), ("", "is not"), ("1e-300", "≥ 1 sample"), (True, "expected"),
    (None, "expected"), ("1e12", "more than"), ("20m s", "is not"),
])
def test_malformed_lengths_are_refused(text, words):
    with pytest.raises(UnitError, match=words):
        parse_length(text)


def test_to_samples_rounds_per_quantity():
    assert to_samples("20ms", 8000) == pytest.approx(160.0)
    assert to_samples("20ms", 44100, integer=True) == 882
    assert to_samples("0.1ms", 44100, integer=True) == 4
    assert to_samples("23ms", 44100, even=True) == 1014  # 1014.3 → nearest even
    assert to_samples(512, 44100, integer=True) == 512  # samples stay samples
    with pytest.raises(UnitError, match="at least 1"):
        to_samples("0.01ms", 8000)
    with pytest.raises(UnitError, match="resolved"):
        to_samples("auto", 8000)
    with pytest.raises(UnitError, match="sample rate"):
        to_samples("20ms", math.nan)


@given(st.floats(0.001, MAX_DURATION_S), st.sampled_from([8000, 16000, 22050, 44100, 48000]))
def test_durations_convert_to_seconds_times_rate(seconds, rate):
    spec = parse_length(f"{seconds!r}s")
    assert is_duration(spec)
    if seconds * rate >= 1:
        assert to_samples(spec, rate) == pytest.approx(seconds * rate, rel=1e-12)


@pytest.mark.parametrize("rate, n_fft", [(8000, 1024), (16000, 2048), (22050, 2048),
                                         (44100, 4096), (48000, 4096), (100, 16)])
def test_default_n_fft_is_the_power_of_two_within_128_ms(rate, n_fft):
    assert default_n_fft(rate) == n_fft
    assert n_fft <= 0.128 * rate or n_fft == 16
    assert default_hop(n_fft) == n_fft // 8


def test_auto_cap_is_16_times_the_default_and_fits_the_signal():
    assert auto_n_fft_cap(44100, 10**7) == 16 * 4096
    assert auto_n_fft_cap(44100, 10000) == 8192


def test_finite_and_format():
    assert finite("2.5", low=0) == 2.5
    for bad in ("nan", "inf", "-inf", "x", None, True, 1e400):
        with pytest.raises(UnitError):
            finite(bad)
    with pytest.raises(UnitError, match="> 0"):
        finite(0, low=0, low_open=True)
    assert format_length(2250, 44100) == "2250.0 samples (51.0 ms)"


def test_with_ms_puts_each_length_in_ms_beside_it():
    from dstft_cli.units import with_ms

    record = {"n_fft": 512, "hop": 64, "window_length": {"min": 80.0, "median": 160.0, "max": 400.0},
              "fixed_windows": [8, 16], "lr": 4.0, "min_length": None, "hop_ms": 99.0}
    out = with_ms(record, 8000.0)
    assert list(out)[:3] == ["n_fft", "n_fft_ms", "hop"]
    assert out["n_fft_ms"] == 64.0 and out["hop_ms"] == 99.0  # a value already there stays
    assert out["window_length_ms"] == {"min": 10.0, "median": 20.0, "max": 50.0}
    assert out["fixed_windows_ms"] == [1.0, 2.0]
    assert "lr_ms" not in out and "min_length_ms" not in out
    assert with_ms(record, None) is record and with_ms(record, float("nan")) is record
