"""click parameter types for lengths and numbers: every numeric option uses one of these.

click's ``float`` and ``FloatRange`` accept ``nan`` and ``inf`` (and ``IntRange`` any size of
integer), which then fail far from the option that caused them. These types reject non-finite
values and values beyond what the computation can hold, as a usage error naming the option
(exit status 2). The checks themselves live in :mod:`dstft_cli.units`.
"""

from __future__ import annotations

import re

import click

from ..units import UnitError, finite, parse_length

__all__ = ["Length", "Finite", "Integer", "SafeName", "SEED", "SAMPLE_RATE", "MAX_SEED", "is_checked"]

#: Seeds are 32-bit: every random generator used accepts them.
MAX_SEED = 2**32 - 1


class Length(click.ParamType):
    """Samples (``512``) or a duration (``20ms``, ``0.02s``); ``auto`` where allowed.

    The value passed on is the spec of :func:`dstft_cli.units.parse_length` (a number of samples
    or a normalised duration string), resolved to samples per input.
    """

    name = "length"

    def __init__(self, *, integer: bool = False, allow_auto: bool = False):
        self.integer, self.allow_auto = integer, allow_auto

    def convert(self, value, param, ctx):
        try:
            return parse_length(value, integer=self.integer, allow_auto=self.allow_auto)
        except UnitError as exc:
            self.fail(str(exc), param, ctx)

    def __repr__(self) -> str:
        return f"Length(integer={self.integer}, allow_auto={self.allow_auto})"


class Finite(click.ParamType):
    """A finite float within optional bounds (``nan``, ``inf`` and overflowing values refused)."""

    name = "number"

    def __init__(self, low: float | None = None, high: float | None = None, *,
                 low_open: bool = False, high_open: bool = False):
        self.low, self.high, self.low_open, self.high_open = low, high, low_open, high_open

    def convert(self, value, param, ctx):
        key = param.name if param is not None and param.name else "value"
        try:
            number = finite(value, what=key)
        except UnitError as exc:
            self.fail(str(exc), param, ctx)
        low_ok = self.low is None or number > self.low or (number == self.low
                                                          and not self.low_open)
        high_ok = self.high is None or number < self.high or (number == self.high
                                                             and not self.high_open)
        if not (low_ok and high_ok):
            parts = []
            if self.low is not None:
                parts.append(f"{'>' if self.low_open else '≥'} {self.low:g}")
            if self.high is not None:
                parts.append(f"{'<' if self.high_open else '≤'} {self.high:g}")
            self.fail(f"{key} = {number!r}: must be a number {' and '.join(parts)}", param, ctx)
        return number

    def __repr__(self) -> str:
        return f"Finite({self.low}, {self.high})"


class Integer(click.ParamType):
    """An integer within bounds (both required: no option takes an unbounded integer)."""

    name = "integer"

    def __init__(self, low: int, high: int):
        self.low, self.high = low, high

    def convert(self, value, param, ctx):
        if isinstance(value, bool):
            self.fail(f"expected an integer, got {value!r}", param, ctx)
        if isinstance(value, int):
            number = value
        else:
            text = str(value).strip().replace("_", "")
            if not re.fullmatch(r"[+-]?\d{1,40}", text):
                self.fail(f"expected an integer, got {str(value)[:40]!r}", param, ctx)
            number = int(text)
        if not self.low <= number <= self.high:
            key = param.name if param is not None and param.name else "value"
            self.fail(f"{key} = {str(value).strip()[:40]}: must be an integer in "
                      f"[{self.low}, {self.high}]", param, ctx)
        return number

    def __repr__(self) -> str:
        return f"Integer({self.low}, {self.high})"


class SafeName(click.ParamType):
    """A file or folder name: letters, digits, ``.``, ``_`` and ``-``; no path separators."""

    name = "name"

    def convert(self, value, param, ctx):
        text = str(value)
        if (not re.fullmatch(r"[A-Za-z0-9._-]{1,200}", text) or text.strip(".") == ""
                or text.startswith("-")):
            self.fail(f"{text[:40]!r} is not a plain name (letters, digits, '.', '_', '-'; "
                      "no '/' or '..')", param, ctx)
        return text


#: ``--seed``.
SEED = Integer(0, MAX_SEED)
#: ``--sample-rate``: positive, at most 1 GHz (a higher rate is a unit mistake).
SAMPLE_RATE = Finite(0.0, 1e9, low_open=True)


def is_checked(param_type: click.ParamType) -> bool:
    """True for types that cannot let a non-finite or unbounded number through."""
    if isinstance(param_type, Length | Finite | Integer | SafeName):
        return True
    return not isinstance(param_type, click.types.FloatParamType | click.types.IntParamType)

