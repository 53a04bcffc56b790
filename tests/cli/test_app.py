"""The application layer's shape: lazy imports, short command bodies, one registration each."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys

import click
import pytest

from dstft_cli.cli import COMMANDS, main

MAX_BODY_LINES = 40


def _modules_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_importing_the_command_line_does_not_import_torch():
    loaded = _modules_after("import dstft_cli.cli")
    assert "dstft_cli.cli" in loaded and "dstft_cli.cli.optimize" in loaded
    assert "torch" not in loaded and "matplotlib" not in loaded


def test_help_does_not_import_torch():
    """``dstft --help`` and every ``dstft CMD --help``, one after another in one fresh process
    (one interpreter start instead of one per command): none imports torch or matplotlib; the
    first help after which one of them is loaded is named."""
    helps = [["--help"]] + [[command, "--help"] for command in sorted(main.commands)]
    probe = ("import sys\nfrom click.testing import CliRunner\nfrom dstft_cli.cli import main\n"
             f"for args in {helps!r}:\n"
             "    r = CliRunner().invoke(main, args)\n"
             "    assert r.exit_code == 0, (args, r.output)\n"
             "    print(args[0], 'torch' in sys.modules, 'matplotlib' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    rows = [line.split() for line in out.stdout.splitlines()]
    assert [row[0] for row in rows] == [args[0] for args in helps]
    assert [row for row in rows if "True" in row[1:]] == []


def test_a_run_without_figures_does_not_import_matplotlib(tmp_path):
    """``--no-plots`` skips matplotlib's import (about half a second of every such command);
    the same probe sees it loaded when figures are drawn."""
    import numpy as np
    import soundfile as sf

    rate = 8000
    t = np.arange(rate // 2) / rate
    sf.write(tmp_path / "x.wav", np.sin(2 * np.pi * (300 * t + 400 * t * t)), rate)

    def run(out: str, *extra: str) -> str:
        probe = ("import sys\nfrom click.testing import CliRunner\nfrom dstft_cli.cli import main\n"
                 f"r = CliRunner().invoke(main, ['optimize', 'x.wav', '--n-fft', '256', '-q', "
                 f"'-o', {out!r}, *{list(extra)!r}])\n"
                 "assert r.exit_code == 0, r.output\n"
                 "print('matplotlib' in sys.modules)\n")
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                              check=True, cwd=tmp_path)
        return done.stdout.strip()

    assert run("none", "--no-plots") == "False"
    assert (tmp_path / "none" / "x" / "spectrogram.npz").is_file()
    assert not list((tmp_path / "none" / "x").glob("*.png"))
    assert run("figs") == "True"
    assert (tmp_path / "figs" / "x" / "spectrogram.png").is_file()


@pytest.mark.slow
def test_the_package_names_still_load_on_use():
    loaded = _modules_after("import dstft_cli")
    assert "torch" not in loaded
    code = ("import dstft_cli, torch; "
            "print(dstft_cli.dstft is __import__('dstft_cli.core', fromlist=['dstft']).dstft, "
            "dstft_cli.DSTFT.__name__, callable(dstft_cli.optimise), 'losses' in dir(dstft_cli))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "DSTFT", "True", "True"]
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        import dstft_cli

        dstft_cli.nope  # noqa: B018


def test_every_command_module_registers_one_command():
    assert len(COMMANDS) == len(main.commands)
    for name in COMMANDS:
        command = main.commands[name.replace("_", "-")]
        assert inspect.unwrap(command.callback).__module__ == f"dstft_cli.cli.{name}"
        assert command.help and command.help.strip()


@pytest.mark.parametrize("name", sorted(main.commands))
def test_command_bodies_are_short(name):
    callback = inspect.unwrap(main.commands[name].callback)
    tree = ast.parse(inspect.getsource(inspect.getmodule(callback)))
    node = next(n for n in ast.walk(tree)
                if isinstance(n, ast.FunctionDef) and n.name == callback.__name__)
    body = node.body[1:] if isinstance(node.body[0], ast.Expr) else node.body  # no docstring
    lines = body[-1].end_lineno - body[0].lineno + 1
    assert lines <= MAX_BODY_LINES, f"{name}: {lines} lines"


def test_shared_options_are_defined_once():
    """-o, --jobs, --device and the reader options mean the same on every command over inputs."""
    over_inputs = [c for c in main.commands.values()
                   if any(p.name == "jobs" for p in c.params)]
    assert {c.name for c in over_inputs} >= {"optimize", "scan", "apply", "track", "fit-window"}
    for option in ("out", "overwrite", "jobs", "quiet", "debug", "channel", "column", "key",
                   "sample_rate", "device", "no_plots"):
        kinds = {type(next(p for p in c.params if p.name == option).type).__name__
                 for c in over_inputs}
        assert len(kinds) == 1, (option, kinds)
    device = next(p for p in main.commands["track"].params if p.name == "device")
    assert device.type.convert("cuda:1", device, None) == "cuda:1"
    with pytest.raises(click.BadParameter):
        device.type.convert("gpu", device, None)
