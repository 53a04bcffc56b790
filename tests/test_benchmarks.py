"""Smoke test of the benchmark harness (``python -m benchmarks --quick``): it runs, it writes every
table with its provenance line, ``--only`` keeps the other tables. No timing is asserted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.__main__ import read_sections, write_document  # noqa: E402
from benchmarks.common import Section, interleaved, md_table  # noqa: E402
from benchmarks.optimum import grid_windows  # noqa: E402
from benchmarks.scaling import fit_exponent  # noqa: E402


def _run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_fit_exponent_recovers_a_power_law():
    xs = [1e3, 1e4, 1e5, 1e6]
    assert fit_exponent(xs, [3e-6 * x**1.5 for x in xs]) == pytest.approx(1.5)


def test_interleaved_averages_fast_calls_and_counts_rounds():
    # A function far below the minimum sample length is called many times per sample, a slow one
    # once; every sample is a time per call.
    counts = {"fast": 0, "slow": 0}

    def fast():
        counts["fast"] += 1

    def slow():
        counts["slow"] += 1
        import time

        time.sleep(0.004)

    samples, rounds = interleaved({"fast": fast, "slow": slow}, reps=3, device="cpu",
                                  budget_s=10.0, min_sample_s=0.003)
    assert rounds == 3 and len(samples["fast"]) == len(samples["slow"]) == 3
    assert counts["slow"] == 1 + 3  # warm-up and one call per round
    assert counts["fast"] > 1 + 3 * 10
    assert all(t >= 0.004 for t in samples["slow"]) and all(t < 0.001 for t in samples["fast"])


def test_a_slow_first_call_does_not_cut_the_rounds_of_a_fast_function():
    # The warm-up call of a fast function can be preempted on a busy machine; the cost of a round
    # must come from the calibrated time per call, not from that one call times thousands.
    import time

    counts = {"fast": 0}

    def fast():
        counts["fast"] += 1
        if counts["fast"] == 1:
            time.sleep(0.001)  # below min_sample_s, so it is calibrated as a fast call

    samples, rounds = interleaved({"fast": fast}, reps=3, device="cpu", budget_s=1.0,
                                  min_sample_s=0.003)
    assert rounds == 3 and len(samples["fast"]) == 3
    assert all(t < 0.001 for t in samples["fast"])


def test_md_table_shape():
    text = md_table(["a", "b"], [["1", "2"], ["3", "4"]])
    assert text.splitlines() == ["| a | b |", "|---|---|", "| 1 | 2 |", "| 3 | 4 |"]


def test_grid_windows_match_the_dstft_window_at_integer_lengths():
    import torch

    from dstft_cli.core import dstft

    x = torch.randn(3000, dtype=torch.float64)
    for theta in (100, 257, 1000):
        window = grid_windows(1024, torch.tensor([theta]), torch.float64)[0]
        ref = torch.stft(x, 1024, 64, window=window, center=True, pad_mode="constant",
                         return_complex=True).abs()
        ours = dstft(x, n_fft=1024, window_length=float(theta), hop_length=64).abs()
        assert torch.allclose(ours, ref, rtol=1e-9, atol=1e-12)


def test_only_replaces_its_own_section(tmp_path):
    out = tmp_path / "B.md"
    write_document(out, [Section("a", "a. A", "first a"), Section("b", "b. B", "first b")])
    write_document(out, [Section("b", "b. B", "second b")])
    sections = read_sections(out.read_text())
    assert "first a" in sections["a"] and "second b" in sections["b"]
    assert "first b" not in out.read_text()


@pytest.mark.slow
def test_unknown_table_is_rejected():
    proc = _run("--quick", "--only", "z")
    assert proc.returncode != 0
    assert "unknown table 'z'" in proc.stderr


@pytest.mark.slow
def test_quick_run_writes_every_table(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    proc = _run("--quick", "--device", "cpu", "--output", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text()
    # a case that raises is reported as a "failed (…)" row instead of stopping the run
    assert "failed (" not in text, [line for line in text.splitlines() if "failed (" in line]
    sections = read_sections(text)
    for key in ("a", "t", "b", "c", "d", "e", "p"):
        assert key in sections, f"table {key} missing"
        # provenance: command, core count, torch version, date
        assert "command `python -m benchmarks --quick" in sections[key]
        assert "cores" in sections[key] and "torch " in sections[key]
    assert "| constant θ |" in sections["a"]
    assert "| per-frame θₙ |" in sections["t"] and "2 fresh processes" in sections["t"]
    assert "grid" in sections["b"]
    assert "exponent vs signal length" in sections["c"]
    # the quick run never overwrites the real plot or BENCHMARKS.md
    assert "--quick sizes" in sections["a"]


@pytest.mark.slow
def test_cuda_device_skips_cleanly_without_cuda(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present: the CUDA tables really run")
    out = tmp_path / "B.md"
    proc = _run("--quick", "--device", "cuda", "--only", "a", "--output", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "no CUDA device" in read_sections(out.read_text())["a-cuda"]


def test_step_targets_mark_what_tables_s_a_and_o_measured():
    from benchmarks.__main__ import _step_targets
    from benchmarks.common import Context

    ctx = Context(verbose=False)
    ctx.metrics["s"] = {"losses": {(160_000, "shannon"): 1.6, (160_000, "kurtosis"): 0.9,
                                   (160_000, "shannon, naive autograd"): 6.0},
                        "steps": {(160_000, "time"): (5.4, 12.8), (1_600_000, "time"): (2.9, 11.0),
                                  (160_000, "tf"): (220.0, 15.0)}}
    ctx.metrics["a"] = {(160_000, "tf"): {"fused fb": 99.0, "speedup": 174.0}}
    ctx.metrics["o"] = {("tf", "--n-fft 1024 --hop 128"): {"wall": 34.7, "loss": 10.365},
                        ("time", "--n-fft 1024 --hop 128"): {"wall": 6.0, "loss": 10.46}}
    lines = _step_targets(ctx, lambda ok: "MET" if ok else "MISSED")
    text = "\n".join(lines)
    assert "entropy step (per-frame θ + Shannon, fwd+bwd) @ 160,000: 5.40× (≤ 4×) MISSED" in text
    assert "@ 1,600,000: 2.90× (≤ 4×) MET" in text
    assert "losses fwd+bwd @ 160,000 (≤ 1× each): 1 of 2 MISSED — above: shannon 1.60×" in text
    assert "per-TF-bin θ fwd+bwd @ 160,000: 99× (≤ 200×) MET" in text
    assert "174× faster than dstft 3.0.0 (≥ 100×) MET" in text
    assert "tf, --n-fft 1024 --hop 128: 34.7 s wall (≤ 60 s) MET" in text
    assert "time, --n-fft 1024 --hop 128: 6.0 s wall (≤ 3 s) MISSED" in text
    assert "defaults" not in text  # a run that did not happen is not reported
    assert len(lines) == 7
