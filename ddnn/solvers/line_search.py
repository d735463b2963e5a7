"""Line searches: choose α along a descent direction d, φ(α) = L(θ + α d).

A line search is a registered component of kind ``line_search`` with an
options dataclass; it is built with ``registry.build("line_search", section)``
and used as::

    result = line_search.search(phi, f0, dphi0, alpha0, grad0=g)

where ``phi(alpha, need_grad) -> (loss, grad, dphi)`` evaluates the
objective at θ + α d: ``loss`` a float, ``grad`` the full gradient tensor
(``None`` when ``need_grad`` is false) and ``dphi = gradᵀd`` the slope
φ'(α) (``None`` without the gradient). The caller supplies φ (usually a
:class:`Ray`), so the same search serves the global objective, a block
objective or a 1-D test function. φ is *Collective* when the objective is;
the searches decide only from the reduced floats φ returns, so every rank
takes the same decisions and calls φ the same number of times.

A search that finds no acceptable point within its evaluation budget says
so: it returns the best point it evaluated (lowest finite loss below f0, or
α = 0 when there is none) with ``success=False``. Steps below ``min_alpha``
(the caller's relative step tolerance: a step that moves θ by less than
rounding) are never returned: their "decrease" is rounding noise.

References
----------
J. Nocedal, S. J. Wright, *Numerical Optimization*, 2nd ed., Springer 2006:
eq. 3.6 (Armijo / sufficient decrease), eq. 3.7 (strong Wolfe conditions),
Alg. 3.1 (backtracking), Alg. 3.5 and 3.6 (line search and zoom),
eq. 3.57–3.59 (quadratic and cubic interpolation).

J. J. Moré, D. J. Thuente, Line search algorithms with guaranteed sufficient
decrease, *ACM TOMS* 20 (1994) 286–307 (safeguarding of trial steps).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ddnn.options import option
from ddnn.registry import register

__all__ = [
    "Phi",
    "LineSearchResult",
    "Ray",
    "LineSearch",
    "StrongWolfeOptions",
    "StrongWolfe",
    "ArmijoOptions",
    "Armijo",
    "FixedOptions",
    "Fixed",
    "cubic_minimizer",
    "quadratic_minimizer",
    "negligible_step",
]

Phi = Callable[[float, bool], tuple[float, Any, Any]]
"""φ(α, need_grad) -> (loss, grad or None, slope gradᵀd or None)."""


@dataclass
class LineSearchResult:
    """The point a line search returns.

    Attributes
    ----------
    alpha : accepted step length (0 when no point better than α = 0 was found)
    loss : φ(alpha)
    grad : ∇L(θ + alpha d) (``grad0`` as given to ``search`` when alpha = 0)
    dphi : the slope φ'(alpha) = gradᵀd
    evals : number of calls of φ (value-only calls included)
    success : whether the returned point satisfies the search's acceptance
        conditions; false means the budget or the interval tolerance ran out
    """

    alpha: float
    loss: float
    grad: torch.Tensor | None
    dphi: float | None
    evals: int
    success: bool


class Ray:
    """φ(α) = L(θ + α d) of an objective along a direction.

    Parameters
    ----------
    objective : anything with ``evaluate(theta, grad=True) -> Evaluation``
        (:class:`~ddnn.solvers.objective.Objective`, a block objective, ...)
    theta : the base point (not modified; must stay unchanged while the ray is used)
    direction : d (not modified)

    Attributes
    ----------
    point : the last trial point θ + α d (a work buffer, overwritten by every call)
    last : the last :class:`~ddnn.solvers.objective.Evaluation`
    """

    def __init__(self, objective: Any, theta: torch.Tensor, direction: torch.Tensor):
        self.objective = objective
        self.theta = theta
        self.direction = direction
        self.point = torch.empty_like(theta)
        self.last: Any = None

    def __call__(self, alpha: float, need_grad: bool = True) -> tuple[float, torch.Tensor | None, float | None]:
        """(L, ∇L, ∇Lᵀd) at θ + α d. *Collective* when the objective is."""
        torch.add(self.theta, self.direction, alpha=alpha, out=self.point)
        ev = self.objective.evaluate(self.point, grad=need_grad)
        self.last = ev
        if not need_grad:
            return ev.loss, None, None
        return ev.loss, ev.grad, float(torch.dot(ev.grad, self.direction))


def negligible_step(theta: torch.Tensor, direction: torch.Tensor) -> float:
    """The step below which θ + α d differs from θ by rounding only: α ‖d‖ ≤ ε ‖θ‖ (ε of θ's dtype)."""
    d = float(torch.linalg.vector_norm(direction))
    if not (d > 0.0 and math.isfinite(d)):
        return 0.0
    return torch.finfo(theta.dtype).eps * float(torch.linalg.vector_norm(theta)) / d


class LineSearch:
    """Base class of line searches: ``search(phi, f0, dphi0, alpha0, grad0)``."""

    #: whether the returned point is guaranteed to decrease the loss when ``success`` is true
    ensures_decrease = True

    def __init__(self, options: Any):
        self.options = options

    def search(
        self,
        phi: Phi,
        f0: float,
        dphi0: float,
        alpha0: float,
        grad0: torch.Tensor | None = None,
        min_alpha: float = 0.0,
    ) -> LineSearchResult:
        """Find α > 0 along the ray. *Collective* when ``phi`` is.

        Parameters
        ----------
        phi : φ(α, need_grad) -> (loss, grad, slope)
        f0, dphi0 : φ(0) and φ'(0) (< 0 for a descent direction)
        alpha0 : first trial step
        grad0 : ∇L at α = 0, returned as ``grad`` when the search falls back to α = 0
        min_alpha : steps below this are negligible: never accepted nor returned
        """
        raise NotImplementedError

    @staticmethod
    def _no_descent(f0: float, dphi0: float, grad0: torch.Tensor | None) -> LineSearchResult:
        return LineSearchResult(0.0, f0, grad0, dphi0, 0, False)


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def cubic_minimizer(a: float, fa: float, da: float, b: float, fb: float, db: float) -> float | None:
    """Minimiser of the cubic interpolating φ and φ' at a and b (N&W eq. 3.59).

    Returns ``None`` when the cubic has no local minimiser (or the data are
    not finite); the result may lie outside [a, b] (extrapolation).
    """
    if a == b:
        return None
    d1 = da + db - 3.0 * (fa - fb) / (a - b)
    radicand = d1 * d1 - da * db
    if not math.isfinite(radicand) or radicand < 0.0:
        return None
    d2 = math.copysign(math.sqrt(radicand), b - a)
    denom = db - da + 2.0 * d2
    if denom == 0.0:
        return None
    t = b - (b - a) * (db + d2 - d1) / denom
    return t if math.isfinite(t) else None


def quadratic_minimizer(a: float, fa: float, da: float, b: float, fb: float) -> float | None:
    """Minimiser of the quadratic through φ(a), φ'(a), φ(b) (N&W eq. 3.57), ``None`` if not convex."""
    h = b - a
    curvature = fb - fa - da * h
    if not math.isfinite(curvature) or curvature <= 0.0 or h == 0.0:
        return None
    return a - da * h * h / (2.0 * curvature)


# ---------------------------------------------------------------------------
# Strong Wolfe


@dataclass(frozen=True)
class StrongWolfeOptions:
    c1: float = option(1e-4, "sufficient decrease constant (Armijo), 0 < c1 < c2", gt=0.0, lt=1.0)
    c2: float = option(0.9, "curvature constant: |φ'(α)| <= c2 |φ'(0)|", gt=0.0, lt=1.0)
    max_evals: int = option(25, "most evaluations (value and gradient) per search", min=1)
    max_expansion: float = option(10.0, "largest growth factor of the trial step while bracketing", gt=1.0)
    interval_tol: float = option(1e-10, "give up when the bracket is narrower than this times α", gt=0.0)

    def check(self, prefix: str) -> None:
        if not self.c1 < self.c2:
            from ddnn.errors import ConfigError

            raise ConfigError(prefix, f"need c1 < c2, got c1={self.c1}, c2={self.c2}")


@register("line_search", "strong_wolfe", StrongWolfeOptions)
class StrongWolfe(LineSearch):
    """Strong Wolfe line search: bracketing, then zoom with safeguarded cubic interpolation.

    Accepts α with φ(α) ≤ φ(0) + c1 α φ'(0) and |φ'(α)| ≤ c2 |φ'(0)|
    (N&W eq. 3.7). Bracketing phase (N&W Alg. 3.5): trial steps grow until an
    interval is known to contain acceptable points; each new trial is the
    minimiser of the cubic through the last two points, kept within
    [α_i + (α_i − α_{i−1}), α_{i−1} + max_expansion (α_i − α_{i−1})].
    Zoom phase (N&W Alg. 3.6): the interval (α_lo, α_hi), where α_lo is the
    best point satisfying sufficient decrease, shrinks by cubic (else
    quadratic, else bisection) interpolation, with every trial kept at least
    a tenth of the interval away from its ends so that the interval shrinks
    geometrically (safeguarding as in Moré & Thuente 1994). A non-finite
    φ(α) is treated as a failure of sufficient decrease, so the search
    backs off from overflow. Every evaluation computes the gradient.
    """

    _margin = 0.1  # trial points keep this fraction of the interval from its ends

    def search(
        self,
        phi: Phi,
        f0: float,
        dphi0: float,
        alpha0: float,
        grad0: torch.Tensor | None = None,
        min_alpha: float = 0.0,
    ) -> LineSearchResult:
        """Strong Wolfe search along the ray. *Collective* when ``phi`` is."""
        if not (_finite(dphi0) and dphi0 < 0.0):
            return self._no_descent(f0, dphi0, grad0)
        o = self.options
        evals = 0
        best: LineSearchResult | None = None  # lowest finite loss below f0 seen so far

        def evaluate(alpha: float) -> tuple[float, torch.Tensor | None, float | None]:
            nonlocal evals, best
            f, g, d = phi(alpha, True)
            evals += 1
            if not (_finite(f) and _finite(d)):
                return math.inf, None, None
            if f < f0 and alpha >= min_alpha and (best is None or f < best.loss):
                best = LineSearchResult(alpha, f, g, d, 0, False)
            return f, g, d

        def armijo(alpha: float, f: float) -> bool:
            return f <= f0 + o.c1 * alpha * dphi0

        def curvature(d: float) -> bool:
            return abs(d) <= -o.c2 * dphi0

        def done(alpha: float, f: float, g: torch.Tensor, d: float) -> LineSearchResult:
            if alpha < min_alpha:  # conditions met by a step that moves θ by rounding only
                return LineSearchResult(0.0, f0, grad0, dphi0, evals, False)
            return LineSearchResult(alpha, f, g, d, evals, True)

        # Bracketing (N&W Alg. 3.5). (a_prev, f_prev, d_prev) is the last accepted-so-far trial.
        a_prev, f_prev, d_prev = 0.0, f0, dphi0
        alpha = alpha0
        bracket: tuple | None = None  # ((lo, f_lo, d_lo, g_lo), (hi, f_hi, d_hi))
        while evals < o.max_evals:
            f, g, d = evaluate(alpha)
            if not armijo(alpha, f) or (evals > 1 and f >= f_prev):
                bracket = ((a_prev, f_prev, d_prev), (alpha, f, d))
                break
            if curvature(d):
                return done(alpha, f, g, d)
            if d >= 0.0:
                bracket = ((alpha, f, d), (a_prev, f_prev, d_prev))
                break
            low, high = alpha + (alpha - a_prev), a_prev + o.max_expansion * (alpha - a_prev)
            trial = cubic_minimizer(a_prev, f_prev, d_prev, alpha, f, d)
            trial = high if trial is None or trial <= alpha else min(max(trial, low), high)
            a_prev, f_prev, d_prev = alpha, f, d
            alpha = trial

        # Zoom (N&W Alg. 3.6).
        if bracket is not None:
            (lo, f_lo, d_lo), (hi, f_hi, d_hi) = bracket
            while evals < o.max_evals:
                left, right = min(lo, hi), max(lo, hi)
                width = right - left
                if width <= o.interval_tol * right or right < min_alpha:
                    break
                trial = None
                if _finite(f_hi) and _finite(d_hi):
                    trial = cubic_minimizer(lo, f_lo, d_lo, hi, f_hi, d_hi)
                if trial is None and _finite(f_hi):
                    trial = quadratic_minimizer(lo, f_lo, d_lo, hi, f_hi)
                margin = self._margin * width
                if trial is None:
                    trial = 0.5 * (left + right)
                trial = min(max(trial, left + margin), right - margin)
                f, g, d = evaluate(trial)
                # N&W use φ(α) ≥ φ(α_lo) here; ties go to the slope test instead, because near a
                # minimiser φ is flat to rounding and its slope is the only information left.
                if not armijo(trial, f) or f > f_lo:
                    hi, f_hi, d_hi = trial, f, d
                    continue
                if curvature(d):
                    return done(trial, f, g, d)
                if d * (hi - lo) >= 0.0:
                    hi, f_hi, d_hi = lo, f_lo, d_lo
                lo, f_lo, d_lo = trial, f, d

        if best is not None:
            best.evals = evals
            return best
        return LineSearchResult(0.0, f0, grad0, dphi0, evals, False)


# ---------------------------------------------------------------------------
# Armijo backtracking


@dataclass(frozen=True)
class ArmijoOptions:
    c1: float = option(1e-4, "sufficient decrease constant: φ(α) <= φ(0) + c1 α φ'(0)", gt=0.0, lt=1.0)
    shrink: float = option(0.5, "factor applied to α after a rejected trial", gt=0.0, lt=1.0)
    max_evals: int = option(25, "most trial evaluations per search (the final gradient not counted)", min=1)
    grad_first_trial: bool = option(
        True, "evaluate the gradient with the first trial (saves one evaluation when it is accepted)"
    )


@register("line_search", "armijo", ArmijoOptions)
class Armijo(LineSearch):
    """Backtracking line search with the Armijo (sufficient decrease) condition.

    Trials α₀, ρα₀, ρ²α₀, … (ρ = ``shrink``) until
    φ(α) ≤ φ(0) + c1 α φ'(0) (N&W Alg. 3.1, eq. 3.6). Trials evaluate the
    loss only; the gradient is evaluated once, at the accepted point (with
    ``grad_first_trial`` the first trial computes it right away, because the
    first trial of a quasi-Newton step is usually accepted). Non-finite
    values count as rejections.
    """

    def search(
        self,
        phi: Phi,
        f0: float,
        dphi0: float,
        alpha0: float,
        grad0: torch.Tensor | None = None,
        min_alpha: float = 0.0,
    ) -> LineSearchResult:
        """Backtrack along the ray. *Collective* when ``phi`` is."""
        if not (_finite(dphi0) and dphi0 < 0.0):
            return self._no_descent(f0, dphi0, grad0)
        o = self.options
        evals = 0
        alpha = alpha0
        best = LineSearchResult(0.0, f0, grad0, dphi0, 0, False)  # lowest finite loss seen
        accepted = False
        for i in range(o.max_evals):
            if alpha < min_alpha:
                break
            with_grad = i == 0 and o.grad_first_trial
            f, g, d = phi(alpha, with_grad)
            evals += 1
            ok = _finite(f) and (not with_grad or _finite(d))
            if ok and f <= f0 + o.c1 * alpha * dphi0:
                best = LineSearchResult(alpha, f, g, d, 0, False)
                accepted = True
                break
            if ok and f < best.loss:
                best = LineSearchResult(alpha, f, g, d, 0, False)
            alpha *= o.shrink
        if best.alpha > 0.0 and best.grad is None:  # value-only point: one gradient evaluation there
            f, g, d = phi(best.alpha, True)
            evals += 1
            best = LineSearchResult(best.alpha, f, g, d, 0, False)
            accepted = accepted and _finite(f) and _finite(d)
        best.evals = evals
        best.success = accepted and best.alpha > 0.0
        return best


# ---------------------------------------------------------------------------
# Fixed step


@dataclass(frozen=True)
class FixedOptions:
    scale: float = option(1.0, "the step is scale × the solver's trial step (its lr)", gt=0.0)


@register("line_search", "fixed", FixedOptions)
class Fixed(LineSearch):
    """No search: the step α = scale · α₀, one evaluation (value and gradient).

    ``success`` only says that the loss and slope there are finite; nothing
    guarantees a decrease.
    """

    ensures_decrease = False

    def search(
        self,
        phi: Phi,
        f0: float,
        dphi0: float,
        alpha0: float,
        grad0: torch.Tensor | None = None,
        min_alpha: float = 0.0,
    ) -> LineSearchResult:
        """Evaluate at α = scale · α₀ (``min_alpha`` does not apply). *Collective* when ``phi`` is."""
        alpha = self.options.scale * alpha0
        f, g, d = phi(alpha, True)
        return LineSearchResult(alpha, f, g, d, 1, _finite(f) and _finite(d))
