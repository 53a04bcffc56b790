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
    return [Section(f"p{suffix}", f"p. Profiles of the fused engine ({ctx.device})",
                    "\n".join(parts))]


if __name__ == "__main__":
    run_standalone(run, "profiles")
