"""`DSTFT`: the differentiable STFT as a learnable ``nn.Module`` (Sec. III).

The module only holds parameters and their bounds; ``forward`` calls :func:`~dstft_cli.core.dstft`.

Window length θ (``length_mode``):
    ``constant`` one θ · ``frame`` θₙ · ``bin`` θₘ · ``tf`` θₘ,ₙ.
Frame positions tₙ (``position_mode``):
    ``fixed``    tₙ = n·H, not learned
    ``frame``    every tₙ learned
    ``hop``      a learned constant hop H, tₙ = n·H
    ``hops``     learned hops Hₙ, tₙ = Σ_{i≤n} Hᵢ (H₀ = t₀)
    ``overlap``  fixed overlap α: t₀ = 0, tₙ = tₙ₋₁ + α·θₙ₋₁ (Sec. III-B, V-A). The frame count is
                 the one that covers the signal at the shortest allowed window; frames beyond the end
                 read zero padding (see :meth:`DSTFT.active_frames`).

Bounds (θ ∈ [min_length, max_length], positions inside the padded signal and ordered) are kept in
one of two ways (``bounds``):
    ``project``  parameters hold the values themselves; call :meth:`project_` after each optimiser
                 step. Values are exact: an integer θ or hop stays that integer.
    ``sigmoid``  parameters are unconstrained offsets mapped smoothly into the bounds (θ only;
                 positions are still projected). The map is anchored at the initial value, so the
                 initial θ is reproduced exactly.

Coverage (``max_hop_ratio`` r, ``project`` bounds): a loss such as the entropy can fall by spreading
frames apart and shortening windows until parts of the signal lie under no window (the spectrogram
then misses them and :func:`~dstft_cli.core.idstft` cannot invert it). With r set, :meth:`project_`
also keeps neighbouring windows overlapping: every θ is raised to at least (distance to its farther
neighbour)/r, a learned hop stays ≤ r·max_length, and a learned constant hop stays long enough for
the fixed number of frames to reach the end of the signal. r ∈ (0, 1]; below 1 the windows overlap
by a margin (at r = 1 two Hann windows meet where both are zero).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .transform import dstft, frame_count

Tensor = torch.Tensor

LENGTH_MODES = ("constant", "frame", "bin", "tf")
POSITION_MODES = ("fixed", "frame", "hop", "hops", "overlap")
BOUND_MODES = ("project", "sigmoid")

__all__ = ["DSTFT", "LENGTH_MODES", "POSITION_MODES", "BOUND_MODES"]


class DSTFT(nn.Module):
    """Learnable differentiable STFT.

    Args:
        n_fft: DFT size L (even); M = L/2 + 1 bins.
        hop_length: H of the initial grid tₙ = n·H (default L/4).
        signal_length: Ls; required unless θ is constant or per bin and positions are fixed.
        window: window family name (see :mod:`~dstft_cli.core.windows`).
        length_mode, position_mode, bounds: see the module docstring.
        init_length: initial θ (default L/2); a number or a tensor of the mode's shape.
        min_length, max_length: bounds of θ (default 2 and L); 0 < min ≤ max ≤ L.
        overlap: α of the ``overlap`` position mode, in (0, 1].
        min_hop, max_hop: bounds of a learned hop H or Hₙ (default 1 and L).
        max_hop_ratio: keep every frame distance ≤ this fraction of the window lengths (see the
            module docstring, "Coverage"); None: no coverage constraint.
        dtype, device: of the parameters.
    """

    def __init__(
        self,
        *,
        n_fft: int,
        hop_length: int | float | None = None,
        signal_length: int | None = None,
        window: str = "hann",
        length_mode: str = "constant",
        position_mode: str = "fixed",
        init_length=None,
        min_length: float = 2.0,
        max_length: float | None = None,
        overlap: float = 0.5,
        min_hop: float = 1.0,
        max_hop: float | None = None,
        bounds: str = "project",
        max_hop_ratio: float | None = None,
        dtype: torch.dtype = torch.float32,
        device=None,
    ):
        super().__init__()
        if not isinstance(n_fft, int) or n_fft < 2 or n_fft % 2:
            raise ValueError(f"n_fft must be an even integer ≥ 2, got {n_fft!r}")
        if length_mode not in LENGTH_MODES:
            raise ValueError(f"length_mode must be one of {LENGTH_MODES}, got {length_mode!r}")
        if position_mode not in POSITION_MODES:
            raise ValueError(f"position_mode must be one of {POSITION_MODES}, got {position_mode!r}")
        if bounds not in BOUND_MODES:
            raise ValueError(f"bounds must be one of {BOUND_MODES}, got {bounds!r}")
        max_length = float(n_fft) if max_length is None else float(max_length)
        min_length = float(min_length)
        if not 0 < min_length <= max_length <= n_fft:
            raise ValueError(
                f"need 0 < min_length ≤ max_length ≤ n_fft; got min_length={min_length}, "
                f"max_length={max_length}, n_fft={n_fft}"
            )
        hop_length = n_fft // 4 if hop_length is None else hop_length
        if not hop_length > 0:
            raise ValueError(f"hop_length must be > 0, got {hop_length!r}")
        if not 0 < overlap <= 1:
            raise ValueError(f"overlap must be in (0, 1], got {overlap!r}")
        if position_mode == "overlap" and length_mode not in ("constant", "frame"):
            raise ValueError("position_mode='overlap' needs length_mode 'constant' or 'frame'")
        if max_hop_ratio is not None:
            if not 0 < max_hop_ratio <= 1:
                raise ValueError(f"max_hop_ratio must be in (0, 1], got {max_hop_ratio!r}")
            if bounds != "project" or position_mode == "overlap":
                raise ValueError("max_hop_ratio needs bounds='project' and a position_mode other "
                                 "than 'overlap' (whose frames follow the windows already)")
        needs_length = length_mode in ("frame", "tf") or position_mode != "fixed"
        if needs_length and signal_length is None:
            raise ValueError(
                f"signal_length is required with length_mode={length_mode!r}, "
                f"position_mode={position_mode!r} (the number of frames must be fixed)"
            )
        self.n_fft = n_fft
        self.n_bins = n_fft // 2 + 1
        self.hop_length = hop_length
        self.signal_length = signal_length
        self.window = window
        self.length_mode = length_mode
        self.position_mode = position_mode
        self.bounds = bounds
        self.min_length, self.max_length = min_length, max_length
        self.overlap = float(overlap)
        self.max_hop_ratio = None if max_hop_ratio is None else float(max_hop_ratio)
        self.min_hop = float(min_hop)
        self.max_hop = float(n_fft) if max_hop is None else float(max_hop)
        self.pad = n_fft // 2
        factory = {"dtype": dtype, "device": device}

        if position_mode == "overlap":
            self._n_frames = 1 + math.ceil(signal_length / (overlap * min_length))
        elif signal_length is not None:
            self._n_frames = frame_count(signal_length, hop_length)
        else:
            self._n_frames = None

        shape = {"constant": (), "frame": (self._n_frames,), "bin": (self.n_bins, 1),
                 "tf": (self.n_bins, self._n_frames)}[length_mode]
        init = float(n_fft) / 2 if init_length is None else init_length
        theta0 = torch.as_tensor(init, **factory).expand(shape).clone()
        if theta0.min() < min_length or theta0.max() > max_length:
            raise ValueError(
                f"init_length must lie in [min_length={min_length}, max_length={max_length}]"
            )
        if bounds == "project":
            self.theta = nn.Parameter(theta0)
        else:
            span = max_length - min_length
            ratio = ((theta0 - min_length) / span).clamp(1e-4, 1 - 1e-4)
            self.register_buffer("theta_init", theta0)
            self.register_buffer("theta_logit0", torch.log(ratio) - torch.log1p(-ratio))
            self.theta_offset = nn.Parameter(torch.zeros_like(theta0))

        # Positions: integer grids stay integer tensors when not learned (exact phases).
        if position_mode == "fixed":
            if signal_length is not None:
                n = torch.arange(self._n_frames, device=device)
                grid = n * hop_length if float(hop_length).is_integer() else n.double() * hop_length
                self.register_buffer("positions_fixed", grid)
        elif position_mode == "frame":
            n = torch.arange(self._n_frames, device=device, dtype=torch.float64)
            self.positions = nn.Parameter(n * hop_length)
        elif position_mode == "hop":
            self.hop = nn.Parameter(torch.tensor(float(hop_length), dtype=torch.float64,
                                                 device=device))
        elif position_mode == "hops":
            hops = torch.full((self._n_frames,), float(hop_length), dtype=torch.float64,
                              device=device)
            hops[0] = 0.0
            self.hops = nn.Parameter(hops)

    # ---------------------------------------------------------------- derived quantities
    @property
    def n_frames(self) -> int | None:
        return self._n_frames

    @property
    def window_length(self) -> Tensor:
        """θ as used by the transform: scalar, (N,), (M, 1) or (M, N)."""
        if self.bounds == "project":
            return self.theta
        span = self.max_length - self.min_length
        delta = torch.sigmoid(self.theta_offset + self.theta_logit0) - torch.sigmoid(
            self.theta_logit0
        )
        return (self.theta_init + span * delta).clamp(self.min_length, self.max_length)

    def frame_window_lengths(self) -> Tensor:
        """One window length per frame (N,): θₙ, or the mean over bins for per-bin modes."""
        theta = self.window_length
        n = self.frame_positions.shape[0]
        if self.length_mode == "constant":
            return theta.expand(n)
        if self.length_mode == "frame":
            return theta
        return theta.mean(0).expand(n)

    @property
    def frame_positions(self) -> Tensor:
        """tₙ in samples, (N,)."""
        mode = self.position_mode
        if mode == "fixed":
            if self._n_frames is None:
                raise RuntimeError("frame positions depend on the input length (signal_length=None)")
            return self.positions_fixed
        if mode == "frame":
            return self.positions
        if mode == "hop":
            n = torch.arange(self._n_frames, device=self.hop.device, dtype=self.hop.dtype)
            return n * self.hop
        if mode == "hops":
            return torch.cumsum(self.hops, 0)
        theta = self.window_length
        steps = self.overlap * theta.to(torch.float64).expand(self._n_frames)
        return torch.cat([steps.new_zeros(1), torch.cumsum(steps[:-1], 0)])

    def active_frames(self) -> Tensor:
        """Boolean (N,): frames whose window touches the signal (all of them unless ``overlap``)."""
        t = self.frame_positions.detach()
        half = 0.5 * self.frame_window_lengths().detach().to(t.dtype)
        return (t - half < self.signal_length) & (t + half > 0)

    # ---------------------------------------------------------------- forward
    def forward(self, x: Tensor) -> Tensor:
        """Complex DSTFT of ``x`` (..., Ls) → (..., M, N)."""
        if self.signal_length is not None and x.shape[-1] != self.signal_length:
            raise ValueError(
                f"this DSTFT was built for signals of {self.signal_length} samples, "
                f"got {x.shape[-1]}"
            )
        positions = None if self._n_frames is None else self.frame_positions
        if self.position_mode == "fixed" and positions is not None and not positions.is_floating_point():
            # the fixed integer grid n·H is what dstft builds from hop_length: passing None
            # spares the per-call check that the given positions form that grid
            positions = None
        return dstft(
            x, n_fft=self.n_fft, window_length=self.window_length, frame_positions=positions,
            hop_length=self.hop_length, window=self.window,
        )

    def spectrogram(self, x: Tensor) -> Tensor:
        """Magnitude |S|."""
        return self.forward(x).abs()

    # ---------------------------------------------------------------- bounds
    @torch.no_grad()
    def project_(self) -> None:
        """Put every parameter back inside its bounds (call after each optimiser step)."""
        if self.bounds == "project":
            self.theta.clamp_(self.min_length, self.max_length)
        lo, hi = -float(self.pad), float(self.signal_length or 0) + self.pad
        if self.position_mode == "frame":
            # Ordered and inside the padded signal: a running maximum keeps tₙ ≥ tₙ₋₁.
            self.positions.clamp_(lo, hi)
            self.positions.copy_(torch.cummax(self.positions, 0).values)
        elif self.position_mode == "hop":
            self.hop.clamp_(self.min_hop, self.max_hop)
        elif self.position_mode == "hops":
            self.hops[0].clamp_(lo, hi)
            self.hops[1:].clamp_(self.min_hop, self.max_hop)
        if self.max_hop_ratio is not None:
            self._keep_covered()

    @torch.no_grad()
    def _keep_covered(self) -> None:
        ratio = self.max_hop_ratio
        if self.position_mode == "hop":
            # (N−1)·H + θ_last/2 ≥ Ls with θ_last ≥ H/r: the last frame reaches the end
            reach_end = self.signal_length / (self._n_frames - 1 + 0.5 / ratio)
            self.hop.clamp_(min=min(reach_end, ratio * self.max_length), max=ratio * self.max_length)
        elif self.position_mode == "hops":
            self.hops[1:].clamp_(max=ratio * self.max_length)
        if self._n_frames is None:
            need = torch.tensor(float(self.hop_length) / ratio)
        else:
            t = self.frame_positions.detach().to(torch.float64)
            gap = t[1:] - t[:-1]
            if gap.numel() == 0:
                return
            farther = torch.maximum(torch.cat([gap[:1], gap]), torch.cat([gap, gap[-1:]]))
            need = farther / ratio
        need = need.to(self.theta.dtype).to(self.theta.device).clamp(max=self.max_length)
        if self.length_mode == "frame":
            self.theta.copy_(torch.maximum(self.theta, need))
        elif self.length_mode == "tf":
            self.theta.copy_(torch.maximum(self.theta, need[None, :]))
        else:
            self.theta.clamp_(min=float(need.max()))

    def extra_repr(self) -> str:
        return (
            f"n_fft={self.n_fft}, hop_length={self.hop_length}, window={self.window!r}, "
            f"length_mode={self.length_mode!r}, position_mode={self.position_mode!r}, "
            f"bounds={self.bounds!r}, length∈[{self.min_length}, {self.max_length}]"
        )
