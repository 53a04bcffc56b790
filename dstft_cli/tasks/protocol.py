"""Tables II–III as a protocol: several seeds, a fixed-θ grid that brackets the learned θ, spread.

For every seed s the protocol trains, on the split of that seed and from the same initial
weights (:func:`~dstft_cli.tasks.classify.train_run` seeds everything with s):

* one fixed-θ network per window length of the grid (default :func:`default_fixed_grid`: 10, 20,
  40, … doubling up to n_fft, which spans the range θ can reach, [min_length, n_fft]);
* the learnable-θ network;
* a fixed-θ network at the θ the learnable run ended with ("fixed at learned θ"), which tells
  whether the learned window is good in itself or only through the joint training.

:func:`summarise` reduces the runs to what the question "does one learnable run find a window as
good as a grid search over k fixed runs?" needs:

* per window: mean ± sample standard deviation over seeds of the test accuracy and test loss,
  and the mean wall time of one run;
* per seed: the fixed window a grid search would pick — the **highest validation accuracy**
  (ties: lower validation loss), never the test set — and the paired difference
  learnable − picked fixed of the test accuracy and loss;
* the mean paired difference with a two-sided 95 % Student-t confidence interval over seeds
  (needs ≥ 2 seeds); an interval that contains 0 means the protocol cannot tell them apart.

Runs are independent (the fixed-at-learned run waits for its seed's learnable run), so they can
run in parallel processes (``jobs``); each process then uses 1/jobs of the CPU threads.

Runs of an earlier protocol with the same data and settings can be passed as ``reuse``: a run
whose seed, kind and window match is taken instead of trained again (a run is a deterministic
function of its settings, seed and window), so a grid can be extended or a seed added without
training what exists. :data:`RUN_FIELDS` is the one-row-per-run table both ways
(:func:`run_rows`, :func:`runs_from_rows`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace

import numpy as np

from .classify import TrainConfig

__all__ = ["ProtocolRun", "default_fixed_grid", "parse_seeds", "run_protocol", "summarise",
           "protocol_table_markdown", "LEARNABLE", "AT_LEARNED", "RUN_FIELDS", "run_rows",
           "runs_from_rows"]

LEARNABLE = "learnable"
AT_LEARNED = "fixed at learned θ"


@dataclass(frozen=True)
class ProtocolRun:
    seed: int
    kind: str  # "fixed" | LEARNABLE | AT_LEARNED
    window_length: float  # the fixed θ, or the learned θ of the selected epoch
    best_epoch: int
    metrics: dict  # split → {"loss", "accuracy"}
    elapsed_s: float

    @property
    def label(self) -> str:
        return f"fixed {self.window_length:g}" if self.kind == "fixed" else self.kind

    @property
    def key(self) -> tuple[int, str, float | None]:
        """What identifies a run within a protocol: seed, kind and (but for LEARNABLE) window."""
        return _key(self.seed, self.kind, self.window_length)


def _key(seed: int, kind: str, window_length: float | None) -> tuple[int, str, float | None]:
    # the learnable run's θ is its result, not its setting
    return seed, kind, None if kind == LEARNABLE else float(window_length)


SPLITS = ("train", "val", "test")
RUN_FIELDS = ("seed", "run", "window_length", "best_epoch",
              *(f"{p}_loss" for p in SPLITS), *(f"{p}_accuracy" for p in SPLITS), "elapsed_s")


def run_rows(runs: Sequence[ProtocolRun]) -> list[tuple]:
    """One row per run, in the order of :data:`RUN_FIELDS`."""
    return [(r.seed, r.label, r.window_length, r.best_epoch,
             *(r.metrics[p]["loss"] for p in SPLITS),
             *(r.metrics[p]["accuracy"] for p in SPLITS), r.elapsed_s) for r in runs]


def runs_from_rows(rows: Sequence[dict]) -> list[ProtocolRun]:
    """The runs of :func:`run_rows` back from rows keyed by :data:`RUN_FIELDS` (values as text).

    Raises ``ValueError`` naming the row when a field is missing or not a number.
    """
    runs = []
    for i, row in enumerate(rows, start=1):
        try:
            label = row["run"]
            kind = label if label in (LEARNABLE, AT_LEARNED) else "fixed"
            if kind == "fixed" and not label.startswith("fixed "):
                raise ValueError(f"unknown run {label!r}")
            runs.append(ProtocolRun(
                seed=int(row["seed"]), kind=kind, window_length=float(row["window_length"]),
                best_epoch=int(row["best_epoch"]),
                metrics={p: {"loss": float(row[f"{p}_loss"]),
                             "accuracy": float(row[f"{p}_accuracy"])} for p in SPLITS},
                elapsed_s=float(row["elapsed_s"])))
        except KeyError as exc:
            raise ValueError(f"row {i}: no column {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"row {i}: {exc}") from None
    return runs


def default_fixed_grid(config: TrainConfig) -> tuple[float, ...]:
    """10, 20, 40, … (doubling) and n_fft itself: the range a learnable θ can reach."""
    grid, theta = [], max(10.0, config.min_length)
    while theta < config.n_fft:
        grid.append(theta)
        theta *= 2
    return (*grid, float(config.n_fft))


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0-4"`` → (0, 1, 2, 3, 4); ``"0,3,7"`` → (0, 3, 7); ranges and lists combine."""
    seeds: list[int] = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            first, last = (int(lo), int(hi)) if sep else (int(part), int(part))
        except ValueError:
            raise ValueError(f"{text!r}: seeds are integers or ranges like 0-4") from None
        if first < 0 or last < first:
            raise ValueError(f"{text!r}: a range must read low-high with 0 ≤ low ≤ high")
        seeds.extend(range(first, last + 1))
    if not seeds:
        raise ValueError(f"{text!r}: no seed given")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{text!r}: a seed is repeated")
    return tuple(seeds)


# --------------------------------------------------------------------------------------------
# running

_DATA: dict = {}


def _init_worker(clips, labels, splits, n_classes, threads) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)
    _DATA.update(clips=torch.as_tensor(clips), labels=torch.as_tensor(labels), splits=splits,
                 n_classes=n_classes)


def _train(config: TrainConfig, kind: str, fixed: float | None) -> ProtocolRun:
    from .classify import train_run

    r = train_run(_DATA["clips"], _DATA["labels"], _DATA["splits"][config.seed], config,
                  _DATA["n_classes"], fixed_length=fixed)
    return ProtocolRun(seed=config.seed, kind=kind, window_length=r.window_length,
                       best_epoch=r.best_epoch, metrics=r.metrics, elapsed_s=r.elapsed_s)


def run_protocol(
    clips: np.ndarray, labels: np.ndarray, splits: dict[int, tuple], config: TrainConfig,
    n_classes: int, *, seeds: Sequence[int], fixed_grid: Sequence[float], jobs: int = 1,
    on_run: Callable[[ProtocolRun, bool], None] | None = None,
    reuse: Sequence[ProtocolRun] = (),
) -> list[ProtocolRun]:
    """Every run of the protocol (see the module docstring), in completion order.

    ``splits[seed]`` is that seed's (train, val, test) index split; ``config.seed`` is replaced
    by each seed. ``jobs`` > 1 trains that many runs at once in separate processes.
    ``reuse``: runs of an earlier protocol with the same data and settings, taken instead of
    training a run with the same :attr:`ProtocolRun.key` (the caller checks the settings).
    ``on_run(run, reused)`` is called for every run as it is trained or taken.
    """
    tasks = [(replace(config, seed=s), "fixed", float(t)) for s in seeds for t in fixed_grid]
    tasks += [(replace(config, seed=s), LEARNABLE, None) for s in seeds]
    earlier = {r.key: r for r in reuse if r.seed in seeds}
    done: list[ProtocolRun] = []

    def finished(run: ProtocolRun, reused: bool = False) -> tuple | None:
        done.append(run)
        if on_run is not None:
            on_run(run, reused)
        if run.kind == LEARNABLE:
            return (replace(config, seed=run.seed), AT_LEARNED, run.window_length)
        return None

    def take_earlier(todo: list[tuple]) -> list[tuple]:
        """The tasks left to train once the earlier runs (and their follow-ups) are taken."""
        left = []
        while todo:
            task = todo.pop(0)
            run = earlier.get(_key(task[0].seed, task[1], task[2]))
            if run is None:
                left.append(task)
                continue
            follow = finished(run, reused=True)
            if follow is not None:
                todo.append(follow)
        return left

    tasks = take_earlier(tasks)
    if not tasks:
        return done
    if jobs <= 1:
        _init_worker(clips, labels, splits, n_classes, threads=0)
        while tasks:
            follow = finished(_train(*tasks.pop(0)))
            if follow is not None:
                tasks.extend(take_earlier([follow]))
        return done
    threads = max(1, (os.cpu_count() or 1) // jobs)
    import multiprocessing

    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker,
                             initargs=(clips, labels, splits, n_classes, threads)) as pool:
        # learnable runs first: their fixed-at-learned follow-ups then overlap the grid
        pending = {pool.submit(_train, *t) for t in sorted(tasks, key=lambda t: t[1] != LEARNABLE)}
        while pending:
            ready, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in ready:
                follow = finished(future.result())
                if follow is not None:
                    pending.update(pool.submit(_train, *t) for t in take_earlier([follow]))
    return done


# --------------------------------------------------------------------------------------------
# summary


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else math.nan


def _t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and the two-sided Student-t confidence interval of the mean (nan with one value)."""
    from scipy import stats

    mean, sd = _mean_sd(values)
    n = len(values)
    if n < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def summarise(runs: Sequence[ProtocolRun]) -> dict:
    """Per-window statistics, per-seed grid choice and paired differences (module docstring)."""
    by_seed: dict[int, dict[str, ProtocolRun]] = {}
    for r in runs:
        by_seed.setdefault(r.seed, {})[r.label] = r
    seeds = sorted(by_seed)
    fixed_labels = sorted({r.label for r in runs if r.kind == "fixed"},
                          key=lambda lab: float(lab.split()[1]))
    windows = []
    for label in [*fixed_labels, LEARNABLE, AT_LEARNED]:
        rs = [by_seed[s][label] for s in seeds if label in by_seed[s]]
        if not rs:
            continue
        acc = _mean_sd([r.metrics["test"]["accuracy"] for r in rs])
        loss = _mean_sd([r.metrics["test"]["loss"] for r in rs])
        windows.append({"window": label, "runs": len(rs), "test_accuracy_mean": acc[0],
                        "test_accuracy_sd": acc[1], "test_loss_mean": loss[0],
                        "test_loss_sd": loss[1],
                        "elapsed_s_mean": float(np.mean([r.elapsed_s for r in rs]))})
    per_seed = []
    for s in seeds:
        runs_s = by_seed[s]
        grid = [runs_s[lab] for lab in fixed_labels if lab in runs_s]
        row = {"seed": s}
        if grid:
            picked = max(grid, key=lambda r: (r.metrics["val"]["accuracy"], -r.metrics["val"]["loss"]))
            row.update(picked_fixed=picked.window_length,
                       picked_test_accuracy=picked.metrics["test"]["accuracy"],
                       picked_test_loss=picked.metrics["test"]["loss"],
                       grid_elapsed_s=sum(r.elapsed_s for r in grid), grid_runs=len(grid))
        for label, key in ((LEARNABLE, "learnable"), (AT_LEARNED, "at_learned")):
            if label in runs_s:
                r = runs_s[label]
                row.update({f"{key}_theta": r.window_length,
                            f"{key}_test_accuracy": r.metrics["test"]["accuracy"],
                            f"{key}_test_loss": r.metrics["test"]["loss"],
                            f"{key}_elapsed_s": r.elapsed_s})
        if grid and LEARNABLE in runs_s:
            row["diff_accuracy"] = row["learnable_test_accuracy"] - row["picked_test_accuracy"]
            row["diff_loss"] = row["learnable_test_loss"] - row["picked_test_loss"]
        per_seed.append(row)
    paired = {}
    for key in ("diff_accuracy", "diff_loss"):
        values = [row[key] for row in per_seed if key in row]
        if values:
            mean, lo, hi = _t_interval(values)
            paired[key] = {"mean": mean, "ci95_low": lo, "ci95_high": hi, "seeds": len(values)}
    return {"seeds": seeds, "windows": windows, "per_seed": per_seed, "paired": paired}


def _pm(mean: float, sd: float, scale: float, spec: str) -> str:
    if math.isnan(sd):
        return format(scale * mean, spec)
    return f"{format(scale * mean, spec)} ± {format(scale * sd, spec)}"


def _ci(entry: dict | None, scale: float, spec: str) -> str:
    if not entry:
        return "–"
    text = f"{scale * entry['mean']:+{spec}}"
    if not math.isnan(entry["ci95_low"]):
        text += (f" (95 % CI {scale * entry['ci95_low']:+{spec}} … "
                 f"{scale * entry['ci95_high']:+{spec}})")
    return text


def protocol_table_markdown(summary: dict) -> str:
    """The protocol's table (markdown): windows, per-seed choice, paired difference, cost."""
    n = len(summary["seeds"])
    lines = [
        f"Tables II–III over {n} seed(s) ({', '.join(map(str, summary['seeds']))}): test accuracy "
        "and test loss, mean ± sample standard deviation over seeds",
        "",
        "| window | runs | test accuracy (%) | test loss | wall time per run (s) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for w in summary["windows"]:
        lines.append(f"| {w['window']} | {w['runs']} | "
                     f"{_pm(w['test_accuracy_mean'], w['test_accuracy_sd'], 100, '.1f')} | "
                     f"{_pm(w['test_loss_mean'], w['test_loss_sd'], 1, '.3f')} | "
                     f"{w['elapsed_s_mean']:.0f} |")
    lines += [
        "",
        "Per seed: the fixed window a grid search picks (highest validation accuracy), the learned θ",
        "",
        "| seed | picked fixed θ | its test acc. (%) | learned θ | learnable test acc. (%) "
        "| learnable − picked (points) | fixed at learned θ: test acc. (%) | grid wall time (s) "
        "| learnable wall time (s) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    def cell(row, key, scale=1.0, spec=".1f"):
        return format(scale * row[key], spec) if key in row else "–"

    for row in summary["per_seed"]:
        lines.append(
            f"| {row['seed']} | {cell(row, 'picked_fixed', 1, 'g')} | "
            f"{cell(row, 'picked_test_accuracy', 100)} | {cell(row, 'learnable_theta', 1, '.2f')} | "
            f"{cell(row, 'learnable_test_accuracy', 100)} | {cell(row, 'diff_accuracy', 100, '+.1f')} | "
            f"{cell(row, 'at_learned_test_accuracy', 100)} | {cell(row, 'grid_elapsed_s', 1, '.0f')} | "
            f"{cell(row, 'learnable_elapsed_s', 1, '.0f')} |")
    paired = summary["paired"]
    lines += [
        "",
        f"Paired difference learnable − picked fixed, mean over seeds: test accuracy "
        f"{_ci(paired.get('diff_accuracy'), 100, '.1f')} points; test loss "
        f"{_ci(paired.get('diff_loss'), 1, '.3f')}.",
        "",
    ]
    return "\n".join(lines)
