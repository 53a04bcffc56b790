"""Every code block of README.md runs, in document order, in one scratch folder.

``dstft …`` lines of bash blocks run as ``python -m dstft_cli …`` and must exit 0; Python blocks
are executed in one shared namespace (later blocks use names defined by earlier ones). A block
may be preceded by an HTML comment that tells this test how to treat it:

* ``<!-- readme-test: skip REASON -->``: not run here (the set-up commands, which ``.ci/run``
  runs itself);
* ``<!-- readme-test: slow -->``: run only with the ``slow`` marker selected.

The scratch folder holds links to ``sample_data/`` and ``configs/``, and ``../shared`` resolves
to the shared data as it does from the repository root.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SHARED = ROOT.parent / "shared"

_FENCE = re.compile(r"^```(\w*)\s*$")
_DIRECTIVE = re.compile(r"<!--\s*readme-test:\s*(\w+)\s*(.*?)\s*-->")


def readme_blocks(text: str) -> list[tuple[int, str, str, str]]:
    """``(line, language, code, directive)`` for every fenced block, in document order."""
    blocks = []
    lines = text.splitlines()
    i = 0
    directive = ""
    while i < len(lines):
        match = _DIRECTIVE.search(lines[i])
        if match:
            directive = f"{match.group(1)} {match.group(2)}".strip()
        fence = _FENCE.match(lines[i])
        if fence:
            start, language, body = i + 1, fence.group(1), []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            blocks.append((start, language, "\n".join(body), directive))
            directive = ""
        elif lines[i].strip() and not match:
            directive = ""  # a directive applies to the block right below it
        i += 1
    return blocks


def _commands(code: str) -> list[list[str]]:
    """The ``dstft`` commands of a bash block (comments and continuation lines handled)."""
    joined = code.replace("\\\n", " ")
    commands = []
    for line in joined.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        for part in line.split("&&"):
            words = shlex.split(part)
            if not words or words[0] != "dstft":
                raise AssertionError(f"README bash block line is not a dstft command: {line!r}")
            commands.append(words[1:])
    return commands


#: The README's commands optimise real signals end to end: minutes on two cores.
pytestmark = pytest.mark.slow

BLOCKS = [b for b in readme_blocks(README.read_text(encoding="utf-8"))
          if b[1] in ("bash", "sh", "python")]


def _param(block):
    line, language, _, directive = block
    marks = []
    if directive.startswith("skip"):
        marks.append(pytest.mark.skip(reason=directive[4:].strip() or "marked skip in README"))
    elif directive.startswith("slow"):
        marks.append(pytest.mark.slow)
    return pytest.param(block, id=f"README.md:{line}-{language}", marks=marks)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    base = tmp_path_factory.mktemp("readme")
    work = base / "work"
    work.mkdir()
    for name in ("sample_data", "configs"):
        (work / name).symlink_to(ROOT / name, target_is_directory=True)
    if SHARED.is_dir():
        (base / "shared").symlink_to(SHARED, target_is_directory=True)
    return work


def test_readme_has_blocks():
    assert len(BLOCKS) >= 5
    assert any(b[1] == "python" for b in BLOCKS)


@pytest.mark.parametrize("block", [_param(b) for b in BLOCKS])
def test_readme_block_runs(block, workdir, monkeypatch):
    line, language, code, _ = block
    if "../shared" in code and not SHARED.is_dir():
        pytest.skip("../shared (the shared data) is absent")
    if language == "python":
        monkeypatch.chdir(workdir)
        namespace = _NAMESPACE
        exec(compile(code, f"README.md:{line}", "exec"), namespace)  # noqa: S102
        return
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for args in _commands(code):
        proc = subprocess.run([sys.executable, "-m", "dstft_cli", *args], cwd=workdir, env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, (f"README.md:{line}: dstft {shlex.join(args)} exited "
                                      f"{proc.returncode}\n{proc.stdout}\n{proc.stderr}")


_NAMESPACE: dict = {"__name__": "__readme__"}
