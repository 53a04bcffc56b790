"""Lengths given in samples or as durations, sample-rate defaults, and finite-number checks.

Every length option and TOML key (``n_fft``, ``hop``, ``init_length``, ``min_length``,
``max_length`` and the task commands' equivalents) accepts

* a number of samples: ``512``, ``24.5`` (integers only where the quantity is an integer), or
* a duration: a number directly followed by ``ms``, ``s`` or ``us``: ``20ms``, ``0.02s``.

Samples are the unit of record: a duration is kept as written (a *spec*) until the sample rate
of an input is known, and :func:`to_samples` converts it for that input. Malformed values
(``10 ms``, ``-5ms``, ``1e9s``, ``abc``, ``nan``, ``inf``) raise :class:`UnitError`, whose message
names the problem (the caller adds the option or key).

The rule for sample-rate defaults (:func:`default_n_fft`, :func:`default_hop`): the DFT size is the
largest power of two not above 128 ms of signal (1024 at 8 kHz, 2048 at 16 kHz, 4096 at 44.1
and 48 kHz) and the hop is an eighth of it (16 ms at 8 kHz, 11.6 ms at 44.1 kHz).

This module imports neither torch nor click.
"""

from __future__ import annotations

import math
import re

__all__ = [
    "UnitError", "LengthSpec", "parse_length", "is_duration", "to_samples", "format_length",
    "finite", "default_n_fft", "default_hop", "auto_n_fft_cap", "DEFAULT_WINDOW_S",
    "AUTO_GROWTH", "MAX_DURATION_S", "MAX_SAMPLES", "SAMPLE_KEYS", "in_ms", "with_ms",
]

#: A length as configured: samples (int or float), a duration string such as ``"20ms"``, or
#: ``"auto"`` (n_fft only).
LengthSpec = int | float | str

#: Longest duration accepted for a length (a window of ten minutes is never meant).
MAX_DURATION_S = 600.0
#: Most samples accepted for a length (the frame index arithmetic stays in int32 range).
MAX_SAMPLES = 2**31 - 1
#: The default DFT size covers at most this much signal (see :func:`default_n_fft`).
DEFAULT_WINDOW_S = 0.128
#: ``n_fft = "auto"`` doubles the DFT size at most this many times beyond the default
#: (16 × the default: about 2 s of signal; see :func:`auto_n_fft_cap`).
AUTO_GROWTH = 4

_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6}
_NUMBER = r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_LENGTH_RE = re.compile(rf"^(?P<sign>[+-]?)(?P<number>{_NUMBER})(?P<unit>[a-zµ]*)$")


class UnitError(ValueError):
    """A length or number is malformed or out of range; ``str()`` is the problem, one line."""


def finite(value, *, what: str = "value", low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False) -> float:
    """``float(value)`` when it is a finite number within the bounds, else :class:`UnitError`."""
    if isinstance(value, bool):
        raise UnitError(f"{what} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise UnitError(f"{what} must be a number, got {_short(value)}") from None
    if not math.isfinite(number):
        raise UnitError(f"{what} must be a finite number, got {_short(value)}")
    if low is not None and (number < low or (low_open and number == low)):
        raise UnitError(f"{what} must be {'>' if low_open else '≥'} {low:g}, got {_short(value)}")
    if high is not None and (number > high or (high_open and number == high)):
        raise UnitError(f"{what} must be {'<' if high_open else '≤'} {high:g}, "
                        f"got {_short(value)}")
    return number


def _short(value) -> str:
    text = repr(value) if not isinstance(value, str) else repr(value.strip())
    return text if len(text) <= 40 else text[:37] + "…"


def parse_length(value, *, integer: bool = False, allow_auto: bool = False) -> LengthSpec:
    """Check a length and return its spec: samples as a number, a duration as a normalised string.

    ``integer``: samples must be a whole number (n_fft, hop). ``allow_auto``: ``"auto"`` is
    accepted (n_fft). Strings that are plain numbers (``"512"``) become numbers.
    """
    kind = "a whole number of samples" if integer else "a number of samples"
    forms = f"{kind} (512) or a duration (20ms, 0.02s)" + (" or auto" if allow_auto else "")
    if isinstance(value, bool) or value is None:
        raise UnitError(f"expected {forms}, got {value!r}")
    if isinstance(value, int | float):
        return _samples(value, integer, forms)
    if not isinstance(value, str):
        raise UnitError(f"expected {forms}, got {_short(value)}")
    text = value.strip().lower()
    if allow_auto and text == "auto":
        return "auto"
    match = _LENGTH_RE.match(text)
    if match is None:
        hint = " (no space between number and unit)" if re.match(
            rf"^[+-]?{_NUMBER}\s+[a-zµ]+$", text) else ""
        raise UnitError(f"{_short(value)} is not {forms}{hint}")
    if match["sign"] == "-":
        raise UnitError(f"{_short(value)}: a length must be > 0")
    unit = match["unit"]
    if not unit:
        return _samples(float(match["number"]) if not integer else _int_text(match["number"],
                                                                              value, forms),
                        integer, forms)
    if unit not in _UNITS:
        raise UnitError(f"{_short(value)}: unknown unit {unit!r}; use ms, s or us")
    seconds = float(match["number"]) * _UNITS[unit]
    if not (math.isfinite(seconds) and seconds > 0):
        raise UnitError(f"{_short(value)}: a length must be > 0")
    if seconds > MAX_DURATION_S:
        raise UnitError(f"{_short(value)} is longer than {MAX_DURATION_S:g} s")
    return f"{match['number']}{'us' if unit == 'µs' else unit}"


def _int_text(number: str, original, forms: str) -> float:
    value = float(number)
    if not value.is_integer():
        raise UnitError(f"{_short(original)} is not {forms}")
    return value


def _samples(value: float, integer: bool, forms: str) -> int | float:
    if not math.isfinite(value):
        raise UnitError(f"expected {forms}, got {value!r}")
    if value <= 0:
        raise UnitError(f"a length must be > 0, got {value!r}")
    if value > MAX_SAMPLES:
        raise UnitError(f"{value!r} samples is more than {MAX_SAMPLES}")
    if integer:
        if not float(value).is_integer():
            raise UnitError(f"expected {forms}, got {value!r}")
        return int(value)
    if value < 1:
        raise UnitError(f"a length must be ≥ 1 sample, got {value!r}")
    return float(value)


def is_duration(spec: LengthSpec | None) -> bool:
    """True for a duration spec such as ``"20ms"`` (not for samples, ``None`` or ``"auto"``)."""
    return isinstance(spec, str) and spec != "auto"


def to_seconds(spec: str) -> float:
    """Seconds of a duration spec (as returned by :func:`parse_length`)."""
    match = _LENGTH_RE.match(spec)
    if match is None or match["unit"] not in _UNITS:
        raise UnitError(f"{spec!r} is not a duration")
    return float(match["number"]) * _UNITS[match["unit"]]


def to_samples(spec: LengthSpec, sample_rate: float, *, integer: bool = False,
               even: bool = False) -> int | float:
    """A length spec in samples at ``sample_rate``.

    Samples are returned unchanged; durations are ``seconds × sample_rate``, rounded to the
    nearest integer for ``integer`` quantities (to the nearest even one for ``even``) and
    at least 1 sample (2 for even quantities). Raises :class:`UnitError` for ``"auto"`` and for
    durations that round to nothing.
    """
    if not is_duration(spec):
        if isinstance(spec, str):
            raise UnitError(f"{spec!r} has no value in samples before it is resolved")
        return spec
    sample_rate = finite(sample_rate, what="sample rate", low=0, low_open=True)
    samples = to_seconds(spec) * sample_rate
    if samples > MAX_SAMPLES:
        raise UnitError(f"{spec} is {samples:.4g} samples at {sample_rate:g} Hz, more than "
                        f"{MAX_SAMPLES}")
    if even:
        rounded = 2 * round(samples / 2)
        if rounded < 2:
            raise UnitError(f"{spec} is {samples:.3g} samples at {sample_rate:g} Hz; at least 2 "
                            "are needed")
        return int(rounded)
    if integer:
        if round(samples) < 1:
            raise UnitError(f"{spec} is {samples:.3g} samples at {sample_rate:g} Hz; at least 1 "
                            "is needed")
        return int(round(samples))
    if samples < 1:
        raise UnitError(f"{spec} is {samples:.3g} samples at {sample_rate:g} Hz; at least 1 is "
                        "needed")
    return float(samples)


def format_length(samples: float, sample_rate: float | None, digits: int = 1) -> str:
    """``"2250.0 samples (51.0 ms)"``; without a sample rate only the samples."""
    text = f"{samples:.{digits}f} samples"
    if sample_rate:
        text += f" ({1000.0 * samples / sample_rate:.{digits}f} ms)"
    return text


#: Keys of a record (params.json) whose values are lengths in samples; :func:`with_ms` puts
#: ``<key>_ms`` beside each.
SAMPLE_KEYS = ("n_fft", "hop", "hop_length", "clip_length", "window_length",
               "constant_window_length", "init_length", "min_length", "max_length", "grid_optimum",
               "grid_step", "fixed_windows", "fixed_length")


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def in_ms(samples, sample_rate: float):
    """A length in samples (a number, a ``{"min", "median", "max"}`` mapping or a list of
    numbers) in milliseconds at ``sample_rate``; ``None`` for anything else."""
    if isinstance(samples, dict):
        return {k: 1000.0 * v / sample_rate for k, v in samples.items()} if all(
            _is_number(v) for v in samples.values()) and samples else None
    if isinstance(samples, list | tuple):
        return [1000.0 * v / sample_rate for v in samples] if all(
            _is_number(v) for v in samples) else None
    return 1000.0 * samples / sample_rate if _is_number(samples) else None


def with_ms(record: dict, sample_rate: float | None) -> dict:
    """``record`` with ``<key>_ms`` after each length of :data:`SAMPLE_KEYS` that holds samples
    (keys already there are kept); unchanged without a sample rate."""
    if not (_is_number(sample_rate) and sample_rate > 0):
        return record
    out = {}
    for key, value in record.items():
        out[key] = value
        if key in SAMPLE_KEYS and f"{key}_ms" not in record:
            ms = in_ms(value, sample_rate)
            if ms is not None:
                out[f"{key}_ms"] = ms
    return out


def default_n_fft(sample_rate: float) -> int:
    """The largest power of two not above 128 ms at ``sample_rate`` (at least 16)."""
    sample_rate = finite(sample_rate, what="sample rate", low=0, low_open=True)
    target = DEFAULT_WINDOW_S * sample_rate
    return max(16, 2 ** int(math.floor(math.log2(max(target, 1.0)))))


def default_hop(n_fft: int) -> int:
    """An eighth of the DFT size (at least 1)."""
    return max(1, int(n_fft) // 8)


def auto_n_fft_cap(sample_rate: float, signal_length: int) -> int:
    """Largest DFT size ``n_fft = "auto"`` may grow to: ``2**AUTO_GROWTH`` × the default, and
    no more than the signal (the largest power of two ≤ its length)."""
    cap = default_n_fft(sample_rate) * 2**AUTO_GROWTH
    fits = 2 ** int(math.floor(math.log2(max(int(signal_length), 2))))
    return max(2, min(cap, fits))
