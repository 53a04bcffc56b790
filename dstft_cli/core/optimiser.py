"""Gradient-based optimisation of DSTFT parameters, guarded against non-finite steps.

``optimise(params, closure, method=...)`` minimises ``closure()`` (a 0-d tensor built from the
parameters) with one of:

* ``adam``   — the paper's choice; stops when the loss has not improved by ``tol`` (relative) for
  ``patience`` iterations.
* ``lbfgs``  — quasi-Newton with a strong-Wolfe line search, for smooth problems with many parameters.
* ``scalar`` — one scalar parameter in ``bounds``: bracket the minimum along the gradient, then a
  safeguarded secant search on the exact derivative. It needs about ten forward/backward passes where
  Adam needs a hundred (issue 5: reaching the grid-search optimum in a fraction of its time).

For Adam and L-BFGS the step can decay geometrically (``lr_end``: from ``lr`` to ``lr_end`` over
``max_iter`` iterations, so Adam settles into a minimum instead of circling it), and the stopping
rule can watch the parameters instead of the loss (``param_tol``: stop when no element moved more
than that over the last ``patience`` iterations — for losses that stay noisy at the minimum).

A non-finite loss or gradient never leaves NaN parameters behind: the last finite parameters are
restored, the step is halved, and an event is recorded in :attr:`OptimiseResult.events`. The
returned parameters are always the best ones seen.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

Tensor = torch.Tensor

__all__ = ["OptimiseResult", "optimise", "METHODS", "Adam"]

METHODS = ("adam", "lbfgs", "scalar")


@dataclass
class OptimiseResult:
    """What an optimisation did: losses per iteration, whether it converged, numerical events."""

    loss_history: list[float] = field(default_factory=list)
    iterations: int = 0
    converged: bool = False
    events: list[dict] = field(default_factory=list)
    best_loss: float = math.inf
    evaluations: int = 0
    #: the budget it ran with (``max_iter``: iterations, or loss evaluations for ``scalar``)
    max_iter: int = 0

    @property
    def initial_loss(self) -> float:
        return self.loss_history[0] if self.loss_history else math.nan


class _Buffers:
    """One preallocated copy of every parameter, refreshed in place (no allocation per use)."""

    def __init__(self, params: list[Tensor]):
        self.values = [p.detach().clone() for p in params]

    def store(self, params: list[Tensor]) -> None:
        with torch.no_grad():
            torch._foreach_copy_(self.values, [p.detach() for p in params])

    def restore_into(self, params: list[Tensor]) -> None:
        with torch.no_grad():
            for p, v in zip(params, self.values, strict=True):
                p.copy_(v)


def _loss_and_finite(loss: Tensor, params: list[Tensor]) -> tuple[float, bool, bool]:
    """(loss value, loss finite, every gradient finite) with one device-to-host transfer."""
    flags = [torch.isfinite(loss.detach()).reshape(())]
    flags += [torch.isfinite(p.grad).all() for p in params if p.grad is not None]
    packed = torch.stack([loss.detach().reshape(()).to(torch.float64),
                          torch.stack(flags).all().to(torch.float64)]).tolist()
    value = packed[0]
    finite_loss = math.isfinite(value)
    return value, finite_loss, finite_loss and packed[1] == 1.0


def optimise(
    params: Iterable[Tensor],
    closure: Callable[[], Tensor],
    *,
    method: str = "adam",
    lr: float = 1.0,
    max_iter: int = 200,
    tol: float = 1e-6,
    patience: int = 10,
    project: Callable[[], None] | None = None,
    bounds: tuple[float, float] | None = None,
    callback: Callable[[int, float], None] | None = None,
    lr_end: float | None = None,
    param_tol: float | None = None,
    relative: bool = False,
) -> OptimiseResult:
    """Minimise ``closure()`` over ``params``; see the module docstring for the methods.

    Args:
        params: tensors with ``requires_grad`` (e.g. ``module.parameters()``).
        closure: recomputes and returns the scalar loss (no ``backward`` inside).
        lr: step size (Adam, L-BFGS) or, for ``scalar``, the first bracketing step in units of
            the parameter (default: a quarter of its value).
        max_iter: at most this many iterations (``scalar``: loss evaluations).
        tol: relative improvement below which an iteration does not count as progress
            (``scalar``: relative width of the final bracket).
        patience: iterations without progress before stopping (Adam, L-BFGS).
        project: called after every step to enforce bounds (e.g. ``DSTFT.project_``).
        bounds: (low, high) for ``scalar``.
        callback: ``callback(iteration, loss)`` after every iteration (parameters still at the
            point where ``loss`` was evaluated).
        lr_end: Adam/L-BFGS step after ``max_iter`` iterations; the step decays geometrically from
            ``lr`` (default: constant step).
        param_tol: Adam/L-BFGS: converged when no parameter element moved more than this over the
            last ``patience`` iterations (replaces the loss-based rule).
        relative: Adam only: ``lr`` is a fraction of each parameter element per step instead of
            an absolute step (for positive scale parameters such as window lengths, where a
            good step grows with the value).
    """
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("optimise: no parameter requires grad")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not (max_iter >= 1 and lr > 0 and tol >= 0 and patience >= 1):
        raise ValueError(
            f"need max_iter ≥ 1, lr > 0, tol ≥ 0, patience ≥ 1; got max_iter={max_iter}, "
            f"lr={lr}, tol={tol}, patience={patience}"
        )
    if lr_end is not None and not 0 < lr_end <= lr:
        raise ValueError(f"lr_end must lie in (0, lr={lr}], got {lr_end}")
    if relative and method != "adam":
        raise ValueError(f"relative steps are for method='adam' only, not {method!r}")
    if param_tol is not None and not param_tol >= 0:
        raise ValueError(f"param_tol must be ≥ 0, got {param_tol}")
    if method == "scalar":
        if len(params) != 1 or params[0].numel() != 1:
            raise ValueError("method='scalar' needs exactly one parameter with one element")
        if bounds is None:
            raise ValueError("method='scalar' needs bounds=(low, high)")
        result = _scalar(params[0], closure, bounds, max_iter, tol, lr, project, callback)
        result.max_iter = max_iter
        return result
    decay = 1.0 if lr_end is None else (lr_end / lr) ** (1.0 / max(max_iter - 1, 1))
    result = _iterative(params, closure, method, lr, max_iter, tol, patience, project, callback,
                        decay, param_tol, relative)
    result.max_iter = max_iter
    return result


def _iterative(params, closure, method, lr, max_iter, tol, patience, project, callback, decay,
               param_tol, relative):
    result = OptimiseResult()
    if method == "adam":
        opt = Adam(params, lr=lr, relative=relative)
    else:
        opt = torch.optim.LBFGS(params, lr=lr, max_iter=1, line_search_fn="strong_wolfe")
    last_good = _Buffers(params)
    best = _Buffers(params)
    stale = 0
    min_lr = lr * 1e-6
    # param_tol rule: the last patience + 1 accepted points, in a ring of preallocated buffers
    ring = [_Buffers(params) for _ in range(patience + 1)] if param_tol is not None else []
    accepted = 0

    def evaluate() -> Tensor:
        # Backward runs even on a non-finite loss: the rare bad step costs one backward pass,
        # and every step saves a host synchronisation (the value and all checks come back in
        # one transfer, in _loss_and_finite).
        opt.zero_grad(set_to_none=True)
        loss = closure()
        result.evaluations += 1
        if loss.requires_grad:
            loss.backward()
        return loss

    for it in range(max_iter):
        loss = evaluate()
        value, finite_loss, finite = _loss_and_finite(loss, params)
        if not finite:
            last_good.restore_into(params)
            new_lr = opt.param_groups[0]["lr"] * 0.5
            for group in opt.param_groups:
                group["lr"] = new_lr
            opt.state.clear()  # moments built on the bad step are discarded too
            what = "non-finite loss" if not finite_loss else "non-finite gradient"
            result.events.append({"iteration": it, "event": what, "lr": new_lr})
            if new_lr < min_lr:
                result.events.append({"iteration": it, "event": "step too small, stopped"})
                break
            continue
        last_good.store(params)
        result.loss_history.append(value)
        result.iterations = it + 1
        if callback is not None:
            callback(it, value)
        if value < result.best_loss - tol * max(1.0, abs(result.best_loss)):
            stale = 0
        else:
            stale += 1
        if value < result.best_loss:
            result.best_loss = value
            best.store(params)
        if param_tol is not None:
            ring[accepted % len(ring)].store(params)
            accepted += 1
            if accepted >= len(ring) and _moved_at_most(ring, accepted, param_tol):
                result.converged = True
                break
        elif stale >= patience:
            result.converged = True
            break
        if method == "adam":
            opt.step()
        else:
            opt.step(evaluate)
        if decay != 1.0:
            for group in opt.param_groups:
                group["lr"] *= decay
        if project is not None:
            project()
    best.restore_into(params)
    return result


class Adam:
    """Adam (Kingma & Ba) with bias correction, the update of ``torch.optim.Adam`` at its defaults.

    Written out because constructing any ``torch.optim`` optimiser imports ``torch._dynamo``, which
    costs more than a second in every fresh process — longer than a whole ``time`` recipe on a
    short recording. Same interface as far as :func:`optimise` uses it: ``param_groups[i]["lr"]``,
    ``state`` (cleared to restart the moments), ``zero_grad`` and ``step``.

    ``relative=True`` multiplies each element's step by the element itself: Adam's step is then
    about ``lr`` times the value (``lr = 0.05``: 5 % per step) instead of ``lr`` in its units.
    """

    def __init__(self, params: list[Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, relative: bool = False):
        self.relative = relative
        self.params = list(params)
        self.param_groups = [{"lr": lr}]
        self.betas, self.eps = betas, eps
        self.state: dict[str, object] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        if not self.state:  # moments and step counts per parameter, as torch.optim keeps them
            self.state = {"step": [0] * len(self.params),
                          "m": [torch.zeros_like(p) for p in self.params],
                          "v": [torch.zeros_like(p) for p in self.params]}
        beta1, beta2 = self.betas
        lr = self.param_groups[0]["lr"]
        steps = self.state["step"]
        for i, (p, m, v) in enumerate(zip(self.params, self.state["m"], self.state["v"],
                                          strict=True)):
            if p.grad is None:
                continue
            steps[i] += 1
            g = p.grad
            m.lerp_(g, 1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            step_size = lr / (1 - beta1 ** steps[i])
            denom = (v.sqrt() / math.sqrt(1 - beta2 ** steps[i])).add_(self.eps)
            if self.relative:
                p.addcdiv_(m * p, denom, value=-step_size)
            else:
                p.addcdiv_(m, denom, value=-step_size)


def _moved_at_most(ring: list[_Buffers], accepted: int, tol: float) -> bool:
    """Whether every point of the ring lies within ``tol`` (max norm) of the newest one."""
    last = ring[(accepted - 1) % len(ring)].values
    spread = [torch.stack([(p - q).abs().max() for p, q in zip(point.values, last, strict=True)])
              .max() for point in ring]
    return float(torch.stack(spread).max()) <= tol


def _scalar(param, closure, bounds, max_iter, tol, lr, project, callback):
    lo, hi = float(bounds[0]), float(bounds[1])
    if not lo < hi:
        raise ValueError(f"bounds must satisfy low < high, got {bounds}")
    result = OptimiseResult()
    seen: dict[float, tuple[float, float]] = {}

    def evaluate(v: float) -> tuple[float, float]:
        v = min(max(v, lo), hi)
        if v in seen:
            return seen[v]
        with torch.no_grad():
            param.fill_(v)
        param.grad = None
        loss = closure()
        result.evaluations += 1
        f = float(loss.detach())
        g = math.nan
        if math.isfinite(f):
            loss.backward()
            g = float(param.grad.reshape(()))
        if not (math.isfinite(f) and math.isfinite(g)):
            result.events.append({"iteration": result.evaluations - 1, "event":
                                  "non-finite loss" if not math.isfinite(f) else
                                  "non-finite gradient", "at": v})
        else:
            result.loss_history.append(f)
            result.iterations = len(result.loss_history)
            if callback is not None:
                callback(result.iterations - 1, f)
        seen[v] = (f, g)
        return f, g

    def budget_left() -> bool:
        return result.evaluations < max_iter

    x0 = min(max(float(param.detach().reshape(())), lo), hi)
    f0, g0 = evaluate(x0)
    width_tol = tol * max(1.0, abs(x0))
    step = lr if lr != 1.0 else max(0.25 * abs(x0), 10 * width_tol)
    # Step back towards the other bound if the start is not finite.
    while not (math.isfinite(f0) and math.isfinite(g0)) and budget_left():
        step *= 0.5
        x0 = x0 - step if x0 - step >= lo else x0 + step
        f0, g0 = evaluate(x0)
    if not (math.isfinite(f0) and math.isfinite(g0)):
        _finish_scalar(param, seen, result)
        return result

    # 1) bracket: walk downhill with doubling steps until the derivative changes sign.
    a, fa, ga = x0, f0, g0
    b = gb = None
    while budget_left() and ga != 0.0:
        direction = -1.0 if ga > 0 else 1.0
        edge = lo if direction < 0 else hi
        if a == edge:  # minimum on the bound
            result.converged = True
            break
        x1 = min(max(a + direction * step, lo), hi)
        f1, g1 = evaluate(x1)
        if not (math.isfinite(f1) and math.isfinite(g1)):
            step *= 0.5
            result.events[-1]["event"] += ", step halved"
            continue
        if (g1 > 0) != (ga > 0) or f1 > fa:
            b, gb = x1, g1
            break
        a, fa, ga = x1, f1, g1
        step *= 2.0

    # 2) safeguarded secant on the derivative inside the bracket [a, b] (unordered).
    if b is not None:
        for _ in range(max_iter):
            if not budget_left() or abs(b - a) <= width_tol:
                result.converged = abs(b - a) <= width_tol
                break
            left, right = min(a, b), max(a, b)
            if (ga > 0) != (gb > 0):
                x = a - ga * (b - a) / (gb - ga)
            else:  # f rose along a descent direction: the minimum is inside, bisect
                x = 0.5 * (a + b)
            margin = 0.05 * (right - left)
            if not (left + margin <= x <= right - margin):
                x = 0.5 * (a + b)
            fx, gx = evaluate(x)
            if not (math.isfinite(fx) and math.isfinite(gx)):
                b = x
                continue
            # keep the pair whose derivatives straddle zero (or the lower point with the new one)
            if (gx > 0) != (ga > 0):
                b, gb = x, gx
            else:
                a, fa, ga = x, fx, gx
            if gx == 0.0:
                result.converged = True
                break
    _finish_scalar(param, seen, result)
    if project is not None:
        project()
    return result


def _finish_scalar(param, seen, result):
    finite = {v: fg for v, fg in seen.items() if math.isfinite(fg[0]) and math.isfinite(fg[1])}
    if not finite:
        return
    best_x = min(finite, key=lambda v: finite[v][0])
    result.best_loss = finite[best_x][0]
    with torch.no_grad():
        param.fill_(best_x)
    param.grad = None
