"""dstft_cli — differentiable short-time Fourier transform: spectrogram optimiser and PyTorch layer.

>>> import torch, dstft_cli
>>> x = torch.randn(16000)
>>> S = dstft_cli.dstft(x, n_fft=1024, window_length=400.5, hop_length=256)   # (513, 63)
>>> layer = dstft_cli.DSTFT(n_fft=1024, hop_length=256, length_mode="constant")
"""

from .core import DSTFT, dstft, idstft, losses, optimise

__version__ = "0.1.0"
__all__ = ["dstft", "idstft", "DSTFT", "losses", "optimise", "__version__"]
