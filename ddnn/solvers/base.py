"""The solver protocol: ``init`` / ``step`` / ``state_dict`` with explicit state.

A solver minimises an objective (:mod:`ddnn.solvers.objective`) from a flat
starting vector. The loop, stop rules and checkpoints live in
:mod:`ddnn.run`, not here. Solvers compose: a solver may own nested solvers
(a local solver of a Schwarz preconditioner, a coarse solver) built from
nested config sections with :meth:`SolverContext.build_solver`.

Lifecycle::

    solver = SolverClass(options, context)
    solver.init(objective, theta0)     # cheap: no evaluation
    report = solver.step()             # Collective when the objective is
    state = solver.state_dict()        # tensors and plain numbers, nested dicts
    solver.load_state_dict(state)      # after init(); resumes bit for bit
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field
from typing import Any

import torch

from ddnn.counters import Counters, Timers
from ddnn.parallel.comm import Comm, SerialComm
from ddnn.problems.base import Problem
from ddnn.solvers.objective import Objective

__all__ = ["Reason", "StepReport", "SolverContext", "Solver"]


class Reason(enum.IntEnum):
    """Why a run stopped. Negative values mean failure or divergence."""

    RUNNING = 0
    MAX_ITER = 1
    MAX_GRAD_EVALS = 2
    TARGET_LOSS = 3
    TARGET_METRIC = 4
    WALL_TIME = 5
    SIGNAL = 6
    GRAD_TOL = 7
    STEP_TOL = 8
    DIVERGED_NAN = -1
    DIVERGED_LINE_SEARCH = -2
    DIVERGED_LOCAL_SOLVE = -3
    DIVERGED_TRUST_REGION = -4


@dataclass
class StepReport:
    """What one step did. ``loss`` is at the iterate after the step when the
    solver knows it (line-search methods), else at the point it evaluated."""

    loss: float
    grad_norm: float | None = None
    step_norm: float | None = None
    step_size: float | None = None
    radius: float | None = None
    accepted: bool = True
    reason: Reason = Reason.RUNNING
    terms: dict[str, float] = field(default_factory=dict)


@dataclass
class SolverContext:
    """What a solver may use besides its options.

    ``comm`` is the job's communicator; ``problem`` gives the model and the
    samples; ``counters`` and ``timers`` are this rank's; ``generator`` seeds
    the solver's own random choices (mini-batches).
    """

    problem: Problem
    comm: Comm = field(default_factory=SerialComm)
    counters: Counters = field(default_factory=Counters)
    timers: Timers = field(default_factory=Timers)
    generator: torch.Generator | None = None

    def build_solver(self, section: Any) -> Solver:
        """A nested solver from a validated ``solver`` config section."""
        from ddnn.registry import build

        return build("solver", section, self)

    def global_objective(self) -> Objective:
        """Data-parallel objective on the whole training set: each rank its shard.

        Collective to evaluate.
        """
        samples = self.problem.training_samples().shard(self.comm.rank, self.comm.size)
        return Objective(self.problem, samples, self.comm, self.counters, "grad_evals", self.timers)


class Solver(abc.ABC):
    """Base class of every optimiser.

    Subclasses set ``self.theta`` (their own copy of the iterate) in ``init``
    and must return from :meth:`state_dict` everything :meth:`step` reads, so
    that a solver restored with :meth:`load_state_dict` continues bit for bit.
    """

    def __init__(self, options: Any, context: SolverContext):
        self.options = options
        self.context = context
        self.objective: Any = None
        self.theta: torch.Tensor | None = None

    def init(self, objective: Any, theta: torch.Tensor) -> None:
        """Start from ``theta`` (copied) on ``objective``; no evaluation here."""
        self.objective = objective
        self.theta = theta.detach().clone()

    @abc.abstractmethod
    def step(self) -> StepReport:
        """One iteration. *Collective* when the objective is."""

    def state_dict(self) -> dict:
        return {"theta": self.theta.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.theta.copy_(state["theta"])

    @classmethod
    def check_world(cls, options: Any, world_size: int, key: str) -> None:
        """Raise ``ConfigError`` when ``options`` cannot run on ``world_size`` ranks."""
