"""Regenerate the files in sample_data/ (deterministic: same bytes every run).

    python sample_data/make_samples.py                 # synthetic files + FSDD copies
    python sample_data/make_samples.py --fsdd DIR      # FSDD recordings from elsewhere

The synthetic signals come from ``dstft_cli.synth`` (seed 0, default parameters); WAVs are 16-bit
PCM scaled to a peak of 0.9. The FSDD clips are copied unchanged from the Free Spoken Digit Dataset
(CC BY-SA 4.0), by default from ``../shared/data/fsdd/recordings`` relative to the repository root.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from dstft_cli import synth

HERE = Path(__file__).resolve().parent
DEFAULT_FSDD = HERE.parent.parent / "shared" / "data" / "fsdd" / "recordings"
#: 3 digits × 4 speakers (take 0 of each): enough classes and files for a `dstft train` smoke test.
FSDD_FILES = [f"{digit}_{speaker}_0.wav" for digit in (0, 1, 2)
              for speaker in ("george", "jackson", "nicolas", "theo")]


def write_wav(path: Path, x: np.ndarray, sample_rate: float) -> None:
    x = 0.9 * x / np.max(np.abs(x))
    sf.write(path, x, int(sample_rate), subtype="PCM_16")


def write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n")


def vibration(duration: float = 2.0, sample_rate: float = 2000, seed: int = 0):
    """A machine-vibration-like record: 5 shaft harmonics (f0 20–40 Hz) plus 4 impacts, 20 dB SNR."""
    rotating, fs, _ = synth.harmonics(duration, sample_rate, n_harmonics=5, seed=seed,
                                      snr_db=None, f0_range=(20.0, 40.0))
    impacts, _, _ = synth.shocks(duration, sample_rate, snr_db=None, seed=seed + 1, n_shocks=4)
    clean = rotating + 0.8 * impacts / np.max(np.abs(impacts))
    noisy = synth.add_noise(clean, 20.0, np.random.default_rng(seed + 2))
    return 9.81 * 0.5 * noisy, fs   # m/s², peak ≈ 0.5 g


def stereo_chirp(duration: float = 1.0, sample_rate: float = 8000, seed: int = 0) -> np.ndarray:
    """(2, frames) float32: a 200 → 3000 Hz linear chirp, and the same delayed 5 ms, at half
    amplitude, in noise (20 dB SNR)."""
    n = int(duration * sample_rate)
    t = np.arange(n) / sample_rate
    f0, f1 = 200.0, 3000.0
    chirp = np.sin(2 * np.pi * (f0 * t + 0.5 * (f1 - f0) / duration * t**2))
    delayed = 0.5 * np.roll(chirp, int(0.005 * sample_rate))
    delayed[: int(0.005 * sample_rate)] = 0
    delayed = synth.add_noise(delayed, 20.0, np.random.default_rng(seed))
    return np.stack([chirp, delayed]).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fsdd", type=Path, default=DEFAULT_FSDD,
                        help="folder with the FSDD recordings (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=HERE, help="where to write (default: here)")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    x, fs, truth = synth.three_components()
    write_wav(out / "three_components.wav", x, fs)
    write_json(out / "three_components_truth.json", synth.truth_metadata(truth))

    x, fs, truth = synth.shocks()
    write_wav(out / "shocks.wav", x, fs)
    write_json(out / "shocks_truth.json", synth.truth_metadata(truth))

    x, fs, truth = synth.harmonics()
    write_wav(out / "harmonics.wav", x, fs)
    write_json(out / "harmonics_truth.json", synth.truth_metadata(truth))
    np.savetxt(out / "harmonics_truth.csv", np.column_stack([truth["time_s"], truth["f0_hz"]]),
               fmt=["%.6f", "%.4f"], delimiter=",", header="time_s,f0_hz", comments="")

    acc, fs = vibration()
    t = np.arange(acc.size) / fs
    np.savetxt(out / "vibration.csv", np.column_stack([t, acc]), fmt=["%.4f", "%.5f"],
               delimiter=",", header="time_s,acceleration", comments="")

    np.save(out / "stereo_chirp.npy", stereo_chirp())

    fsdd_out = out / "fsdd"
    if args.fsdd.is_dir():
        fsdd_out.mkdir(exist_ok=True)
        for name in FSDD_FILES:
            shutil.copyfile(args.fsdd / name, fsdd_out / name)
    else:
        print(f"{args.fsdd}: not found, FSDD files not copied", file=sys.stderr)
    print(f"wrote sample data to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
