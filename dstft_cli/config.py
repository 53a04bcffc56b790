"""Recipe configuration: a frozen dataclass, built-in recipes, TOML files and validation.

A run is described by one :class:`Config`. Its values come, in increasing priority, from

1. the built-in recipe of its mode (``configs/<mode>.toml``, loaded into :data:`RECIPES`),
2. a TOML file (``dstft optimize --config FILE``), whose keys are the field names below,
3. command-line flags, applied with :func:`override` (``dataclasses.replace``).

Every step ends in :func:`validate`: unknown keys, wrong types and out-of-range values raise
:class:`ConfigError` naming the source, the key and the value.

Lengths (``n_fft``, ``hop``, ``init_length``, ``min_length``, ``max_length``) are *specs*: samples
or durations such as ``"20ms"`` (:mod:`dstft_cli.units`); ``n_fft`` may be ``"auto"`` and ``hop``
and ``min_length`` may be left out (``None``). A Config holds them as written, because a duration
needs the sample rate of an input: :func:`resolve` turns a config into one in samples for a given
rate (the one a recipe runs with). Both are saved in ``params.json`` (:func:`to_dict`), so a run
can be reproduced with ``--config``.

This module imports neither torch nor click.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, get_args

from .units import (
    UnitError,
    default_hop,
    default_n_fft,
    is_duration,
    parse_length,
    to_samples,
)

try:  # Python ≥ 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "Config", "ConfigError", "RECIPES", "MODES", "OPTIMIZERS", "DEVICES", "DTYPES", "LR_UNITS",
    "default_config", "load_config", "read_toml", "config_from_mapping", "override", "validate",
    "to_dict", "to_toml", "parse_loss", "canonical_loss", "resolve", "is_resolved",
    "needs_sample_rate", "PLOT_TABLE", "read_plot_table",
    "MAX_SEED", "MAX_RENYI_ALPHA", "LENGTH_FIELDS", "DEFAULT_MIN_LENGTH",
]

Mode = Literal["constant", "time", "freq", "tf", "hop"]
Optimizer = Literal["adam", "lbfgs", "scalar"]
LrUnit = Literal["samples", "relative"]
Init = Literal["constant", "time", "fixed"]
Dtype = Literal["float32", "float64"]

MODES: tuple[str, ...] = get_args(Mode)
OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)
DTYPES: tuple[str, ...] = get_args(Dtype)
LR_UNITS: tuple[str, ...] = get_args(LrUnit)
DEVICES = ("auto", "cpu", "cuda")
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or out of range.

    ``str(error)`` is one line: ``"<source>: <key> = <value>: <problem>"`` (source and key when
    known).
    """

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None):
        self.source, self.key, self.problem = source, key, message
        prefix = f"{source}: " if source else ""
        super().__init__(prefix + message)


@dataclass(frozen=True)
class Config:
    """Everything that determines one optimisation (see the README's recipe table)."""

    mode: Mode = "constant"
    #: a name of :data:`dstft_cli.core.losses.LOSSES`: ``shannon`` (Eq. 26), ``shannon-energy``,
    #: ``renyi:ALPHA``, ``renyi-energy:ALPHA``, ``stankovic[:P]`` or ``kurtosis`` (Eq. 30, maximised).
    loss: str = "shannon"
    #: ``adam`` (the paper's), ``lbfgs``, or ``scalar`` (line search, ``constant`` only).
    optimizer: Optimizer = "adam"
    #: at most this many iterations per optimisation stage.
    iters: int = 200
    #: Adam's step: samples per step (``lr_unit = "samples"``) or a fraction of each θ per step
    #: (``"relative"``: the same lr suits every n_fft and sample rate).
    lr: float = 1.0
    lr_unit: LrUnit = "samples"
    #: relative loss improvement below which an iteration does not count as progress.
    tol: float = 1e-6
    #: stop after this many iterations without progress.
    patience: int = 10
    #: λ of Eq. (27): weight of the total variation of θ (Eq. 28).
    tv_weight: float = 0.0
    #: λ of Eq. (29): weight of the coverage penalty 1 − C (Eq. 32).
    coverage_weight: float = 0.0
    window: str = "hann"
    #: DFT size: samples, a duration, or ``auto`` (from the sample rate, grown while the optimum
    #: sits at the bound; see :func:`dstft_cli.units.default_n_fft` and the recipes).
    n_fft: int | str = "auto"
    #: hop of the frame grid; ``None``: n_fft / 8 of the sample rate's default n_fft.
    hop: int | str | None = None
    #: initial θ; ``None``: the constant optimum (see ``init``) or n_fft / 2.
    init_length: float | str | None = None
    #: lower bound of θ; ``None``: the hop for the constant recipe (only windows that cover the
    #: signal), :data:`DEFAULT_MIN_LENGTH` samples for the others.
    min_length: float | str | None = None
    #: upper bound of θ; ``None`` means ``n_fft``.
    max_length: float | str | None = None
    #: where θ starts: ``constant`` = the optimum of the constant recipe (Sec. VI-A), ``time`` =
    #: (``tf`` only) the optimum of the ``time`` recipe from there, θₙ copied to every bin,
    #: ``fixed`` = ``init_length`` (default n_fft / 2).
    init: Init = "fixed"
    #: constant recipe: evaluate the loss at this many log-spaced θ first and start from the best
    #: (0: start from ``init_length``). Ignored when ``init_length`` is given.
    init_scan: int = 16
    seed: int = 0
    device: str = "auto"
    dtype: Dtype = "float32"


_FIELDS = {f.name: f for f in fields(Config)}
_INT_FIELDS = {"iters", "patience", "init_scan", "seed"}
_FLOAT_FIELDS = {"lr", "tol", "tv_weight", "coverage_weight"}
#: Length fields and whether their samples are whole numbers.
LENGTH_FIELDS = {"n_fft": True, "hop": True, "init_length": False, "min_length": False,
                 "max_length": False}
_OPTIONAL_FIELDS = {"init_length", "max_length", "hop", "min_length"}
#: θ's lower bound of the non-constant recipes when min_length is not set (samples).
DEFAULT_MIN_LENGTH = 16.0
#: Seeds are 32-bit (every random generator used accepts them).
MAX_SEED = 2**32 - 1
#: Larger Rényi orders make the loss the log of the largest value alone (degenerate).
MAX_RENYI_ALPHA = 100.0
#: Upper bounds that keep the optimisation's float32 arithmetic finite.
_LIMITS = {"lr": 1e6, "tol": 1.0, "tv_weight": 1e12, "coverage_weight": 1e12,
           "iters": 10**7, "patience": 10**7, "init_scan": 10**4, "seed": MAX_SEED}
_CHOICES: dict[str, tuple[str, ...]] = {
    "mode": MODES, "optimizer": OPTIMIZERS, "dtype": DTYPES,
    "init": get_args(Init), "lr_unit": LR_UNITS,
}

def _builtin_recipes() -> dict[str, Config]:
    # The recipes are data: ``configs/<mode>.toml`` (shipped inside the package as
    # ``dstft_cli/configs``; the repository's top-level ``configs`` points there).
    from importlib.resources import files

    folder = files("dstft_cli") / "configs"
    recipes = {}
    for mode in MODES:
        resource = folder / f"{mode}.toml"
        source = f"configs/{mode}.toml"
        try:
            data = tomllib.loads(resource.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:  # a broken installation
            raise ConfigError(f"cannot read the built-in recipe: {exc}", source=source) from None
        recipes[mode] = config_from_mapping(data, source=source, base=Config(mode=mode))
    return recipes


def parse_loss(loss: str) -> tuple[str, float | None]:
    """``"shannon"`` → ("shannon", None); ``"renyi:3"`` → ("renyi", 3.0); ``"stankovic"`` →
    ("stankovic", 2.0): :func:`dstft_cli.core.loss_names.parse_loss`, the registry of named losses.

    Raises ``ValueError`` with the accepted forms.
    """
    if not isinstance(loss, str):
        raise ValueError(f"loss must be a string, got {_show(loss)}")
    from .core.loss_names import parse_loss as parse_named_loss

    name, value = parse_named_loss(loss)
    if name.startswith("renyi") and value > MAX_RENYI_ALPHA:
        raise ValueError(f"loss {_show(loss)}: Rényi order ALPHA must be a number in "
                         f"(0, {MAX_RENYI_ALPHA:g}] ({name}:ALPHA)")
    return name, value


def canonical_loss(loss: str) -> str:
    """The loss as stored: ``" Shannon "`` → ``"shannon"``, ``"renyi:3.0"`` → ``"renyi:3"``."""
    name, alpha = parse_loss(loss)
    return name if alpha is None else f"{name}:{alpha:.15g}"


def _show(value: Any) -> str:
    """``repr`` cut to one short line (a config value may be a huge array)."""
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "…"


def _check_type(name: str, value: Any, source: str | None) -> Any:
    """Coerce a raw (TOML or flag) value to the field's type or raise ConfigError."""
    if value is None:
        if name in _OPTIONAL_FIELDS:
            return None
        raise ConfigError(f"{name} must not be empty", source=source, key=name)
    if name in LENGTH_FIELDS:
        try:
            return parse_length(value, integer=LENGTH_FIELDS[name], allow_auto=name == "n_fft")
        except UnitError as exc:
            raise ConfigError(f"{name} = {_show(value)}: {exc}", source=source, key=name) from None
    if name in _INT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{name} = {_show(value)}: expected an integer", source=source,
                              key=name)
        return value
    if name in _FLOAT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name} = {_show(value)}: expected a number", source=source,
                              key=name)
        return float(value)
    if not isinstance(value, str):
        raise ConfigError(f"{name} = {_show(value)}: expected a string", source=source, key=name)
    value = value.strip()
    if name in ("mode", "optimizer", "dtype", "init", "device", "window", "lr_unit"):
        value = value.lower()
    if name == "loss":
        try:
            return canonical_loss(value)
        except ValueError as exc:
            raise ConfigError(str(exc), source=source, key=name) from None
    return value


def validate(config: Config, source: str | None = None) -> Config:
    """Check every value of ``config``; return it unchanged or raise :class:`ConfigError`.

    Lengths are compared with each other only where both are known in the same unit (samples
    with samples, durations with durations); :func:`resolve` checks the rest for an input.
    """

    def fail(key: str, problem: str) -> None:
        raise ConfigError(f"{key} = {_show(getattr(config, key))}: {problem}", source=source,
                          key=key)

    for name in _FIELDS:
        _check_type(name, getattr(config, name), source)
    for key, choices in _CHOICES.items():
        if getattr(config, key) not in choices:
            fail(key, f"expected one of {', '.join(choices)}")
    if not _DEVICE_RE.match(config.device):
        fail("device", "expected auto, cpu or cuda")
    # Window names are checked against the registry by the core; only the form is checked here.
    if not config.window or not config.window.replace("_", "").isalnum():
        fail("window", "expected a window name such as hann, gaussian, hamming or blackman")
    for key, low in (("iters", 1), ("patience", 1), ("init_scan", 0), ("seed", 0)):
        if not low <= getattr(config, key) <= _LIMITS[key]:
            fail(key, f"must be ≥ {low} and ≤ {_LIMITS[key]}")
    for key, low_open in (("lr", True), ("tol", False), ("tv_weight", False),
                          ("coverage_weight", False)):
        value = getattr(config, key)
        if not (math.isfinite(value) and (value > 0 if low_open else value >= 0)
                and value <= _LIMITS[key]):
            fail(key, f"must be a number {'>' if low_open else '≥'} 0 and ≤ {_LIMITS[key]:g}")
    _check_lengths(config, fail)
    if config.init == "time" and config.mode != "tf":
        fail("init", f"'time' starts per-bin-and-frame lengths from per-frame ones: only for "
                     f"mode 'tf', not {config.mode!r}")
    if config.lr_unit == "relative" and config.mode == "hop":
        fail("lr_unit", "'relative' scales the step by θ: not for mode 'hop', which also "
                        "learns frame positions")
    if config.optimizer == "scalar" and config.mode != "constant":
        fail("optimizer", f"'scalar' optimises one number: only for mode 'constant', "
                          f"not {config.mode!r}")
    return config


def _check_lengths(config: Config, fail: Callable[[str, str], None]) -> None:
    """The relations between the lengths that are already known in samples."""
    n_fft = config.n_fft if isinstance(config.n_fft, int) else None
    if n_fft is not None and (n_fft < 8 or n_fft % 2):
        fail("n_fft", "must be an even integer ≥ 8")
    hop = config.hop if isinstance(config.hop, int) else None
    if hop is not None and n_fft is not None and hop > n_fft:
        fail("hop", f"must be an integer in [1, n_fft={n_fft}]")

    def samples(key: str) -> float | None:
        value = getattr(config, key)
        return float(value) if isinstance(value, int | float) else None

    lo, hi, init = samples("min_length"), samples("max_length"), samples("init_length")
    if hi is None and config.max_length is None and n_fft is not None:
        hi = float(n_fft)
    if lo is not None and n_fft is not None and lo > n_fft:
        fail("min_length", f"must lie in [1, n_fft={n_fft}]")
    if lo is not None and hi is not None and not lo <= hi:
        fail("max_length", f"must lie in [min_length={lo:g}, n_fft]")
    if hi is not None and n_fft is not None and hi > n_fft:
        fail("max_length", f"must lie in [min_length, n_fft={n_fft}]")
    if init is not None and ((lo is not None and init < lo) or (hi is not None and init > hi)):
        fail("init_length", f"must lie in [min_length={'?' if lo is None else f'{lo:g}'}, "
                            f"max_length={'?' if hi is None else f'{hi:g}'}]")


def is_resolved(config: Config) -> bool:
    """True when every length is a number of samples (what the recipes run with)."""
    return (isinstance(config.n_fft, int) and isinstance(config.hop, int)
            and config.min_length is not None
            and not any(isinstance(getattr(config, k), str) for k in LENGTH_FIELDS))


def needs_sample_rate(config: Config) -> bool:
    """True when a length is a duration or n_fft is ``"auto"``."""
    return config.n_fft == "auto" or any(is_duration(getattr(config, k)) for k in LENGTH_FIELDS)


def resolve(config: Config, sample_rate: float | None, *, signal_length: int | None = None,
            n_fft: int | None = None) -> Config:
    """``config`` in samples for an input at ``sample_rate`` Hz.

    ``n_fft = "auto"`` becomes :func:`~dstft_cli.units.default_n_fft` of the rate (or ``n_fft``
    when given: the size an automatic run has grown to), at most the largest power of two that
    fits ``signal_length``; ``hop = None`` an eighth of the sample rate's default DFT size;
    ``min_length = None`` the hop for the constant recipe (θ ≥ hop: windows that cover the
    signal) and :data:`DEFAULT_MIN_LENGTH` samples (at most the hop) for the others. Durations
    are rounded as :func:`~dstft_cli.units.to_samples` describes. Raises :class:`ConfigError`
    (source: the sample rate) when the result is not a valid config.
    """
    source = f"at {sample_rate:g} Hz" if sample_rate else None
    if needs_sample_rate(config) and not sample_rate:
        raise ConfigError("durations and n_fft = 'auto' need the sample rate of the input",
                          key="n_fft")
    values: dict[str, Any] = {}
    try:
        for key, integer in LENGTH_FIELDS.items():
            spec = getattr(config, key)
            if spec is not None and spec != "auto":
                values[key] = to_samples(spec, sample_rate or 0.0, integer=integer,
                                         even=key == "n_fft")
    except UnitError as exc:
        raise ConfigError(f"{key} = {_show(getattr(config, key))}: {exc}", source=source,
                          key=key) from None
    if config.n_fft == "auto":
        size = n_fft or default_n_fft(sample_rate)
        if signal_length is not None:
            size = min(size, max(8, 2 ** int(math.floor(math.log2(max(signal_length, 2))))))
        values["n_fft"] = size
    if config.hop is None:
        base = default_n_fft(sample_rate) if config.n_fft == "auto" else values["n_fft"]
        values["hop"] = min(default_hop(base), values["n_fft"])
    if config.min_length is None:
        top = float(values.get("max_length", values["n_fft"]))
        values["min_length"] = min(float(values["hop"]) if config.mode == "constant"
                                   else DEFAULT_MIN_LENGTH, float(values["hop"]), top)
    resolved = dataclasses.replace(config, **values)
    return validate(resolved, source=source)


def config_from_mapping(
    mapping: dict[str, Any], *, source: str | None = None, base: Config | None = None
) -> Config:
    """Build a validated Config from ``mapping`` (e.g. parsed TOML) on top of a base.

    The base is ``base`` if given, else the built-in recipe of ``mapping["mode"]`` (default
    ``constant``). Unknown keys raise :class:`ConfigError`.
    """
    if not isinstance(mapping, dict):
        raise ConfigError("expected a table of key = value pairs", source=source)
    unknown = sorted(set(mapping) - set(_FIELDS))
    if unknown:
        key = unknown[0]
        hint = ""
        if key.replace("-", "_") in _FIELDS:
            hint = f" (did you mean {key.replace('-', '_')!r}?)"
        elif isinstance(mapping[key], dict):
            hint = " (tables are not supported: write the keys at the top level)"
        raise ConfigError(
            f"unknown key {key!r}{hint}; known keys: {', '.join(_FIELDS)}", source=source, key=key
        )
    values = {k: _check_type(k, v, source) for k, v in mapping.items()}
    if base is None:
        mode = values.get("mode", "constant")
        if mode not in RECIPES:
            raise ConfigError(f"mode = {mode!r}: expected one of {', '.join(MODES)}",
                              source=source, key="mode")
        base = RECIPES[mode]
    return validate(dataclasses.replace(base, **values), source=source)


def load_config(path: str | Path, *, base: Config | None = None,
                mode: str | None = None) -> Config:
    """Read a TOML recipe file (see :func:`config_from_mapping`).

    ``mode`` (e.g. from ``--mode``) replaces the file's ``mode`` before anything is checked, so
    the file's other values sit on that mode's built-in recipe.
    """
    data = {k: v for k, v in read_toml(path).items() if k != PLOT_TABLE}
    if mode is not None:
        data = {**data, "mode": mode}
    return config_from_mapping(data, source=str(path), base=base)


#: The table of a recipe file that holds figure settings (``dstft_cli.plots.FigureOptions``).
PLOT_TABLE = "plot"


def read_plot_table(path: str | Path) -> dict[str, Any]:
    """The ``[plot]`` table of a TOML file ({} when it has none); checked by the figure code."""
    table = read_toml(path).get(PLOT_TABLE, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{PLOT_TABLE} must be a table ([{PLOT_TABLE}])", source=str(path),
                          key=PLOT_TABLE)
    return table


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; every problem is a :class:`ConfigError` naming the file."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("no such file", source=source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", source=source) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {_one_line(str(exc))}", source=source) from None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def default_config(mode: str = "constant") -> Config:
    """The built-in recipe of ``mode``."""
    try:
        return RECIPES[mode]
    except KeyError:
        raise ConfigError(f"mode = {mode!r}: expected one of {', '.join(MODES)}",
                          key="mode") from None


def override(config: Config, *, source: str | None = None, **values: Any) -> Config:
    """``dataclasses.replace`` with the values that are not ``None``, then validate.

    ``None`` means "not given on the command line"; to clear an optional field pass the value
    through :func:`config_from_mapping` instead.
    """
    given = {k: v for k, v in values.items() if v is not None}
    unknown = sorted(set(given) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r}", source=source, key=unknown[0])
    given = {k: _check_type(k, v, source) for k, v in given.items()}
    return validate(dataclasses.replace(config, **given), source=source)


def to_dict(config: Config) -> dict[str, Any]:
    """Plain dict of every field (JSON- and TOML-ready apart from ``None``)."""
    return dataclasses.asdict(config)


def to_toml(config: Config) -> str:
    """The config as a TOML file that :func:`load_config` reads back (``None`` fields omitted)."""
    lines = []
    for key, value in to_dict(config).items():
        if value is None:
            continue
        if isinstance(value, str):
            lines.append(f'{key} = "{value}"')
        elif isinstance(value, float):
            lines.append(f"{key} = {value!r}")
        else:
            lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


class _BuiltinRecipes(Mapping):
    """Read on first use: validating a loss name loads the loss registry, which needs torch,
    and ``import dstft_cli.cli`` (``dstft --help``) must not import torch."""

    def __init__(self) -> None:
        self._recipes: dict[str, Config] | None = None

    def _load(self) -> dict[str, Config]:
        if self._recipes is None:
            self._recipes = _builtin_recipes()
        return self._recipes

    def __getitem__(self, mode: str) -> Config:
        return self._load()[mode]

    def __iter__(self):
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())


#: The built-in recipes, one per mode, read from ``configs/<mode>.toml`` (on first use).
RECIPES: Mapping[str, Config] = _BuiltinRecipes()
