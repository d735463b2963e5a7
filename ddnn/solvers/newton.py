"""Newton-CG: a truncated Newton direction from Hessian-vector products, then a line search.

From θ with g = ∇L(θ) the direction p solves ∇²L(θ) p = −g approximately by
conjugate gradients on Hessian-vector products (Steihaug–Toint: stopped by
the forcing term, at negative curvature, or at ``max_step``), and θ ← θ + α p
with α from a line search (``fixed``: the full step). On a coarse level of a
sample hierarchy whose coherent model carries the full gradient this is the
sub-sampled Newton step θ ← θ − (∇²L_{D¹})⁻¹ ∇L_D (SSN).

References
----------
J. Nocedal, S. J. Wright, *Numerical Optimization*, 2nd ed., Springer 2006, Alg. 7.1 (line-search Newton-CG).
R. H. Byrd, G. M. Chin, W. Neveitt, J. Nocedal, On the use of stochastic Hessian information in
optimization methods for machine learning, SIAM J. Optim. 21 (2011) 977–995 (sub-sampled Newton).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ddnn.options import Section, component, option
from ddnn.registry import build, register
from ddnn.solvers.base import Solver, SolverContext, Status, StepReport
from ddnn.solvers.line_search import Ray, negligible_step
from ddnn.solvers.objective import Evaluation
from ddnn.solvers.quadratic_model import QuadraticModel
from ddnn.solvers.subproblem import CGOptions, SteihaugCG

__all__ = ["NewtonOptions", "Newton", "count_hessian"]


@dataclass(frozen=True)
class NewtonOptions:
    cg_iters: int = option(50, "most CG iterations per Newton direction", min=1, max=10**5)
    cg_rtol: float = option(0.5, "CG stops when |r| <= min(cg_rtol, sqrt|g|) |g| (N&W eq. 7.3)", gt=0.0, lt=1.0)
    max_step: float = option(1e3, "the Newton direction is cut at this length", gt=0.0)
    line_search: Section = component("line_search", "armijo", "step length along the Newton direction")
    grad_tol: float = option(0.0, "stop when max |g_i| <= grad_tol (0: never)", min=0.0)


def count_hessian(context: SolverContext, objective: Any, cg_iterations: int) -> None:
    """Count a (sub-sampled) Hessian and its CG iterations in units of the full training set.

    Objectives without batches (a plain function, a closure) count as the whole set.
    """
    batch = getattr(objective, "batch", None)
    fraction = batch.fraction if batch is not None else 1.0
    context.counters.add("cg_iterations", cg_iterations)
    context.counters.add("hessian_work", fraction)
    context.counters.add("cg_work", cg_iterations * fraction)


@register("solver", "newton", NewtonOptions)
class Newton(Solver):
    """Newton-CG with a line search (truncated Newton on exact Hessian-vector products)."""

    def __init__(self, options: NewtonOptions, context: SolverContext | None = None):
        super().__init__(options, context)
        self.cg = SteihaugCG(CGOptions(max_iter=options.cg_iters, rtol=options.cg_rtol))
        self.line_search = build("line_search", options.line_search)
        self.loss: float | None = None
        self.grad: torch.Tensor | None = None
        self._key = 0

    def init(self, objective: Any, theta: torch.Tensor) -> None:
        super().init(objective, theta)
        self.loss, self.grad, self._key = None, None, objective.key

    def set_point(self, theta: torch.Tensor, loss: float | None = None, grad: torch.Tensor | None = None) -> None:
        self.theta.copy_(theta)
        self.loss, self.grad = (float(loss), grad) if grad is not None else (None, None)
        self._key = self.objective.key

    def current(self) -> Evaluation | None:
        if self.grad is None or self._key != self.objective.key:
            return None
        return Evaluation(self.loss, self.grad)

    def step(self) -> StepReport:
        """One Newton-CG step. *Collective* when the objective is."""
        if self.grad is None or self._key != self.objective.key:
            ev = self.objective.evaluate(self.theta)
            self.loss, self.grad, self._key = ev.loss, ev.grad, self.objective.key
        loss, grad = self.loss, self.grad
        grad_norm = float(torch.linalg.vector_norm(grad))
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            return StepReport(loss, grad_norm, accepted=False, status=Status.DIVERGED_NAN, loss_before=loss)
        if grad_norm == 0.0 or (self.options.grad_tol > 0.0 and float(grad.abs().max()) <= self.options.grad_tol):
            return StepReport(loss, grad_norm, 0.0, 0.0, status=Status.GRAD_TOL, loss_before=loss)
        theta = self.theta.clone()
        model = QuadraticModel(grad, hvp=lambda v: self.objective.hvp(theta, v))
        result = self.cg.solve(model, self.options.max_step)
        direction = result.step
        count_hessian(self.context, self.objective, result.iterations)
        ray = Ray(self.objective, self.theta, direction)
        slope = float(torch.dot(grad, direction))
        found = self.line_search.search(ray, loss, slope, 1.0, grad, negligible_step(self.theta, direction))
        if found.alpha == 0.0 or not math.isfinite(found.loss):
            return StepReport(loss, grad_norm, 0.0, 0.0, accepted=False, loss_before=loss)
        self.theta.add_(direction, alpha=found.alpha)
        self.loss, self.grad = found.loss, found.grad
        step_norm = found.alpha * float(torch.linalg.vector_norm(direction))
        return StepReport(
            found.loss, float(torch.linalg.vector_norm(found.grad)), step_norm, found.alpha, loss_before=loss
        )

    def state_dict(self) -> dict:
        state: dict[str, Any] = {"theta": self.theta.clone()}
        if self.grad is not None:
            state.update(loss=self.loss, grad=self.grad.clone(), key=self._key)
        return state

    def load_state_dict(self, state: dict) -> None:
        self.theta.copy_(state["theta"])
        if "grad" in state:
            self.loss, self.grad, self._key = (
                float(state["loss"]),
                state["grad"].to(self.theta).clone(),
                int(state["key"]),
            )
        else:
            self.loss, self.grad = None, None
