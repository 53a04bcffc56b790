"""dstft_cli — differentiable short-time Fourier transform: spectrogram optimiser and PyTorch layer.

>>> import torch, dstft_cli
>>> x = torch.randn(16000)
>>> S = dstft_cli.dstft(x, n_fft=1024, window_length=400.5, hop_length=256)   # (513, 63)
>>> layer = dstft_cli.DSTFT(n_fft=1024, hop_length=256, length_mode="constant")

The names below are loaded from :mod:`dstft_cli.core` on first use, so that importing the
package (or its command line, :mod:`dstft_cli.cli`) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["dstft", "idstft", "DSTFT", "losses", "optimise", "__version__"]

_FROM_CORE = frozenset({"dstft", "idstft", "DSTFT", "losses", "optimise"})


def __getattr__(name: str) -> Any:
    if name in _FROM_CORE:
        value = getattr(importlib.import_module(f"{__name__}.core"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _FROM_CORE)
