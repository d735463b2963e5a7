"""Trust-region methods: no learning rate, a radius that adapts to how well a model predicts the loss.

One iteration from θ with loss L and gradient g (Nocedal & Wright 2006, Alg. 4.1)::

    s  ≈ argmin m(s) = L + gᵀs + ½ sᵀBs   subject to ‖s‖_p ≤ Δ        (a subproblem solver)
    ρ  = (L(θ) − L(θ + s)) / (m(0) − m(s))                             (actual / predicted decrease)
    θ ← θ + s  if ρ ≥ η,  else θ unchanged
    Δ ← shrink·Δ if ρ < η_shrink;  Δ ← min(expand·Δ, Δ_max) if ρ > η_expand and ‖s‖ = Δ

The direction and the globalisation are separate pieces: B comes from a
secant history (``hessian: sr1`` the L-SR1 compact matrix, ``lbfgs`` the
L-BFGS one), from exact Hessian-vector products (``exact``), or is zero
(``order: 1``: the step is −Δ g/‖g‖); the subproblem solver is a component
(:mod:`ddnn.solvers.subproblem`: Cauchy point, dogleg, Steihaug-CG, the
orthonormal-basis method). Every evaluation is on the objective's current
batch: with mini-batches (``data.batch_size``) L, g, B and the ratio test all
come from the same batch (stochastic trust region). A non-finite trial loss
is a rejected step: the radius shrinks. Every decision is taken from reduced
values, so all ranks take the same one.

With a nonlinear preconditioner (``npc: {name: schwarz, local: {name:
trust_region}}``) an iteration is one step of APTS: the local trust regions
of the subdomains solve within the radius (Δ/S for sample chunks, Δ in the
∞-norm for disjoint layer blocks), their corrections are summed, and this
ratio test accepts or rejects the sum with ρ = global decrease / Σ local
decreases; ``global_steps`` plain trust-region steps follow.

``window`` > 1 makes the acceptance non-monotone: the trial is compared with
the largest loss of the last ``window`` iterates (Toint 1997; the windowed
acceptance of Angino et al. 2026).

References
----------
J. Nocedal, S. J. Wright, *Numerical Optimization*, 2nd ed., Springer 2006,
Alg. 4.1 (trust-region control), Alg. 6.2 (SR1 trust-region method).
A. R. Conn, N. I. M. Gould, Ph. L. Toint, *Trust-Region Methods*, SIAM 2000.
Ph. L. Toint, Non-monotone trust-region algorithms for nonlinear optimization
subject to convex constraints, *Math. Program.* 77 (1997) 69–94.
C. Gross, R. Krause, On the convergence of recursive trust-region methods for
multiscale nonlinear optimization and applications to nonlinear mechanics,
*SIAM J. Numer. Anal.* 47 (2009) 3044–3069 (APTS).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Optional

import torch

from ddnn.errors import ConfigError
from ddnn.options import Section, component, option
from ddnn.registry import build, lookup, register
from ddnn.solvers.base import Solver, SolverContext, Status, StepReport
from ddnn.solvers.history import LBFGSHistory
from ddnn.solvers.newton import count_hessian
from ddnn.solvers.objective import Evaluation
from ddnn.solvers.quadratic_model import CompactForm, QuadraticModel, lbfgs_compact
from ddnn.solvers.radius import RadiusControl, RadiusOptions
from ddnn.solvers.sr1 import LSR1History

__all__ = ["TrustRegionOptions", "TrustRegion", "default_subproblem"]


@dataclass(frozen=True)
class TrustRegionOptions(RadiusOptions):
    order: Literal[1, 2] = option(2, "1: first order (B = 0, step -Δ g/|g|); 2: a model of the curvature")
    hessian: Literal["sr1", "lbfgs", "exact"] = option(
        "sr1", "order 2: B from L-SR1 or L-BFGS secant pairs, or exact Hessian-vector products"
    )
    memory: int = option(5, "secant pairs kept by L-SR1 / L-BFGS", min=1, max=1000)
    subproblem: Optional[Section] = component(
        "subproblem", None, "subproblem solver (default: cauchy for order 1, obs for sr1/lbfgs, cg for exact)"
    )
    norm: Literal[2, "inf"] = option(2, "norm of the trust region: 2 or inf (APTS in weights)")
    grad_tol: float = option(0.0, "stop when max |g_i| <= grad_tol (0: never)", min=0.0)
    npc: Optional[Section] = component(
        "solver", None, "nonlinear preconditioner whose correction the ratio test controls (schwarz: APTS)", role="npc"
    )
    global_steps: int = option(0, "with npc: plain trust-region steps after every preconditioned one", min=0)


def default_subproblem(options: TrustRegionOptions) -> str:
    """The subproblem solver used when the input names none."""
    if options.order == 1:
        return "cauchy"
    return "cg" if options.hessian == "exact" else ("obs" if options.norm == 2 else "cg")


@register("solver", "trust_region", TrustRegionOptions)
class TrustRegion(Solver):
    """Trust region of order 1 or 2 (L-SR1, L-BFGS or exact Hessian), optionally around a Schwarz preconditioner (APTS).

    Attributes
    ----------
    theta : the iterate
    control : the radius Δ and the ratio test (:class:`~ddnn.solvers.radius.RadiusControl`)
    loss, grad : L and ∇L at ``theta`` when known (kept with the objective's ``key``)
    history : the secant pairs (:class:`~ddnn.solvers.sr1.LSR1History` or
        :class:`~ddnn.solvers.history.LBFGSHistory`; ``None`` otherwise)
    region : ``(center, radius)`` when the solver is the local solver of a
        subdomain: every iterate stays within ``radius`` of ``center``

    Counters: ``tr_accepted``, ``tr_rejected``, ``cg_iterations``, ``tr_nonfinite_trials``.
    """

    roles: ClassVar[frozenset[str]] = frozenset({"global", "local"})

    def __init__(self, options: TrustRegionOptions, context: SolverContext | None = None):
        super().__init__(options, context)
        name = options.subproblem.name if options.subproblem is not None else default_subproblem(options)
        section = (
            options.subproblem
            if options.subproblem is not None
            else Section("subproblem", name, lookup("subproblem", name).options())
        )
        self.subproblem = build("subproblem", section)
        self.norm = "2" if options.norm == 2 else "inf"
        self.npc = self.context.build_solver(options.npc) if options.npc is not None else None
        self.history: Any = None
        self.control = RadiusControl(options)
        self.loss: float | None = None
        self.grad: torch.Tensor | None = None
        self.region: tuple[torch.Tensor, float] | None = None
        self.iteration = 0
        self._terms: dict[str, float] = {}
        self._key = 0

    @classmethod
    def check_setup(cls, options: TrustRegionOptions, setup: Any, key: str) -> None:
        """The subproblem solver must support the norm and what the model offers; APTS needs local trust regions."""

        def where(name: str) -> str:
            return f"{key}.{name}" if key else name

        name = options.subproblem.name if options.subproblem is not None else default_subproblem(options)
        solver = lookup("subproblem", name).cls
        norm = "2" if options.norm == 2 else "inf"
        if norm not in solver.norms:
            raise ConfigError(where("subproblem"), f"{name} solves {'/'.join(solver.norms)}-norm subproblems only")
        offers = "none" if options.order == 1 else ("hvp" if options.hessian == "exact" else "compact")
        fits = {"none": ("none",), "hvp": ("none", "hvp"), "compact": ("none", "hvp", "compact", "inverse_or_compact")}
        if solver.needs not in fits[offers]:
            what = "B = 0" if offers == "none" else "Hessian-vector products only"
            raise ConfigError(where("subproblem"), f"{name} needs {solver.needs} of B, the model has {what}")
        if options.npc is not None:
            local = getattr(options.npc.options, "local", None)
            if local is not None and local.name != "trust_region":
                raise ConfigError(
                    where("npc.local.name"), "APTS needs local trust regions (the ratio test controls their radius)"
                )
        elif options.global_steps:
            raise ConfigError(where("global_steps"), "global steps follow a preconditioned step: set npc")

    # -- lifecycle ------------------------------------------------------------
    def init(self, objective: Any, theta: torch.Tensor) -> None:
        """Start from ``theta`` (copied) with radius Δ₀ and an empty history; no evaluation."""
        super().init(objective, theta)
        if self.npc is not None:
            self.npc.init(objective, theta)
        o = self.options
        n, device, dtype = self.theta.numel(), self.theta.device, self.theta.dtype
        if o.order == 2 and o.hessian == "sr1":
            self.history = LSR1History(o.memory, n, device, dtype)
        elif o.order == 2 and o.hessian == "lbfgs":
            self.history = LBFGSHistory(o.memory, n, device, dtype)
        else:
            self.history = None
        self.control.reset()
        self.loss, self.grad, self.region = None, None, None
        self.iteration, self._terms = 0, {}
        self._key = objective.key

    def set_point(self, theta: torch.Tensor, loss: float | None = None, grad: torch.Tensor | None = None) -> None:
        """Move to ``theta`` keeping the radius and the secant pairs; L and ∇L there when given, else evaluated anew."""
        self.theta.copy_(theta)
        self.control.recent = []
        self.loss, self.grad = (float(loss), grad) if grad is not None else (None, None)
        self._key = self.objective.key

    def current(self) -> Evaluation | None:
        if self.grad is None or self._key != self.objective.key:
            return None
        return Evaluation(self.loss, self.grad, dict(self._terms))

    def set_region(self, center: torch.Tensor, radius: float) -> None:
        """Keep every iterate within ``radius`` of ``center`` (in the solver's norm); the radius starts there.

        A subdomain's local trust region in APTS: the local corrections of the
        subdomains then add up to a step inside the global radius.
        """
        self.region = (center.detach().clone(), float(radius))
        self.control.reset(radius)

    def evaluate(self) -> tuple[float, torch.Tensor]:
        """L and ∇L at ``theta`` on the current batch, evaluated once and cached. *Collective*."""
        if self.grad is not None and self._key != self.objective.key:
            self.loss, self.grad = None, None
        if self.grad is None:
            ev = self.objective.evaluate(self.theta, grad=True)
            self.loss, self.grad, self._terms = float(ev.loss), ev.grad, dict(ev.terms)
            self._key = self.objective.key
        return self.loss, self.grad

    # -- pieces -----------------------------------------------------------------
    def model(self, grad: torch.Tensor) -> QuadraticModel:
        """m(s) = gᵀs + ½ sᵀBs with the B of the options."""
        o = self.options
        if o.order == 1:
            return QuadraticModel(grad)
        if o.hessian == "exact":
            theta = self.theta.clone()
            return QuadraticModel(grad, hvp=lambda v: self.objective.hvp(theta, v))
        if o.hessian == "sr1":
            return QuadraticModel(grad, compact=self.history.compact())
        compact = lbfgs_compact(self.history)
        if compact is None:  # empty L-BFGS history: B = I
            empty = torch.zeros(0, 0, dtype=torch.float64)
            compact = CompactForm(1.0, grad.new_zeros(grad.numel(), 0), empty)
        return QuadraticModel(grad, compact=compact, inverse=self.history.apply_inverse)

    def _step_radius(self) -> float:
        """Δ, or less when a region bounds the distance still available (0 once less than a millionth is left).

        The cut-off keeps a decision that depends on rounding (a region used up
        to the last bit) from differing between runs on different rank counts.
        """
        radius = self.control.radius
        if self.region is None:
            return radius
        center, bound = self.region
        used = float(torch.linalg.vector_norm(self.theta - center, ord=2 if self.norm == "2" else math.inf))
        left = bound - used
        return min(radius, left) if left > 1e-6 * bound else 0.0

    def _accept(self, theta: torch.Tensor, ev: Evaluation) -> None:
        self.control.accepted(self.loss)
        self.theta.copy_(theta)
        self.loss, self.grad, self._terms = ev.loss, ev.grad, dict(ev.terms)
        self._key = self.objective.key

    # -- iteration ---------------------------------------------------------------
    def step(self) -> StepReport:
        """One trust-region iteration (with ``npc``: one APTS iteration and its global steps). *Collective*."""
        if self.npc is None:
            return self._step()
        report = self._preconditioned_step()
        for _ in range(self.options.global_steps):
            if report.status != Status.RUNNING:
                break
            later = self._step()
            later.loss_before, later.warnings = report.loss_before, report.warnings
            report = later
        return report

    def _start(self) -> StepReport | None:
        """Evaluate at θ; a report that ends the iteration (non-finite, converged) or ``None``."""
        loss, grad = self.evaluate()
        grad_norm = float(torch.linalg.vector_norm(grad))
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            return StepReport(loss, grad_norm, accepted=False, status=Status.DIVERGED_NAN, loss_before=loss)
        if grad_norm == 0.0 or (self.options.grad_tol > 0.0 and float(grad.abs().max()) <= self.options.grad_tol):
            return StepReport(loss, grad_norm, 0.0, None, self.control.radius, status=Status.GRAD_TOL, loss_before=loss)
        return None

    def _step(self) -> StepReport:
        stop = self._start()
        if stop is not None:
            return stop
        loss, grad = self.loss, self.grad
        radius = self._step_radius()
        if radius <= 0.0:  # a local solve used up its region
            return StepReport(loss, None, 0.0, None, self.control.radius, False, Status.RUNNING, self._terms, loss)
        result = self.subproblem.solve(self.model(grad), radius, self.norm)
        if self.options.order == 2 and self.options.hessian == "exact":
            count_hessian(self.context, self.objective, result.iterations)
        else:
            self.context.counters.add("cg_iterations", result.iterations)
        trial = self.theta + result.step
        ev = self.objective.evaluate(trial)
        self.iteration += 1
        rho = self.control.ratio(loss, ev.loss, result.predicted_decrease)
        if math.isfinite(ev.loss) and self.history is not None and bool(torch.isfinite(ev.grad).all()):
            # SR1 learns from rejected steps too (N&W Alg. 6.2); L-BFGS only from accepted ones
            if isinstance(self.history, LSR1History) or self.control.accepts(rho):
                stored = self.history.push(result.step, ev.grad - grad)
                self.context.counters.add("secant_pairs_stored" if stored else "secant_pairs_skipped")
        step_norm = float(torch.linalg.vector_norm(result.step, ord=2 if self.norm == "2" else math.inf))
        return self._decide(loss, trial, ev, rho, step_norm, result.on_boundary or step_norm >= 0.99 * radius)

    def _decide(
        self,
        loss: float,
        trial: torch.Tensor,
        ev: Evaluation,
        rho: float,
        step_norm: float,
        on_boundary: bool,
        warnings: tuple[str, ...] = (),
    ) -> StepReport:
        """Accept or reject the trial by the ratio ρ, update the radius, report. ``loss``: L before the step."""
        if not math.isfinite(ev.loss):
            self.context.counters.add("tr_nonfinite_trials")
        accepted = self.control.accepts(rho) and step_norm > 0.0
        radius_used = self.control.radius
        self.control.update(rho, on_boundary)
        if accepted:
            self.context.counters.add("tr_accepted")
            self._accept(trial, ev)
        else:
            self.context.counters.add("tr_rejected")
        return StepReport(
            self.loss,
            float(torch.linalg.vector_norm(self.grad)),
            step_norm if accepted else 0.0,
            None,
            radius_used,
            accepted,
            Status.RUNNING,
            dict(self._terms),
            loss,
            warnings,
        )

    def _preconditioned_step(self) -> StepReport:
        """APTS: the Schwarz correction within the radius, accepted by this ratio test. *Collective*."""
        stop = self._start()
        if stop is not None:
            return stop
        loss, grad = self.loss, self.grad
        result = self.npc.apply(self.theta, Evaluation(loss, grad, dict(self._terms)), radius=self.control.radius)
        ev = result.evaluation
        self.iteration += 1
        step = result.theta - self.theta
        step_norm = float(torch.linalg.vector_norm(step, ord=2 if self.norm == "2" else math.inf))
        rho = self.control.ratio(loss, ev.loss, result.predicted_decrease)
        # the sum of local corrections rarely lies on the boundary itself: a very successful
        # combined step expands the radius (Conn, Gould & Toint 2000, Alg. 6.1.1, step 4)
        return self._decide(loss, result.theta, ev, rho, step_norm, True, result.warnings)

    # -- state ---------------------------------------------------------------------
    def state_dict(self) -> dict:
        """θ, Δ, the cached evaluation, the secant history, the recent losses and the region."""
        state: dict[str, Any] = {
            "theta": self.theta.clone(),
            "control": self.control.state_dict(),
            "iteration": self.iteration,
        }
        if self.grad is not None:
            state.update(loss=self.loss, grad=self.grad.clone(), terms=dict(self._terms), key=self._key)
        if self.history is not None:
            state["history"] = self.history.state_dict()
        if self.region is not None:
            state["region"] = {"center": self.region[0].clone(), "radius": self.region[1]}
        if self.npc is not None:
            state["npc"] = self.npc.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` after :meth:`init`; the run then continues bit for bit."""
        self.theta.copy_(state["theta"])
        self.control.load_state_dict(state["control"])
        self.iteration = int(state["iteration"])
        if "grad" in state:
            self.loss, self.grad = float(state["loss"]), state["grad"].to(self.theta).clone()
            self._terms, self._key = dict(state.get("terms", {})), int(state.get("key", 0))
        else:
            self.loss, self.grad = None, None
        if self.history is not None:
            self.history.load_state_dict(state["history"])
        if "region" in state:
            self.region = (state["region"]["center"].to(self.theta).clone(), float(state["region"]["radius"]))
        if self.npc is not None:
            self.npc.load_state_dict(state["npc"])

    def rank_state_dict(self) -> dict:
        return {"npc": self.npc.rank_state_dict()} if self.npc is not None else {}

    def load_rank_state_dict(self, state: dict) -> None:
        if self.npc is not None:
            self.npc.load_rank_state_dict(state.get("npc", {}))
