"""L-BFGS with momentum and a pluggable line search.

One iteration from θ with loss L and gradient g = ∇L(θ)::

    p = −H g                         two-loop recursion over the last m pairs (history.py)
    v = (1 − μ) v + μ p              momentum (μ = 1: none, v = p)
    α from a line search on φ(α) = L(θ + α v)     (line_search.py)
    θ ← θ + α v,  s = α v,  y = ∇L(θ + α v) − g   pair stored unless yᵀs ≤ ε‖s‖‖y‖

The solver is split into pieces that other solvers reuse: :meth:`LBFGS.direction`
(p = −H g with a steepest-descent reset when p is not a descent direction),
:meth:`LBFGS.combine_momentum`, :meth:`LBFGS.search_direction` (both),
:meth:`LBFGS.line_step` (a line-searched step along a given direction from a
given point, on the solver's or another objective), :meth:`LBFGS.push` (a
secant pair) and :meth:`LBFGS.set_point` (move the iterate, keeping history
and momentum). A nonlinearly preconditioned method (ASPQN) moves the iterate
to θ^{k+½} with ``set_point(theta_half, loss, grad)`` and then calls
:meth:`LBFGS.step`, which is exactly its global quasi-Newton step: p = −H∇L,
momentum, line search, and the secant pair from that step only.

References
----------
J. Nocedal, S. J. Wright, *Numerical Optimization*, 2nd ed., Springer 2006:
Alg. 7.5 (L-BFGS), Alg. 7.4 (two-loop recursion), eq. 7.20 (initial matrix).

D. C. Liu, J. Nocedal, On the limited memory BFGS method for large scale
optimization, *Math. Program.* 45 (1989) 503–528.

A. Kopaničáková, H. Kothari, G. E. Karniadakis, R. Krause, Enhancing training
of physics-informed neural networks using domain decomposition-based
preconditioning strategies, *SIAM J. Sci. Comput.* 46 (2024) (momentum
v = (1−μ)v + μp, memory m = 3, pairs skipped when yᵀs ≤ ε‖s‖‖y‖).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Optional

import torch

from ddnn.options import Section, component, option
from ddnn.registry import build, register
from ddnn.solvers.base import Solver, SolverContext, Status, StepReport
from ddnn.solvers.history import LBFGSHistory
from ddnn.solvers.line_search import (
    LineSearch,
    LineSearchResult,
    Ray,
    StrongWolfe,
    StrongWolfeOptions,
    negligible_step,
)
from ddnn.solvers.objective import Evaluation

__all__ = ["LBFGSOptions", "LBFGS", "build_line_search"]


@dataclass(frozen=True)
class LBFGSOptions:
    memory: int = option(3, "number of secant pairs kept (m)", min=1, max=1000)
    line_search: Optional[Section] = component("line_search", "strong_wolfe", "step length control")
    momentum: float = option(1.0, "mu in v <- (1-mu) v + mu p, step along v (1: no momentum)", gt=0.0, max=1.0)
    curvature_eps: float = option(1e-8, "skip a pair when y's <= eps |s| |y|", min=0.0)
    first_step: Literal["scaled", "unit"] = option(
        "scaled", "first trial step at a (re)start: scaled = lr min(1, 1/|g|_1), unit = lr"
    )
    lr: float = option(1.0, "initial trial step of the line search", gt=0.0)
    grad_tol: float = option(0.0, "stop when max |g_i| <= grad_tol (0: never)", min=0.0)
    npc: Optional[Section] = component(
        "solver", None, "nonlinear right preconditioner G applied before every step (schwarz: ASPQN/MSPQN)", role="npc"
    )


def build_line_search(section: Section | None) -> LineSearch:
    """The line search of a ``line_search`` section (strong Wolfe with defaults when ``None``)."""
    if section is None:
        return StrongWolfe(StrongWolfeOptions())
    return build("line_search", section)


class _TermsRay(Ray):
    """A :class:`Ray` that remembers the loss terms of each gradient evaluation by step length."""

    def __init__(self, objective: Any, theta: torch.Tensor, direction: torch.Tensor):
        super().__init__(objective, theta, direction)
        self.terms: dict[float, dict[str, float]] = {}

    def __call__(self, alpha: float, need_grad: bool = True) -> tuple[float, torch.Tensor | None, float | None]:
        """(L, ∇L, ∇Lᵀd) at θ + α d. *Collective* when the objective is."""
        out = super().__call__(alpha, need_grad)
        if need_grad:
            self.terms[alpha] = dict(getattr(self.last, "terms", {}) or {})
        return out


@register("solver", "lbfgs", LBFGSOptions)
class LBFGS(Solver):
    """Limited-memory BFGS with momentum and a line search (strong Wolfe, Armijo or fixed).

    Parameters
    ----------
    options : :class:`LBFGSOptions`
    context : :class:`~ddnn.solvers.base.SolverContext` (``None`` for a bare one)

    Attributes
    ----------
    theta : the iterate (the solver's own tensor)
    loss, grad : L and ∇L at ``theta`` when known (``None`` before the first
        evaluation, after :meth:`set_point` without them, and once the
        objective's batch changed: they are kept with the objective's ``key``)
    velocity : the momentum direction v of the last step (``None`` when μ = 1
        or after a reset)
    history : the secant pairs (:class:`~ddnn.solvers.history.LBFGSHistory`)
    line_search : the line search component
    iteration : number of steps taken

    Notes
    -----
    Failures are explicit: a non-finite loss or gradient ends the run with
    ``Status.DIVERGED_NAN``. When the line search finds no acceptable step
    and no decrease, the history and momentum are dropped and the next step
    restarts from steepest descent (the report says ``accepted=False``); if
    that fails too, the run ends with ``Status.DIVERGED_LINE_SEARCH``. A
    line search that ran out of evaluations but decreased the loss is taken;
    a step that moves θ by rounding only (α‖d‖ ≤ ε‖θ‖) never is.
    Counters: ``lbfgs_resets``, ``lbfgs_skipped_pairs``,
    ``line_search_failures``, ``line_search_evals``.
    """

    def __init__(self, options: LBFGSOptions, context: SolverContext | None = None):
        super().__init__(options, context)
        self.line_search = build_line_search(options.line_search)
        self.npc = self.context.build_solver(options.npc) if options.npc is not None else None
        self.history: LBFGSHistory | None = None
        self.loss: float | None = None
        self.grad: torch.Tensor | None = None
        self.velocity: torch.Tensor | None = None
        self.iteration = 0
        self._restart = True
        self._terms: dict[str, float] = {}
        self._grad_norm: float | None = None  # ‖grad‖₂ when already computed
        self._key = 0  # the objective's key when loss and grad were evaluated

    # -- lifecycle --------------------------------------------------------
    def init(self, objective: Any, theta: torch.Tensor) -> None:
        """Start from ``theta`` (copied) on ``objective``; empty history, no evaluation."""
        super().init(objective, theta)
        if self.npc is not None:
            self.npc.init(objective, theta)
        self.history = LBFGSHistory(self.options.memory, self.theta.numel(), self.theta.device, self.theta.dtype)
        self.loss, self.grad, self.velocity = None, None, None
        self.iteration = 0
        self._restart = True
        self._terms = {}
        self._grad_norm = None
        self._key = objective.key

    def set_point(
        self,
        theta: torch.Tensor,
        loss: float | None = None,
        grad: torch.Tensor | None = None,
        terms: dict[str, float] | None = None,
    ) -> None:
        """Move the iterate to ``theta`` (copied), keeping the history and the momentum.

        ``loss`` and ``grad`` (and the loss ``terms``) are L and ∇L at
        ``theta`` when the caller has them (``grad`` is kept, not copied);
        otherwise the next :meth:`step` evaluates them.
        """
        self.theta.copy_(theta)
        self._terms = dict(terms or {})
        self._grad_norm = None
        if grad is None:
            self.loss, self.grad = None, None
        else:
            if loss is None:
                raise ValueError("set_point: a gradient needs its loss")
            self.loss, self.grad = float(loss), grad
            self._key = self.objective.key

    def current(self) -> Evaluation | None:
        """L and ∇L at ``theta`` when known and evaluated on the objective's current batch."""
        if self.grad is None or self._key != self.objective.key:
            return None
        return Evaluation(self.loss, self.grad, dict(self._terms))

    def reset(self) -> None:
        """Forget the secant pairs and the momentum; the next step is a steepest-descent restart."""
        self.history.reset()
        self.velocity = None
        self._restart = True
        self.context.counters.add("lbfgs_resets")

    def evaluate(self) -> tuple[float, torch.Tensor]:
        """L and ∇L at ``theta`` on the objective's current batch, evaluated once and cached.

        *Collective* when the objective is.
        """
        if self.grad is not None and self._key != self.objective.key:  # the batch changed
            self.loss, self.grad, self._grad_norm = None, None, None
        if self.grad is None:
            ev = self.objective.evaluate(self.theta, grad=True)
            self.loss, self.grad = float(ev.loss), ev.grad
            self._terms = dict(ev.terms)
            self._key = self.objective.key
        return self.loss, self.grad

    # -- pieces -----------------------------------------------------------
    def direction(self, grad: torch.Tensor) -> torch.Tensor:
        """p = −H g; when p is not a descent direction (gᵀp ≥ 0 or not finite) reset and return −g."""
        return self._descent(grad)[0]

    def _descent(self, grad: torch.Tensor) -> tuple[torch.Tensor, float]:
        """:meth:`direction` and its slope gᵀp."""
        p = self.history.apply_inverse(grad).neg_()
        slope = float(torch.dot(grad, p))
        if self.history.count > 0 and not slope < 0.0:
            self.reset()
            p = grad.neg()
            slope = float(torch.dot(grad, p))
        return p, slope

    def combine_momentum(
        self, p: torch.Tensor, grad: torch.Tensor, slope: float | None = None
    ) -> tuple[torch.Tensor, float]:
        """v = (1 − μ) v_prev + μ p (v_prev = 0 after a reset) and the slope gᵀv.

        ``slope`` is gᵀp when known. Falls back to v = p when the combination
        is not a descent direction.
        """
        mu = self.options.momentum
        if mu == 1.0:
            return p, float(torch.dot(grad, p)) if slope is None else slope
        v = p.mul(mu)
        if self.velocity is not None:
            v.add_(self.velocity, alpha=1.0 - mu)
        slope_v = float(torch.dot(grad, v))
        if not slope_v < 0.0:
            return p, float(torch.dot(grad, p)) if slope is None else slope
        return v, slope_v

    def search_direction(self, grad: torch.Tensor) -> tuple[torch.Tensor, float]:
        """The direction of the next step and its slope: :meth:`direction`, then :meth:`combine_momentum`."""
        p, slope = self._descent(grad)
        return self.combine_momentum(p, grad, slope)

    def initial_step(self, grad: torch.Tensor) -> float:
        """First trial step: ``lr min(1, 1/‖g‖₁)`` at a (re)start with ``first_step="scaled"``, else ``lr``."""
        lr = self.options.lr
        if self._restart and self.options.first_step == "scaled":
            g1 = float(grad.abs().sum())
            return min(1.0, 1.0 / g1) * lr if g1 > 0.0 else lr
        return lr

    def line_step(
        self,
        theta: torch.Tensor,
        loss: float,
        grad: torch.Tensor,
        direction: torch.Tensor,
        slope: float | None = None,
        alpha0: float | None = None,
        objective: Any = None,
    ) -> LineSearchResult:
        """Run the line search along ``direction`` from ``theta``. *Collective* when the objective is.

        Parameters
        ----------
        theta, loss, grad : the starting point and L, ∇L there (not modified)
        direction : the search direction d
        slope : gᵀd when known
        alpha0 : first trial step (default :meth:`initial_step`)
        objective : what to evaluate (default the solver's)

        Returns
        -------
        The :class:`~ddnn.solvers.line_search.LineSearchResult`; the point is
        θ + α d, which :meth:`step` reproduces bit for bit with
        ``theta.add_(direction, alpha=result.alpha)``.
        """
        ray = _TermsRay(objective if objective is not None else self.objective, theta, direction)
        if slope is None:
            slope = float(torch.dot(grad, direction))
        if alpha0 is None:
            alpha0 = self.initial_step(grad)
        result = self.line_search.search(ray, loss, slope, alpha0, grad, negligible_step(theta, direction))
        self._terms = ray.terms.get(result.alpha, {})
        self.context.counters.add("line_search_evals", result.evals)
        return result

    def push(self, s: torch.Tensor, y: torch.Tensor) -> bool:
        """Store the secant pair (s, y) unless yᵀs ≤ ε‖s‖‖y‖; True when stored."""
        stored = self.history.push(s, y, self.options.curvature_eps)
        if not stored:
            self.context.counters.add("lbfgs_skipped_pairs")
        return stored

    # -- iteration --------------------------------------------------------
    def step(self) -> StepReport:
        """One L-BFGS iteration from ``theta``. *Collective* when the objective is.

        With a nonlinear preconditioner G (``npc``) the iteration is right
        preconditioned (Kopaničáková et al. 2024, Alg. 1, steps 1-7): the
        iterate first moves to θ^{k+1/2} = G(θᵏ), and the quasi-Newton step,
        momentum, line search and secant pair are those of θ^{k+1/2}.
        """
        warnings: tuple[str, ...] = ()
        if self.npc is not None:
            warnings = self._precondition()
        loss, grad = self.evaluate()
        grad_norm = self._grad_norm if self._grad_norm is not None else float(torch.linalg.vector_norm(grad))
        report = StepReport(loss, grad_norm, 0.0, 0.0, loss_before=loss, warnings=warnings)
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            report.accepted, report.status = False, Status.DIVERGED_NAN
            return report
        if grad_norm == 0.0 or (self.options.grad_tol > 0.0 and float(grad.abs().max()) <= self.options.grad_tol):
            report.status, report.terms = Status.GRAD_TOL, self._terms
            return report

        v, slope = self.search_direction(grad)
        result = self.line_step(self.theta, loss, grad, v, slope)
        self.iteration += 1

        if result.alpha > 0.0 and not (math.isfinite(result.loss) and math.isfinite(result.dphi)):
            return StepReport(
                result.loss, None, accepted=False, status=Status.DIVERGED_NAN, loss_before=loss, warnings=warnings
            )
        moved = result.alpha > 0.0 and (result.loss < loss or not self.line_search.ensures_decrease)
        if not result.success:
            self.context.counters.add("line_search_failures")
        if not (result.success or moved):
            report.accepted = False
            if self.history.count == 0 and self.velocity is None:
                report.status = Status.DIVERGED_LINE_SEARCH
                return report
            self.reset()
            return report

        alpha = result.alpha
        s = v.mul(alpha)
        self.theta.add_(v, alpha=alpha)
        y = result.grad.sub(grad)
        self.push(s, y)
        self.loss, self.grad = result.loss, result.grad
        self.velocity = v if self.options.momentum < 1.0 else None
        self._restart = False

        new_norm = float(torch.linalg.vector_norm(result.grad))
        self._grad_norm = new_norm
        status = Status.RUNNING
        if not math.isfinite(new_norm):
            status = Status.DIVERGED_NAN
        elif new_norm == 0.0 or (
            self.options.grad_tol > 0.0 and float(result.grad.abs().max()) <= self.options.grad_tol
        ):
            status = Status.GRAD_TOL
        step_norm = math.sqrt(self.history.last_products[0])  # ‖s‖, computed by push
        return StepReport(
            result.loss,
            new_norm,
            step_norm,
            alpha,
            status=status,
            terms=dict(self._terms),
            loss_before=loss,
            warnings=warnings,
        )

    def _precondition(self) -> tuple[str, ...]:
        """θᵏ ← G(θᵏ) with L, ∇L at the new point; the preconditioner's warnings. *Collective*."""
        loss, grad = self.evaluate()
        result = self.npc.apply(self.theta, Evaluation(loss, grad, dict(self._terms)))
        ev = result.evaluation
        self.set_point(result.theta, ev.loss, ev.grad, ev.terms or self._terms)
        return result.warnings

    # -- state ------------------------------------------------------------
    def state_dict(self) -> dict:
        """θ, the cached loss and gradient, the momentum, the history and the counters of the iteration."""
        state: dict = {
            "theta": self.theta.clone(),
            "history": self.history.state_dict(),
            "iteration": self.iteration,
            "restart": int(self._restart),
        }
        if self.grad is not None:
            state["loss"] = self.loss
            state["grad"] = self.grad.clone()
            state["terms"] = dict(self._terms)
            state["key"] = self._key
        if self.velocity is not None:
            state["velocity"] = self.velocity.clone()
        if self.npc is not None:
            state["npc"] = self.npc.state_dict()
        return state

    def rank_state_dict(self) -> dict:
        """The preconditioner's rank-local state (its subdomains' local solvers)."""
        return {"npc": self.npc.rank_state_dict()} if self.npc is not None else {}

    def load_rank_state_dict(self, state: dict) -> None:
        if self.npc is not None:
            self.npc.load_rank_state_dict(state.get("npc", {}))

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` after :meth:`init`; the run then continues bit for bit."""
        self.theta.copy_(state["theta"])
        self._grad_norm = None
        self.history.load_state_dict(state["history"])
        self.iteration = int(state["iteration"])
        self._restart = bool(state["restart"])
        if "grad" in state:
            self.loss = float(state["loss"])
            self.grad = state["grad"].to(device=self.theta.device, dtype=self.theta.dtype).clone()
            self._terms = dict(state.get("terms", {}))
            self._key = int(state.get("key", 0))
        else:
            self.loss, self.grad = None, None
        if "velocity" in state:
            self.velocity = state["velocity"].to(device=self.theta.device, dtype=self.theta.dtype).clone()
        else:
            self.velocity = None
        if self.npc is not None and "npc" in state:
            self.npc.load_state_dict(state["npc"])
