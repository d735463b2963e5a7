"""The solver protocol: ``init`` / ``step`` / ``state_dict`` with explicit state.

A solver minimises an objective (:mod:`ddnn.solvers.objective`) from a flat
starting vector. The loop, stop rules and checkpoints live in
:mod:`ddnn.run`, not here. Solvers compose: a solver may own nested solvers
(the local solvers of a Schwarz preconditioner, a coarse solver) built from
nested config sections with :meth:`SolverContext.build_solver`; everything
a solver needs to know about its problem (the number of unknowns, the
network's layers, the samples) it takes from the objective it is given in
:meth:`Solver.init`, so the same solver runs at the top level, as a local
or coarse solver, or inside the library adapter.

Lifecycle::

    solver = SolverClass(options, context)
    solver.init(objective, theta0)     # cheap: no evaluation
    report = solver.step()             # Collective when the objective is
    solver.set_point(theta)            # move the iterate, keep what was learnt (histories, radius)
    state = solver.state_dict()        # identical on every rank: written once
    local = solver.rank_state_dict()   # what differs between ranks: written per rank
    solver.load_state_dict(state); solver.load_rank_state_dict(local)   # after init(); bit for bit

Roles (class attribute ``roles``) say where a solver may appear in a
composition; the input format refuses the others at validation:
``"global"`` (a top-level solver), ``"local"`` (the local solver of a
subdomain) and ``"npc"`` (a nonlinear preconditioner: it has
:meth:`apply`, see :class:`Preconditioner`).
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from ddnn.counters import Counters, Timers
from ddnn.parallel.comm import Comm, SerialComm

__all__ = ["Status", "StepReport", "SolverContext", "Solver", "Preconditioner", "PreconditionerResult"]


class Status(enum.IntEnum):
    """What a solver step says about the iteration: go on, converged, or failed.

    A run stops for one of its own reasons (:class:`ddnn.run.StopReason`) or
    because the solver reported a status other than ``RUNNING``; the results
    file records the name and code of whichever it was. Negative codes are
    failures.
    """

    RUNNING = 0
    #: the gradient is (numerically) zero or below the solver's ``grad_tol``
    GRAD_TOL = 20
    #: a non-finite loss, gradient or iterate
    DIVERGED_NAN = -1
    #: the line search found no decrease, also from steepest descent
    DIVERGED_LINE_SEARCH = -2
    #: every local solve of a decomposition failed and no correction could be taken
    DIVERGED_LOCAL_SOLVE = -3


@dataclass
class StepReport:
    """What one step did.

    ``loss`` is at the iterate after the step when the solver knows it
    (line-search methods), else at the point it evaluated; ``loss_before``
    at the iterate the step started from (when evaluated). ``warnings``
    are one-line notes the run prints (e.g. failed local solves).
    """

    loss: float
    grad_norm: float | None = None
    step_norm: float | None = None
    step_size: float | None = None
    radius: float | None = None
    accepted: bool = True
    status: Status = Status.RUNNING
    terms: dict[str, float] = field(default_factory=dict)
    loss_before: float | None = None
    warnings: tuple[str, ...] = ()


@dataclass
class SolverContext:
    """What a solver may use besides its options and its objective.

    ``comm`` is the job's communicator (solvers split it for groups of
    ranks); ``counters`` and ``timers`` are this rank's; ``generator`` seeds
    the solver's own random choices.
    """

    comm: Comm = field(default_factory=SerialComm)
    counters: Counters = field(default_factory=Counters)
    timers: Timers = field(default_factory=Timers)
    generator: torch.Generator | None = None

    def build_solver(self, section: Any) -> Solver:
        """A nested solver from a validated ``solver`` config section."""
        from ddnn.registry import build

        return build("solver", section, self)


class Solver(abc.ABC):
    """Base class of every optimiser.

    Subclasses set ``self.theta`` (their own copy of the iterate) in ``init``
    and must return from :meth:`state_dict` and :meth:`rank_state_dict`
    everything :meth:`step` reads, so that a solver restored with
    :meth:`load_state_dict` continues bit for bit.
    """

    roles: ClassVar[frozenset[str]] = frozenset({"global", "local"})

    def __init__(self, options: Any, context: SolverContext | None = None):
        self.options = options
        self.context = context if context is not None else SolverContext()
        self.objective: Any = None
        self.theta: torch.Tensor | None = None

    def init(self, objective: Any, theta: torch.Tensor) -> None:
        """Start from ``theta`` (copied) on ``objective``; no evaluation here."""
        self.objective = objective
        self.theta = theta.detach().clone()

    @abc.abstractmethod
    def step(self) -> StepReport:
        """One iteration. *Collective* when the objective is."""

    def set_point(self, theta: torch.Tensor, loss: float | None = None, grad: torch.Tensor | None = None) -> None:
        """Move the iterate to ``theta`` (copied), keeping what the solver learnt (histories, moments).

        ``loss`` and ``grad`` are L and ∇L at ``theta`` on the objective's
        current batch when the caller has them; solvers that keep an
        evaluation use them instead of evaluating again.
        """
        self.theta.copy_(theta)

    def current(self) -> Any:
        """L and ∇L at ``theta`` (an ``Evaluation``) when known and current, else ``None``."""
        return None

    def state_dict(self) -> dict:
        """The state shared by all ranks (written once)."""
        return {"theta": self.theta.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.theta.copy_(state["theta"])

    def rank_state_dict(self) -> dict:
        """The state that differs between ranks (each block's local history): written per rank."""
        return {}

    def load_rank_state_dict(self, state: dict) -> None:
        """Restore :meth:`rank_state_dict` (after :meth:`load_state_dict`)."""

    @classmethod
    def check_setup(cls, options: Any, setup: Any, key: str) -> None:
        """Raise ``ConfigError`` (naming ``key``) when ``options`` cannot run in ``setup`` (ranks, network)."""


@dataclass
class PreconditionerResult:
    """G(θ) of a nonlinear preconditioner.

    Attributes
    ----------
    theta : the corrected point
    evaluation : L and ∇L there (:class:`~ddnn.solvers.objective.Evaluation`)
    alpha : the step taken along the combined correction (0: rejected, θ unchanged)
    predicted_decrease : Σ of the local problems' decreases (what a trust
        region compares the actual decrease with)
    failed : number of local solves that failed (non-finite local loss)
    warnings : one-line notes (failed local solves)
    """

    theta: torch.Tensor
    evaluation: Any
    alpha: float
    predicted_decrease: float = 0.0
    failed: int = 0
    warnings: tuple[str, ...] = ()


class Preconditioner(Solver):
    """A solver that can also be a nonlinear (right) preconditioner G of another solver.

    ``apply(theta, current, radius=None)`` returns a :class:`PreconditionerResult`.
    With ``radius`` (a trust-region caller) the local problems are kept
    inside that radius and the combined correction is returned as it is
    (the caller's ratio test decides); without it the preconditioner
    globalises its correction itself (a line search on α).
    """

    roles: ClassVar[frozenset[str]] = frozenset({"global", "npc"})

    @abc.abstractmethod
    def apply(self, theta: torch.Tensor, current: Any, radius: float | None = None) -> PreconditionerResult:
        """G(θ). *Collective.* ``current`` is L and ∇L at θ when the caller has them."""
