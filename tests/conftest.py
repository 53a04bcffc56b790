"""Shared fixtures."""

import shutil
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
