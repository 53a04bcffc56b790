"""Numerical core: windows, the differentiable STFT, its inverse, the learnable layer, losses and
optimisers.

Imports torch only: no file I/O, printing or plotting happens here. The names below are loaded
from their modules on first use, so that torch-free modules of the core (``loss_names``) can be
imported by the configuration layer without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "dstft": "transform", "default_frame_positions": "transform", "frame_count": "transform",
    "window_length_kind": "transform",
    "idstft": "inverse",
    "DSTFT": "layer",
    "optimise": "optimiser", "OptimiseResult": "optimiser",
    "BaseWindow": "windows", "available_windows": "windows", "evaluate_window": "windows",
    "get_window": "windows", "register_window": "windows",
}

__all__ = ["losses", *_WHERE]


def __getattr__(name: str) -> Any:
    if name == "losses":
        value = importlib.import_module(f"{__name__}.losses")
    elif name in _WHERE:
        value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
