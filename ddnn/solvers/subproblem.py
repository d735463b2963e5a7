"""Trust-region subproblem solvers: minimise m(s) = gᵀs + ½ sᵀBs subject to ‖s‖_p ≤ Δ.

A subproblem solver is a registered component of kind ``subproblem`` with an
options dataclass; it is built with ``registry.build("subproblem", section)``
(or ``Cls(options)``) and used as::

    result = solver.solve(model, radius, norm)

with a :class:`~ddnn.solvers.quadratic_model.QuadraticModel`, Δ = ``radius``
and ``norm`` "2" or "inf". Each class declares the norms it supports
(``norms``) and what it needs from the model (``needs``):

=========  =====================  ==============================================
name       needs                  method
=========  =====================  ==============================================
cauchy     none (B = 0 allowed)   Cauchy point; first-order TR when B = 0
dogleg     inverse_or_compact     dogleg path to the Newton step (p = 2)
cg         hvp                    Steihaug–Toint truncated CG (p = 2 and ∞)
obs        compact                orthonormal-basis method, exact (p = 2)
=========  =====================  ==============================================

so that a caller can refuse a configuration that cannot run before it runs;
:meth:`SubproblemSolver.solve` raises ``ValueError`` on a mismatch.

Guarantees of every solver: the step is feasible (‖s‖_p ≤ Δ up to the
rounding of one final scaling), and the predicted decrease −m(s) is ≥ 0 and
at least the decrease of the Cauchy point along −g in the same norm (the
Cauchy decrease condition, N&W eq. 4.20, with constant 1): ``dogleg`` and
``obs`` compare their step with the Cauchy point and return it when it is
better (rounding, an indefinite B for dogleg), ``cg`` starts with the
Cauchy point and decreases the model monotonically, and any solver whose
predicted decrease comes out negative or not finite returns the Cauchy
point. The predicted decrease is computed from the products the solver made
(no extra B product), consistently with the model. Everything stays in the
dtype and on the device of g; only scalars and k × k matrices go to the host.

References
----------
J. Nocedal, S. J. Wright, *Numerical Optimization*, 2nd ed., Springer 2006:
§4.1 (Cauchy point, eqs. 4.11–4.12; dogleg method), eq. 4.20 (Cauchy decrease
condition), §4.3 (the exact subproblem, the hard case), Alg. 7.2 (CG–Steihaug),
eq. 7.3 and Alg. 7.1 (forcing term min(0.5, √‖g‖)).

T. Steihaug, The conjugate gradient method and trust regions in large scale
optimization, *SIAM J. Numer. Anal.* 20 (1983) 626–637. Ph. L. Toint, Towards
an efficient sparsity exploiting Newton method for minimization, in *Sparse
Matrices and Their Uses*, Academic Press 1981, 57–88.

J. J. Moré, D. C. Sorensen, Computing a trust region step, *SIAM J. Sci.
Stat. Comput.* 4 (1983) 553–572 (secular equation 1/‖s(σ)‖ − 1/Δ, hard case).

J. J. Brust, J. B. Erway, R. F. Marcia, On solving L-SR1 trust-region
subproblems, *Comput. Optim. Appl.* 66 (2017) 245–266 (the OBS method).

Y. Yuan, On the truncated conjugate gradient method, *Math. Program.* 87
(2000) 561–573 (for positive definite B, Steihaug–Toint CG obtains at least
half of the optimal decrease).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ddnn.options import option
from ddnn.registry import register
from ddnn.solvers.quadratic_model import CompactForm, QuadraticModel

__all__ = [
    "NORMS",
    "NEEDS",
    "SubproblemResult",
    "SubproblemSolver",
    "cauchy_point",
    "CauchyOptions",
    "Cauchy",
    "DoglegOptions",
    "Dogleg",
    "CGOptions",
    "SteihaugCG",
    "OBSOptions",
    "OrthonormalBasis",
]

NORMS = ("2", "inf")
NEEDS = ("none", "hvp", "compact", "inverse_or_compact")


@dataclass
class SubproblemResult:
    """The step a subproblem solver returns.

    Attributes
    ----------
    step : s, in the dtype and on the device of g
    predicted_decrease : −m(s) ≥ 0, as a float
    on_boundary : whether ‖s‖_p = Δ (the solver stopped at or was scaled to the boundary)
    iterations : CG iterations (0 for the other solvers)
    hvps : products B v done through the model (:attr:`QuadraticModel.hvp_count`)
    negative_curvature : whether a direction d with dᵀBd ≤ 0 was found
    """

    step: torch.Tensor
    predicted_decrease: float
    on_boundary: bool
    iterations: int = 0
    hvps: int = 0
    negative_curvature: bool = False


def _norm(v: torch.Tensor, norm: str) -> float:
    return float(torch.linalg.vector_norm(v, ord=2 if norm == "2" else math.inf))


def _dot(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.dot(a, b))


def _finish(step: torch.Tensor, m_value: float, radius: float, norm: str, g: torch.Tensor, **flags) -> SubproblemResult:
    """The result for ``step`` with model value ``m_value``, scaled into the region if rounding left it out.

    Scaling s by c changes m(s) = gᵀs + ½ sᵀBs to c gᵀs + ½ c² sᵀBs, computed
    from gᵀs and sᵀBs = 2 (m − gᵀs) without another product.
    """
    size = _norm(step, norm)
    if size > radius:
        c = radius / size * (1.0 - 2.0 * torch.finfo(step.dtype).eps)
        gs = _dot(g, step)
        sbs = 2.0 * (m_value - gs)
        step = step * c
        if norm == "inf":
            step.clamp_(-radius, radius)
        m_value = c * gs + 0.5 * c * c * sbs
        flags["on_boundary"] = True
    return SubproblemResult(step, -m_value, **flags)


class SubproblemSolver:
    """Base class of trust-region subproblem solvers: ``solve(model, radius, norm)``.

    Class attributes
    ----------------
    norms : the norms ("2", "inf") the solver supports
    needs : what it needs of the model: "none" (g only; B = 0 allowed),
        "hvp" (products B v), "compact" (a :class:`CompactForm`),
        "inverse_or_compact" (B⁻¹ v from ``model.inverse`` or the compact form)
    """

    norms: tuple[str, ...] = ("2",)
    needs: str = "none"

    def __init__(self, options=None):
        self.options = options

    @classmethod
    def supports(cls, norm: str) -> bool:
        """Whether ``norm`` is one of :attr:`norms`."""
        return norm in cls.norms

    @classmethod
    def check_model(cls, model: QuadraticModel) -> None:
        """Raise ``ValueError`` when the model lacks what :attr:`needs` asks for."""
        if cls.needs == "hvp" and model.hvp is None:
            raise ValueError(f"subproblem solver {cls.__name__} needs B products (hvp); the model has B = 0")
        if cls.needs == "compact" and model.compact is None:
            raise ValueError(f"subproblem solver {cls.__name__} needs a compact form of B")
        if cls.needs == "inverse_or_compact" and model.inverse is None and model.compact is None:
            raise ValueError(f"subproblem solver {cls.__name__} needs B⁻¹ (an inverse or a compact form)")

    def solve(self, model: QuadraticModel, radius: float, norm: str = "2") -> SubproblemResult:
        """An approximate minimiser of m(s) subject to ‖s‖_norm ≤ radius.

        Parameters
        ----------
        model : the quadratic model (its :attr:`~QuadraticModel.hvp_count` is advanced)
        radius : Δ > 0
        norm : "2" or "inf"

        Returns
        -------
        :class:`SubproblemResult`; ``hvps`` counts the products made through the model.

        Raises
        ------
        ValueError
            an unsupported norm, a model without what the solver needs, a
            radius that is not positive and finite, or a gradient that is not
            finite.
        FloatingPointError
            a product B v gave a non-finite curvature.
        """
        if not self.supports(norm):
            raise ValueError(f"subproblem solver {type(self).__name__} supports norms {self.norms}, not {norm!r}")
        self.check_model(model)
        radius = float(radius)
        if not (radius > 0.0 and math.isfinite(radius)):
            raise ValueError(f"the trust-region radius must be positive and finite, got {radius}")
        if not bool(torch.isfinite(model.g).all()):
            raise ValueError("the gradient of the model is not finite")
        start = model.hvp_count
        result = self._solve(model, radius, norm)
        if not (math.isfinite(result.predicted_decrease) and result.predicted_decrease >= 0.0):
            fallback = cauchy_point(model, radius, norm)
            fallback.iterations = result.iterations
            fallback.negative_curvature = fallback.negative_curvature or result.negative_curvature
            result = fallback
        result.hvps = model.hvp_count - start
        return result

    def _solve(self, model: QuadraticModel, radius: float, norm: str) -> SubproblemResult:
        raise NotImplementedError


# ---------------------------------------------------------------------------
# Cauchy point


def _zero_step(g: torch.Tensor) -> SubproblemResult:
    return SubproblemResult(torch.zeros_like(g), 0.0, False)


def _along(slope: float, curvature: float, t_max: float) -> tuple[float, float]:
    """(t, φ(t)) minimising φ(t) = slope t + ½ curvature t² over 0 ≤ t ≤ t_max, for slope < 0.

    The minimiser is t_max when the curvature is ≤ 0, else min(−slope / curvature, t_max).
    """
    if not math.isfinite(curvature):
        raise FloatingPointError(f"non-finite curvature {curvature} of the model")
    t = t_max if curvature <= 0.0 else min(-slope / curvature, t_max)
    return t, slope * t + 0.5 * curvature * t * t


def cauchy_point(
    model: QuadraticModel, radius: float, norm: str = "2", sign_direction: bool = True
) -> SubproblemResult:
    """The Cauchy point: the minimiser of m along a steepest-descent direction inside the region.

    p = 2 (N&W §4.1, eqs. 4.11–4.12): s = −t g with t = Δ/‖g‖ when gᵀBg ≤ 0,
    else t = min(‖g‖² / gᵀBg, Δ/‖g‖). With B = 0, s = −Δ g/‖g‖.

    p = ∞: the same along −g with the largest step Δ/‖g‖_∞ (the ∞-norm
    Cauchy point), and — when ``sign_direction`` — also along −sign(g), the
    steepest-descent direction of the ∞-norm (the minimiser of gᵀd over
    ‖d‖_∞ ≤ 1), with steps up to Δ; the better of the two is returned. With
    B = 0 that is s = −Δ sign(g), the exact minimiser of the linear model on
    the box ("first-order trust region"); with B ≠ 0 it costs one more product.

    Parameters
    ----------
    model : the quadratic model (B = 0 allowed)
    radius : Δ
    norm : "2" or "inf"
    sign_direction : for p = ∞, also try −sign(g)

    Returns
    -------
    :class:`SubproblemResult` (``hvps`` not filled in).
    """
    g = model.g
    gg = _norm(g, "2") ** 2  # vector_norm reduces more accurately than a float32 dot
    if gg == 0.0:
        return _zero_step(g)
    linear = model.first_order
    g_bg = 0.0 if linear else _dot(g, model.matvec(g))
    t_max = radius / math.sqrt(gg) if norm == "2" else radius / _norm(g, "inf")
    t, m_value = _along(-gg, g_bg, t_max)
    step, boundary = -t * g, t == t_max
    negative = not linear and g_bg <= 0.0
    if norm == "inf" and sign_direction:
        d = -torch.sign(g)
        slope = -float(torch.linalg.vector_norm(g, ord=1))
        d_bd = 0.0 if linear else _dot(d, model.matvec(d))
        t_sign, m_sign = _along(slope, d_bd, radius)
        negative = negative or (not linear and d_bd <= 0.0)
        if m_sign <= m_value:
            step, m_value, boundary = t_sign * d, m_sign, t_sign == radius
    result = _finish(step, m_value, radius, norm, g, on_boundary=boundary, negative_curvature=negative)
    return result


@dataclass(frozen=True)
class CauchyOptions:
    sign_direction: bool = option(
        True, "for the inf-norm also try -sign(g), the inf-norm steepest descent (one more B product)"
    )


@register("subproblem", "cauchy", CauchyOptions)
class Cauchy(SubproblemSolver):
    """Cauchy point: the model minimised along steepest descent (first-order trust region when B = 0).

    See :func:`cauchy_point`. Needs nothing of the model beyond g; uses one
    B product (p = 2) or two (p = ∞ with ``sign_direction``) when B ≠ 0.
    """

    norms = ("2", "inf")
    needs = "none"

    def __init__(self, options: CauchyOptions | None = None):
        super().__init__(options if options is not None else CauchyOptions())

    def _solve(self, model: QuadraticModel, radius: float, norm: str) -> SubproblemResult:
        return cauchy_point(model, radius, norm, self.options.sign_direction)


# ---------------------------------------------------------------------------
# Dogleg


@dataclass(frozen=True)
class DoglegOptions:
    """The dogleg method has no options."""


@register("subproblem", "dogleg", DoglegOptions)
class Dogleg(SubproblemSolver):
    """Dogleg: the path from the unconstrained Cauchy step to the Newton step −B⁻¹g, cut at the boundary.

    N&W §4.1: with p_U = −(gᵀg / gᵀBg) g and p_B = −B⁻¹g (``model.inverse`` or
    the compact form's Woodbury solve), the step is p_B when ‖p_B‖ ≤ Δ, else
    −Δ g/‖g‖ when ‖p_U‖ ≥ Δ, else the point p_U + τ(p_B − p_U) with norm Δ.
    The method assumes B positive definite: when gᵀBg ≤ 0, the solve fails
    (singular B) or p_B is not a descent direction (gᵀp_B ≥ 0) it returns the
    Cauchy point; it also returns the Cauchy point when that is better (which
    can only happen for an indefinite B). One B product (Bg) and one solve;
    the model value uses B p_B = −g. p = 2 only.
    """

    norms = ("2",)
    needs = "inverse_or_compact"

    def __init__(self, options: DoglegOptions | None = None):
        super().__init__(options if options is not None else DoglegOptions())

    def _solve(self, model: QuadraticModel, radius: float, norm: str) -> SubproblemResult:
        g = model.g
        gg = _norm(g, "2") ** 2  # vector_norm reduces more accurately than a float32 dot
        if gg == 0.0:
            return _zero_step(g)
        gnorm = math.sqrt(gg)
        bg = model.matvec(g)
        g_bg = _dot(g, bg)
        t_c, m_cauchy = _along(-gg, g_bg, radius / gnorm)
        cauchy = _finish(-t_c * g, m_cauchy, radius, norm, g, on_boundary=t_c == radius / gnorm)
        if g_bg <= 0.0:
            cauchy.negative_curvature = True
            return cauchy
        try:
            p_b = -model.solve(g)
        except ValueError:
            return cauchy
        g_pb = _dot(g, p_b)
        if not (math.isfinite(g_pb) and g_pb < 0.0):
            return cauchy
        # m(p_B) = gᵀp_B + ½ p_Bᵀ B p_B = ½ gᵀp_B, since B p_B = −g.
        nb = _norm(p_b, "2")
        if nb <= radius:
            step, m_value, boundary = p_b, 0.5 * g_pb, False
        else:
            alpha = gg / g_bg  # p_U = −α g
            if alpha * gnorm >= radius:
                return cauchy  # the dogleg point is −Δ g/‖g‖, the Cauchy point
            p_u = -alpha * g
            tau = _sphere_step(p_u, p_b - p_u, radius)
            step = p_u + tau * (p_b - p_u)
            # s = (1 − τ) p_U + τ p_B with p_UᵀBp_U = α² gᵀBg, p_UᵀBp_B = α gᵀg, p_BᵀBp_B = −gᵀp_B.
            u, v = 1.0 - tau, tau
            g_s = -u * alpha * gg + v * g_pb
            s_bs = u * u * alpha * alpha * g_bg + 2.0 * u * v * alpha * gg - v * v * g_pb
            m_value, boundary = g_s + 0.5 * s_bs, True
        if m_value > m_cauchy:
            return cauchy
        return _finish(step, m_value, radius, norm, g, on_boundary=boundary)


def _sphere_roots(z: torch.Tensor, d: torch.Tensor, radius: float) -> tuple[float, float]:
    """The roots τ₋ ≤ 0 ≤ τ₊ of ‖z + τd‖₂ = Δ for ‖z‖ ≤ Δ (stable quadratic formula)."""
    # dd τ² + 2 zd τ − gap = 0 with gap = Δ² − ‖z‖² ≥ 0: the roots are q/dd and −gap/q,
    # q = −(zd + sign(zd) √(zd² + dd gap)), which avoids cancellation.
    dd, zd, zz = _dot(d, d), _dot(z, d), _dot(z, z)
    gap = max(radius * radius - zz, 0.0)
    disc = math.sqrt(zd * zd + dd * gap)
    q = -(zd + math.copysign(disc, zd))
    if q == 0.0:
        return 0.0, 0.0
    r1, r2 = q / dd, -gap / q
    return min(r1, r2), max(r1, r2)


def _sphere_step(z: torch.Tensor, d: torch.Tensor, radius: float) -> float:
    """The τ ≥ 0 with ‖z + τd‖₂ = Δ."""
    return _sphere_roots(z, d, radius)[1]


def _box_roots(z: torch.Tensor, d: torch.Tensor, radius: float) -> tuple[float, float]:
    """The τ₋ ≤ 0 ≤ τ₊ where z + τd leaves the box ‖·‖_∞ ≤ Δ (for z in the box)."""
    mask = d != 0
    zm, dm = z[mask], d[mask]
    a = (-radius - zm) / dm
    b = (radius - zm) / dm
    lo = torch.minimum(a, b).max()
    hi = torch.maximum(a, b).min()
    t_lo, t_hi = torch.stack((lo, hi)).tolist()
    return min(t_lo, 0.0), max(t_hi, 0.0)


# ---------------------------------------------------------------------------
# Steihaug–Toint CG


@dataclass(frozen=True)
class CGOptions:
    max_iter: int = option(50, "most CG iterations (B products) per subproblem", min=1)
    rtol: float = option(
        0.5, "forcing term: stop when |r| <= min(rtol, sqrt|g|) |g| (N&W eq. 7.3, Alg. 7.1: 0.5)", gt=0.0, lt=1.0
    )


@register("subproblem", "cg", CGOptions)
class SteihaugCG(SubproblemSolver):
    """Steihaug–Toint truncated conjugate gradients (N&W Alg. 7.2) with products B v from the model.

    CG on B s = −g from s = 0 stops at the first of

    * ‖r‖ ≤ min(rtol, √‖g‖) ‖g‖, r = g + Bs the residual (forcing term of
      N&W eq. 7.3 with η = min(0.5, √‖g‖) of Alg. 7.1 for the default
      ``rtol`` = 0.5), an interior step;
    * dᵀBd ≤ 0 (negative or zero curvature): the step goes to the boundary
      along ±d, whichever root τ of ‖s + τd‖ = Δ gives the lower model value;
    * the next iterate would leave the region: the step stops on the
      boundary along d;
    * ``max_iter`` iterations.

    The first iterate is the Cauchy point and the model decreases
    monotonically, so the decrease is at least the Cauchy decrease; for
    positive definite B it is at least half the optimal one (Yuan 2000).
    Unlike an exact solver it does not move along the boundary once there.

    For p = ∞ the same iteration runs inside the box ‖s‖_∞ ≤ Δ, and stops
    where the CG iterate would leave the box, on the box boundary along the
    current direction (both directions on negative curvature). This is a
    heuristic: CG does not minimise the model over the box, but each iterate
    still decreases the model, and the first is the ∞-norm Cauchy point along
    −g (:func:`cauchy_point` without the sign direction).

    ``iterations`` counts CG iterations, one B product each; the model value
    follows from the CG scalars, m ← m + τ rᵀd + ½ τ² dᵀBd, without extra products.
    """

    norms = ("2", "inf")
    needs = "hvp"

    def __init__(self, options: CGOptions | None = None):
        super().__init__(options if options is not None else CGOptions())

    def _solve(self, model: QuadraticModel, radius: float, norm: str) -> SubproblemResult:
        g = model.g
        rr = _dot(g, g)
        gnorm = math.sqrt(rr)
        tol = min(self.options.rtol, math.sqrt(gnorm)) * gnorm
        if gnorm <= tol or gnorm == 0.0:
            return _zero_step(g)
        roots = _sphere_roots if norm == "2" else _box_roots
        z = torch.zeros_like(g)
        r = g.clone()
        d = -r
        m_value = 0.0
        for it in range(1, self.options.max_iter + 1):
            bd = model.matvec(d)
            curv, rd = torch.stack((torch.dot(d, bd), torch.dot(r, d))).tolist()  # one transfer
            if not math.isfinite(curv):
                raise FloatingPointError(f"non-finite curvature dᵀBd = {curv} in CG")
            if curv <= 0.0:
                # m(z + τd) = m(z) + τ rᵀd + ½ τ² dᵀBd: take the boundary root with the lower value.
                lo, hi = roots(z, d, radius)
                tau = min((lo, hi), key=lambda t: t * rd + 0.5 * t * t * curv)
                z.add_(d, alpha=tau)
                m_value += tau * rd + 0.5 * tau * tau * curv
                return _finish(z, m_value, radius, norm, g, on_boundary=True, iterations=it, negative_curvature=True)
            alpha = rr / curv
            z_next = z + alpha * d
            if _norm(z_next, norm) >= radius:
                tau = roots(z, d, radius)[1]
                z.add_(d, alpha=tau)
                m_value += tau * rd + 0.5 * tau * tau * curv
                return _finish(z, m_value, radius, norm, g, on_boundary=True, iterations=it)
            z = z_next
            m_value += alpha * rd + 0.5 * alpha * alpha * curv
            r.add_(bd, alpha=alpha)
            rr_next = _dot(r, r)
            if math.sqrt(rr_next) <= tol:
                break
            d.mul_(rr_next / rr).sub_(r)  # d = −r + β d, β = r⁺ᵀr⁺ / rᵀr
            rr = rr_next
        return _finish(z, m_value, radius, norm, g, on_boundary=False, iterations=it)


# ---------------------------------------------------------------------------
# Orthonormal-basis method (exact 2-norm solution for a compact B)


@dataclass
class _DiagonalSolution:
    """The solution of a diagonal subproblem: coefficients x, multiplier σ, flags."""

    x: np.ndarray
    sigma: float
    on_boundary: bool
    hard_case: bool
    iterations: int = 0  # Newton iterations on the secular equation


def _diagonal_trs(
    lam: np.ndarray, c: np.ndarray, radius: float, cluster_tol: float, tol: float, max_iter: int
) -> _DiagonalSolution:
    """min cᵀx + ½ Σ λᵢ xᵢ² subject to ‖x‖₂ ≤ Δ: the subproblem in an eigenbasis of B.

    Optimality (Moré & Sorensen 1983; N&W Theorem 4.1): (Λ + σI) x = −c,
    σ ≥ max(0, −λ_min), σ (Δ − ‖x‖) = 0. So x(σ)ᵢ = −cᵢ / (λᵢ + σ) and

    * λ_min > 0 and ‖x(0)‖ ≤ Δ: the interior Newton step, σ = 0;
    * otherwise σ solves the secular equation φ(σ) = 1/‖x(σ)‖ − 1/Δ = 0 on
      σ > max(0, −λ_min); φ is increasing and concave there, so Newton's
      method from the left end converges monotonically to the root
      (safeguarded by a bracket [lo, hi] and bisection);
    * the hard case: λ_min ≤ 0, c has (almost) no component in the
      eigenspace E of λ_min and ‖x(−λ_min)‖ < Δ with that eigenspace left out:
      σ = −λ_min and x = x₀ + τu, u a unit vector of E (along −c_E when
      c_E ≠ 0, the limit of the nearly hard case), τ = √(Δ² − ‖x₀‖²).

    The resolution of the eigenvalues is ``cluster_tol``·scale, scale =
    max(|λ|, ‖c‖/Δ). "λ_min > 0" above means λ_min above the resolution;
    otherwise the secular equation is solved for t = σ + λ_min with
    dᵢ = λᵢ − λ_min ≥ 0 formed once (d = 0 on E, the eigenvalues within the
    resolution of λ_min), which keeps λᵢ + σ accurate next to the pole. The
    case is hard when the predicted t = √(Σ_E cᵢ²) / √(Δ² − ‖x₀‖²) is below
    the resolution too. When λ_min is within the resolution of 0 (B
    numerically positive semidefinite, singular) the hard case returns the
    interior minimum-norm x₀ instead of moving to the boundary (any τ is
    optimal up to rounding there), and a tiny positive λ_min with a
    rounding-level cᵢ does not give a spurious component −cᵢ/λᵢ.
    """
    a = c * c
    gnorm = math.sqrt(float(a.sum()))
    scale = max(float(np.abs(lam).max()), gnorm / radius, np.finfo(float).tiny)
    resolution = cluster_tol * scale
    j_min = int(np.argmin(lam))
    lam_min = float(lam[j_min])
    if gnorm == 0.0:
        x = np.zeros_like(c)
        if lam_min < -resolution:
            x[j_min] = radius  # the global minimiser of ½ xᵀΛx on the ball
            return _DiagonalSolution(x, -lam_min, True, True)
        return _DiagonalSolution(x, 0.0, False, False)
    if lam_min > resolution:
        x = -c / lam
        if math.sqrt(float(x @ x)) <= radius:
            return _DiagonalSolution(x, 0.0, False, False)
        shift, d = 0.0, lam.copy()
    else:  # λ_min ≤ 0 up to the resolution: shift the pole to t = 0
        shift = -lam_min
        d = lam - lam_min
        cluster = d <= resolution
        d[cluster] = 0.0
        a_min = float(a[cluster].sum())
        x0 = np.where(cluster, 0.0, -c / np.where(cluster, 1.0, d))
        rest = float(x0 @ x0)
        if rest < radius * radius and math.sqrt(a_min) <= resolution * math.sqrt(radius * radius - rest):
            if shift <= resolution:
                return _DiagonalSolution(x0, max(shift, 0.0), False, False)
            tau = math.sqrt(radius * radius - rest)
            if a_min > 0.0:
                x0[cluster] = -c[cluster] / math.sqrt(a_min) * tau
            else:
                x0[j_min] = tau
            return _DiagonalSolution(x0, shift, True, True)
    t, iterations = _secular_newton(d, a, radius, gnorm, tol, max_iter)
    x = np.where(a > 0.0, -c / np.where(a > 0.0, d + t, 1.0), 0.0)
    return _DiagonalSolution(x, max(shift + t, 0.0), True, False, iterations)


def _secular_newton(
    d: np.ndarray, a: np.ndarray, radius: float, gnorm: float, tol: float, max_iter: int
) -> tuple[float, int]:
    """(t, iterations) for the root t ≥ 0 of φ(t) = 1/‖x(t)‖ − 1/Δ, ‖x(t)‖² = Σ aᵢ/(dᵢ + t)², dᵢ ≥ 0, φ(0) ≤ 0.

    Newton's method from t = 0, safeguarded by the bracket [0, ‖c‖/Δ]
    (‖x(t)‖ ≤ ‖c‖/t there) and bisection; φ′(t) = Σ aᵢ/(dᵢ+t)³ / ‖x(t)‖³.
    At t = 0 with a pole (dᵢ = 0 < aᵢ), φ(0) = −1/Δ and φ′(0) = 1/√(Σ_pole aᵢ)
    (the limits). Stops when |Δ/‖x‖ − 1| ≤ tol.
    """
    pos = a > 0.0
    ap, dp = a[pos], d[pos]
    a_pole = float(ap[dp == 0.0].sum())

    def phi(t: float) -> tuple[float, float]:
        if t == 0.0 and a_pole > 0.0:
            return -1.0 / radius, 1.0 / math.sqrt(a_pole)
        inv = 1.0 / (dp + t)
        w = ap * inv * inv
        q = float(w.sum())
        q3 = float((w * inv).sum())
        size = math.sqrt(q)
        return 1.0 / size - 1.0 / radius, q3 / (q * size)

    lo, hi = 0.0, gnorm / radius
    t = 0.0
    iterations = 0
    for iterations in range(max_iter):  # noqa: B007 (the count is returned)
        f, fp = phi(t)
        if abs(f) * radius <= tol:
            break
        if f < 0.0:
            lo = t
        else:
            hi = t
        t_next = t - f / fp
        if not (lo < t_next <= hi):  # hi itself may be the root (φ(hi) ≥ 0)
            t_next = 0.5 * (lo + hi)
        if t_next == t:
            break
        t = t_next
    return t, iterations


def _complement_vector(v: torch.Tensor) -> torch.Tensor:
    """A unit vector orthogonal to the orthonormal columns of v (n × r, r < n).

    (I − VVᵀ) e_j for the coordinate j whose row of V is shortest, so that
    ‖(I − VVᵀ)e_j‖² = 1 − ‖V_j‖² ≥ 1 − r/n; orthogonalised twice.
    """
    j = int(torch.argmin((v * v).sum(1)))
    u = -(v @ v[j])
    u[j] += 1.0
    u.sub_(v @ (v.T @ u))
    return u / torch.linalg.vector_norm(u)


@dataclass(frozen=True)
class OBSOptions:
    tol: float = option(1e-12, "relative accuracy of |s| = radius on the boundary (secular equation)", gt=0.0, lt=1.0)
    max_iter: int = option(100, "most Newton iterations on the secular equation", min=1)


@register("subproblem", "obs", OBSOptions)
class OrthonormalBasis(SubproblemSolver):
    """Orthonormal-basis method (OBS): the exact 2-norm subproblem solution for a compact B = γI + ΨMΨᵀ.

    Brust, Erway, Marcia (2017): a thin QR factorisation Ψ = QR and the
    eigendecomposition RMRᵀ = UΘUᵀ give B = P_∥ (γI + Θ) P_∥ᵀ + γ (I − P_∥P_∥ᵀ)
    with P_∥ = QU (:meth:`CompactForm.eigh`; a rank-deficient Ψ only gives
    eigenvalues θ = 0). In the basis [P_∥, u_⊥], u_⊥ = g_⊥/‖g_⊥‖ for the
    part g_⊥ = g − P_∥P_∥ᵀg of g outside range(Ψ), the subproblem is
    diagonal with eigenvalues (γ + θ, γ) and gradient components
    (P_∥ᵀg, ‖g_⊥‖), solved exactly — interior Newton step, secular equation
    φ(σ) = 1/‖s(σ)‖ − 1/Δ by safeguarded Newton, or the hard case — by
    :func:`_diagonal_trs` (Moré & Sorensen 1983). When the hard case needs a
    direction of the γ-eigenspace and g_⊥ = 0, u_⊥ is built from a
    coordinate vector projected off range(P_∥).

    Cost: a QR of Ψ (n × k) and O(nk) work on the device, k × k work on the
    host; no product through ``model.hvp`` (``hvps`` = 0): the model value
    uses the compact form directly, as does a check against the Cauchy point
    (returned instead should rounding make it better). p = 2 only.
    """

    norms = ("2",)
    needs = "compact"

    def __init__(self, options: OBSOptions | None = None):
        super().__init__(options if options is not None else OBSOptions())

    def _solve(self, model: QuadraticModel, radius: float, norm: str) -> SubproblemResult:
        compact: CompactForm = model.compact
        g = model.g
        eig = compact.eigh()
        v = eig.vectors.to(device=g.device, dtype=g.dtype)
        gv = v.T @ g
        lam = eig.values.numpy()
        c = gv.to(device="cpu", dtype=torch.float64).numpy()
        eps = torch.finfo(g.dtype).eps
        g_perp = None
        if eig.complement > 0:
            g_perp = g - v @ gv
            g_perp.sub_(v @ (v.T @ g_perp))  # orthogonalise twice
            c_perp = _norm(g_perp, "2")
            if c_perp <= 10.0 * eps * _norm(g, "2"):
                c_perp = 0.0
            lam = np.append(lam, compact.gamma)
            c = np.append(c, c_perp)
        sol = _diagonal_trs(lam, c, radius, 100.0 * eps, self.options.tol, self.options.max_iter)
        r = v.shape[1]
        step = v @ torch.from_numpy(sol.x[:r]).to(device=g.device, dtype=g.dtype)
        if g_perp is not None and sol.x[r] != 0.0:
            u = g_perp / c[r] if c[r] > 0.0 else _complement_vector(v)
            step.add_(u, alpha=float(sol.x[r]))
        m_value = _dot(g, step) + 0.5 * _dot(step, compact.matvec(step))
        result = _finish(
            step, m_value, radius, norm, g, on_boundary=sol.on_boundary, negative_curvature=bool(lam.min() < 0.0)
        )
        # The exact solution is at least as good as the Cauchy point; guard against rounding.
        gg = _norm(g, "2") ** 2  # vector_norm reduces more accurately than a float32 dot
        if gg > 0.0:
            t_max = radius / math.sqrt(gg)
            t, m_cauchy = _along(-gg, _dot(g, compact.matvec(g)), t_max)
            if m_cauchy < -result.predicted_decrease:
                result = _finish(-t * g, m_cauchy, radius, norm, g, on_boundary=t == t_max)
        return result
