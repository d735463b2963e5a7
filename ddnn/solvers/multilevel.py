"""Nonlinear multilevel minimisation: V-cycles over a hierarchy of levels (MG/OPT, RMTR, MLVR, ASTROM).

One iteration is one V-cycle from the finest level (Nash 2000; Gratton,
Sartenaer & Toint 2008)::

    cycle(l, θ):
        θ ← μ1 smoother steps on h^l from θ                  (pre-smoothing)
        if l is not the coarsest:
            θ_c⁰ = P θ;   anchor h^{l-1} at θ_c⁰ with R ∇h^l(θ)   (first-order coherent coarse model)
            θ_c  = cycle(l-1, θ_c⁰)
            s    = I (θ_c − θ_c⁰)                            (the coarse correction)
            θ ← θ + s                   control: none      (MLVR, SVRG, SARAH)
            θ ← θ + α s, Armijo on h^l  control: line_search (MG/OPT, SSN)
            θ ← θ + s if ρ ≥ η          control: trust_region (RMTR, ASTROM):
                                        ρ = (h^l(θ) − h^l(θ + s)) / (h^{l-1}(θ_c⁰) − h^{l-1}(θ_c)),
                                        the coarse solve kept within ‖s‖ ≤ Δ^l
        θ ← μ2 smoother steps on h^l                          (post-smoothing)

The levels are built by a *hierarchy*: ``samples`` gives nested subsets of
the fine batch with identity transfers (:mod:`ddnn.multilevel.subsets`).
The coarse model is :class:`~ddnn.multilevel.model.CoarseModel`, written
once. Every level's smoother is any registered solver (SGD, L-BFGS, a trust
region, Newton-CG). Special cases, as input files show:

* **SVRG**: two levels, the coarse level a mini-batch drawn every step
  (``resample: step``) smoothed by m SGD steps on the coherent model
  anchored at the cycle start: ∇h = ∇L_B(θ) − ∇L_B(θ̃) + ∇L(θ̃);
* **SARAH**: the same with the anchor moved to every step (``anchor: step``):
  ∇h_k = ∇L_B(θ_k) − ∇L_B(θ_{k−1}) + v_{k−1};
* **SSN**: two levels, a subsample drawn every cycle, one Newton-CG step on
  the coarse model (whose gradient is the full one), a line search on the
  fine loss: θ ← θ − α (∇²L_{D¹})⁻¹ ∇L_D;
* **MLVR2, MLVR3**: two or three nested sample levels;
* **ASTROM**: two levels with trust-region control; a rejected coarse
  correction enlarges the coarse set (``grow``) until it is the whole batch,
  and the method ends as batch trust region.

References
----------
S. G. Nash, A multigrid approach to discretized optimization problems, Optim. Methods Softw. 14 (2000) 99–116.
S. Gratton, A. Sartenaer, Ph. L. Toint, Recursive trust-region methods for multiscale nonlinear
optimization, SIAM J. Optim. 19 (2008) 414–444.
R. Johnson, T. Zhang, Accelerating stochastic gradient descent using predictive variance
reduction, NeurIPS 2013 (SVRG).
L. M. Nguyen, J. Liu, K. Scheinberg, M. Takáč, SARAH: a novel method for machine learning
problems using stochastic recursive gradient, ICML 2017.
A. Kopaničáková, R. Krause, Globally convergent multilevel training of deep residual networks,
SIAM J. Sci. Comput. 45 (2023) (RMTR for networks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Optional

import torch

from ddnn.errors import ConfigError
from ddnn.multilevel import CoarseModel, DepthTransfer, IdentityTransfer, SubsetSource, Transfer
from ddnn.options import Section, component, option
from ddnn.registry import build, register
from ddnn.solvers.base import Solver, SolverContext, Status, StepReport
from ddnn.solvers.line_search import Ray, negligible_step
from ddnn.solvers.objective import Evaluation, Objective
from ddnn.solvers.radius import RadiusControl, RadiusOptions

__all__ = ["LevelOptions", "MultilevelOptions", "Multilevel"]


@dataclass(frozen=True)
class LevelOptions:
    """One coarse level of the hierarchy."""

    fraction: float = option(0.1, "samples: share of the finer level's rows this level sees", gt=0.0, max=1.0)
    solver: Section = component(
        "solver", "sgd", "the level's smoother (on the coarsest level: its solver)", role="local"
    )
    pre: int = option(1, "smoother steps before the coarser level (on the coarsest: its steps)", min=0, max=10**6)
    post: int = option(0, "smoother steps after the coarser level", min=0, max=10**6)
    resample: Literal["cycle", "step", "fixed"] = option(
        "cycle", "draw the level's samples anew every cycle (SSN), every smoother step (SVRG, SARAH), or never"
    )
    anchor: Literal["cycle", "step"] = option(
        "cycle", "coarse model anchored at the cycle's start (SVRG, MG/OPT) or moved to every step (SARAH)"
    )


@dataclass(frozen=True)
class MultilevelOptions(RadiusOptions):
    levels: tuple[LevelOptions, ...] = option((), "the coarse levels, coarsest first (the finest is the problem's)")
    fine: Optional[Section] = component("solver", None, "smoother of the finest level (none: no fine smoothing)")
    fine_pre: int = option(0, "finest-level smoother steps before the coarse correction", min=0, max=10**6)
    fine_post: int = option(0, "finest-level smoother steps after the coarse correction", min=0, max=10**6)
    control: Literal["none", "line_search", "trust_region"] = option(
        "none", "how a coarse correction is taken: as it is, by a line search (MG/OPT), or by a ratio test (RMTR)"
    )
    line_search: Section = component("line_search", "armijo", "control line_search: the step along a correction")
    grow: float = option(
        1.0, "trust_region control: factor of the coarse set after a rejected correction (ASTROM; 1: keep it)", min=1.0
    )
    hierarchy: Literal["samples", "depth"] = option(
        "samples", "coarse levels: nested sample subsets, or ResNets with half the residual blocks per level"
    )
    transfer: Literal["copy", "linear"] = option(
        "copy", "depth: prolongation of residual blocks, piecewise constant or linear in depth"
    )
    projection: Literal["average", "injection"] = option(
        "average", "depth: coarse blocks from fine ones, the average of their children or the first child"
    )

    def check(self, prefix: str) -> None:
        super().check(prefix)

        def key(name: str) -> str:
            return f"{prefix}.{name}" if prefix else name

        if not self.levels:
            raise ConfigError(key("levels"), "needs at least one coarse level")
        if self.fine is None and (self.fine_pre or self.fine_post):
            raise ConfigError(key("fine"), "fine_pre/fine_post smoothing needs a fine smoother")
        if self.control == "trust_region" and self.levels[0].solver.name != "trust_region":
            raise ConfigError(
                key("levels[0].solver.name"), "trust_region control needs a trust region on the coarsest level"
            )


class _Level:
    """A level of a built hierarchy: its model, smoother, samples and transfer to the next finer level."""

    def __init__(
        self,
        model: Any,
        smoother: Solver | None,
        options: LevelOptions | None,
        source: Any = None,
        transfer: Transfer | None = None,
    ):
        self.model = model
        self.smoother = smoother
        self.options = options
        self.source = source
        self.transfer = transfer if transfer is not None else IdentityTransfer()


@register("solver", "multilevel", MultilevelOptions)
class Multilevel(Solver):
    """Nonlinear multilevel V-cycles over sample hierarchies (MLVR, SVRG, SARAH, SSN, ASTROM, MG/OPT)."""

    roles: ClassVar[frozenset[str]] = frozenset({"global"})

    def __init__(self, options: MultilevelOptions, context: SolverContext | None = None):
        super().__init__(options, context)
        self.levels: list[_Level] = []
        self.controls: list[RadiusControl] = []
        self.line_search = build("line_search", options.line_search)
        self.loss: float | None = None
        self.grad: torch.Tensor | None = None
        self.iteration = 0
        self._key = 0

    # -- building the hierarchy ------------------------------------------------------
    @classmethod
    def check_setup(cls, options: MultilevelOptions, setup: Any, key: str) -> None:
        """A hierarchy in depth needs a ResNet whose blocks halve on every coarser level."""
        if options.hierarchy != "depth":
            return
        where = f"{key}.hierarchy" if key else "hierarchy"
        if setup.model and setup.model != "resnet":
            raise ConfigError(where, f"a hierarchy in depth needs a resnet model, not {setup.model}")

    def init(self, objective: Any, theta: torch.Tensor) -> None:
        """Build the levels on ``objective``'s samples or network; every smoother starts at θ. No evaluation."""
        super().init(objective, theta)
        o = self.options
        levels = self._depth_levels(objective) if o.hierarchy == "depth" else self._sample_levels(objective)
        fine = self.context.build_solver(o.fine) if o.fine is not None else None
        if fine is not None:
            fine.init(objective, self.theta)
        levels.append(_Level(objective, fine, None))
        self.levels = levels
        # a level smoothed by a trust region shares its radius with the control of its coarse corrections (RMTR)
        self.controls = [getattr(lvl.smoother, "control", None) or RadiusControl(o) for lvl in levels]
        self.loss, self.grad, self.iteration, self._key = None, None, 0, objective.key

    def _sample_levels(self, objective: Any) -> list[_Level]:
        """Coarse levels on nested subsets of the fine batch, coarsest first (identity transfers)."""
        seed = self.context.generator.initial_seed() if self.context.generator is not None else 0
        levels: list[_Level] = []
        parent = objective.source
        for level_options in reversed(self.options.levels):  # the finest coarse level first
            source = SubsetSource(parent, level_options.fraction, seed)
            model = CoarseModel(objective.on(source, objective.comm))
            smoother = self.context.build_solver(level_options.solver)
            smoother.init(model, self.theta)
            levels.append(_Level(model, smoother, level_options, source))
            parent = source
        levels.reverse()
        return levels

    def _depth_levels(self, objective: Any) -> list[_Level]:
        """Coarse levels with half the residual blocks each, on the fine level's batches, coarsest first."""
        problem = objective.problem
        fine_model = problem.model
        if not hasattr(fine_model, "coarsened"):
            raise ConfigError("solver.hierarchy", "a hierarchy in depth needs a resnet model")
        levels: list[_Level] = []
        finer_span, finer_n, theta = fine_model.block_span(), problem.params.numel, self.theta
        for depth, level_options in enumerate(reversed(self.options.levels), start=1):
            coarse_problem = problem.for_model(fine_model.coarsened(2**depth))
            span, n = coarse_problem.model.block_span(), coarse_problem.params.numel
            transfer = DepthTransfer(span, finer_span, n, finer_n, self.options.transfer, self.options.projection)
            theta = transfer.project(theta)
            coarse = Objective(
                coarse_problem,
                objective.source,
                objective.comm,
                objective.counters,
                "coarse_grad_evals",
                objective.timers,
            )
            model = CoarseModel(coarse)
            smoother = self.context.build_solver(level_options.solver)
            smoother.init(model, theta)
            levels.append(_Level(model, smoother, level_options, None, transfer))
            finer_span, finer_n = span, n
        levels.reverse()
        return levels

    def set_point(self, theta: torch.Tensor, loss: float | None = None, grad: torch.Tensor | None = None) -> None:
        self.theta.copy_(theta)
        self.loss, self.grad = (float(loss), grad) if grad is not None else (None, None)
        self._key = self.objective.key

    # -- pieces ------------------------------------------------------------------------
    def _evaluate(self, level: int, theta: torch.Tensor) -> Evaluation:
        return self.levels[level].model.evaluate(theta)

    def _smooth(
        self, level: int, theta: torch.Tensor, steps: int, start: Evaluation | None = None
    ) -> tuple[torch.Tensor, float | None, float | None, Evaluation | None]:
        """``steps`` smoother steps on h^level from θ (h^level there in ``start`` when known).

        Returns θ, the model value before and after (``None`` when unknown) and
        the smoother's evaluation at the returned θ (``None`` when it keeps none).
        """
        lvl = self.levels[level]
        if steps == 0 or lvl.smoother is None:
            return theta, None, None, start
        if start is not None:
            lvl.smoother.set_point(theta, start.loss, start.grad)
        else:
            lvl.smoother.set_point(theta)
        first = last = None
        for k in range(steps):
            if lvl.options is not None:
                if lvl.options.resample == "step" and lvl.source is not None:
                    lvl.source.redraw()
                if lvl.options.anchor == "step" and k > 0 and lvl.model.last is not None:
                    lvl.model.set_anchor(*lvl.model.last)  # SARAH: anchor at the previous iterate and its estimate
            report = lvl.smoother.step()
            first = report.loss_before if first is None else first
            last = report.loss
            if report.status != Status.RUNNING:
                break
        return lvl.smoother.theta.clone(), first, last, lvl.smoother.current()

    def _cycle(
        self, level: int, theta: torch.Tensor, radius: float | None = None, current: Evaluation | None = None
    ) -> tuple[torch.Tensor, Evaluation | None, float]:
        """One V-cycle on ``level`` from θ. *Collective*.

        Returns θ, h^level and its gradient at θ when known (else ``None``),
        and the decrease of h^level the cycle achieved (what a trust-region
        control on the finer level compares with; 0 when not needed).
        ``current`` is h^level and its gradient at the starting θ, when known.
        """
        lvl = self.levels[level]
        pre = lvl.options.pre if lvl.options is not None else self.options.fine_pre
        post = lvl.options.post if lvl.options is not None else self.options.fine_post
        if level == 0:  # the coarsest level: its solver, within the radius when trust-region controlled
            if radius is not None:
                lvl.smoother.set_point(theta)
                lvl.smoother.set_region(theta, radius)
            theta, first, last, _ = self._smooth(level, theta, pre)
            return theta, None, (first - last) if first is not None and last is not None else 0.0
        start = current.loss if current is not None else None
        if pre:
            theta, first, _, current = self._smooth(level, theta, pre, current)
            start = first if first is not None else start
        if current is None:
            current = self._evaluate(level, theta)
        start = current.loss if start is None else start
        coarse = self.levels[level - 1]
        if coarse.options.resample == "cycle" and coarse.source is not None:
            coarse.source.redraw()
        theta_c0 = coarse.transfer.project(theta)
        coarse.model.set_anchor(theta_c0, coarse.transfer.restrict(current.grad))
        bound = self.controls[level].radius / coarse.transfer.gain if self.options.control == "trust_region" else None
        theta_c, _, coarse_decrease = self._cycle(level - 1, theta_c0, bound)
        step = coarse.transfer.prolong(theta_c - theta_c0)
        theta, ev = self._take(level, theta, current, step, coarse_decrease)
        if post:
            theta, _, _, ev = self._smooth(level, theta, post, ev)
        decrease = 0.0
        if self.options.control == "trust_region" and level < len(self.levels) - 1:
            ev = ev if ev is not None else self._evaluate(level, theta)
            decrease = start - ev.loss
        return theta, ev, decrease

    def _take(
        self, level: int, theta: torch.Tensor, current: Evaluation, step: torch.Tensor, coarse_decrease: float
    ) -> tuple[torch.Tensor, Evaluation | None]:
        """θ + s, θ + α s or θ (rejected), as the control says, with h^level there when known. *Collective*."""
        control = self.options.control
        counters = self.context.counters
        if control == "none":
            return theta + step, None
        model = self.levels[level].model
        if control == "line_search":
            slope = float(torch.dot(current.grad, step))
            if not slope < 0.0:
                counters.add("rejected_coarse_corrections")
                return theta, current
            ray = Ray(model, theta, step)
            found = self.line_search.search(ray, current.loss, slope, 1.0, current.grad, negligible_step(theta, step))
            if found.alpha == 0.0:
                counters.add("rejected_coarse_corrections")
                return theta, current
            counters.add("accepted_coarse_corrections")
            return theta + found.alpha * step, Evaluation(found.loss, found.grad)
        # trust region: the coarse decrease predicts the fine one
        radius = self.controls[level]
        if not bool(step.any()):  # the coarse solve found nothing to take (all its steps rejected)
            return theta, current
        trial = theta + step
        ev = model.evaluate(trial)
        rho = radius.ratio(current.loss, ev.loss, coarse_decrease)
        step_norm = float(torch.linalg.vector_norm(step))
        radius.update(rho, step_norm >= 0.99 * radius.radius)
        if radius.accepts(rho) and step_norm > 0.0:
            radius.accepted(current.loss)
            counters.add("accepted_coarse_corrections")
            return trial, ev
        counters.add("rejected_coarse_corrections")
        coarse = self.levels[level - 1]
        if self.options.grow > 1.0 and coarse.source is not None:
            coarse.source.grow(self.options.grow)  # ASTROM: a larger coarse set after a rejection
        return theta, current

    # -- iteration ------------------------------------------------------------------------
    def step(self) -> StepReport:
        """One V-cycle from the finest level. *Collective*."""
        finest = len(self.levels) - 1
        if self.grad is None or self._key != self.objective.key:
            ev = self.objective.evaluate(self.theta)
            self.loss, self.grad, self._key = ev.loss, ev.grad, self.objective.key
        loss_before = self.loss
        if not math.isfinite(loss_before):
            return StepReport(loss_before, accepted=False, status=Status.DIVERGED_NAN, loss_before=loss_before)
        theta, ev, _ = self._cycle(finest, self.theta.clone(), None, Evaluation(self.loss, self.grad))
        if ev is None:
            ev = self.objective.evaluate(theta)
        step_norm = float(torch.linalg.vector_norm(theta - self.theta))
        self.theta.copy_(theta)
        self.loss, self.grad, self._key = ev.loss, ev.grad, self.objective.key
        self.iteration += 1
        grad_norm = float(torch.linalg.vector_norm(ev.grad))
        status = Status.RUNNING if math.isfinite(ev.loss) and math.isfinite(grad_norm) else Status.DIVERGED_NAN
        if grad_norm == 0.0:
            status = Status.GRAD_TOL
        radius = self.controls[finest].radius if self.options.control == "trust_region" else None
        return StepReport(
            ev.loss, grad_norm, step_norm, None, radius, step_norm > 0.0, status, dict(ev.terms), loss_before
        )

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Every level's smoother, samples, anchor and radius; the iterate and its evaluation."""
        state: dict[str, Any] = {"theta": self.theta.clone(), "iteration": self.iteration, "levels": {}}
        if self.grad is not None:
            state.update(loss=self.loss, grad=self.grad.clone(), key=self._key)
        for i, lvl in enumerate(self.levels):
            entry: dict[str, Any] = {"control": self.controls[i].state_dict()}
            if lvl.smoother is not None:
                entry["smoother"] = lvl.smoother.state_dict()
            if lvl.options is not None:  # a coarse level: its coherent model (and samples)
                entry["model"] = lvl.model.state_dict()
            if lvl.source is not None:
                entry["source"] = lvl.source.state_dict()
            state["levels"][str(i)] = entry
        return state

    def load_state_dict(self, state: dict) -> None:
        self.theta.copy_(state["theta"])
        self.iteration = int(state["iteration"])
        if "grad" in state:
            self.loss, self.grad, self._key = float(state["loss"]), state["grad"].to(self.theta), int(state["key"])
        for i, lvl in enumerate(self.levels):
            entry = state["levels"][str(i)]
            self.controls[i].load_state_dict(entry["control"])
            if lvl.source is not None:
                lvl.source.load_state_dict(entry["source"])
            if lvl.options is not None:
                lvl.model.load_state_dict(entry["model"], self.theta)
            if lvl.smoother is not None:
                lvl.smoother.load_state_dict(entry["smoother"])
