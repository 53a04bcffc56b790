"""Shared fixtures."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_FSDD = ROOT.parent / "shared" / "data" / "fsdd" / "recordings"


@pytest.fixture
def fsdd_dir(tmp_path: Path) -> Path:
    """A handful of FSDD clips: sample_data/fsdd/ if shipped, else copied from the shared data."""
    src = ROOT / "sample_data" / "fsdd"
    files = sorted(src.glob("*.wav")) if src.is_dir() else []
    if len(files) < 6:
        files = sorted(SHARED_FSDD.glob("*_0.wav"))[:12] if SHARED_FSDD.is_dir() else []
    if len(files) < 6:
        pytest.skip("no FSDD sample files available")
    out = tmp_path / "fsdd"
    out.mkdir()
    for f in files[:12]:
        shutil.copy(f, out / f.name)
    return out


def run_alone_and_under_torchrun(args: list[str], out: Path) -> tuple[Path, Path]:
    """``dstft ARGS`` in one process (→ out/one) and under torchrun with 2 local gloo processes
    (→ out/two); both must exit 0. One OpenMP thread each, so the two runs share the cores alike."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    launchers = {"one": [sys.executable, "-m", "dstft_cli"],
                 "two": [sys.executable, "-m", "torch.distributed.run", "--standalone",
                         "--nproc_per_node", "2", "-m", "dstft_cli"]}
    for name, launcher in launchers.items():
        proc = subprocess.run([*launcher, *args, "-o", str(out / name)], capture_output=True,
                              text=True, env=env, timeout=900)
        assert proc.returncode == 0, f"{name}: {proc.stderr}"
    return out / "one", out / "two"
