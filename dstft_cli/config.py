"""Recipe configuration: a frozen dataclass, built-in recipes, TOML files and validation.

A run is described by one :class:`Config`. Its values come, in increasing priority, from

1. the built-in recipe of its mode (``configs/<mode>.toml``, loaded into :data:`RECIPES`),
2. a TOML file (``dstft optimize --config FILE``), whose keys are the field names below,
3. command-line flags, applied with :func:`override` (``dataclasses.replace``).

Every step ends in :func:`validate`: unknown keys, wrong types and out-of-range values raise
:class:`ConfigError` naming the source, the key and the value. The resolved config is saved in
``params.json`` (:func:`to_dict`) so that a run can be reproduced with ``--config``.

This module imports neither torch nor click.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, get_args

try:  # Python ≥ 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "Config", "ConfigError", "RECIPES", "MODES", "OPTIMIZERS", "DEVICES", "DTYPES",
    "default_config", "load_config", "read_toml", "config_from_mapping", "override", "validate",
    "to_dict", "to_toml", "parse_loss", "PLOT_TABLE", "read_plot_table",
]

Mode = Literal["constant", "time", "freq", "tf", "hop"]
Optimizer = Literal["adam", "lbfgs", "scalar"]
Dtype = Literal["float32", "float64"]

MODES: tuple[str, ...] = get_args(Mode)
OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)
DTYPES: tuple[str, ...] = get_args(Dtype)
DEVICES = ("auto", "cpu", "cuda")
LOSSES = ("shannon", "renyi:ALPHA", "kurtosis")
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
    #: ``shannon`` (Eq. 26), ``renyi:ALPHA`` or ``kurtosis`` (Eq. 30, maximised).
    loss: str = "shannon"
    #: ``adam`` (the paper's), ``lbfgs``, or ``scalar`` (line search, ``constant`` only).
    optimizer: Optimizer = "adam"
    #: at most this many iterations per optimisation stage.
    iters: int = 200
    lr: float = 1.0
    #: relative loss improvement below which an iteration does not count as progress.
    tol: float = 1e-6
    #: stop after this many iterations without progress.
    patience: int = 10
    #: λ of Eq. (27): weight of the total variation of θ (Eq. 28).
    tv_weight: float = 0.0
    #: λ of Eq. (29): weight of the coverage penalty 1 − C (Eq. 32).
    coverage_weight: float = 0.0
    window: str = "hann"
    n_fft: int = 1024
    hop: int = 128
    #: initial θ in samples; ``None``: the constant optimum (see ``init``) or n_fft / 2.
    init_length: float | None = None
    min_length: float = 16.0
    #: upper bound of θ; ``None`` means ``n_fft``.
    max_length: float | None = None
    #: where θ starts: ``constant`` = the optimum of the constant recipe (Sec. VI-A), ``fixed`` =
    #: ``init_length`` (default n_fft / 2).
    init: Literal["constant", "fixed"] = "fixed"
    #: constant recipe: evaluate the loss at this many log-spaced θ first and start from the best
    #: (0: start from ``init_length``). Ignored when ``init_length`` is given.
    init_scan: int = 16
    seed: int = 0
    device: str = "auto"
    dtype: Dtype = "float32"


_FIELDS = {f.name: f for f in fields(Config)}
_INT_FIELDS = {"iters", "patience", "n_fft", "hop", "init_scan", "seed"}
_FLOAT_FIELDS = {"lr", "tol", "tv_weight", "coverage_weight", "init_length", "min_length",
                 "max_length"}
_OPTIONAL_FIELDS = {"init_length", "max_length"}
_CHOICES: dict[str, tuple[str, ...]] = {
    "mode": MODES, "optimizer": OPTIMIZERS, "dtype": DTYPES, "init": ("constant", "fixed"),
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
    """``"shannon"`` → ("shannon", None); ``"renyi:3"`` → ("renyi", 3.0); ``"kurtosis"``.

    Raises ``ValueError`` with the accepted forms.
    """
    if not isinstance(loss, str):
        raise ValueError(f"loss must be a string, got {loss!r}")
    name, sep, arg = loss.strip().lower().partition(":")
    if name in ("shannon", "kurtosis") and not sep:
        return name, None
    if name == "renyi":
        try:
            alpha = float(arg)
        except ValueError:
            alpha = math.nan
        if not (math.isfinite(alpha) and alpha > 0):
            raise ValueError(f"loss {loss!r}: Rényi order ALPHA must be a number > 0 (renyi:ALPHA)")
        return "renyi", alpha
    raise ValueError(f"unknown loss {loss!r}; expected one of {', '.join(LOSSES)}")


def _check_type(name: str, value: Any, source: str | None) -> Any:
    """Coerce a raw (TOML or flag) value to the field's type or raise ConfigError."""
    if value is None:
        if name in _OPTIONAL_FIELDS:
            return None
        raise ConfigError(f"{name} must not be empty", source=source, key=name)
    if name in _INT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{name} = {value!r}: expected an integer", source=source, key=name)
        return value
    if name in _FLOAT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name} = {value!r}: expected a number", source=source, key=name)
        return float(value)
    if not isinstance(value, str):
        raise ConfigError(f"{name} = {value!r}: expected a string", source=source, key=name)
    return value


def validate(config: Config, source: str | None = None) -> Config:
    """Check every value of ``config``; return it unchanged or raise :class:`ConfigError`."""

    def fail(key: str, problem: str) -> None:
        raise ConfigError(f"{key} = {getattr(config, key)!r}: {problem}", source=source, key=key)

    for name in _FIELDS:
        _check_type(name, getattr(config, name), source)
    for key, choices in _CHOICES.items():
        if getattr(config, key) not in choices:
            fail(key, f"expected one of {', '.join(choices)}")
    try:
        parse_loss(config.loss)
    except ValueError as exc:
        raise ConfigError(str(exc), source=source, key="loss") from None
    if not _DEVICE_RE.match(config.device):
        fail("device", "expected auto, cpu or cuda")
    # Window names are checked against the registry by the core; only the form is checked here.
    if not config.window or not config.window.replace("_", "").isalnum():
        fail("window", "expected a window name such as hann, gaussian, hamming or blackman")
    if config.n_fft < 8 or config.n_fft % 2:
        fail("n_fft", "must be an even integer ≥ 8")
    if not 1 <= config.hop <= config.n_fft:
        fail("hop", f"must be an integer in [1, n_fft={config.n_fft}]")
    if config.iters < 1:
        fail("iters", "must be ≥ 1")
    if config.patience < 1:
        fail("patience", "must be ≥ 1")
    if not (math.isfinite(config.lr) and config.lr > 0):
        fail("lr", "must be a number > 0")
    if not (math.isfinite(config.tol) and config.tol >= 0):
        fail("tol", "must be a number ≥ 0")
    for key in ("tv_weight", "coverage_weight"):
        value = getattr(config, key)
        if not (math.isfinite(value) and value >= 0):
            fail(key, "must be a number ≥ 0")
    max_length = config.n_fft if config.max_length is None else config.max_length
    if not (math.isfinite(config.min_length) and 0 < config.min_length <= config.n_fft):
        fail("min_length", f"must lie in (0, n_fft={config.n_fft}]")
    if not (math.isfinite(max_length) and config.min_length <= max_length <= config.n_fft):
        fail("max_length", f"must lie in [min_length={config.min_length:g}, "
                           f"n_fft={config.n_fft}]")
    if config.init_length is not None and not (
        math.isfinite(config.init_length) and config.min_length <= config.init_length <= max_length
    ):
        fail("init_length", f"must lie in [min_length={config.min_length:g}, "
                            f"max_length={max_length:g}]")
    if config.init_scan < 0:
        fail("init_scan", "must be ≥ 0")
    if config.seed < 0:
        fail("seed", "must be ≥ 0")
    if config.optimizer == "scalar" and config.mode != "constant":
        fail("optimizer", f"'scalar' optimises one number: only for mode 'constant', "
                          f"not {config.mode!r}")
    return config


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


#: The built-in recipes, one per mode, read from ``configs/<mode>.toml``.
RECIPES: dict[str, Config] = _builtin_recipes()
