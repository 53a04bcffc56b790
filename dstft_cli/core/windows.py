"""Window families ω(x, θ) of the DSTFT (paper Eqs. 2–5) with analytic derivatives.

Every family is a *base window* ``g(u)`` on ``u ∈ [-1/2, 1/2]`` contracted to length θ
(Eq. 2 with ``u = x / θ``)::

    ω(x, θ) = g(x / θ) / θ        for −θ/2 < x ≤ θ/2, 0 outside        (Eq. 3)

so the L¹ norm of ω does not depend on θ. Both derivatives follow from ``g`` and ``g'``::

    ∂ω/∂x = g'(u) / θ²
    ∂ω/∂θ = -(g(u) + u·g'(u)) / θ²

With ``g(u) = (1 + cos 2πu) / 2`` this is the normalised Hann family of Eq. (4); with
``g(u) = 6·exp(-36π u²)`` (σ = θ/6) it is the truncated Gaussian of Eq. (5).

Adding a window: write ``g`` and ``g'`` as torch functions and call :func:`register_window`::

    register_window(BaseWindow("welch", lambda u: 1 - 4 * u**2, lambda u: -8 * u))

At θ = L, ``L·ω(j, L)`` sampled at j = −L/2+1 … L/2 is the periodic window of the same name
(``torch.hann_window(L, periodic=True)`` etc.) read from index (j + L/2) mod L. The support is
half-open, (−θ/2, θ/2], because Eq. (25) reads L samples per frame: for windows that vanish at the
edges (Hann, Blackman) this changes nothing, for the others it decides which edge sample counts.
Windows whose base does not vanish at the edges (Hamming, Gaussian) are discontinuous in θ where
a sample enters the support; their derivative is the derivative of the smooth part only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

Tensor = torch.Tensor

__all__ = ["BaseWindow", "register_window", "get_window", "available_windows", "evaluate_window"]


@dataclass(frozen=True)
class BaseWindow:
    """A base window ``g`` on ``[-1/2, 1/2]`` and its derivative ``g'``.

    Both callables take and return tensors of the same shape; they are only evaluated inside
    the support, so they need not vanish outside it. ``g_and_dg(u, need_g, need_dg)`` may be given
    to compute both at once (sharing work, e.g. the angle 2πu); it returns ``(g or None,
    g' or None)``.
    """

    name: str
    g: Callable[[Tensor], Tensor]
    dg: Callable[[Tensor], Tensor]
    # True when g(±1/2) = 0 and g'(±1/2) = 0: continuous in θ and x, and zero outside the
    # support after clamping u to [−1/2, 1/2] (no mask needed).
    vanishes_at_edges: bool = True
    g_and_dg: Callable[[Tensor, bool, bool], tuple] | None = None
    # (a₀, a₁, …) when g(u) = Σ a_k cos(2πk u): evaluated by a faster dedicated path.
    cosine_coefficients: tuple[float, ...] | None = None
    # True when g(−u) = g(u): on an integer frame grid only half of the window is evaluated.
    symmetric: bool = False

    def evaluate(self, u: Tensor, need_g: bool, need_dg: bool) -> tuple:
        if self.g_and_dg is not None:
            return self.g_and_dg(u, need_g, need_dg)
        return (self.g(u) if need_g else None), (self.dg(u) if need_dg else None)


def _cosine_sum(coefficients: tuple[float, ...]) -> dict:
    # g(u) = Σ_k a_k cos(2πk u): the generalised cosine windows (Hann, Hamming, Blackman).
    # Written with in-place updates of fresh temporaries: these run over (N, L) or (M, nc, L)
    # blocks and every extra pass over memory shows in the transform's time.
    def g_and_dg(u: Tensor, need_g: bool = True, need_dg: bool = True):
        angle = u * (2 * math.pi)
        g = dg = None
        for k, a in enumerate(coefficients[1:], start=1):
            arg = angle if k == 1 else angle * k
            if need_g:
                term = torch.cos(arg).mul_(a)
                g = term if g is None else g.add_(term)
            if need_dg:
                term = torch.sin(arg).mul_(-a * 2 * math.pi * k)
                dg = term if dg is None else dg.add_(term)
        if need_g:
            g = g.add_(coefficients[0])
        return g, dg

    return {
        "g": lambda u: g_and_dg(u, True, False)[0],
        "dg": lambda u: g_and_dg(u, False, True)[1],
        "g_and_dg": g_and_dg,
        "cosine_coefficients": tuple(coefficients),
        "symmetric": True,
    }


def _gaussian() -> tuple[Callable, Callable]:
    # σ = θ/6 in Eq. (5): ω = exp(-π (x/σ)²) / σ  ⇒  g(u) = 6 exp(-36π u²).
    c = 36 * math.pi

    def g(u: Tensor) -> Tensor:
        return 6.0 * torch.exp(-c * u * u)

    def dg(u: Tensor) -> Tensor:
        return (-12.0 * c) * u * torch.exp(-c * u * u)

    return g, dg


_REGISTRY: dict[str, BaseWindow] = {}


def register_window(window: BaseWindow) -> None:
    """Make ``window`` available by name to every function that takes ``window=``."""
    if not isinstance(window, BaseWindow):
        raise TypeError(f"register_window expects a BaseWindow, got {type(window).__name__}")
    _REGISTRY[window.name] = window


register_window(BaseWindow("hann", **_cosine_sum((0.5, 0.5))))
register_window(BaseWindow("hamming", **_cosine_sum((0.54, 0.46)), vanishes_at_edges=False))
register_window(BaseWindow("blackman", **_cosine_sum((0.42, 0.5, 0.08))))
register_window(BaseWindow("gaussian", *_gaussian(), vanishes_at_edges=False, symmetric=True))


def available_windows() -> list[str]:
    return sorted(_REGISTRY)


def get_window(window: str | BaseWindow) -> BaseWindow:
    """Look up a window by name (``hann``, ``hamming``, ``blackman``, ``gaussian`` or registered)."""
    if isinstance(window, BaseWindow):
        return window
    try:
        return _REGISTRY[window]
    except KeyError:
        raise ValueError(
            f"unknown window {window!r}; available: {', '.join(available_windows())}"
        ) from None


def evaluate_window(
    window: BaseWindow, x: Tensor, theta: Tensor, *, value: bool = True,
    d_theta: bool = False, d_x: bool = False,
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """Evaluate ω(x, θ), ∂ω/∂θ and ∂ω/∂x (each only if asked) on broadcast ``x`` and ``theta``.

    Returns a tuple ``(w, dw_dtheta, dw_dx)`` with ``None`` for what was not requested.
    Values outside the support ``|x| ≤ θ/2`` are exactly zero.
    """
    inv_theta = 1.0 / theta
    if window.cosine_coefficients is not None:
        return _evaluate_cosine_sum(window, x, theta, inv_theta, value, d_theta, d_x)
    u = x * inv_theta
    zero = torch.zeros((), dtype=u.dtype, device=u.device)
    if window.vanishes_at_edges:
        # g and g' vanish at u = ±1/2, so clamping u zeroes everything outside the support
        # without a mask (fewer passes over the (N, L) or (M, N, L) block).
        u_in = u.clamp_(-0.5, 0.5)
        inside = None
    else:
        inside = _support(x, theta)
        u_in = u.clamp(-0.5, 0.5)
    w = dtheta = dx = None
    g, dg = window.evaluate(u_in, value or d_theta, d_theta or d_x)

    def masked(t: Tensor) -> Tensor:
        return t if inside is None else torch.where(inside, t, zero)

    if value:
        w = masked(g * inv_theta)
    if d_theta or d_x:
        inv_theta2 = inv_theta * inv_theta
        if d_theta:
            # ∂ω/∂θ = −(g + u·g') / θ²
            dtheta = masked(torch.addcmul(g, u_in, dg).mul_(-inv_theta2))
        if d_x:
            dx = masked(dg * inv_theta2)
    return w, dtheta, dx


def _support(x: Tensor, theta: Tensor) -> Tensor:
    """x ∈ (−θ/2, θ/2]: exactly the samples j − {t}, j = −L/2+1 … L/2, that Eq. (25) reads, so
    that for θ = L no sample of the support falls outside the frame. Compared as x against θ/2
    (exact for integer x and θ in any precision), not through u = x/θ, whose rounding in float32
    could move a sample sitting on the edge."""
    half = 0.5 * theta
    return (x > -half) & (x <= half)


def _evaluate_cosine_sum(window, x, theta, inv_theta, value, d_theta, d_x):
    """ω, ∂θω, ∂xω of g(u) = Σ a_k cos(2πk u) in terms of the angle A = 2πx/θ.

    ω = g·θ⁻¹,  ∂θω = −θ⁻²·(Σ a_k cos kA − Σ a_k k·A·sin kA),  ∂xω = −θ⁻²·Σ 2πk a_k sin kA.
    Constants are folded into the small θ-shaped factors, so each output costs few passes over
    the large (…, L) block.
    """
    a = window.cosine_coefficients
    angle = x * (inv_theta * (2 * math.pi))
    zero = torch.zeros((), dtype=angle.dtype, device=angle.device)
    if window.vanishes_at_edges:
        angle = angle.clamp_(-math.pi, math.pi)  # g = g' = 0 at |A| = π: zero outside the support
        inside = None
    else:
        inside = _support(x, theta)

    def masked(t):
        return t if inside is None else torch.where(inside, t, zero)

    cos_k, sin_k = [], []
    need_cos = value or d_theta
    need_sin = d_theta or d_x
    c1 = torch.cos(angle) if (need_cos or len(a) > 2) else None
    s1 = torch.sin(angle) if (need_sin or len(a) > 2) else None
    cos_k.append(c1)
    sin_k.append(s1)
    for _ in range(2, len(a)):  # Chebyshev recurrences for the higher harmonics
        c_prev, s_prev = cos_k[-1], sin_k[-1]
        cos_k.append(c_prev * c1 - s_prev * s1)
        sin_k.append(s_prev * c1 + c_prev * s1)
    inv2 = inv_theta * inv_theta
    w = dtheta = dx = None
    if value:
        w = torch.addcmul(a[0] * inv_theta, cos_k[0], a[1] * inv_theta)
        for k in range(2, len(a)):
            w = w.addcmul_(cos_k[k - 1], a[k] * inv_theta)
        w = masked(w)
    if d_theta:
        # Σ a_k (cos kA − k·A·sin kA), times −θ⁻²
        acc = None
        for k in range(1, len(a)):
            term = torch.addcmul(cos_k[k - 1], angle, sin_k[k - 1], value=-float(k))
            acc = term.mul_(a[k]) if acc is None else acc.add_(term, alpha=a[k])
        dtheta = masked(acc.add_(a[0]).mul_(-inv2))
    if d_x:
        acc = None
        for k in range(1, len(a)):
            coef = -2 * math.pi * k * a[k]
            acc = sin_k[k - 1] * (coef * inv2) if acc is None else acc.addcmul_(
                sin_k[k - 1], coef * inv2)
        dx = masked(acc)
    return w, dtheta, dx
