"""Nonlinear Schwarz over layer blocks: the preconditioner G of ASPQN and MSPQN.

Given θᵏ, every subdomain s (a block of consecutive layers, see
:mod:`ddnn.decomposition.layers`) approximately solves its local problem

    θ_s* ≈ argmin_{θ_s} L(θ₁, …, θ_s, …, θ_S)      (other blocks held fixed)

by a few steps of a local solver (by default L-BFGS with its own memory and
line search), and the corrections are combined:

* **additive** (ASPQN): every block starts from θᵏ, blocks are solved in
  parallel, one (or several) per rank, and

      G(θᵏ) = θᵏ + α Σ_s D_s E_s (θ_s* − R_s θᵏ)

  with one allreduce for the sum and a line search on α (D_s: partition of
  unity where blocks overlap);
* **multiplicative** (MSPQN): blocks are solved in sequence, block s starting
  from the blocks already updated, each local evaluation data parallel over
  all ranks; the sweep is taken as it is (α = 1).

Used alone (``solver: {name: schwarz}``) this is the nonlinear Schwarz
iteration θᵏ⁺¹ = G(θᵏ). As the nonlinear preconditioner ``npc`` of
:class:`~ddnn.solvers.lbfgs.LBFGS` it gives right-preconditioned L-BFGS.

References
----------
A. Kopaničáková, H. Kothari, G. E. Karniadakis, R. Krause, Enhancing training
of physics-informed neural networks using domain decomposition–based
preconditioning strategies, SIAM J. Sci. Comput. 46 (2024), Alg. 1 and §3.
P. R. Brune, M. G. Knepley, B. F. Smith, X. Tu, Composing scalable nonlinear
algebraic solvers, SIAM Review 57 (2015), §3 (nonlinear right preconditioning).
V. Dolean, M. J. Gander, W. Kheriji, F. Kwok, R. Masson, Nonlinear
preconditioning: how to use a nonlinear Schwarz method to precondition
Newton's method, SIAM J. Sci. Comput. 38 (2016).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Optional

import torch

from ddnn.config import Section, component, option
from ddnn.decomposition.layers import LayerDecomposition, split_layers
from ddnn.errors import ConfigError
from ddnn.registry import build, register
from ddnn.solvers.base import Reason, Solver, SolverContext, StepReport
from ddnn.solvers.line_search import Ray
from ddnn.solvers.objective import Evaluation, Objective

__all__ = ["SchwarzOptions", "Schwarz"]


@dataclass(frozen=True)
class SchwarzOptions:
    variant: Literal["additive", "multiplicative"] = option(
        "additive", "additive: blocks in parallel from θᵏ (ASPQN); multiplicative: in sequence (MSPQN)"
    )
    subdomains: Optional[int] = option(
        None, "number S of layer blocks (default: the number of ranks, at most the number of layers)", min=1
    )
    layers: Optional[tuple[tuple[int, ...], ...]] = option(
        None, "explicit layer indices of every block, e.g. [[0, 1], [2, 3, 4]] (overrides subdomains)"
    )
    overlap: int = option(0, "whole layers shared with each neighbouring block (partition of unity)", min=0)
    local_iters: int = option(5, "local solver steps per block and outer iteration", min=1)
    local: Section = component("solver", "lbfgs", "the local solver of every block")
    reset_local: bool = option(
        False, "start every local solve with a fresh local solver (false: keep each block's L-BFGS history)"
    )
    line_search: Section = component(
        "line_search", "armijo", "line search on the step α of the summed additive correction"
    )

    def check(self, prefix: str) -> None:
        if self.layers is not None:
            flat = [layer for group in self.layers for layer in group]
            if sorted(flat) != list(range(len(flat))) and self.overlap == 0:
                missing = sorted(set(range(max(flat, default=-1) + 1)) - set(flat))
                detail = f"layers {missing} are in no block" if missing else "a layer is in two blocks"
                raise ConfigError(f"{prefix}.layers" if prefix else "layers", detail)


@register("solver", "schwarz", SchwarzOptions)
class Schwarz(Solver):
    """Nonlinear additive or multiplicative Schwarz over blocks of layers (ASPQN/MSPQN preconditioner)."""

    def __init__(self, options: SchwarzOptions, context: SolverContext):
        super().__init__(options, context)
        comm = context.comm
        bounds = context.problem.params.layer_bounds()
        if options.layers is not None:
            groups = [list(g) for g in options.layers]
            if max(max(g) for g in groups) >= len(bounds):
                raise ConfigError("solver.layers", f"the network has {len(bounds)} layers (0..{len(bounds) - 1})")
        else:
            count = options.subdomains or min(comm.size, len(bounds))
            if count > len(bounds):
                raise ConfigError("solver.subdomains", f"{count} blocks but the network has only {len(bounds)} layers")
            groups = split_layers(len(bounds), count)
        try:
            self.decomposition = LayerDecomposition(bounds, groups, options.overlap)
        except ValueError as err:
            raise ConfigError("solver.layers", str(err)) from None
        self.additive = options.variant == "additive"
        self.line_search = build("line_search", options.line_search)
        n_blocks = len(self.decomposition)
        if self.additive:
            # ranks share blocks round-robin; with fewer blocks than ranks, the ranks of one
            # block evaluate its local problem data parallel over a sub-communicator
            self.group = comm.split(comm.rank % n_blocks) if comm.size > n_blocks else None
            self.my_blocks = (
                [comm.rank % n_blocks] if comm.size > n_blocks else self.decomposition.blocks_of(comm.rank, comm.size)
            )
        else:
            self.group = comm
            self.my_blocks = list(range(n_blocks))
        self.local_solvers = {s: context.build_solver(options.local) for s in self.my_blocks}
        self.local_objectives: dict[int, Any] = {}
        self.current: Evaluation | None = None

    @classmethod
    def check_world(cls, options: SchwarzOptions, world_size: int, key: str) -> None:
        """A block may be shared by several ranks, but a rank count must divide evenly among blocks."""
        count = len(options.layers) if options.layers is not None else options.subdomains
        if count is not None and options.variant == "additive" and world_size > count and world_size % count:
            raise ConfigError(
                f"{key}.subdomains" if key else "subdomains",
                f"{count} blocks cannot be shared evenly by {world_size} ranks "
                f"(use a multiple of {count} ranks, or at most {count})",
            )

    # -- local problems --------------------------------------------------
    def _local_objective(self, s: int) -> Any:
        """The block objective of block s: the full loss, this rank's share of the samples."""
        if s not in self.local_objectives:
            ctx = self.context
            samples = ctx.problem.training_samples()
            comm = self.group
            if comm is not None and comm.size > 1:
                samples = samples.shard(comm.rank, comm.size)
            else:
                comm = None
            parent = Objective(ctx.problem, samples, comm, ctx.counters, "local_grad_evals", ctx.timers)
            block = self.decomposition.blocks[s]
            self.local_objectives[s] = parent.restrict(block.start, block.stop)
        return self.local_objectives[s]

    def _local_solve(self, s: int, theta: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """θ_s* from ``local_iters`` steps on block s starting at ``theta``; (θ_s*, failed)."""
        objective = self._local_objective(s)
        objective.set_base(theta)
        solver = self.local_solvers[s]
        start = self.decomposition.restrict(theta, s)
        if self.options.reset_local or solver.theta is None:
            solver = self.local_solvers[s] = self.context.build_solver(self.options.local)
            solver.init(objective, start)
        else:
            solver.objective = objective
            solver.theta.copy_(start)
            if hasattr(solver, "samples_changed"):
                solver.samples_changed()
        failed = False
        for _ in range(self.options.local_iters):
            report = solver.step()
            if report.reason != Reason.RUNNING:
                failed = report.reason < 0 and not math.isfinite(report.loss)
                break
        return solver.theta, failed

    # -- the preconditioner ------------------------------------------------
    def apply(self, theta: torch.Tensor, current: Evaluation | None) -> tuple[torch.Tensor, Evaluation, float]:
        """G(θ): (θ^{k+1/2}, L and ∇L there, α). *Collective.*

        ``current`` is L and ∇L at θ when the caller has them (saves an evaluation).
        """
        ctx = self.context
        if current is None or current.grad is None:
            current = self.objective.evaluate(theta)
        with ctx.timers.phase("local_solve"):
            if self.additive:
                result, alpha = self._additive(theta, current)
            else:
                result, alpha = self._multiplicative(theta)
        return result[0], result[1], alpha

    def _additive(self, theta: torch.Tensor, current: Evaluation) -> tuple[tuple[torch.Tensor, Evaluation], float]:
        ctx = self.context
        dec = self.decomposition
        correction = torch.zeros_like(theta)
        failed = 0.0
        slowest = 0.0  # local gradient evaluations of the most expensive block
        for s in self.my_blocks:
            before = ctx.counters["local_grad_evals"]
            solution, bad = self._local_solve(s, theta)
            slowest = max(slowest, ctx.counters["local_grad_evals"] - before)
            failed += float(bad)
            delta = solution - dec.restrict(theta, s)
            if self.group is not None and self.group.size > 1 and self.group.rank != 0:
                continue  # the ranks sharing a block hold the same solution; one of them adds it
            dec.extend_weighted(delta, s, correction)
        # one collective: Σ_s D_s E_s (θ_s* − R_s θ) and the count of failed local solves
        buffer = torch.cat([correction, correction.new_tensor([failed])])
        with ctx.timers.phase("communication"):
            ctx.comm.allreduce(buffer)
            # effective parallel cost (the seed's #g_e): the blocks' local solves run
            # concurrently, one block per rank, so each outer iteration costs its slowest block
            slowest = ctx.comm.allreduce_value(slowest, "max")
        ctx.counters.add("effective_local_grad_evals", slowest)
        correction = buffer[:-1]
        if buffer[-1] > 0:
            ctx.counters.add("failed_local_solves", float(buffer[-1]))
        if not torch.isfinite(correction).all():
            return (theta.clone(), current), 0.0
        ray = Ray(self.objective, theta, correction)
        slope = float(torch.dot(current.grad, correction))
        if slope < 0:
            found = self.line_search.search(ray, current.loss, slope, 1.0, current.grad)
            alpha, loss, grad = found.alpha, found.loss, found.grad
        else:  # not a descent direction of L: take it only if it decreases L
            loss, grad, _ = ray(1.0, True)
            alpha = 1.0 if math.isfinite(loss) and loss < current.loss else 0.0
        if alpha == 0.0:
            ctx.counters.add("rejected_npc_steps")
            return (theta.clone(), current), 0.0
        ctx.counters.add("accepted_npc_steps")
        new_theta = theta + alpha * correction
        return (new_theta, Evaluation(loss, grad)), alpha

    def _multiplicative(self, theta: torch.Tensor) -> tuple[tuple[torch.Tensor, Evaluation], float]:
        dec = self.decomposition
        updated = theta.clone()
        before = self.context.counters["local_grad_evals"]
        for s in self.my_blocks:
            solution, _ = self._local_solve(s, updated)
            dec.restrict(updated, s).copy_(solution)
        # the sweep is sequential (its evaluations data parallel): every local evaluation counts
        self.context.counters.add("effective_local_grad_evals", self.context.counters["local_grad_evals"] - before)
        return (updated, self.objective.evaluate(updated)), 1.0

    # -- as a solver on its own --------------------------------------------
    def step(self) -> StepReport:
        """θᵏ⁺¹ = G(θᵏ). *Collective.*"""
        theta, ev, alpha = self.apply(self.theta, self.current)
        step_norm = float(torch.linalg.vector_norm(theta - self.theta))
        self.theta.copy_(theta)
        self.current = ev
        reason = Reason.RUNNING if math.isfinite(ev.loss) else Reason.DIVERGED_NAN
        grad_norm = float(torch.linalg.vector_norm(ev.grad)) if ev.grad is not None else None
        return StepReport(ev.loss, grad_norm, step_norm, alpha, None, alpha > 0, reason, ev.terms)

    def samples_changed(self) -> None:
        self.current = None
        self.local_objectives.clear()

    def state_dict(self) -> dict:
        state: dict[str, Any] = {"theta": self.theta.clone()}
        if self.current is not None:
            state["loss"] = self.current.loss
            state["grad"] = self.current.grad.clone()
            state["terms"] = dict(self.current.terms)
        if not self.options.reset_local:
            state["local"] = {str(s): solver.state_dict() for s, solver in self.local_solvers.items()}
        return state

    def load_state_dict(self, state: dict) -> None:
        self.theta.copy_(state["theta"])
        if "grad" in state:
            self.current = Evaluation(state["loss"], state["grad"].to(self.theta), dict(state.get("terms", {})))
        for s, local_state in state.get("local", {}).items():
            solver = self.local_solvers[int(s)]
            objective = self._local_objective(int(s))
            solver.init(objective, self.decomposition.restrict(self.theta, int(s)))
            solver.load_state_dict(local_state)
