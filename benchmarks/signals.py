"""Test signals of the benchmarks.

:func:`three_components` is the paper's Sec. VI-A signal. It comes from ``dstft_cli.synth`` (what
``dstft synth`` writes) when that module exists; until then a stand-in with the same three
components is built here, and :func:`three_components_source` says which one was used.
"""

from __future__ import annotations

import inspect
import math

import torch


def _stand_in(sample_rate: int, duration: float) -> torch.Tensor:
    """Non-stationary FM tone + a stationary tone close to it for a while + a transient."""
    gen = torch.Generator().manual_seed(0)
    t = torch.arange(int(round(sample_rate * duration)), dtype=torch.float64) / sample_rate
    f0 = 0.2 * sample_rate  # 1.6 kHz at 8 kHz
    # sinusoidal frequency modulation: instantaneous f = f0 + 0.06·fs·sin(2π·1.5·t)
    depth, rate = 0.06 * sample_rate, 1.5
    phase = 2 * math.pi * (f0 * t - depth / (2 * math.pi * rate) * torch.cos(2 * math.pi * rate * t))
    chirp = torch.sin(phase)
    tone = 0.8 * torch.sin(2 * math.pi * (f0 + 0.025 * sample_rate) * t)  # 200 Hz above f0
    centre, width = 0.55 * duration, 0.002
    transient = 2.0 * torch.exp(-0.5 * ((t - centre) / width) ** 2) * torch.sin(
        2 * math.pi * 0.35 * sample_rate * t
    )
    noise = 0.01 * torch.randn(t.shape, generator=gen, dtype=torch.float64)
    return (chirp + tone + transient + noise).to(torch.float32)


def three_components_source() -> str:
    try:
        from dstft_cli.synth import three_components  # noqa: F401

        return "dstft_cli.synth.three_components"
    except Exception:  # noqa: BLE001 - module not written yet or broken: use the stand-in
        return "stand-in (benchmarks.signals; dstft_cli.synth not available)"


def three_components(sample_rate: int = 8000, duration: float = 1.0) -> torch.Tensor:
    """The three-component signal as a float32 tensor (Ls,)."""
    try:
        from dstft_cli.synth import three_components as synth
    except Exception:  # noqa: BLE001
        return _stand_in(sample_rate, duration)
    params = inspect.signature(synth).parameters
    kwargs = {}
    for name in ("sample_rate", "sr", "fs", "samplerate"):
        if name in params:
            kwargs[name] = sample_rate
    for name in ("duration", "seconds", "dur"):
        if name in params:
            kwargs[name] = duration
    out = synth(**kwargs)
    if isinstance(out, tuple):
        out = out[0]
    if hasattr(out, "signal"):
        out = out.signal
    x = torch.as_tensor(out).to(torch.float32)
    return x.reshape(-1) if x.dim() > 1 and x.shape[0] == 1 else x
