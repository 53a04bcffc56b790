"""dstft_cli — differentiable short-time Fourier transform: spectrogram optimiser and PyTorch layer."""

from .core import dstft

__version__ = "0.1.0"
__all__ = ["dstft", "__version__"]
