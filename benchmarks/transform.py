"""Table a — the transform, per parameterisation, against ``torch.stft`` and ``dstft`` 3.0.0.

For each parameterisation (constant, per-frame, per-bin, per-TF-bin θ; learnable per-frame
positions; learnable hop) and signal length (16 k, 160 k, 1.6 M samples; n_fft 1024, hop 256,
Hann, float32) this measures, interleaved in one process:

* forward (under ``no_grad``) and forward+backward (``S.backward(G)`` with a fixed random complex
  G: the transform's vector-Jacobian product w.r.t. every learnable parameter, not the signal) of
  ``dstft_cli.dstft`` with its fused engine (custom backward of Sec. IV) and with
  ``engine="autograd"`` (Remark IV.2: the same maths through plain autograd);
* the same two operations of the authors' ``dstft`` 3.0.0 (``DSTFT`` module) in its equivalent
  mode, same signal, n_fft, hop, θ, Hann (``normalization="paper"``: its window is ours times
  n_fft, checked below), when that package is importable;
* ``torch.stft`` forward (``center=True``, constant padding, periodic Hann of n_fft), the unit of
  every ratio,

and the peak memory of every forward+backward in a fresh subprocess (ru_maxrss delta).

Run alone: ``python benchmarks/transform.py [--quick] [--device cpu|cuda]`` prints the table.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

if __package__ in (None, ""):  # ``python benchmarks/transform.py``: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks.common import (
    Context,
    Section,
    dstft3_version,
    fmt_mib,
    fmt_ratio,
    fmt_size,
    interleaved,
    md_table,
    median,
    peak_memory,
    provenance,
    total_ram_bytes,
)

N_FFT, HOP = 1024, 256
THETA0 = 600.5  # a fractional window length, as during an optimisation
FULL_LENGTHS = (16_000, 160_000, 1_600_000)
#: --quick: tiny sizes that exercise every code path in seconds (n_fft 256, hop 64)
QUICK = {"lengths": (2_000,), "n_fft": 256, "hop": 64}

#: key → (label, θ shape kind, position mode, dstft 3.0.0 window_mode, hop_mode)
CASES = {
    "constant": ("constant θ", "constant", "fixed", "constant", "fixed"),
    "frame": ("per-frame θₙ", "frame", "fixed", "time", "fixed"),
    "bin": ("per-bin θₘ", "bin", "fixed", "frequency", "fixed"),
    "tf": ("per-TF-bin θₘ,ₙ", "tf", "fixed", "time-frequency", "fixed"),
    "positions": ("learnable tₙ (+ θ)", "constant", "frame", "constant", "time"),
    "hop": ("learnable hop H (+ θ)", "constant", "hop", "constant", "constant"),
}
IMPLS = ("fused", "autograd", "dstft3")


def _signal(length: int, device: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1234)
    return torch.randn(length, generator=gen, dtype=torch.float32).to(device)


def _theta_shape(kind: str, n_bins: int, n_frames: int) -> tuple[int, ...]:
    return {"constant": (), "frame": (n_frames,), "bin": (n_bins, 1), "tf": (n_bins, n_frames)}[kind]


# ----------------------------------------------------------------------------------- case builders
def build_case(
    impl: str, case: str, length: int, n_fft: int = N_FFT, hop: int = HOP, device: str = "cpu",
    signal: torch.Tensor | None = None,
) -> dict:
    """Inputs allocated, returns ``{"fwd": callable, "fb": callable}`` (``ref``: fwd only)."""
    x = _signal(length, device) if signal is None else signal
    theta0 = THETA0 * n_fft / N_FFT  # 600.5 at n_fft 1024
    if impl == "ref":
        window = torch.hann_window(n_fft, periodic=True, device=device)

        def ref():
            return torch.stft(x, n_fft, hop, window=window, center=True, pad_mode="constant",
                              return_complex=True)

        return {"fwd": ref}
    _, kind, pos, window_mode, hop_mode = CASES[case]
    if impl == "dstft3":
        return _build_dstft3(x, n_fft, hop, theta0, window_mode, hop_mode)
    from dstft_cli.core import dstft, losses

    n_bins, n_frames = n_fft // 2 + 1, 1 + length // hop
    theta = torch.full(_theta_shape(kind, n_bins, n_frames), theta0, device=device,
                       requires_grad=True)
    params = [theta]
    if pos == "frame":
        positions = (torch.arange(n_frames, device=device, dtype=torch.float64) * hop)
        positions.requires_grad_(True)
        params.append(positions)
        make_positions = lambda: positions  # noqa: E731
    elif pos == "hop":
        hop_t = torch.tensor(float(hop), dtype=torch.float64, device=device, requires_grad=True)
        params.append(hop_t)
        index = torch.arange(n_frames, device=device, dtype=torch.float64)
        make_positions = lambda: index * hop_t  # noqa: E731
    else:
        make_positions = lambda: None  # noqa: E731

    def transform():
        return dstft(x, n_fft=n_fft, window_length=theta, frame_positions=make_positions(),
                     hop_length=hop, engine=impl)

    def fwd():
        with torch.no_grad():
            return transform()

    with torch.no_grad():
        cotangent = _cotangent(transform())

    def fb():
        for p in params:
            p.grad = None
        transform().backward(cotangent)

    def iteration():  # one optimisation step's worth: forward, Shannon entropy of |S|, backward
        for p in params:
            p.grad = None
        losses.shannon_entropy(transform().abs()).backward()

    return {"fwd": fwd, "fb": fb, "iter": iteration, "transform": transform}


def _cotangent(like: torch.Tensor) -> torch.Tensor:
    """A fixed complex ∂loss/∂S̄ for the backward pass: the transform's VJP, no loss in between.

    Laid out in memory like the output it is applied to (``empty_like`` keeps the strides), as
    the gradient of any elementwise loss on S would be: each implementation gets the cotangent
    a real loss would hand it.
    """
    gen = torch.Generator().manual_seed(99)
    values = torch.randn(tuple(like.shape), generator=gen, dtype=torch.complex64)
    return torch.empty_like(like, dtype=torch.complex64).copy_(values.to(like.device))


def _build_dstft3(x, n_fft, hop, theta0, window_mode, hop_mode) -> dict:
    import dstft as dstft3

    module = dstft3.DSTFT(
        n_fft=n_fft, win_length=theta0, hop_length=hop, window_mode=window_mode,
        hop_mode=hop_mode, window="hann", normalization="paper", win_length_min=2.0,
    ).to(x.device)
    batch = x[None, :]
    module.initialize(batch)

    def fwd():
        with torch.no_grad():
            return module(batch)[1]

    cotangent = _cotangent(fwd())

    def fb():
        module.zero_grad(set_to_none=True)
        _, stft = module(batch)
        stft.backward(cotangent)

    return {"fwd": fwd, "fb": fb, "transform": lambda: module(batch)[1]}


# ----------------------------------------------------------------------------------- skip rules
def _skip_reason(impl: str, case: str, length: int, n_fft: int, hop: int, quick: bool) -> str | None:
    """Cases not run, with the reason printed in the table."""
    n_bins, n_frames = n_fft // 2 + 1, 1 + length // hop
    dense = n_bins * n_frames * n_fft  # elements of one (M, N, L) tensor
    kind = CASES[case][1]
    ram = total_ram_bytes()
    if impl == "dstft3" and kind in ("bin", "tf"):
        need = 8 * dense * 2  # ≥ one complex64 [F, T, L] tapered tensor and its real source
        if need > 0.6 * ram:
            return f"needs ≥ {need / 2**30:.0f} GiB (dense [F,T,L] tensors), machine {ram / 2**30:.0f} GiB"
    if impl == "autograd" and kind in ("bin", "tf"):
        need = 4 * dense * 8  # w, its intermediates and the einsum operands are kept for backward
        if need > 0.5 * ram:
            return f"needs ≈ {need / 2**30:.0f} GiB (dense (M,N,L) autograd graph)"
    if not quick and length >= 1_000_000 and kind in ("bin", "tf") and impl == "fused":
        return "O(M·N·L): minutes per pass; extrapolate from 160 k (table c)"
    return None


def _check_parity(length: int, n_fft: int, hop: int, device: str) -> float:
    """max | |S_ours|·n_fft − |S_dstft3| | / max|S| at constant θ: the modes compare like with like."""
    x = _signal(length, device)
    kw = {"n_fft": n_fft, "hop": hop, "device": device, "signal": x}
    ours = build_case("fused", "constant", length, **kw)["transform"]()
    theirs = build_case("dstft3", "constant", length, **kw)["transform"]()
    a, b = ours.detach().abs() * n_fft, theirs.detach().abs()[0]
    if a.shape != b.shape:
        return math.inf
    return float((a - b).abs().max() / b.abs().max())


def warm_up(device: str, seconds: float) -> None:
    """Run small forward and forward+backward passes of every engine for ``seconds``.

    Measured on this VM: for about a second after a process's first backward pass through the
    transform, a 16 k-sample forward+backward took 420–600 µs instead of 160 µs (with the
    garbage collector off too, and with one thread as with two), so the first case of a table
    would be timed in that state. This runs it out before anything is timed.
    """
    import time

    ops = [build_case("ref", "constant", 16_000, device=device)["fwd"]]
    for case in CASES:
        if CASES[case][1] in ("constant", "frame"):
            built = build_case("fused", case, 16_000, device=device)
            ops += [built["fwd"], built["fb"]]
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for op in ops:
            op()


# ----------------------------------------------------------------------------------- the table
def run(ctx: Context, *, lengths: tuple[int, ...] | None = None,
        cases: tuple[str, ...] | None = None) -> list[Section]:
    device = ctx.device
    n_fft, hop = (QUICK["n_fft"], QUICK["hop"]) if ctx.quick else (N_FFT, HOP)
    lengths = lengths or (QUICK["lengths"] if ctx.quick else FULL_LENGTHS)
    size = {"n_fft": n_fft, "hop": hop, "device": device}
    third = dstft3_version()
    impls = [i for i in IMPLS if i != "dstft3" or third]
    budget = 6.0 if ctx.quick else 45.0  # seconds of timing per (case, size) before reps drop
    rows, notes = [], []
    reps_note: dict[str, int] = {}
    warm_up(device, 0.2 if ctx.quick else 3.0)
    for length in lengths:
        ref = build_case("ref", "constant", length, **size)["fwd"]
        for case, (label, *_rest) in CASES.items():
            if cases is not None and case not in cases:
                continue
            fns = {"ref": ref}
            skipped = {}
            for impl in impls:
                reason = _skip_reason(impl, case, length, n_fft, hop, ctx.quick)
                if reason:
                    skipped[impl] = reason
                    continue
                ops = build_case(impl, case, length, **size)
                if impl == "fused":
                    fns["fused fwd"] = ops["fwd"]
                if impl == "dstft3":
                    fns["dstft3 fwd"] = ops["fwd"]
                fns[f"{impl} fb"] = ops["fb"]
            ctx.log(f"table a: {fmt_size(length)} {case}: timing {', '.join(fns)}")
            samples, rounds = interleaved(fns, reps=ctx.reps, device=device, budget_s=budget)
            if rounds < ctx.reps:
                reps_note[f"{label} @ {fmt_size(length)}"] = rounds
            unit = median(samples["ref"])
            ratio = {name: median(s) / unit for name, s in samples.items()}
            mem = {}
            for impl in ["ref", *impls]:
                if impl in skipped:
                    continue
                if impl == "ref" and case != (cases[0] if cases else "constant"):
                    continue
                if ctx.quick and not (case == "tf" and impl == "fused"):
                    continue  # --quick: one subprocess to keep the path alive, not the figures
                if case == "bin" and impl == "dstft3" and length >= 100_000:
                    notes.append(f"{label} @ {fmt_size(length)}: dstft 3.0.0 peak memory not "
                                 "measured (the same dense [F,T,L] tensors as its per-TF mode)")
                    continue
                op = "fwd" if impl == "ref" else "fb"
                spec = {"module": "benchmarks.transform", "builder": "build_case",
                        "args": {"impl": impl, "case": case, "length": length, **size},
                        "op": op}
                res = peak_memory(spec, timeout=900)
                mem[impl] = res.get("mib", math.nan)
                if "error" in res:
                    notes.append(f"{label} @ {fmt_size(length)}, {impl}: memory run failed "
                                 f"({res['error']})")
            if case == (cases[0] if cases else "constant"):
                rows.append([fmt_size(length), "torch.stft (unit)", "1×", "—", "—", "—", "—", "—",
                             fmt_mib(mem.get("ref")), "—", "—"])

            speedup = None
            if "dstft3 fb" in ratio and "fused fb" in ratio:
                speedup = ratio["dstft3 fb"] / ratio["fused fb"]
            mem_ratio = None
            if mem.get("dstft3") and mem.get("fused"):
                mem_ratio = mem["dstft3"] / max(mem["fused"], 1.0)
            ctx.metrics.setdefault("a", {})[(length, case)] = {
                **ratio, "mem": mem, "speedup": speedup, "mem_ratio": mem_ratio}
            rows.append([
                fmt_size(length), label,
                fmt_ratio(ratio.get("fused fwd")) if "fused fwd" in ratio else "skipped",
                fmt_ratio(ratio.get("fused fb")) if "fused fb" in ratio else "skipped",
                fmt_ratio(ratio.get("autograd fb")) if "autograd fb" in ratio else "skipped",
                (fmt_ratio(ratio.get("dstft3 fwd")) if "dstft3 fwd" in ratio else "skipped")
                if third else "n/a",
                (fmt_ratio(ratio.get("dstft3 fb")) if "dstft3 fb" in ratio else "skipped")
                if third else "n/a",
                fmt_ratio(speedup),
                " / ".join(fmt_mib(mem.get(i)) if i not in skipped else "—" for i in
                           ("fused", "autograd")),
                fmt_mib(mem.get("dstft3")) if third and "dstft3" not in skipped else "—",
                fmt_ratio(mem_ratio),
            ])
            for impl, reason in skipped.items():
                notes.append(f"{label} @ {fmt_size(length)}, {impl} skipped: {reason}")
    headers = [
        "Ls", "parameterisation", "ours fwd", "ours fwd+bwd", "autograd engine fwd+bwd",
        "dstft 3.0.0 fwd", "dstft 3.0.0 fwd+bwd", "our speed-up vs dstft 3.0.0 (fwd+bwd)",
        "peak fwd+bwd: ours / autograd engine", "peak fwd+bwd: dstft 3.0.0",
        "memory ratio dstft 3.0.0 / ours",
    ]
    parity = None
    if third:
        try:
            parity = _check_parity(lengths[0], n_fft, hop, device)
        except Exception as exc:  # noqa: BLE001 - reported, not fatal
            notes.append(f"parity check with dstft 3.0.0 failed: {exc}")
    text = [
        provenance(ctx),
        "",
        f"n_fft {n_fft}, hop {hop}, Hann, float32, white-noise signal, "
        f"θ = {THETA0 * n_fft / N_FFT:g} everywhere. "
        "Times are **ratios to `torch.stft` forward** (center=True, constant padding, periodic "
        "Hann) measured interleaved in the same process; medians of "
        f"{ctx.reps} rounds unless listed below. *fwd* runs under `no_grad`; *fwd+bwd* is "
        "the forward pass and the backward pass of the transform itself (`S.backward(G)` with "
        "a fixed random complex G laid out in memory like S, as the gradient of any elementwise "
        "loss is; no loss in between) to every learnable parameter (θ, and tₙ "
        "or H where learnable; not the signal). *Ours* is `dstft(..., engine=\"fused\")` (custom backward, "
        "Sec. IV); the autograd column is `engine=\"autograd\"` (Remark IV.2). dstft 3.0.0 runs "
        "as `DSTFT(window_mode=..., hop_mode=..., normalization=\"paper\")`: constant→"
        "`constant/fixed`, per-frame→`time/fixed`, per-bin→`frequency/fixed`, per-TF→"
        "`time-frequency/fixed`, learnable tₙ→`constant/time` (its per-frame hops), learnable "
        "hop→`constant/constant`. Peak memory: ru_maxrss (CUDA: max_memory_allocated) of one "
        "forward+backward in a fresh process, minus the baseline after the inputs exist.",
        "",
        md_table(headers, rows),
        "",
    ]
    if parity is not None:
        text.append(f"Mode mapping check: at constant θ, max | n_fft·|S_ours| − |S_dstft3| | / "
                    f"max|S_dstft3| = {parity:.1e} (their `paper` window is ours × n_fft).")
        text.append("")
    if reps_note:
        text.append("Fewer rounds (too slow for 5 within the time budget): " + "; ".join(
            f"{k}: {v}" for k, v in reps_note.items()) + ".")
        text.append("")
    for note in notes:
        text.append(f"- {note}")
    suffix = "" if device == "cpu" else f"-{device}"
    return [Section(f"a{suffix}", f"a. Transform per parameterisation vs torch.stft and dstft "
                    f"3.0.0 ({device})", "\n".join(text))]


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--cases", default=None,
                        help="comma-separated subset of " + ", ".join(CASES) + " (default: all)")
    parser.add_argument("--lengths", default=None,
                        help="comma-separated signal lengths (default: 16000,160000,1600000)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("CUDA not available: skipped")
        return 0
    cases = tuple(args.cases.split(",")) if args.cases else None
    if cases and not set(cases) <= set(CASES):
        parser.error(f"--cases: choose from {', '.join(CASES)}")
    lengths = tuple(int(v) for v in args.lengths.split(",")) if args.lengths else None
    command = "python benchmarks/transform.py" + " ".join(
        [""] + (["--quick"] if args.quick else []) + ([f"--cases {args.cases}"] if cases else [])
        + ([f"--lengths {args.lengths}"] if lengths else [])
        + ([f"--reps {args.reps}"] if args.reps != 5 else []))
    ctx = Context(quick=args.quick, device=args.device, command=command, reps=args.reps)
    from dstft_cli.runtime import tune_allocator

    tune_allocator()  # as `python -m benchmarks` and the `dstft` command do
    for section in run(ctx, lengths=lengths, cases=cases):
        print(f"## {section.title}\n\n{section.body}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
