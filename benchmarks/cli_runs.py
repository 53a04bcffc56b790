"""Tables o, d and e — the CLI end to end (``dstft optimize`` in a subprocess).

o. ``dstft optimize`` on the speech recording (``../shared/data/real/jfk.flac``) per mode, with
   ``--n-fft 1024 --hop 128`` and with default options: wall and CPU time, peak memory,
   iterations, final loss, converged or not.

d. Batch throughput: ``dstft optimize <dir> --mode constant --no-plots --jobs 1`` and ``--jobs 2``
   on the FSDD recordings (``../shared/data/fsdd/recordings``): files per second.
e. A 10-minute 44.1 kHz signal in ``constant`` and ``time`` modes: wall time per iteration and peak
   RSS of the CLI process (and its children).

Both need ``dstft_cli/cli/``; until it exists they are skipped with a note. Output goes to a
temporary directory; nothing is written into the repository or the data folder.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import REPO_ROOT, Context, Section, fmt_mib, md_table, provenance, run_standalone

FSDD = (REPO_ROOT.parent / "shared" / "data" / "fsdd" / "recordings")
FSDD_ARG = "../shared/data/fsdd/recordings"
#: full run: every k-th recording, enough that --jobs 1 runs for about half a minute: with 150
#: files it took 5.5 s, of which the --jobs 2 workers' start-up (a spawned process importing
#: torch) was a large part, and the two rates came out equal
FULL_FILES = 1000
QUICK_FILES = 2
LONG_SECONDS, LONG_RATE = 600.0, 44_100
QUICK_LONG_SECONDS = 1.0
LONG_ITERS = 3  # iteration cap per stage for table e: the cost per iteration is what is measured

# Runs a command and prints its children's peak RSS (KiB on Linux) and wall time as JSON.
_RUSAGE_WRAPPER = (
    "import json, resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "wall = time.perf_counter() - t\n"
    "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "peak, cpu = usage.ru_maxrss, usage.ru_utime + usage.ru_stime\n"
    "sys.stderr.write(r.stderr[-4000:])\n"
    "sys.stdout.write(r.stdout[-4000:])\n"
    "print(json.dumps({'rc': r.returncode, 'wall': wall, 'cpu': cpu, 'peak_kib': peak}))\n"
)


def cli_available() -> str | None:
    """None when the CLI can be run, otherwise why not."""
    if not (REPO_ROOT / "dstft_cli" / "cli" / "__init__.py").exists():
        return "`dstft_cli/cli/` does not exist yet"
    exe = _dstft_command()
    try:
        proc = subprocess.run([*exe, "optimize", "--help"], capture_output=True, text=True,
                              timeout=120, cwd=REPO_ROOT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`dstft optimize --help` failed: {exc}"
    if proc.returncode != 0:
        return f"`dstft optimize --help` exited {proc.returncode}: {proc.stderr.strip()[-200:]}"
    return None


def _dstft_command() -> list[str]:
    exe = Path(sys.executable).with_name("dstft")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("dstft")
    return [found] if found else [sys.executable, "-m", "dstft_cli"]


def _help_text() -> str:
    proc = subprocess.run([*_dstft_command(), "optimize", "--help"], capture_output=True,
                          text=True, timeout=120, cwd=REPO_ROOT)
    return proc.stdout


def _option(help_text: str, *candidates: str) -> str | None:
    for name in candidates:
        if re.search(rf"(^|[\s,]){re.escape(name)}([\s,=]|$)", help_text, re.M):
            return name
    return None


def _run_cli(args: list[str], cwd: Path, timeout: float) -> dict:
    cmd = [sys.executable, "-c", _RUSAGE_WRAPPER, *_dstft_command(), *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired:
        return {"rc": -1, "error": f"timeout after {timeout:.0f} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{\"rc\"")]
    if not lines:
        return {"rc": -1, "error": proc.stderr.strip()[-300:] or "no output"}
    out = json.loads(lines[-1])
    if out["rc"] != 0:
        out["error"] = (proc.stderr.strip().splitlines() or ["?"])[-1][:200]
    out["stdout"] = proc.stdout
    return out


def _find_results(root: Path) -> list[dict]:
    """Every JSON result file the CLI wrote under ``root`` (params.json and the like)."""
    found = []
    for path in root.rglob("*.json"):
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return found


def _lookup(data, *keys):
    """First value found under any of ``keys`` anywhere in a nested dict/list."""
    if isinstance(data, dict):
        for key in keys:
            if key in data and not isinstance(data[key], dict | list):
                return data[key]
        for value in data.values():
            hit = _lookup(value, *keys)
            if hit is not None:
                return hit
    elif isinstance(data, list):
        for value in data:
            hit = _lookup(value, *keys)
            if hit is not None:
                return hit
    return None


# ------------------------------------------------------------------------------------------ d
def _subset(n_files: int | None, dest: Path) -> tuple[Path, int]:
    files = sorted(p for p in FSDD.iterdir() if p.suffix.lower() == ".wav")
    if n_files is None or n_files >= len(files):
        return FSDD, len(files)
    step = len(files) / n_files
    chosen = [files[int(i * step)] for i in range(n_files)]
    dest.mkdir(parents=True, exist_ok=True)
    for path in chosen:
        (dest / path.name).symlink_to(path)
    return dest, len(chosen)


def table_d(ctx: Context) -> Section:
    key, title = "d", "d. Batch throughput through the CLI (--jobs 1 vs --jobs 2)"
    reason = cli_available()
    if reason or not FSDD.is_dir():
        why = reason or f"{FSDD_ARG} not found"
        return Section(key, title, provenance(ctx) + f"\n\nSkipped: {why}. Written to run "
                       f"`dstft optimize {FSDD_ARG} --mode constant --no-plots --jobs N` once it "
                       "exists.")
    help_text = _help_text()
    out_opt = _option(help_text, "--out-dir", "--output-dir", "--outdir", "--output", "--out", "-o")
    n_files = QUICK_FILES if ctx.quick else FULL_FILES
    rows, notes, rates = [], [], {}
    with tempfile.TemporaryDirectory(prefix="dstft-bench-") as tmp:
        tmp = Path(tmp)
        data, count = _subset(n_files, tmp / "input")
        data_arg = FSDD_ARG if data == FSDD else str(data)
        for jobs in (1, 2):
            out = tmp / f"out-jobs{jobs}"
            out.mkdir()
            args = ["optimize", str(data if data != FSDD else FSDD), "--mode", "constant",
                    "--no-plots", "--jobs", str(jobs), "-q"]
            if out_opt:
                args += [out_opt, str(out)]
            ctx.log(f"table d: --jobs {jobs} on {count} files")
            res = _run_cli(args, cwd=out, timeout=3600)
            if res.get("rc") != 0:
                notes.append(f"--jobs {jobs}: failed ({res.get('error')})")
                rows.append([str(jobs), str(count), "failed", "—", "—"])
                continue
            rates[jobs] = count / res["wall"]
            rows.append([str(jobs), str(count), f"{rates[jobs]:.2f}",
                         f"{rates[jobs] / rates[1]:.2f}×" if 1 in rates else "—",
                         fmt_mib(res["peak_kib"] / 1024)])
    subset = ("all files" if data == FSDD else
              f"{count} of the {len(list(FSDD.glob('*.wav')))} recordings (one in "
              f"{len(list(FSDD.glob('*.wav'))) // count}, sorted by name), so that `--jobs 1` "
              "runs for tens of seconds and the workers' start-up does not decide the ratio")
    command = (f"dstft optimize {data_arg if data == FSDD else FSDD_ARG} --mode constant "
               "--no-plots --jobs N")
    body = [provenance(ctx), "", f"`{command} -q` on {subset}; outputs to a temporary directory"
            f"{' via ' + out_opt if out_opt else ''}. Files per second = files / wall time of the "
            "whole command (start-up included). Peak RSS: the largest single process.", "",
            md_table(["--jobs", "files", "files / s", "vs --jobs 1", "peak RSS"], rows)]
    body += [f"- {n}" for n in notes]
    return Section(key, title, "\n".join(body))


# ------------------------------------------------------------------------------------------ e
def _long_config(mode: str) -> str:
    """Recipe file of table e: fixed start, fixed number of Adam iterations, no constant stage."""
    return (f'mode = "{mode}"\ninit = "fixed"\ninit_length = 512.0\noptimizer = "adam"\n'
            f'iters = {LONG_ITERS}\npatience = {LONG_ITERS + 1}\ndevice = "cpu"\n')


def _long_signal(path: Path, seconds: float, rate: int) -> None:
    """A long test signal written chunk by chunk (FM tone + tone + bursts + noise), float WAV."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    chunk = rate * 10
    total = int(seconds * rate)
    with sf.SoundFile(str(path), "w", samplerate=rate, channels=1, subtype="FLOAT") as f:
        for start in range(0, total, chunk):
            n = min(chunk, total - start)
            t = (start + np.arange(n)) / rate
            # f(t) = 3 kHz + 2 kHz·sin(2π·2t): fast enough that the optimum θ is inside (0, n_fft)
            fm = np.cos(2 * np.pi * (3000 * t - 2000 / (2 * np.pi * 2) * np.cos(2 * np.pi * 2 * t)))
            tone = 0.7 * np.cos(2 * np.pi * 4000 * t)
            bursts = (np.mod(t, 2.0) < 0.005) * np.sin(2 * np.pi * 8000 * t)
            f.write((fm + tone + bursts + 0.01 * rng.standard_normal(n)).astype(np.float32))


def table_e(ctx: Context) -> Section:
    key, title = "e", "e. A 10-minute 44.1 kHz signal through the CLI"
    reason = cli_available()
    if reason:
        return Section(key, title, provenance(ctx) + f"\n\nSkipped: {reason}. Written to run "
                       "`dstft optimize long.wav --mode constant|time --no-plots` on a 10-minute "
                       "44.1 kHz signal once it exists.")
    out_opt = _option(_help_text(), "--out-dir", "--output-dir", "--outdir", "--output", "--out",
                      "-o")
    seconds = QUICK_LONG_SECONDS if ctx.quick else LONG_SECONDS
    rows, notes = [], []
    with tempfile.TemporaryDirectory(prefix="dstft-bench-long-") as tmp:
        tmp = Path(tmp)
        wav = tmp / "long.wav"
        ctx.log(f"table e: writing a {seconds:g} s signal")
        _long_signal(wav, seconds, LONG_RATE)
        for mode in ("constant", "time"):
            out = tmp / f"out-{mode}"
            out.mkdir()
            config = tmp / f"{mode}.toml"
            config.write_text(_long_config(mode))
            args = ["optimize", str(wav), "--config", str(config), "--no-plots", "-q"]
            if out_opt:
                args += [out_opt, str(out)]
            ctx.log(f"table e: {mode}")
            res = _run_cli(args, cwd=out, timeout=3000)
            if res.get("rc") != 0:
                notes.append(f"{mode}: failed ({res.get('error')})")
                rows.append([mode, "failed", "—", "—", "—"])
                continue
            results = _find_results(out)
            iterations = next((v for v in (_lookup(r, "iterations") for r in results)
                               if isinstance(v, int | float)), None)
            elapsed = next((v for v in (_lookup(r, "elapsed_s", "elapsed", "seconds")
                                        for r in results) if isinstance(v, int | float)), None)
            per_iter = None
            if iterations:
                per_iter = (elapsed if elapsed else res["wall"]) / iterations
            peak = res["peak_kib"] / 1024
            ctx.metrics.setdefault("e", {})[mode] = {"peak_mib": peak, "per_iter": per_iter}
            ok = "✅" if peak < 4096 else "❌"
            rows.append([mode, str(iterations if iterations is not None else "?"),
                         f"{per_iter:.2f}" if per_iter else "—", f"{res['wall']:.1f}",
                         f"{fmt_mib(peak)}" + (f" {ok}" if mode == "constant" else "")])
    body = [provenance(ctx), "",
            "`dstft optimize long.wav --config MODE.toml --no-plots -q` with MODE.toml = `"
            + _long_config("MODE").strip().replace("\n", "; ") + "` on a "
            f"{seconds:g} s, {LONG_RATE} Hz mono float WAV ({int(seconds * LONG_RATE):,} samples: "
            "FM tone, tone, bursts, noise), n_fft 1024, hop 128 (defaults). A fixed start and a "
            f"fixed number of Adam iterations ({LONG_ITERS}, each one forward+backward) isolate "
            "the cost per iteration: *s / iteration* is the recipe's `elapsed_s` (params.json) over "
            "its iterations, so it also carries the final float64 spectrogram once. Peak RSS: "
            "ru_maxrss of the CLI process (reading, optimising, writing spectrogram.npz). Target: "
            "constant mode under 4 GiB.", "",
            md_table(["mode", "iterations", "s / iteration", "wall time of the command (s)",
                      "peak RSS"], rows)]
    body += [f"- {n}" for n in notes]
    return Section(key, title, "\n".join(body))


# ------------------------------------------------------------------------------------------ o
SPEECH = next((root / "shared" / "data" / "real" / "jfk.flac" for root in (REPO_ROOT.parent,
               REPO_ROOT.parent.parent) if (root / "shared" / "data" / "real" / "jfk.flac").exists()),
              REPO_ROOT.parent / "shared" / "data" / "real" / "jfk.flac")
RUN_MODES = ("constant", "time", "freq", "tf")
RUN_OPTIONS = (("--n-fft", "1024", "--hop", "128"), ())
#: stop starting new runs of table o after this many seconds (the rows not run are listed)
RUN_BUDGET_S = 3600.0


def _load() -> str:
    import os

    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "?"
    return f"{one:.1f} / {five:.1f}"


def _optimize_speech(mode: str, options: tuple[str, ...], out: Path, timeout: float) -> dict:
    result = _run_cli(["optimize", str(SPEECH), *options, "--mode", mode, "--no-plots", "-q",
                       "-o", str(out)], cwd=REPO_ROOT, timeout=timeout)
    found = [r for r in _find_results(out) if "loss_final" in r]
    if found:
        for key in ("iterations", "loss_final", "converged", "n_fft", "hop", "elapsed_s"):
            result[key] = found[0].get(key)
    return result


def table_o(ctx: Context) -> Section:
    import time

    key, title = "o", "o. `dstft optimize` on the speech recording (cpu)"
    head = provenance(ctx, "python -m benchmarks --only o") + "\n\n"
    reason = cli_available()
    if ctx.quick or reason or not SPEECH.exists():
        why = "--quick" if ctx.quick else reason or f"{SPEECH} not found"
        return Section(key, title, head + f"Skipped: {why}.")
    rows, missing = [], []
    started = time.perf_counter()
    # the cheaper modes first: a budget spent by tf leaves the others measured
    for mode, options in ((m, o) for m in RUN_MODES for o in RUN_OPTIONS):
        label = " ".join(options) or "defaults"
        left = RUN_BUDGET_S - (time.perf_counter() - started)
        if left <= 0:
            missing.append(f"`--mode {mode}` with {label}")
            continue
        ctx.log(f"table o: {mode}, {label}")
        load = _load()
        with tempfile.TemporaryDirectory(prefix="dstft-bench-o-") as tmp:
            r = _optimize_speech(mode, options, Path(tmp) / "out", timeout=left)
        if r.get("rc") != 0:
            rows.append([mode, label, "failed: " + r.get("error", "?"), *["—"] * 7, load])
            continue
        loss = r.get("loss_final")
        ctx.metrics.setdefault("o", {})[(mode, label)] = {"wall": r["wall"], "loss": loss}
        rows.append([mode, label, f"{r.get('n_fft')} / {r.get('hop')}", f"{r['wall']:.1f} s",
                     f"{r['cpu']:.1f} s", fmt_mib(r["peak_kib"] / 1024),
                     str(r.get("iterations", "—")),
                     f"{loss:.5g}" if isinstance(loss, float) else "—",
                     "yes" if r.get("converged") else "no", load])
    body = [head + "`dstft optimize ../shared/data/real/jfk.flac [--n-fft 1024 --hop 128] --mode MODE "
            "--no-plots -q -o OUT` (11 s, 44.1 kHz stereo speech, the channels mixed), one fresh "
            "process per run, one after the other. *wall* and *CPU* (user + system) of the whole "
            "command (start-up, reading, optimising, writing); peak resident memory of the process "
            "(ru_maxrss); n_fft / hop used, iterations (all stages), final loss and convergence "
            "from its params.json; the load average (1 / 5 min, 2 cores) when the run started. "
            "On a shared machine the CPU time is the steadier figure: the wall time grows with "
            "the load.", "",
            md_table(["mode", "options", "n_fft / hop", "wall", "CPU", "peak memory",
                      "iterations", "final loss", "converged", "load"], rows)]
    if missing:
        body.append(f"\nNot run (the table's {RUN_BUDGET_S / 60:.0f}-minute budget was spent): "
                    + ", ".join(missing) + ".")
    return Section(key, title, "\n".join(body))


def run(ctx: Context, which: str = "de") -> list[Section]:
    sections = []
    if ctx.device != "cpu":
        return [Section(f"{k}-{ctx.device}", f"{k}. CLI ({ctx.device})", provenance(ctx) +
                        "\n\nThe CLI tables run on the CPU only.") for k in which]
    tables = {"o": table_o, "d": table_d, "e": table_e}
    for key in which:
        sections.append(tables[key](ctx))
    return sections


if __name__ == "__main__":
    run_standalone(run, "cli_runs")
