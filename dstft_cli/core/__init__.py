"""Numerical core: windows, the differentiable STFT, its inverse, the learnable layer, losses and
optimisers.

Imports torch only: no file I/O, printing or plotting happens here. The names below are loaded
from their modules on first use, so that torch-free parts (``loss_names``, which the command
line's option checks use) can be imported without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name → the module of this package that defines it
_WHERE = {
    "losses": None, "idstft": "inverse", "DSTFT": "layer", "OptimiseResult": "optimiser",
    "optimise": "optimiser", "default_frame_positions": "transform", "dstft": "transform",
    "frame_count": "transform", "window_length_kind": "transform", "BaseWindow": "windows",
    "available_windows": "windows", "evaluate_window": "windows", "get_window": "windows",
    "register_window": "windows",
}

__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = _WHERE[name]
    if module is None:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
