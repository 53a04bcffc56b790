"""Numerical core: windows, the differentiable STFT, its inverse, the learnable layer, losses and
optimisers.

Imports torch only: no file I/O, printing or plotting happens here.
"""

from . import losses
from .inverse import idstft
from .layer import DSTFT
from .optimiser import OptimiseResult, optimise
from .transform import default_frame_positions, dstft, frame_count, window_length_kind
from .windows import BaseWindow, available_windows, evaluate_window, get_window, register_window

__all__ = [
    "dstft", "idstft", "DSTFT", "losses", "optimise", "OptimiseResult",
    "default_frame_positions", "frame_count", "window_length_kind",
    "BaseWindow", "available_windows", "evaluate_window", "get_window", "register_window",
]
