"""Recipe configuration: built-in recipes, TOML files, validation, overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dstft_cli.config import (
    MODES,
    RECIPES,
    Config,
    ConfigError,
    config_from_mapping,
    default_config,
    load_config,
    override,
    parse_loss,
    to_dict,
    to_toml,
    validate,
)

ROOT = Path(__file__).resolve().parents[1]


def test_every_mode_has_a_valid_recipe():
    assert set(RECIPES) == set(MODES)
    for mode, cfg in RECIPES.items():
        assert cfg.mode == mode
        assert validate(cfg) is cfg


@pytest.mark.parametrize("mode", MODES)
def test_configs_folder_mirrors_the_builtin_recipes(mode):
    assert load_config(ROOT / "configs" / f"{mode}.toml") == RECIPES[mode]


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        RECIPES["constant"].lr = 3.0


def test_tf_starts_from_the_time_optimum_and_hop_uses_kurtosis():
    assert RECIPES["tf"].init == "time" and RECIPES["tf"].tv_weight > 0
    assert all(RECIPES[m].lr_unit == "relative" for m in ("time", "freq", "tf"))
    assert RECIPES["hop"].loss == "kurtosis" and RECIPES["hop"].coverage_weight > 0


@pytest.mark.parametrize(
    "loss, expected",
    [("shannon", ("shannon", None)), ("kurtosis", ("kurtosis", None)),
     ("renyi:3", ("renyi", 3.0)), ("Renyi:0.5", ("renyi", 0.5))],
)
def test_parse_loss(loss, expected):
    assert parse_loss(loss) == expected


@pytest.mark.parametrize("loss", ["entropy", "renyi", "renyi:", "renyi:x", "renyi:-1",
                                  "renyi:nan", "shannon:2", ""])
def test_parse_loss_rejects(loss):
    with pytest.raises(ValueError, match="loss|Rényi"):
        parse_loss(loss)


def write(tmp_path, text, name="recipe.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_file_values_sit_on_the_recipe_of_its_mode(tmp_path):
    cfg = load_config(write(tmp_path, 'mode = "tf"\nlr = 0.5\n'))
    assert cfg == dataclasses.replace(RECIPES["tf"], lr=0.5)


def test_file_on_an_explicit_base(tmp_path):
    cfg = load_config(write(tmp_path, "iters = 7\n"), base=RECIPES["hop"])
    assert cfg.mode == "hop" and cfg.iters == 7


def test_unknown_key_names_file_and_key(tmp_path):
    path = write(tmp_path, "learning_rate = 0.1\n")
    with pytest.raises(ConfigError, match=r"recipe\.toml: unknown key 'learning_rate'") as err:
        load_config(path)
    assert err.value.key == "learning_rate"
    assert "\n" not in str(err.value)


def test_dashed_key_gets_a_hint(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'tv_weight'"):
        load_config(write(tmp_path, "tv-weight = 0.1\n"))


def test_tables_are_rejected(tmp_path):
    with pytest.raises(ConfigError, match="tables are not supported"):
        load_config(write(tmp_path, "[recipe]\nlr = 1.0\n"))


@pytest.mark.parametrize(
    "text, match",
    [
        ("n_fft = 1023", "n_fft = 1023: must be an even integer"),
        ("n_fft = 4", "n_fft = 4: must be an even integer"),
        ("hop = 0", "hop = 0: a length must be > 0"),
        ("n_fft = 1024\nhop = 2048", "hop = 2048"),
        ("lr = 0", "lr = 0.0: must be a number > 0"),
        ("lr = -1", "lr"),
        ("tol = -1e-3", "tol"),
        ("iters = 0", "iters = 0: must be ≥ 1"),
        ("tv_weight = -1", "tv_weight"),
        ("coverage_weight = nan", "coverage_weight"),
        ("min_length = 0", "min_length"),
        ("n_fft = 1024\nmin_length = 2000", "min_length"),
        ("n_fft = 1024\nmax_length = 4096", "max_length"),
        ("n_fft = 1024\ninit_length = 4096", "init_length = 4096.0: must lie in"),
        ("min_length = 16\ninit_length = 4", "init_length"),
        ('mode = "wavelet"', "mode = 'wavelet': expected one of"),
        ('optimizer = "sgd"', "optimizer"),
        ('loss = "entropy"', "unknown loss 'entropy'"),
        ('loss = "renyi:0"', "ALPHA"),
        ('device = "tpu"', "device = 'tpu'"),
        ('dtype = "float16"', "dtype"),
        ('mode = "tf"\noptimizer = "scalar"', "scalar"),
        ("n_fft = 512.5", "expected a whole number of samples"),
        ('n_fft = "1024 ms"', "no space between number and unit"),
        ("iters = true", "expected an integer"),
        ('lr = "fast"', "expected a number"),
        ("window = 3", "expected a string"),
        ('window = "../evil"', "window"),
        ("init_scan = -1", "init_scan"),
    ],
)
def test_out_of_range_and_wrong_types(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match) as err:
        load_config(write(tmp_path, text + "\n"))
    assert str(err.value).startswith(str(tmp_path / "recipe.toml") + ": ")


def test_bad_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "lr = = 1\n"))
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.toml")


def test_override_ignores_none_and_validates():
    cfg = override(RECIPES["time"], lr=None, iters=5, n_fft=256, hop=64)
    assert (cfg.iters, cfg.n_fft, cfg.hop, cfg.lr) == (5, 256, 64, RECIPES["time"].lr)
    with pytest.raises(ConfigError, match="init_length"):
        override(RECIPES["time"], n_fft=64, hop=16, init_length=100.0)
    with pytest.raises(ConfigError, match="unknown key 'speed'"):
        override(RECIPES["time"], speed=3)


def test_default_config_rejects_unknown_mode():
    assert default_config("hop") is RECIPES["hop"]
    with pytest.raises(ConfigError, match="mode"):
        default_config("nope")


def test_mapping_must_be_a_table():
    with pytest.raises(ConfigError, match="table"):
        config_from_mapping(["lr", 1])  # type: ignore[arg-type]


_valid = st.builds(
    lambda mode, n_exp, hop_frac, lr, tv, cov, loss, lo_frac, init: dataclasses.replace(
        RECIPES[mode], n_fft=2 ** n_exp, hop=max(1, int(hop_frac * 2 ** n_exp)), lr=lr,
        tv_weight=tv, coverage_weight=cov, loss=loss, min_length=max(1.0, lo_frac * 2 ** n_exp),
        init_length=None if init is None else max(1.0, lo_frac * 2 ** n_exp) + init * (
            2 ** n_exp - max(1.0, lo_frac * 2 ** n_exp)),
    ),
    mode=st.sampled_from(MODES), n_exp=st.integers(3, 12), hop_frac=st.floats(0.01, 1.0),
    lr=st.floats(1e-4, 100, allow_nan=False), tv=st.floats(0, 10), cov=st.floats(0, 100),
    loss=st.sampled_from(["shannon", "kurtosis", "renyi:2", "renyi:0.5"]),
    lo_frac=st.floats(0.01, 1.0), init=st.none() | st.floats(0, 1),
)


@settings(max_examples=60, deadline=None)
@given(_valid)
def test_toml_round_trip(tmp_path_factory, cfg):
    validate(cfg)
    path = tmp_path_factory.mktemp("rt") / "c.toml"
    path.write_text(to_toml(cfg), encoding="utf-8")
    assert load_config(path) == cfg
    assert config_from_mapping({k: v for k, v in to_dict(cfg).items() if v is not None}) == cfg


def test_config_module_imports_no_click_or_matplotlib():
    import subprocess
    import sys

    code = ("import sys, dstft_cli.config; "
            "print(any(m in sys.modules for m in ('click', 'matplotlib')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_defaults_describe_themselves():
    assert Config().mode == "constant"
    assert all(f.name in to_dict(Config()) for f in dataclasses.fields(Config))


@pytest.mark.parametrize("values, key", [({"mode": "time", "init": "time"}, "init"),
                                         ({"mode": "hop", "lr_unit": "relative"}, "lr_unit"),
                                         ({"mode": "tf", "lr_unit": "percent"}, "lr_unit")])
def test_time_start_and_relative_steps_are_refused_where_they_mean_nothing(values, key):
    with pytest.raises(ConfigError) as info:
        config_from_mapping(values)
    assert info.value.key == key
