"""Numerical core: windows, the differentiable STFT, its inverse, losses and optimisers.

Imports torch only: no file I/O, printing or plotting happens here.
"""

from .transform import default_frame_positions, dstft, frame_count, window_length_kind
from .windows import BaseWindow, available_windows, evaluate_window, get_window, register_window

__all__ = [
    "dstft", "default_frame_positions", "frame_count", "window_length_kind",
    "BaseWindow", "available_windows", "evaluate_window", "get_window", "register_window",
]
