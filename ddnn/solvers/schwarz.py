"""Nonlinear Schwarz: the preconditioner G of ASPQN and MSPQN (and of APTS).

Given θᵏ, every subdomain s (a block of consecutive layers or a chunk of
the samples, see :mod:`ddnn.decomposition`) approximately solves its local
problem

    θ_s* ≈ argmin_{θ_s} h_s(θ_s)

(layers: L with the other blocks held fixed; samples: the chunk loss made
first-order consistent with the batch loss at θᵏ) by a few steps of a local
solver (by default L-BFGS with its own memory and line search), and the
corrections are combined:

* **additive** (ASPQN, APTS): every subdomain starts from θᵏ, subdomains are
  solved in parallel, one (or several) per rank, and

      G(θᵏ) = θᵏ + α Σ_s D_s E_s (θ_s* − R_s θᵏ)

  with one allreduce for the sum and a line search on α (D_s: partition of
  unity where layer blocks overlap, ones for sample chunks); a trust-region
  caller passes its radius instead and takes α = 1 through its ratio test;
* **multiplicative** (MSPQN): subdomains are solved in sequence, s starting
  from the subdomains already updated, each local evaluation data parallel
  over all ranks; the sweep is taken as it is (α = 1).

Used alone (``solver: {name: schwarz}``) this is the nonlinear Schwarz
iteration θᵏ⁺¹ = G(θᵏ). As the nonlinear preconditioner ``npc`` of
:class:`~ddnn.solvers.lbfgs.LBFGS` it gives right-preconditioned L-BFGS.
Everything it needs (the network's layers, the samples, the communicator)
comes from the objective it is initialised with.

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
C. Gross, R. Krause, On the convergence of recursive trust-region methods
for multiscale nonlinear optimization and applications to nonlinear
mechanics, SIAM J. Numer. Anal. 47 (2009) (APTS).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Optional

import torch

from ddnn.decomposition import Decomposition, LayerDecomposition, SampleDecomposition, split_layers
from ddnn.errors import ConfigError
from ddnn.options import Section, Setup, component, option
from ddnn.parallel.comm import Comm, SerialComm
from ddnn.registry import build, register
from ddnn.solvers.base import Preconditioner, PreconditionerResult, SolverContext, Status, StepReport
from ddnn.solvers.line_search import Ray
from ddnn.solvers.objective import Evaluation

__all__ = ["SchwarzOptions", "Schwarz"]


@dataclass(frozen=True)
class SchwarzOptions:
    variant: Literal["additive", "multiplicative"] = option(
        "additive", "additive: subdomains in parallel from θᵏ (ASPQN, APTS); multiplicative: in sequence (MSPQN)"
    )
    decomposition: Literal["layers", "samples"] = option(
        "layers", "subdomains: blocks of consecutive layers (weight space) or chunks of the batch (data space)"
    )
    subdomains: Optional[int] = option(
        None,
        "number S of subdomains (default: the number of ranks, at most the number of layers)",
        min=1,
        max=10**6,
    )
    layers: Optional[tuple[tuple[int, ...], ...]] = option(
        None, "explicit layer indices of every block, e.g. [[0, 1], [2, 3, 4]] (overrides subdomains)"
    )
    overlap: int = option(0, "layers: whole layers shared with each neighbouring block (partition of unity)", min=0)
    local_data: Literal["batch", "chunk"] = option(
        "batch",
        "layers: local problems on the whole batch, or on this rank's chunk of it with a first-order "
        "consistency term (inexact stochastic APTS: no communication in local solves)",
    )
    blocks: Literal["layers", "sized", "slices"] = option(
        "layers",
        "layer blocks of near-equal numbers of layers (layers) or of parameters (sized), or near-equal "
        "contiguous slices of the parameter vector that may cut through layers (slices: any number of blocks)",
    )
    overlap_percent: float = option(
        0.0, "samples: percent of the next chunk's rows each chunk also holds", min=0.0, lt=100.0
    )
    local_iters: int = option(5, "local solver steps per subdomain and outer iteration", min=1, max=10**6)
    local: Section = component(
        "solver",
        "lbfgs",
        "the local solver of every subdomain (a local L-BFGS keeps 10 pairs: the seed authors' code; measured: "
        "loss 1e-3 in 2.8x fewer effective evaluations than with 3 on Burgers)",
        role="local",
        defaults={"memory": 10},
    )
    reset_local: bool = option(
        False, "start every local solve with a fresh local solver (false: keep each block's L-BFGS history)"
    )
    line_search: Section = component(
        "line_search", "armijo", "line search on the step α of the summed additive correction"
    )

    def check(self, prefix: str) -> None:
        key = f"{prefix}.layers" if prefix else "layers"
        if self.layers is not None:
            if self.decomposition != "layers":
                raise ConfigError(key, "explicit layers need decomposition: layers")
            if not self.layers or any(not group for group in self.layers):
                raise ConfigError(key, "every block needs at least one layer")
            flat = [layer for group in self.layers for layer in group]
            if min(flat) < 0:
                raise ConfigError(key, f"layer indices start at 0, got {min(flat)}")
            for s, group in enumerate(self.layers):
                if any(b != a + 1 for a, b in zip(group, group[1:])):
                    raise ConfigError(key, f"block {s}: layers {list(group)} are not consecutive")
            if len(set(flat)) != len(flat) and self.overlap == 0:
                raise ConfigError(key, "a layer is in two blocks (blocks share layers through overlap)")
            # whether every layer of the network is in a block is checked against the network (check_setup)
        if self.decomposition == "samples" and self.overlap:
            raise ConfigError(f"{prefix}.overlap" if prefix else "overlap", "use overlap_percent for sample chunks")
        if self.decomposition == "samples" and self.local_data != "batch":
            raise ConfigError(f"{prefix}.local_data" if prefix else "local_data", "applies to layer blocks only")
        if self.layers is not None and self.blocks != "layers":
            raise ConfigError(f"{prefix}.blocks" if prefix else "blocks", "explicit layers need blocks: layers")


@register("solver", "schwarz", SchwarzOptions)
class Schwarz(Preconditioner):
    """Nonlinear additive or multiplicative Schwarz over layer blocks or sample chunks (ASPQN/MSPQN/APTS)."""

    def __init__(self, options: SchwarzOptions, context: SolverContext | None = None):
        super().__init__(options, context)
        self.additive = options.variant == "additive"
        self.line_search = build("line_search", options.line_search)
        self.decomposition: Decomposition | None = None
        self.comm: Comm = SerialComm()
        self.group: Comm | None = None
        self.my_blocks: list[int] = []
        self.local_objectives: dict[int, Any] = {}
        self.local_solvers: dict[int, Any] = {}
        self._current: Evaluation | None = None
        self._key = 0

    # -- configuration --------------------------------------------------
    @staticmethod
    def _count(options: SchwarzOptions, world_size: int, n_layers: int | None) -> int:
        if options.layers is not None:
            return len(options.layers)
        if options.subdomains is not None:
            return options.subdomains
        by_layers = options.decomposition == "layers" and options.blocks != "slices" and n_layers
        return min(world_size, n_layers) if by_layers else world_size

    @classmethod
    def check_setup(cls, options: SchwarzOptions, setup: Any, key: str) -> None:
        """The blocks must fit the network, and the ranks must divide evenly among them."""
        n_layers = len(setup.layer_bounds)
        count = cls._count(options, setup.world_size, n_layers)

        def where(name: str) -> str:
            return f"{key}.{name}" if key else name

        if options.decomposition == "layers" and options.blocks == "slices":
            if count > setup.n_params:
                raise ConfigError(
                    where("subdomains"), f"{count} slices but the network has {setup.n_params} parameters"
                )
        elif options.decomposition == "layers" and n_layers:
            if options.layers is not None:
                top = max(max(group) for group in options.layers)
                if top >= n_layers:
                    raise ConfigError(where("layers"), f"the network has {n_layers} layers (0..{n_layers - 1})")
                covered = {layer for group in options.layers for layer in group}
                missing = [layer for layer in range(n_layers) if layer not in covered]
                if missing and options.overlap == 0:
                    raise ConfigError(where("layers"), f"layers {missing} are in no block")
            elif count > n_layers:
                raise ConfigError(where("subdomains"), f"{count} blocks but the network has only {n_layers} layers")
        if options.variant == "additive" and setup.world_size > count and setup.world_size % count:
            raise ConfigError(
                where("layers" if options.layers is not None else "subdomains"),
                f"{count} subdomains cannot be shared evenly by {setup.world_size} ranks "
                f"(use a multiple of {count} ranks, or at most {count})",
            )

    # -- lifecycle --------------------------------------------------------
    def init(self, objective: Any, theta: torch.Tensor) -> None:
        """Decompose ``objective``'s problem, assign subdomains to ranks, build the local solvers. *Collective.*"""
        super().init(objective, theta)
        o = self.options
        self.comm = objective.comm if getattr(objective, "comm", None) is not None else SerialComm()
        comm = self.comm
        if o.decomposition == "layers":
            bounds = objective.layer_bounds()
            setup = Setup(comm.size, tuple(bounds), bounds[-1][1] if bounds else 0)
            self.check_setup(o, setup, "")  # the same checks as at validation, for library use
            groups = [list(g) for g in o.layers] if o.layers is not None else None
            if groups is None:
                count = self._count(o, comm.size, len(bounds))
                if o.blocks == "slices":  # the "layers" become S near-equal slices of θ
                    n = bounds[-1][1]
                    bounds = [((n * s) // count, (n * (s + 1)) // count) for s in range(count)]
                sizes = [b - a for a, b in bounds] if o.blocks == "sized" else None
                groups = split_layers(len(bounds), count, sizes)
            chunk = (comm.rank, comm.size) if o.local_data == "chunk" else None
            self.decomposition = LayerDecomposition(bounds, groups, o.overlap, chunk)
        else:
            self.decomposition = SampleDecomposition(self._count(o, comm.size, None), o.overlap_percent)
        n_blocks = len(self.decomposition)
        if self.additive:
            # ranks share subdomains round-robin; with fewer subdomains than ranks, the ranks of one
            # subdomain evaluate its local problem data parallel over a sub-communicator
            shared = comm.size > n_blocks
            self.group = comm.split(comm.rank % n_blocks) if shared else None
            self.my_blocks = [comm.rank % n_blocks] if shared else self.decomposition.blocks_of(comm.rank, comm.size)
        else:
            self.group = comm
            self.my_blocks = list(range(n_blocks))
        local_comm = self.group if self.group is not None and self.group.size > 1 else None
        base = objective.local(local_comm, "local_grad_evals")
        self.local_objectives = {s: self.decomposition.local_objective(base, s) for s in self.my_blocks}
        self.local_solvers = {s: self._new_local_solver(s, self.theta) for s in self.my_blocks}
        self._current = None
        self._key = objective.key

    def _new_local_solver(self, s: int, theta: torch.Tensor) -> Any:
        solver = self.context.build_solver(self.options.local)
        solver.init(self.local_objectives[s], self.decomposition.restrict(theta, s))
        return solver

    # -- local problems --------------------------------------------------
    def _local_solve(
        self, s: int, theta: torch.Tensor, current: Evaluation, radius: float | None = None
    ) -> tuple[torch.Tensor, bool, float]:
        """θ_s* from ``local_iters`` steps on subdomain s starting at θ: (θ_s*, failed, local decrease).

        With ``radius`` the local solver (a trust region) keeps its iterates within
        the decomposition's local radius of the start.
        """
        local = self.local_objectives[s]
        start = self.decomposition.begin(s, local, theta, current)
        if self.options.reset_local:
            solver = self.local_solvers[s] = self._new_local_solver(s, theta)
        else:
            solver = self.local_solvers[s]
            solver.set_point(start)
        if radius is not None:
            solver.set_region(start, self.decomposition.local_radius(radius, solver.norm))
        failed = False
        first = last = None
        for _ in range(self.options.local_iters):
            report = solver.step()
            first = report.loss_before if first is None else first
            last = report.loss
            if report.status != Status.RUNNING:
                failed = report.status < 0 and not math.isfinite(report.loss)
                break
        decrease = first - last if first is not None and math.isfinite(first) and math.isfinite(last) else 0.0
        return solver.theta, failed, decrease

    # -- the preconditioner ------------------------------------------------
    def apply(
        self, theta: torch.Tensor, current: Evaluation | None, radius: float | None = None
    ) -> PreconditionerResult:
        """G(θ) with L and ∇L there. *Collective.*

        ``current`` is L and ∇L at θ when the caller has them (saves an evaluation).
        With ``radius`` (a trust-region caller, APTS) the local trust regions stay
        within the decomposition's share of it and the combined correction is
        returned as it is (α = 1): the caller's ratio test accepts or rejects it.
        """
        if radius is not None and not hasattr(next(iter(self.local_solvers.values()), None), "set_region"):
            raise ValueError("a trust-region caller needs local trust regions (local: {name: trust_region})")
        if current is None or current.grad is None:
            current = self.objective.evaluate(theta)
        with self.context.timers.phase("local_solve"):
            if self.additive:
                return self._additive(theta, current, radius)
            return self._multiplicative(theta, current, radius)

    def _additive(self, theta: torch.Tensor, current: Evaluation, radius: float | None) -> PreconditionerResult:
        counters = self.context.counters
        dec = self.decomposition
        correction = torch.zeros_like(theta)
        failed = decrease = 0.0
        slowest = torch.zeros(2, dtype=torch.float64)  # local evaluations and work of the costliest subdomain
        for s in self.my_blocks:
            before = (counters["local_grad_evals"], counters["local_grad_work"])
            solution, bad, local_decrease = self._local_solve(s, theta, current, radius)
            cost = (counters["local_grad_evals"] - before[0], counters["local_grad_work"] - before[1])
            slowest = torch.maximum(slowest, torch.tensor(cost, dtype=torch.float64))
            if self.group is not None and self.group.size > 1 and self.group.rank != 0:
                continue  # the ranks sharing a subdomain hold the same solution; one of them adds it
            failed += float(bad)
            decrease += local_decrease
            dec.extend_weighted(solution - dec.restrict(theta, s), s, correction)
        # one collective: Σ_s D_s E_s (θ_s* − R_s θ), the failed local solves and the local decreases
        buffer = torch.cat([correction, correction.new_tensor([failed, decrease])])
        with self.context.timers.phase("communication"):
            self.comm.allreduce(buffer)
            # effective parallel cost (the seed's #g_e): the local solves run concurrently,
            # one subdomain per rank, so each outer iteration costs its slowest subdomain
            self.comm.allreduce(slowest, "max")
        counters.add("effective_local_grad_evals", float(slowest[0]))
        counters.add("effective_local_grad_work", float(slowest[1]))
        correction = buffer[:-2]
        failed, decrease = float(buffer[-2]), float(buffer[-1])
        warnings = self._failures(failed)
        if not torch.isfinite(correction).all():
            return PreconditionerResult(theta.clone(), current, 0.0, 0.0, int(failed), warnings)
        if radius is not None:  # the caller's ratio test is the globalisation
            new_theta = theta + correction
            return PreconditionerResult(
                new_theta, self.objective.evaluate(new_theta), 1.0, decrease, int(failed), warnings
            )
        ray = Ray(self.objective, theta, correction)
        slope = float(torch.dot(current.grad, correction))
        if slope < 0:
            found = self.line_search.search(ray, current.loss, slope, 1.0, current.grad)
            alpha, loss, grad = found.alpha, found.loss, found.grad
        else:  # not a descent direction of L: take it only if it decreases L
            loss, grad, _ = ray(1.0, True)
            alpha = 1.0 if math.isfinite(loss) and loss < current.loss else 0.0
        if alpha == 0.0:
            counters.add("rejected_npc_steps")
            return PreconditionerResult(theta.clone(), current, 0.0, decrease, int(failed), warnings)
        counters.add("accepted_npc_steps")
        new_theta = theta + alpha * correction
        return PreconditionerResult(new_theta, Evaluation(loss, grad), alpha, decrease, int(failed), warnings)

    def _multiplicative(self, theta: torch.Tensor, current: Evaluation, radius: float | None) -> PreconditionerResult:
        counters = self.context.counters
        dec = self.decomposition
        updated = theta.clone()
        before = (counters["local_grad_evals"], counters["local_grad_work"])
        failed = decrease = 0.0
        for i, s in enumerate(self.my_blocks):
            if i and dec.kind == "samples":  # the next chunk is made consistent at the updated point
                current = self.objective.evaluate(updated)
            solution, bad, local_decrease = self._local_solve(s, updated, current, radius)
            failed += float(bad)
            decrease += local_decrease
            dec.restrict(updated, s).copy_(solution)
        # the sweep is sequential (its evaluations data parallel): every local evaluation counts
        counters.add("effective_local_grad_evals", counters["local_grad_evals"] - before[0])
        counters.add("effective_local_grad_work", counters["local_grad_work"] - before[1])
        warnings = self._failures(failed)
        return PreconditionerResult(updated, self.objective.evaluate(updated), 1.0, decrease, int(failed), warnings)

    def _failures(self, failed: float) -> tuple[str, ...]:
        """Count failed local solves and say so."""
        if failed <= 0:
            return ()
        self.context.counters.add("failed_local_solves", failed)
        return (f"{int(failed)} of {len(self.decomposition)} local solves met a non-finite loss and stopped early",)

    # -- as a solver on its own --------------------------------------------
    def step(self) -> StepReport:
        """θᵏ⁺¹ = G(θᵏ). *Collective.*"""
        if self._current is not None and self._key != self.objective.key:
            self._current = None  # the batch changed
        result = self.apply(self.theta, self._current)
        ev = result.evaluation
        step_norm = float(torch.linalg.vector_norm(result.theta - self.theta))
        loss_before = self._current.loss if self._current is not None else None
        self.theta.copy_(result.theta)
        self._current = ev
        self._key = self.objective.key
        status = Status.RUNNING if math.isfinite(ev.loss) else Status.DIVERGED_NAN
        if result.alpha == 0.0 and result.failed == len(self.decomposition):
            status = Status.DIVERGED_LOCAL_SOLVE
        grad_norm = float(torch.linalg.vector_norm(ev.grad)) if ev.grad is not None else None
        return StepReport(
            ev.loss,
            grad_norm,
            step_norm,
            result.alpha,
            None,
            result.alpha > 0,
            status,
            ev.terms,
            loss_before,
            result.warnings,
        )

    def set_point(self, theta: torch.Tensor, loss: float | None = None, grad: torch.Tensor | None = None) -> None:
        super().set_point(theta)
        self._current = Evaluation(float(loss), grad) if grad is not None else None
        self._key = self.objective.key

    def state_dict(self) -> dict:
        """θ and L, ∇L there (identical on every rank); the local solvers are in :meth:`rank_state_dict`."""
        state: dict[str, Any] = {"theta": self.theta.clone()}
        if self._current is not None:
            state["loss"] = self._current.loss
            state["grad"] = self._current.grad.clone()
            state["terms"] = dict(self._current.terms)
            state["key"] = self._key
        return state

    def load_state_dict(self, state: dict) -> None:
        self.theta.copy_(state["theta"])
        if "grad" in state:
            self._current = Evaluation(state["loss"], state["grad"].to(self.theta), dict(state.get("terms", {})))
            self._key = int(state.get("key", 0))
        else:
            self._current = None

    def rank_state_dict(self) -> dict:
        """The local solvers of this rank's subdomains (their histories), unless they restart every time."""
        if self.options.reset_local:
            return {}
        return {
            str(s): {"state": solver.state_dict(), "rank": solver.rank_state_dict()}
            for s, solver in self.local_solvers.items()
        }

    def load_rank_state_dict(self, state: dict) -> None:
        for s, saved in state.items():
            solver = self.local_solvers.get(int(s))
            if solver is None:
                raise ValueError(f"the checkpoint holds subdomain {s}, which this rank does not solve")
            solver.load_state_dict(saved["state"])
            solver.load_rank_state_dict(saved.get("rank", {}))
