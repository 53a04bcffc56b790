"""Interrupts, dying workers and odd inputs, with real processes, signals, FIFOs and links.

Each test starts ``python -m dstft_cli`` as the leader of a new process group
(``start_new_session=True``: a signal to that group is what a Ctrl-C in a terminal sends) and checks the
interrupt contract of the batch engine: one line, exit 128 + signal, no temporary folder, no
process left behind.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc")]

RATE = 8000
#: Inputs that take seconds each, so that signals arrive while workers compute.
# long enough per input (about 9 s of CPU) that a worker past start-up is still in its first one
SLOW = ["--mode", "time", "--n-fft", "512", "--hop", "32", "--iters", "800", "--tol", "0",
        "--patience", "1000", "--no-plots"]
FAST = ["--n-fft", "64", "--hop", "16", "--min-length", "8", "--iters", "3", "--no-plots"]


def _write_inputs(folder: Path, count: int, seconds: float = 3.0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * RATE)) / RATE
    paths = []
    for k in range(count):
        x = 0.3 * np.sin(2 * np.pi * (300 + 40 * k) * t + 3 * np.sin(2 * np.pi * 2 * t))
        paths.append(folder / f"s{k}.wav")
        sf.write(paths[-1], x + 0.01 * rng.standard_normal(t.size), RATE, subtype="FLOAT")
    return paths


def _start(args, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "dstft_cli", *map(str, args)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()  # [state, ppid, …, utime, stime at 11, 12]


def _children(pid: int) -> list[int]:
    """The worker processes of ``pid`` (multiprocessing's resource tracker left out)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = _stat(int(entry))
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                worker = b"spawn_main" in fh.read()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z" and worker:
            found.append(int(entry))
    return found


def _cpu_seconds(pid: int) -> float:
    try:
        fields = _stat(pid)
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _computing(pid: int, workers: int = 2, seconds: float = 3.0):
    """True once ``workers`` workers of ``pid`` (or ``pid`` itself, for 0) have spent
    ``seconds`` of CPU time: past start-up (importing torch), into their first input."""
    def check() -> bool:
        if workers == 0:
            return _cpu_seconds(pid) >= seconds
        busy = [w for w in _children(pid) if _cpu_seconds(w) >= seconds]
        return len(busy) >= workers

    return check


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_for(condition, timeout: float = 90.0, step: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(step)


def _temporaries(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if ".tmp-" in p.name) if out.is_dir() else []


def _finish(proc: subprocess.Popen, timeout: float) -> tuple[int, str, float]:
    started = time.monotonic()
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    return proc.returncode, err, time.monotonic() - started


def _assert_clean(out: Path, workers: list[int]) -> None:
    assert _temporaries(out) == []
    _wait_for(lambda: not any(_alive(w) for w in workers), timeout=5)
    for folder in out.iterdir():
        if folder.is_dir():
            assert (folder / "params.json").is_file() and (folder / "spectrogram.npz").is_file()


def _parallel_batch(tmp_path: Path, count: int, args=SLOW):
    """``optimize`` over ``count`` inputs with two workers, once both compute: the process,
    the output folder and the workers' pids."""
    _write_inputs(tmp_path / "in", count)
    out = tmp_path / "out"
    proc = _start(["optimize", "in", *args, "--jobs", "2", "-o", out], tmp_path)
    _wait_for(_computing(proc.pid))
    return proc, out, _children(proc.pid)


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_first_signal_stops_a_parallel_batch_within_seconds(tmp_path, signum, code):
    proc, out, workers = _parallel_batch(tmp_path, 6)
    if signum == signal.SIGINT:
        os.killpg(proc.pid, signum)  # Ctrl-C: the whole foreground process group
    else:
        os.kill(proc.pid, signum)  # a scheduler's TERM: the main process only
    rc, err, took = _finish(proc, timeout=30)
    assert rc == code, err
    assert took < 10, took
    lines = err.splitlines()
    assert "Traceback" not in err
    interrupted = [ln for ln in lines if ln.startswith("interrupted:")]
    assert len(interrupted) == 1
    done = len([p for p in out.iterdir() if p.is_dir()])
    assert interrupted[0].startswith(f"interrupted: {done} done, 0 skipped, 0 failed, ")
    assert interrupted[0].endswith(f", {6 - done} not processed")
    assert done < 6
    _assert_clean(out, workers)
    with open(out / "summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == done and all(r["status"] == "ok" for r in rows)


def test_serial_batch_stops_and_the_next_run_resumes(tmp_path):
    _write_inputs(tmp_path / "in", 3)
    out = tmp_path / "out"
    proc = _start(["optimize", "in", *SLOW, "-o", out], tmp_path)
    _wait_for(_computing(proc.pid, workers=0, seconds=4.0))
    os.kill(proc.pid, signal.SIGTERM)
    rc, err, took = _finish(proc, timeout=30)
    assert rc == 143 and took < 10 and "Traceback" not in err
    assert [ln for ln in err.splitlines() if ln.startswith("interrupted:")] == [
        "interrupted: 0 done, 0 skipped, 0 failed, 3 not processed"]
    assert _temporaries(out) == []
    # a temporary folder left by a killed run (older than the next run) is removed by it
    stale = out / ".s1.tmp-deadbeef"
    stale.mkdir()
    os.utime(stale, (time.time() - 60, time.time() - 60))
    (out / "s0").mkdir()  # s0 finished in an earlier run: copy a real result in place
    res = subprocess.run([sys.executable, "-m", "dstft_cli", "optimize", "in/s0.wav", *FAST,
                          "-o", tmp_path / "first", "-q"], cwd=tmp_path, capture_output=True)
    assert res.returncode == 0
    os.rmdir(out / "s0")
    os.rename(tmp_path / "first" / "s0", out / "s0")
    res = subprocess.run([sys.executable, "-m", "dstft_cli", "optimize", "in", *FAST, "-o", out],
                         cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "in/s0.wav: skipped" in res.stderr
    assert not stale.exists()
    assert sorted(p.name for p in out.iterdir()) == ["s0", "s1", "s2", "summary.csv"]


def test_second_signal_exits_at_once(tmp_path):
    proc, _, workers = _parallel_batch(tmp_path, 4)
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    rc, err, took = _finish(proc, timeout=30)
    assert rc == 130 and took < 5 and "Traceback" not in err
    _wait_for(lambda: not any(_alive(w) for w in workers), timeout=5)


def test_a_signal_while_workers_start_prints_no_traceback(tmp_path):
    _write_inputs(tmp_path / "in", 4, seconds=1.0)
    out = tmp_path / "out"
    proc = _start(["optimize", "in", *SLOW, "--jobs", "2", "-o", out], tmp_path)
    _wait_for(lambda: len(_children(proc.pid)) >= 1, step=0.02)
    workers = _children(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)
    rc, err, took = _finish(proc, timeout=30)
    assert rc == 130, err
    assert "Traceback" not in err and took < 10
    assert len([ln for ln in err.splitlines() if ln.startswith("interrupted:")]) == 1
    _assert_clean(out, workers)


def test_workers_die_with_a_killed_parent(tmp_path):
    proc, _, workers = _parallel_batch(tmp_path, 4)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=10)
    _wait_for(lambda: not any(_alive(w) for w in workers), timeout=5)


def test_a_killed_worker_fails_only_its_input(tmp_path):
    # every input runs all its iterations (tol 0): the workers are still in their first input
    # when one dies
    proc, out, workers = _parallel_batch(tmp_path, 4, SLOW)
    victim = workers[0]
    os.kill(victim, signal.SIGKILL)
    rc, err, _ = _finish(proc, timeout=300)
    assert rc == 1, err
    died = [ln for ln in err.splitlines() if "worker process died" in ln]
    assert len(died) == 1 and died[0].endswith("(killed by signal 9)")
    assert err.splitlines()[-1] == "3 done, 0 skipped, 1 failed"
    assert _temporaries(out) == []
    assert len([p for p in out.iterdir() if (p / "params.json").is_file()]) == 3


# --------------------------------------------------------------------------------------------
# odd inputs: FIFOs, devices, link loops, colliding names, outputs inside the inputs


def _run(args, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dstft_cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def test_fifos_devices_and_link_loops_are_errors_of_their_input(tmp_path):
    _write_inputs(tmp_path / "in", 1, seconds=0.5)
    os.mkfifo(tmp_path / "in" / "pipe.wav")
    os.symlink("/dev/zero", tmp_path / "in" / "zero.wav")
    os.symlink("b.wav", tmp_path / "in" / "a.wav")
    os.symlink("a.wav", tmp_path / "in" / "b.wav")
    os.symlink("gone.wav", tmp_path / "in" / "broken.wav")
    res = _run(["optimize", "in", *FAST, "-o", "out", "-q"], tmp_path, timeout=120)  # no hang
    assert res.returncode == 1
    errors = sorted(ln for ln in res.stderr.splitlines() if ln.startswith("in/"))
    assert errors == ["in/a.wav: symbolic link loop", "in/b.wav: symbolic link loop",
                      "in/broken.wav: broken link",
                      "in/pipe.wav: not a regular file (a FIFO)",
                      "in/zero.wav: not a regular file (a character device)"]
    assert (tmp_path / "out" / "s0" / "params.json").is_file()


def test_result_names_never_collide(tmp_path):
    folder = tmp_path / "in"
    (s0,) = _write_inputs(folder, 1, seconds=0.5)
    for name in ("a.wav", "a.flac", "a_wav.wav"):
        data, rate = sf.read(s0)
        sf.write(folder / name, data, rate)
    s0.unlink()
    res = _run(["optimize", "in", *FAST, "-o", "out"], tmp_path)
    assert res.returncode == 0, res.stderr
    folders = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    assert len(folders) == 3
    import json

    recorded = {json.loads((f / "params.json").read_text())["input"]["path"] for f in folders}
    assert recorded == {"in/a.wav", "in/a.flac", "in/a_wav.wav"}
    # a result in -o that belongs to another input is not taken for this one's
    (tmp_path / "other").mkdir()
    data, rate = sf.read(folder / "a.flac")
    sf.write(tmp_path / "other" / "a_wav.wav", data[::-1], rate)
    res = _run(["optimize", "other/a_wav.wav", *FAST, "-o", "out"], tmp_path)
    assert res.returncode == 1
    assert res.stderr.startswith("other/a_wav.wav: out/a_wav holds the result of another input "
                                 "(in/a_wav.wav)")


def test_outputs_inside_an_input_folder_are_not_read_back(tmp_path):
    _write_inputs(tmp_path, 2, seconds=0.5)
    for _ in range(2):  # `dstft optimize .` twice: the second run skips, reads no output
        res = _run(["optimize", ".", *FAST], tmp_path)
        assert res.returncode == 0, res.stderr
    assert "spectrogram" not in res.stderr and "summary" not in res.stderr
    assert sorted(p.name for p in (tmp_path / "dstft_out").iterdir()) == ["s0", "s1",
                                                                         "summary.csv"]
    res = _run(["scan", ".", "--n-fft", "64", "--hop", "16", "--min-length", "8",
                "-o", "scans", "--no-plots"], tmp_path)
    assert res.returncode == 0, res.stderr
    res = _run(["optimize", ".", *FAST, "-o", "elsewhere"], tmp_path)  # old outputs are not inputs
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "elsewhere").iterdir()) == ["s0", "s1",
                                                                         "summary.csv"]


def test_unwritable_out_and_long_names_are_found_before_computing(tmp_path):
    (s0,) = _write_inputs(tmp_path / "in", 1, seconds=0.5)
    (tmp_path / "file").write_text("x")
    res = _run(["optimize", "in", *FAST, "-o", "file/out"], tmp_path)
    assert res.returncode == 2
    assert res.stderr.startswith("Error: -o/--out file/out: cannot create the folder")
    long_name = "x" * 250 + ".wav"
    os.rename(s0, tmp_path / "in" / long_name)
    res = _run(["optimize", "in", *FAST, "-o", "out"], tmp_path)
    assert res.returncode == 0, res.stderr
    (folder,) = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    assert folder.name.startswith("x" * 100) and len(folder.name.encode()) <= 200
