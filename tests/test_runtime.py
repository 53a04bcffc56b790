"""Process-level allocator setting used by the `dstft` command and the benchmarks."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest


def _has_glibc_mallopt() -> bool:
    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallopt")
    except OSError:
        return False


def _run(code: str, **env) -> str:
    import os

    full_env = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=full_env, check=True).stdout.strip()


@pytest.mark.skipif(not (sys.platform.startswith("linux") and _has_glibc_mallopt()),
                    reason="glibc's mallopt only")
def test_tune_allocator_applies_once_and_can_be_disabled():
    code = ("from dstft_cli.runtime import tune_allocator as t; "
            "print(t(), t(), __import__('dstft_cli').runtime._tuned)")
    assert _run(code) == "True True True"
    assert _run(code, DSTFT_TUNE_ALLOCATOR="0") == "False False False"


def test_importing_the_library_does_not_touch_the_allocator():
    assert _run("import dstft_cli, dstft_cli.runtime as r; print(r._tuned)") == "None"


def test_the_command_line_tunes_the_allocator():
    code = ("import dstft_cli.runtime as r; from dstft_cli.cli import main; "
            "from click.testing import CliRunner; CliRunner().invoke(main, ['--version']); "
            "print(r._tuned is not None)")
    assert _run(code) == "True"
