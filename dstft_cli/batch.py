"""The batch engine of every ``dstft`` command that takes inputs: inputs → jobs → outcomes.

:func:`run_batch` expands the inputs (files as given, folders recursively), gives each input a
result name that is unique by construction, runs one *worker* per input — in this process, or
with ``jobs > 1`` in a pool of worker processes — and reports each :class:`Outcome` as one line.
Its return value is the exit status: 0, 1 when an input failed, 128 + signal number when the
batch was interrupted.

A worker is a module-level function ``worker(job: Job) -> Outcome`` (picklable by reference). It
raises :class:`~dstft_cli.io.InputError` for a bad input, :class:`~dstft_cli.io.ResultExists` when
its result is there already (the input is *skipped*), and may raise anything else: every exception
becomes a failed outcome of that input only (one line; the traceback with ``--debug``).

Interrupts (SIGINT, SIGTERM): the first one stops dispatching, cancels the queued inputs, stops
the running workers (their temporary folders are removed), prints one line saying what finished
and what did not, and the batch returns 128 + the signal number; a second one exits at once.
Worker processes die with their parent, whatever kills it (``PR_SET_PDEATHSIG`` on Linux and a
watchdog thread); a worker that dies fails only its own input and is replaced.

This module never imports click or torch.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .io import one_line

__all__ = [
    "Job", "Outcome", "BatchSettings", "Interrupted", "CommandError", "UsageProblem",
    "run_batch", "expand_inputs", "result_names", "shard_of", "tqdm_enabled", "say", "one_line",
]

#: Seconds a stopped worker gets to remove its temporary folder before it is killed.
STOP_GRACE_S = 3.0
#: Seconds between progress lines when stderr is not a terminal.
PROGRESS_INTERVAL_S = 10.0


class CommandError(Exception):
    """A failure of the whole command (not of one input): one line, exit status 1."""


class UsageProblem(CommandError):
    """Option values that only turn out bad when used (a generator refusing them): exit 2."""


class Interrupted(BaseException):
    """Raised in the main process by the first SIGINT/SIGTERM while a batch runs in it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@dataclass
class Outcome:
    """What happened to one input (sent back by the worker processes, so plain data only)."""

    path: str
    status: str  # "ok" | "skipped" | "failed"
    message: str = ""
    detail: str = ""  # traceback with --debug
    output: str = ""
    #: columns of the batch summary (θ, losses, warnings, …) that the worker knows
    summary: dict = field(default_factory=dict)


@dataclass
class Job:
    """One input to process; picklable so that it can be sent to a worker process."""

    path: str
    name: str
    out_root: str
    overwrite: bool
    reader: dict
    options: dict = field(default_factory=dict)
    progress: bool = False
    debug: bool = False


@dataclass(frozen=True)
class BatchSettings:
    """The options every command over inputs shares (built by ``dstft_cli.cli.options``)."""

    out: str = "dstft_out"
    overwrite: bool = False
    jobs: int = 1
    quiet: bool = False
    debug: bool = False
    plots: bool = True
    reader: dict = field(default_factory=dict)
    #: (K, N): process only shard K (1-based) of N, see :func:`shard_of`
    shard: tuple[int, int] | None = None


# --------------------------------------------------------------------------------------------
# output


def tqdm_enabled(quiet: bool) -> bool:
    """Progress bars only on a terminal (logs get a progress line instead)."""
    return not quiet and sys.stderr.isatty()


def say(text: str, *, err: bool = False) -> None:
    """One line on stdout (``err``: stderr) that does not break a progress bar."""
    from tqdm import tqdm

    tqdm.write(text, file=sys.stderr if err else sys.stdout)


# --------------------------------------------------------------------------------------------
# inputs and names


def expand_inputs(inputs: Sequence[str], *, skip: Callable[[Path], bool] | None = None,
                  whole: Callable[[Path], bool] | None = None,
                  exclude: Sequence[str | os.PathLike] = ()) -> tuple[list[Path], list[Outcome]]:
    """Files as given, directories recursively; a missing path or an empty folder becomes a
    failed outcome. ``skip(path)`` drops files that are not inputs (e.g. truth files);
    ``whole(path)`` marks directories that are one input each (e.g. result folders);
    folders in ``exclude`` (the output folder) are not searched."""
    from .io import InputError, iter_inputs

    paths: list[Path] = []
    failed: list[Outcome] = []
    seen: set[Any] = set()
    for raw in inputs:
        try:
            found = ([Path(raw)] if whole is not None and whole(Path(raw))
                     else iter_inputs([raw], exclude=exclude))
        except InputError as exc:
            failed.append(Outcome(raw, "failed", str(exc)))
            continue
        if skip is not None:
            found = [p for p in found if not skip(p)]
        if not found:
            failed.append(Outcome(raw, "failed", f"{raw}: no supported files in this folder"))
        for p in found:
            try:
                key: Any = p.stat()[1:3]  # (inode, device): the same file under two names
            except OSError:
                key = os.path.abspath(p)
            if key not in seen:
                seen.add(key)
                paths.append(p)
    return paths, failed


#: Longest result name (UTF-8 bytes): the file-name limit (255) less what temporary names add.
MAX_NAME_BYTES = 200


def _path_hash(p: Path, digits: int = 8) -> str:
    import hashlib

    return hashlib.sha1(os.path.normpath(str(p)).encode("utf-8", "surrogateescape")).hexdigest()[:digits]


def _fit(name: str, p: Path, max_bytes: int) -> str:
    if len(name.encode("utf-8", "surrogateescape")) <= max_bytes:
        return name
    cut = name.encode("utf-8", "surrogateescape")[:max_bytes - 9].decode("utf-8", "ignore")
    return f"{cut}_{_path_hash(p)}"


def shard_of(path: str | os.PathLike, count: int) -> int:
    """The shard (1 … count) of an input: a hash of its path as given, so that an input keeps its
    shard when others are added or removed (shards are balanced only on average)."""
    return int(_path_hash(Path(path), 16), 16) % count + 1


def result_names(paths: Sequence[Path], max_bytes: int = MAX_NAME_BYTES) -> list[str]:
    """One result name per input, unique by construction and independent of the inputs' order:

    1. the input's stem, when no other input has the same stem;
    2. otherwise stem and extension, ``a.wav`` → ``a_wav``, ``a.flac`` → ``a_flac``;
    3. a name of step 2 that equals another input's name (``a_wav.wav``, or ``a.wav`` in
       another folder) gets ``_`` and 8 hex digits of a hash of the input's path;
    4. a name longer than ``max_bytes`` is cut and gets the hash.
    """
    stems = [p.stem or p.name for p in paths]
    count: dict[str, int] = {}
    for stem in stems:
        count[stem] = count.get(stem, 0) + 1
    built = [count[stem] > 1 for stem in stems]
    names = [f"{stem}_{p.suffix.lstrip('.').lower()}" if dup and p.suffix else stem
             for stem, p, dup in zip(stems, paths, built, strict=True)]
    for digits in (8, 16, 40):
        count = {}
        for n in names:
            count[n] = count.get(n, 0) + 1
        clash = [count[n] > 1 for n in names]
        if not any(clash):
            break
        names = [f"{n}_{_path_hash(p, digits)}" if c and (b or digits > 8) else n
                 for n, p, c, b in zip(names, paths, clash, built, strict=True)]
    names = [_fit(n, p, max_bytes) for n, p in zip(names, paths, strict=True)]
    if len(set(names)) != len(names):  # pragma: no cover - a hash collision
        raise CommandError("two inputs get the same result name; rename one of them")
    return names


# --------------------------------------------------------------------------------------------
# running one job


def guarded(worker: Callable[[Job], Outcome], job: Job) -> Outcome:
    """Run ``worker`` turning every error into a failed (or skipped) outcome of this input; the
    outcome's summary gets the input, its status and error, and the time it took."""
    started = time.perf_counter()
    outcome = _guarded(worker, job)
    outcome.summary.update(input=job.path, status=outcome.status,
                           elapsed_s=round(time.perf_counter() - started, 3))
    if outcome.status == "failed":
        outcome.summary["error"] = outcome.message
    return outcome


def _guarded(worker: Callable[[Job], Outcome], job: Job) -> Outcome:
    from .io import InputError, ResultExists
    from .summary import row_from_result

    try:
        return worker(job)
    except ResultExists as exc:
        previous = row_from_result(exc.path) if exc.path.is_dir() else None
        return Outcome(job.path, "skipped", f"{job.path}: skipped, {exc}", output=str(exc.path),
                       summary=previous or {"result": str(exc.path)})
    except InputError as exc:
        return Outcome(job.path, "failed", str(exc))
    except MemoryError:
        return Outcome(job.path, "failed", f"{job.path}: out of memory")
    except Exception as exc:  # noqa: BLE001 - one bad file never stops a batch
        detail = traceback.format_exc() if job.debug else ""
        expected = isinstance(exc, (ValueError, TypeError, OSError)) or \
            type(exc).__name__ == "RecipeError"
        kind = "" if expected else f"unexpected {type(exc).__name__}: "
        return Outcome(job.path, "failed", f"{job.path}: {kind}{one_line(exc)}", detail)


# --------------------------------------------------------------------------------------------
# signals


class _Signals:
    """SIGINT/SIGTERM while a batch runs: the first sets :attr:`signum` (and, when ``raise_now``,
    raises :class:`Interrupted` in the main thread); the second ends the process at once."""

    def __init__(self, raise_now: bool):
        self.raise_now = raise_now
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            os._exit(128 + signum)
        self.signum = signum
        if self.raise_now:
            raise Interrupted(signum)

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


# --------------------------------------------------------------------------------------------
# worker processes


_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    """End this process when its parent dies: the kernel's parent-death signal where there is
    one, and a watchdog thread everywhere (the parent pid changes when it dies)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _worker_stop(signum, frame) -> None:
    raise Interrupted(signum)


def _worker_main(conn, parent_pid: int) -> None:
    """Loop of a worker process: receive ``(worker, job)``, send back the outcome.

    SIGINT is ignored from the start (the parent starts workers with it ignored, and Python
    keeps an inherited SIG_IGN): a Ctrl-C reaches the whole process group, and the parent
    decides what it stops. SIGTERM, the parent's request to stop, unwinds the running job, so
    its temporary folder is removed, and ends the process without a traceback.
    """
    try:
        signal.signal(signal.SIGTERM, _worker_stop)
        if hasattr(signal, "pthread_sigmask"):  # blocked by the parent around the start
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        _die_with_parent(parent_pid)
        from .runtime import tune_allocator

        tune_allocator()  # a spawned worker starts from a fresh process
        with contextlib.suppress(ImportError):
            import torch

            torch.set_num_threads(1)
        while True:
            message = conn.recv()
            if message is None:
                return
            worker, job = message
            conn.send(guarded(worker, job))
    except (Interrupted, EOFError, KeyboardInterrupt, BrokenPipeError):
        os._exit(0)


@dataclass
class _Worker:
    process: Any
    conn: Any
    job: Job | None = None


class _Pool:
    """``size`` worker processes, each fed one job at a time over its own pipe."""

    def __init__(self, size: int):
        self.size = size
        self.context = multiprocessing.get_context("spawn")
        self.workers: list[_Worker] = []

    def start_worker(self) -> _Worker:
        parent_conn, child_conn = self.context.Pipe()
        process = self.context.Process(target=_worker_main, args=(child_conn, os.getpid()),
                                       daemon=True, name="dstft-worker")
        # The child inherits SIGINT ignored (see _worker_main). It is blocked as well while the
        # parent ignores it: Linux keeps a blocked signal pending even when it is ignored, so a
        # Ctrl-C in these milliseconds reaches the parent's own handler once it is unblocked,
        # instead of being lost.
        blocking = hasattr(signal, "pthread_sigmask")
        if blocking:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            process.start()
        finally:
            signal.signal(signal.SIGINT, previous)
            if blocking:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        child_conn.close()
        worker = _Worker(process, parent_conn)
        self.workers.append(worker)
        return worker

    def retire(self, worker: _Worker) -> None:
        self.workers.remove(worker)
        worker.conn.close()
        worker.process.join(timeout=0.1)

    def stop(self, finished: Callable[[Outcome], None] | None = None) -> None:
        """Ask idle workers to leave, interrupt busy ones, kill what is left after the grace.

        An outcome a busy worker sent before it stopped (its result is complete on disk) is
        handed to ``finished``, so that what was written is also counted and summarised."""
        for w in self.workers:
            with contextlib.suppress(OSError, ValueError):
                if w.job is None:
                    w.conn.send(None)
                elif w.process.is_alive():
                    w.process.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for w in self.workers:
            w.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.kill()
                w.process.join(timeout=1.0)
            if w.job is not None and finished is not None:
                with contextlib.suppress(EOFError, OSError):
                    if w.conn.poll():
                        outcome = w.conn.recv()
                        if outcome is not None:
                            finished(outcome)
                            w.job = None
            w.conn.close()


def remove_temporaries(out_root: str | os.PathLike, name: str,
                       older_than: float | None = None) -> int:
    """Remove the temporary files and folders a run for result ``name`` leaves when it is
    killed (``.<name>.tmp-*``, ``.<name>.old-*``, ``.<name>.scan.csv.*.tmp``); with
    ``older_than`` only those last modified before that time. Returns how many were removed."""
    import shutil

    root = Path(out_root)
    if not root.is_dir():
        return 0
    removed = 0
    prefix = f".{name}."
    with contextlib.suppress(OSError):
        for entry in os.scandir(root):
            rest = entry.name[len(prefix):]
            if not entry.name.startswith(prefix):
                continue
            if not (rest.startswith(("tmp-", "old-"))
                    or (rest.startswith(("scan.csv.", "scan.png.")) and rest.endswith(".tmp"))):
                continue
            try:
                if older_than is not None and entry.stat(follow_symlinks=False).st_mtime >= older_than:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
                removed += 1
            except OSError:
                continue
    return removed


# --------------------------------------------------------------------------------------------
# the batch


class _Report:
    """Collects outcomes, prints one line each, draws the progress bar or progress lines."""

    def __init__(self, total: int, quiet: bool):
        from tqdm import tqdm

        self.total, self.quiet = total, quiet
        self.outcomes: list[Outcome] = []
        show_bar = tqdm_enabled(quiet) and total > 1
        self.bar = tqdm(total=total, desc="inputs", unit="file", disable=not show_bar,
                        file=sys.stderr, dynamic_ncols=True, leave=False)
        self.lines = not quiet and not sys.stderr.isatty() and total > 1
        self.started = self.last_line = time.monotonic()

    def add(self, o: Outcome, *, count: bool = True) -> None:
        o.summary.setdefault("input", o.path)
        o.summary.setdefault("status", o.status)
        if o.status == "failed":
            o.summary.setdefault("error", o.message)
        self.outcomes.append(o)
        if o.status == "ok":
            if not self.quiet:
                say(o.message)
                for warning in o.summary.get("warnings", ()):  # all kept in params.json
                    say(f"{o.path}: warning: {warning}", err=True)
        else:
            say(o.message, err=True)
            if o.detail:
                say(o.detail.rstrip(), err=True)
        if count:
            self.bar.update(1)
        self.tick()

    def tick(self) -> None:
        now = time.monotonic()
        if self.lines and now - self.last_line >= PROGRESS_INTERVAL_S:
            self.last_line = now
            say(f"progress: {self.counts_text()} of {self.total} inputs "
                f"({now - self.started:.0f} s)", err=True)

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    def counts_text(self) -> str:
        return (f"{self.count('ok')} done, {self.count('skipped')} skipped, "
                f"{self.count('failed')} failed")

    def close(self) -> None:
        self.bar.close()


def run_batch(worker: Callable[[Job], Outcome], inputs: Sequence[str], settings: BatchSettings,
              options: dict, *, skip: Callable[[Path], bool] | None = None,
              whole: Callable[[Path], bool] | None = None, progress: bool = False,
              suffix: str = "",
              expand: Callable[[Sequence[str]], tuple[list[Path], list[Outcome]]] | None = None
              ) -> int:
    """Process every input with ``worker``, report, write the summary; returns the exit status.

    ``options`` (picklable) reach the worker as ``job.options``; ``progress`` asks the worker
    for its own progress bar (when on a terminal and in this process); ``suffix`` is appended
    to every result name (``.track`` gives ``OUT/<stem>.track/``). ``expand`` replaces
    :func:`expand_inputs` for commands whose inputs are not signal files (result folders).
    The output folder is created and checked before anything is computed
    (:class:`UsageProblem` when it cannot be written).
    """
    started = time.time()
    name_bytes = _check_out(settings.out)
    if expand is not None:
        paths, failed_early = expand(inputs)
    else:
        paths, failed_early = expand_inputs(inputs, skip=skip, whole=whole,
                                            exclude=[settings.out])
    names = [name + suffix for name in result_names(paths, name_bytes - len(suffix))]
    if settings.shard is not None:  # names come from every input, so all shards agree on them
        k, n = settings.shard
        mine = [i for i, p in enumerate(paths) if shard_of(p, n) == k]
        paths, names = [paths[i] for i in mine], [names[i] for i in mine]
        failed_early = [o for o in failed_early if shard_of(o.path, n) == k]
    for o in failed_early:
        o.summary.update(input=o.path, status="failed", error=o.message)
    bars = progress and tqdm_enabled(settings.quiet)
    jobs = [Job(str(p), n, settings.out, settings.overwrite, dict(settings.reader), options,
                progress=bars, debug=settings.debug) for p, n in zip(paths, names, strict=True)]
    for job in jobs:  # left by a run that was killed; a running one's are newer than this run
        remove_temporaries(job.out_root, job.name, older_than=started)
    report = _Report(len(jobs), settings.quiet)
    for o in failed_early:
        report.add(o, count=False)
    with _Signals(raise_now=True) as signals:
        try:
            if settings.jobs > 1 and len(jobs) > 1:
                signals.raise_now = False
                _run_pool(worker, jobs, settings.jobs, report, signals)
            else:
                for job in jobs:
                    report.add(guarded(worker, job))
        except Interrupted:
            pass
        finally:
            signals.raise_now = False  # from here on a first signal only marks the batch
            report.close()
        summary_path = _write_summary(settings.out, report.outcomes, settings.shard)
        if signals.signum is not None:
            not_done = len(jobs) - (len(report.outcomes) - len(failed_early))
            say(f"interrupted: {report.counts_text()}, {not_done} not processed", err=True)
            return 128 + signals.signum
    if len(report.outcomes) > 1 and not settings.quiet:
        say(report.counts_text(), err=True)
    return 1 if report.count("failed") or summary_path is None else 0


def _check_out(out: str) -> int:
    """Create the output folder and check that results can be written in it; returns the
    longest result name (bytes) its file system allows with room for temporary names."""
    path = Path(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageProblem(f"-o/--out {out}: cannot create the folder "
                           f"({one_line(exc.strerror or exc)})") from None
    import shutil
    import tempfile

    try:  # a real write: permissions, read-only mounts and full disks all show here
        shutil.rmtree(tempfile.mkdtemp(prefix=".dstft-write-check-", dir=path))
    except OSError as exc:
        raise UsageProblem(f"-o/--out {out}: cannot write in this folder "
                           f"({one_line(exc.strerror or exc)})") from None
    try:
        name_max = os.pathconf(path, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        name_max = 255
    return max(32, min(MAX_NAME_BYTES, name_max - 40))


def _write_summary(out: str, outcomes: list[Outcome],
                   shard: tuple[int, int] | None = None) -> Path | None:
    """Merge this run's rows into OUT/summary.csv (a shard's into OUT/summary.K-of-N.csv);
    None (and one line) when it cannot be written."""
    from .summary import merge_write, summary_name

    path = Path(out) / summary_name(shard)
    try:
        return merge_write(path, [o.summary for o in outcomes])
    except OSError as exc:
        say(f"{path}: cannot write the batch summary ({one_line(exc.strerror or exc)})", err=True)
        return None


def _run_pool(worker: Callable[[Job], Outcome], jobs: list[Job], size: int, report: _Report,
              signals: _Signals) -> None:
    for job in jobs:
        job.progress = False
    queue: deque[Job] = deque(jobs)
    pool = _Pool(min(size, len(jobs)))
    try:
        for _ in range(pool.size):
            pool.start_worker()
        while (queue or any(w.job for w in pool.workers)) and signals.signum is None:
            for w in pool.workers:
                if w.job is None and queue:
                    w.job = queue.popleft()
                    w.conn.send((worker, w.job))
            busy = [w for w in pool.workers if w.job is not None]
            ready = multiprocessing.connection.wait(
                [w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=0.5)
            if signals.signum is not None:
                break  # workers that die now die of the stop, not of their input
            for w in busy:
                if w.conn in ready:
                    try:
                        outcome = w.conn.recv()
                    except (EOFError, OSError):
                        outcome = None
                    if outcome is not None:
                        w.job = None
                        report.add(outcome)
                        continue
                if w.process.sentinel in ready or not w.process.is_alive():
                    w.process.join(timeout=1.0)
                    if w.conn.poll():  # finished just before it ended
                        with contextlib.suppress(EOFError, OSError):
                            report.add(w.conn.recv())
                            w.job = None
                    if w.job is not None:
                        report.add(_died(w.job, w.process.exitcode))
                        remove_temporaries(w.job.out_root, w.job.name)
                    pool.retire(w)
                    if queue:
                        pool.start_worker()
            report.tick()
    finally:
        pool.stop(finished=report.add)
        for job in [w.job for w in pool.workers if w.job is not None]:
            remove_temporaries(job.out_root, job.name)


def _died(job: Job, exitcode: int | None) -> Outcome:
    how = (f"killed by signal {-exitcode}" if exitcode is not None and exitcode < 0
           else f"exit status {exitcode}")
    return Outcome(job.path, "failed", f"{job.path}: the worker process died ({how})")
