"""Table p — where the time goes: ``torch.profiler`` top operators of the fused engine.

For the cases the targets are about (constant and per-frame θ at 1.6 M samples, per-bin and per-TF
θ at 16 k; n_fft 1024, hop 256), forward+backward (``S.backward(G)``, as in table a) is profiled
over a few repetitions and the operators with the largest self CPU time are listed with their
input shapes and share of the total. This is the evidence for a missed target.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import Context, Section, fmt_size, md_table, provenance, run_standalone
from benchmarks.transform import CASES, build_case

FULL = (("constant", 1_600_000), ("frame", 1_600_000), ("bin", 16_000), ("tf", 16_000))
QUICK = (("constant", 2_000), ("tf", 2_000))
TOP = 8


def profile_case(case: str, length: int, n_fft: int, hop: int, device: str, reps: int = 3):
    from torch.profiler import ProfilerActivity, profile

    fb = build_case("fused", case, length, n_fft=n_fft, hop=hop, device=device)["fb"]
    fb()  # warm-up outside the profile
    activities = [ProfilerActivity.CPU]
    if device == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities, record_shapes=True) as prof:
        for _ in range(reps):
            fb()
    events = prof.key_averages(group_by_input_shape=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    rows = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:TOP]
    return [(e.key, str(e.input_shapes)[:70], e.count // reps, e.self_cpu_time_total / total)
            for e in rows]


def run(ctx: Context) -> list[Section]:
    cases = QUICK if ctx.quick else FULL
    n_fft, hop = (256, 64) if ctx.quick else (1024, 256)
    parts = [provenance(ctx), "",
             f"Fused engine, forward+backward as in table a (n_fft {n_fft}, hop {hop}, float32), "
             "3 repetitions after a warm-up; operators by self CPU time, with their input shapes, "
             "calls per repetition and share of the total.", ""]
    for case, length in cases:
        ctx.log(f"table p: {case} @ {fmt_size(length)}")
        rows = profile_case(case, length, n_fft, hop, ctx.device)
        parts += [f"**{CASES[case][0]} @ {fmt_size(length)}**", "",
                  md_table(["operator", "input shapes", "calls", "share of self CPU time"],
                           [[f"`{name}`", f"`{shapes}`", str(calls), f"{share * 100:.1f} %"]
                            for name, shapes, calls, share in rows]), ""]
    suffix = "" if ctx.device == "cpu" else f"-{ctx.device}"
    sections = [Section(f"p{suffix}", f"p. Profiles of the fused engine ({ctx.device})",
                        "\n".join(parts))]
    if ctx.device == "cpu" and not ctx.quick:
        sections.append(run_profiles_section(ctx))
    return sections




# ------------------------------------------------------------------------------ whole recipe runs
#: (label, input, mode, options) of the whole-run profiles: what `dstft optimize` does per mode
RUN_CASES = (
    ("speech, time, --n-fft 1024 --hop 128", "speech", "time", {"n_fft": 1024, "hop": 128}),
    ("speech, time, defaults", "speech", "time", {}),
    ("speech, tf, --n-fft 1024 --hop 128 --iters 5", "speech", "tf",
     {"n_fft": 1024, "hop": 128, "iters": 5}),
    ("README sample, tf, defaults", "sample", "tf", {}),
)
CATEGORIES = ("transform (fwd+bwd)", "loss (fwd+bwd)", "TV term", "optimiser step",
              "start scan (no grad)", "final float64 |S|", "everything else")


def _engine_names() -> set[str]:
    import torch

    from dstft_cli.core import engines  # noqa: F401 - the engine modules register below
    from dstft_cli.core.engines import bins, grid, phase, position

    names = set()
    for module in (bins, grid, phase, position):
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, torch.autograd.Function):
                names.add(value.__name__)
    return names


def _category(name: str, engines: set[str]) -> str | None:
    node = name.removeprefix("autograd::engine::evaluate_function: ")
    if node in engines or node.removesuffix("Backward") in engines:
        return CATEGORIES[0]
    if node.startswith("_TotalVariation"):
        return CATEGORIES[2]
    if name in ("dstft::loss",) or name.startswith("autograd::engine::evaluate_function"):
        return CATEGORIES[1]
    if name.startswith(("Optimizer.step#", "Optimizer.zero_grad#")):
        return CATEGORIES[3]
    return {"dstft::scan": CATEGORIES[4], "dstft::final": CATEGORIES[5]}.get(name)


def profile_run(x, rate: float, config) -> dict:
    """Where one ``recipes.run`` spends its wall time, by category (see CATEGORIES).

    The recipe's loss, start scan and final spectrogram are wrapped in ``record_function``
    ranges for the duration of the call (measurement only); each profiler event is counted
    under the category of its outermost labelled ancestor, and what no category claims is
    "everything else" (bookkeeping, host synchronisations, copies, progress, profiler overhead).
    """
    import time

    from torch.profiler import ProfilerActivity, profile, record_function

    from dstft_cli import recipes

    def labelled(label, fn):
        def wrapper(*args, **kwargs):
            with record_function(label):
                return fn(*args, **kwargs)
        return wrapper

    saved = {name: getattr(recipes, name) for name in ("_base_loss", "scan", "final_magnitude")}
    recipes._base_loss = labelled("dstft::loss", saved["_base_loss"])
    recipes.scan = labelled("dstft::scan", saved["scan"])
    recipes.final_magnitude = labelled("dstft::final", saved["final_magnitude"])
    engines = _engine_names()
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            started = time.perf_counter()
            result = recipes.run(x, config, sample_rate=rate)
            total = time.perf_counter() - started
    finally:
        for name, fn in saved.items():
            setattr(recipes, name, fn)
    spent = dict.fromkeys(CATEGORIES, 0.0)
    other_ops: dict[str, float] = {}
    for event in prof.events():
        category = _category(event.name, engines)
        parent, outer = event.cpu_parent, None
        while parent is not None:
            outer = _category(parent.name, engines) or outer
            parent = parent.cpu_parent
        if outer is not None:
            continue
        if category is not None:
            spent[category] += event.cpu_time_total / 1e6
        elif event.cpu_parent is None:
            other_ops[event.name] = other_ops.get(event.name, 0.0) + event.cpu_time_total / 1e6
    spent[CATEGORIES[-1]] = max(total - sum(spent.values()), 0.0)
    return {"total": total, "spent": spent, "iterations": result.iterations,
            "evaluations": len(result.loss_history) - 1, "converged": result.converged,
            "loss": result.loss_final, "n_fft": result.n_fft,
            "other_ops": sorted(other_ops.items(), key=lambda kv: -kv[1])[:6]}


def _run_input(which: str):
    import soundfile as sf
    import torch

    from benchmarks.cli_runs import SPEECH
    from benchmarks.common import REPO_ROOT

    path = SPEECH if which == "speech" else REPO_ROOT / "sample_data" / "three_components.wav"
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return torch.from_numpy(data.mean(axis=1).copy()), float(rate), path


def run_profiles_section(ctx: Context, cases=RUN_CASES) -> Section:
    import os

    from dstft_cli.config import RECIPES, override

    rows, notes = [], []
    for label, which, mode, options in cases:
        x, rate, path = _run_input(which)
        if not path.exists():
            notes.append(f"{label}: {path} not found, skipped")
            continue
        ctx.log(f"table p-runs: {label}")
        load = os.getloadavg()[0]
        out = profile_run(x, rate, override(RECIPES[mode], **options))
        shares = [f"{100 * out['spent'][c] / out['total']:.0f} %" for c in CATEGORIES]
        rows.append([label, f"{out['total']:.1f} s", *shares,
                     f"{out['iterations']} ({'converged' if out['converged'] else 'not converged'})",
                     f"{out['loss']:.5g}", f"{load:.1f}"])
        notes.append(f"{label}, largest top-level operators in *everything else*: "
                     + ", ".join(f"`{name}` {seconds:.2f} s" for name, seconds in out["other_ops"]))
    body = [provenance(ctx), "",
            "`recipes.run` (what `dstft optimize` does between reading the input and writing the "
            "result) under `torch.profiler`, one run per row, the input's channels averaged "
            "(mono). Wall time of the run and its split: the transform's autograd Functions "
            "(forward and backward), the loss (its forward range and every other backward node), "
            "the TV term, Adam's `step`/`zero_grad`, the start scan and the final float64 "
            "spectrogram (each counted whole), and what remains (bookkeeping, host "
            "synchronisations, copies, Python, profiler overhead).", "",
            md_table(["run", "wall", *CATEGORIES, "iterations", "final loss", "load (1 min)"],
                     rows), ""]
    body += [f"- {n}" for n in notes]
    return Section("p-runs", "p-runs. Where a whole `dstft optimize` run spends its time (cpu)",
                   "\n".join(body))


def _write_in_place(path: Path, section: Section) -> None:
    """Replace the section in ``path`` where it is (or add it after table p), the rest untouched."""
    text = path.read_text()
    begin, end = f"<!-- BEGIN {section.key} -->", f"<!-- END {section.key} -->"
    if begin in text:
        text = text[:text.index(begin)] + section.render() + text[text.index(end) + len(end):]
    else:
        anchor = "<!-- END p-cuda -->" if "<!-- END p-cuda -->" in text else "<!-- END p -->"
        text = text.replace(anchor, anchor + "\n\n" + section.render(), 1)
    path.write_text(text)


if __name__ == "__main__":
    if "--runs" in sys.argv:
        # only the whole-run profiles, written into BENCHMARKS.md as table p-runs
        from benchmarks.__main__ import DEFAULT_OUTPUT
        from dstft_cli.runtime import tune_allocator

        tune_allocator()
        # --runs N M …: only those rows of RUN_CASES (0-based)
        picked = [int(a) for a in sys.argv[sys.argv.index("--runs") + 1:]]
        command = "python -m benchmarks.profiles " + " ".join(sys.argv[1:])
        section = run_profiles_section(Context(command=command),
                                       [RUN_CASES[i] for i in picked] or RUN_CASES)
        print(section.render())
        _write_in_place(DEFAULT_OUTPUT, section)
    else:
        run_standalone(run, "profiles")
