"""Shared helpers: the run context, timing, peak memory in a fresh subprocess, Markdown tables."""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dstft_cli.core.transform import native_frames_available

REPO_ROOT = Path(__file__).resolve().parent.parent
MIB = 1024.0 * 1024.0


# ------------------------------------------------------------------------------------------ context
@dataclass
class Context:
    """What every table needs to know about this run."""

    quick: bool = False
    device: str = "cpu"
    command: str = "python -m benchmarks"
    reps: int = 5
    verbose: bool = True
    #: figures the targets summary is built from, filled by the tables as they run
    metrics: dict = field(default_factory=dict)

    def log(self, message: str) -> None:
        if self.verbose:
            print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def resolve_devices(option: str) -> list[str]:
    """``auto`` → cpu, plus cuda when present; ``cpu``; ``cuda`` (kept even when absent: skipped)."""
    if option == "auto":
        return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    return [option]


def cuda_missing(device: str) -> bool:
    return device == "cuda" and not torch.cuda.is_available()


def dstft3_version() -> str | None:
    """Version of the authors' package ``dstft`` when importable (the ``[bench]`` extra)."""
    try:
        from importlib.metadata import version

        import dstft  # noqa: F401

        return version("dstft")
    except Exception:  # noqa: BLE001 - any import problem means "not available"
        return None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def total_ram_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def _allocator_tuned() -> bool:
    from dstft_cli import runtime

    return bool(runtime._tuned)


def _native_description() -> str:
    from dstft_cli.core.engines import native

    return "built, with OpenMP" if native.openmp() else "built, **without OpenMP** (one thread)"


def provenance(ctx: Context, table_command: str | None = None) -> str:
    """The line every table carries: command, cores, torch, date, device."""
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    device = ctx.device
    if device == "cuda" and torch.cuda.is_available():
        device = f"cuda ({torch.cuda.get_device_name(0)})"
    third = dstft3_version()
    parts = [
        f"command `{table_command or ctx.command}`",
        f"{os.cpu_count()} cores ({cpu_model()}), torch threads {torch.get_num_threads()}",
        f"torch {torch.__version__}",
        f"dstft {third}" if third else "dstft 3.0.0 not installed",
        f"device {device}",
        "allocator " + ("tuned (`dstft_cli.runtime.tune_allocator`)" if _allocator_tuned()
                        else "default"),
        "C frames module " + (_native_description() if native_frames_available() else "**absent**"),
        now,
    ]
    if ctx.quick:
        parts.append("**--quick sizes: not representative**")
    return "_" + " · ".join(parts) + "_"


# ------------------------------------------------------------------------------------------ timing
def sync(device: str) -> None:
    if device == "cuda" and torch.cuda.is_available():
        torch.cuda.synchronize()


def time_call(fn: Callable[[], object], device: str = "cpu", calls: int = 1) -> float:
    """Seconds per call of ``fn``, averaged over ``calls`` back-to-back calls.

    With ``calls`` > 1, half as many calls again run first, untimed: after other code the first
    calls are slower on this VM (measured 520, 278, 220, 197, 188, 177, 174, 170 … 164 µs for
    consecutive forward+backward calls of a 16 k-sample transform after a batch of torch.stft
    calls, with one thread as with two), which would otherwise weigh on sub-millisecond calls
    according to how many of them fit in a sample.
    """
    for _ in range(calls // 2):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    sync(device)
    return (time.perf_counter() - start) / calls


#: a timing sample lasts at least this long: sub-millisecond calls are averaged over several
#: back-to-back calls, so that one preempted call on this shared 2-core VM cannot decide a ratio
MIN_SAMPLE_S = 0.05


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def _calls_per_sample(fn: Callable[[], object], device: str,
                      min_sample_s: float) -> tuple[int, float]:
    """Back-to-back calls that last at least ``min_sample_s`` (1, 2, 4, … as in timeit's
    autorange; the first call of a function, which includes one-off set-up, cannot tell) and the
    time per call measured with that many."""
    calls = 1
    while True:
        per_call = time_call(fn, device, calls)
        if per_call * calls >= min_sample_s or calls >= 1 << 20:
            return calls, per_call
        calls *= 2


def interleaved(
    functions: dict[str, Callable[[], object]],
    *,
    reps: int,
    device: str,
    budget_s: float,
    warmup: bool = True,
    min_sample_s: float = MIN_SAMPLE_S,
) -> tuple[dict[str, list[float]], int]:
    """Time every function ``reps`` times, interleaved (one round = each function once).

    Interleaving makes the ratios between them robust to load that changes during the run. A
    warm-up round is timed too; a function faster than ``min_sample_s`` is called that many
    times more per sample, back to back after untimed ones (the sample is the mean per call: the
    steady state of a loop that repeats the call, as in an optimisation). When one round costs more than
    ``budget_s / reps`` the number of rounds is reduced (never below 1) and the warm-up round
    counts as a sample when it is the only one affordable. Returns the samples (seconds per
    call) per function and the number of rounds kept.
    """
    samples: dict[str, list[float]] = {name: [] for name in functions}
    first = {name: time_call(fn, device) for name, fn in functions.items()} if warmup else {}
    calls: dict[str, int] = {}
    round_cost = 0.0
    for name, t in first.items():
        # The cost of a round comes from the calibrated time per call: a single fast call
        # preempted for a millisecond, multiplied by thousands of calls, would cut the rounds.
        calls[name], per_call = (_calls_per_sample(functions[name], device, min_sample_s)
                                 if t < min_sample_s else (1, t))
        round_cost += per_call * calls[name]
    rounds = reps
    if round_cost > 0 and round_cost * reps > budget_s:
        rounds = max(1, int(budget_s // round_cost))
    if rounds == 1 and round_cost > 0.25 * budget_s and first:
        for name, value in first.items():  # too slow to repeat: the first round is the sample
            samples[name].append(value)
        return samples, 1
    for _ in range(rounds):
        for name, fn in functions.items():
            samples[name].append(time_call(fn, device, calls.get(name, 1)))
    return samples, rounds


# ------------------------------------------------------------------------------------------ memory
def peak_memory(spec: dict, *, timeout: float = 900.0) -> dict:
    """Run one case in a fresh interpreter and return ``{"mib": peak delta}`` or ``{"error": ...}``.

    The worker (:mod:`benchmarks._peak`) builds the inputs, records the baseline (``ru_maxrss`` on
    CPU, ``torch.cuda.memory_allocated`` on CUDA), runs the operation once and reports the peak
    minus the baseline: the memory the operation itself needed.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks._peak", json.dumps(spec)],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        if proc.returncode < 0:
            tail = f"killed by signal {-proc.returncode}"
        return {"error": tail[:120]}
    return json.loads(lines[-1])


# ------------------------------------------------------------------------------------------ format
def md_table(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def fmt_ratio(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    if value >= 100:
        return f"{value:.0f}×"
    if value >= 10:
        return f"{value:.1f}×"
    return f"{value:.2f}×"


def fmt_mib(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    if value >= 1024:
        return f"{value / 1024:.2f} GiB"
    return f"{value:.0f} MiB"


def fmt_size(n: int) -> str:
    for unit, scale in (("M", 1_000_000), ("k", 1_000)):
        if n >= scale:
            value = n / scale
            return f"{value:g} {unit}" if value == int(value) else f"{value:.3g} {unit}"
    return str(n)


@dataclass
class Section:
    """One table of BENCHMARKS.md: a key (``a``, ``b-cuda`` …), a heading and its Markdown body."""

    key: str
    title: str
    body: str

    def render(self) -> str:
        return f"<!-- BEGIN {self.key} -->\n## {self.title}\n\n{self.body.strip()}\n<!-- END {self.key} -->"


def run_standalone(run: Callable[[Context], list], script: str) -> None:
    """``python benchmarks/<script>.py [--quick]``: one table module on its own, printed."""
    from dstft_cli.runtime import tune_allocator

    tune_allocator()  # as `python -m benchmarks` and the `dstft` command do
    quick = "--quick" in sys.argv
    ctx = Context(quick=quick, command=f"python benchmarks/{script}.py" + (" --quick" if quick
                                                                           else ""))
    for section in run(ctx):
        print(f"## {section.title}\n\n{section.body}\n")
