"""The names of the losses and how their parameters are spelled, without importing torch.

The command line and the config files validate ``--loss`` values through :func:`parse_loss`
before any computation; :mod:`dstft_cli.core.losses` attaches a function to each name.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["LossName", "LOSS_NAMES", "loss_forms", "parse_loss"]


@dataclass(frozen=True)
class LossName:
    """A named loss: its formula and the parameter it takes, if any."""

    name: str
    formula: str
    #: the parameter's name in ``NAME:PARAM`` (None: the loss takes none)
    parameter: str | None = None
    #: the parameter's value when omitted (None: it must be given)
    default: float | None = None
    #: check of the parameter: returns an error message or None
    check: Callable[[float], str | None] | None = None


def _order_problem(alpha: float) -> str | None:
    return None if math.isfinite(alpha) and alpha > 0 else "the Rényi order ALPHA must be a finite number > 0"


def _exponent_problem(p: float) -> str | None:
    return None if math.isfinite(p) and p > 1 else "Stanković's exponent P must be a finite number > 1"


#: The losses the recipes and ``--loss`` accept, by name (p = m/Σm over the M×N map).
LOSS_NAMES: dict[str, LossName] = {spec.name: spec for spec in (
    LossName("shannon", "−Σ p log p, p = |S|/Σ|S| (Eq. 26)"),
    LossName("shannon-energy", "−Σ p log p, p = |S|²/Σ|S|²"),
    LossName("renyi", "log(Σ p^α)/(1 − α), p = |S|/Σ|S|", "ALPHA", None, _order_problem),
    LossName("renyi-energy", "log(Σ p^α)/(1 − α), p = |S|²/Σ|S|²", "ALPHA", None, _order_problem),
    LossName("stankovic", "(Σ|S|^(2/P))^P / Σ|S|² (Stanković 2001; P = 2: (Σ|S|)²/Σ|S|²)",
             "P", 2.0, _exponent_problem),
    LossName("kurtosis", "−(1/N) Σₙ M·Σₘ|S|⁴ / (Σₘ|S|²)² (Eq. 30, maximised)"),
)}


def loss_forms() -> str:
    """The accepted spellings, e.g. for a usage message."""
    forms = []
    for spec in LOSS_NAMES.values():
        if spec.parameter is None:
            forms.append(spec.name)
        elif spec.default is None:
            forms.append(f"{spec.name}:{spec.parameter}")
        else:
            forms.append(f"{spec.name}[:{spec.parameter}]")
    return ", ".join(forms)


def parse_loss(loss: str) -> tuple[str, float | None]:
    """``"shannon"`` → ("shannon", None); ``"renyi:3"`` → ("renyi", 3.0); ``"stankovic"`` →
    ("stankovic", 2.0). Raises ``ValueError`` naming the accepted forms."""
    if not isinstance(loss, str):
        raise ValueError(f"loss must be a string, got {loss!r}")
    name, sep, arg = loss.strip().lower().partition(":")
    spec = LOSS_NAMES.get(name)
    if spec is None:
        raise ValueError(f"unknown loss {loss!r}; expected one of {loss_forms()}")
    if spec.parameter is None:
        if sep:
            raise ValueError(f"loss {loss!r}: {name} takes no parameter")
        return name, None
    if not sep and spec.default is not None:
        return name, spec.default
    try:
        value = float(arg)
    except ValueError:
        value = math.nan
    problem = spec.check(value) if spec.check else None
    if not sep or problem:
        raise ValueError(f"loss {loss!r}: {problem or 'missing ' + spec.parameter} ({name}:{spec.parameter})")
    if name.startswith("renyi") and value == 1.0:
        return name.replace("renyi", "shannon"), None  # the limit α → 1
    return name, value
