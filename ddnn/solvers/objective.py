"""Objectives: the loss of a problem on a set of samples as a function of θ.

:class:`Objective` evaluates L and ∇L at a flat parameter vector θ. With a
communicator it is *data parallel*: each rank evaluates its shard of the
samples and one allreduce of ``[∇L, L, terms...]`` gives the global values
(the shard losses add up to the global loss, see
:mod:`ddnn.problems.base`). Without one it is local to the calling rank.
:class:`BlockObjective` is the same loss seen as a function of one slice of θ
with the rest held fixed, the local problem of Schwarz methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ddnn.counters import Counters, Timers
from ddnn.parallel.comm import Comm
from ddnn.problems.base import Problem, Samples

__all__ = ["Evaluation", "Objective", "BlockObjective"]


@dataclass
class Evaluation:
    """L (and ∇L) at one point; ``grad`` is a fresh tensor owned by the caller."""

    loss: float
    grad: torch.Tensor | None
    terms: dict[str, float] = field(default_factory=dict)


class Objective:
    """L(θ) of ``problem`` on ``samples``.

    Parameters
    ----------
    problem : evaluates loss terms with its model, whose parameters are a flat vector
    samples : this rank's rows (a shard when ``comm`` is given)
    comm : reduce over ranks (data parallel); ``None`` for a rank-local objective
    counters : where evaluations are counted
    counter : counter name of gradient evaluations (``grad_evals`` for the
        global objective, ``local_grad_evals`` for subdomain objectives);
        value-only evaluations count under the same name with ``_value``
        replacing ``grad`` (``loss_evals``, ``local_loss_evals``)
    timers : where evaluation and communication time go
    """

    def __init__(
        self,
        problem: Problem,
        samples: Samples,
        comm: Comm | None = None,
        counters: Counters | None = None,
        counter: str = "grad_evals",
        timers: Timers | None = None,
    ):
        self.problem = problem
        self.samples = samples
        self.comm = comm
        self.counters = counters if counters is not None else Counters()
        self.timers = timers if timers is not None else Timers()
        self.grad_counter = counter
        self.value_counter = counter.replace("grad", "loss")
        self.params = problem.params
        self.n = problem.params.numel
        self.term_names = tuple(samples.counts)

    @property
    def is_collective(self) -> bool:
        return self.comm is not None and self.comm.size > 1

    def evaluate(self, theta: torch.Tensor, grad: bool = True, block: tuple[int, int] | None = None) -> Evaluation:
        """L(θ) and, if ``grad``, ∇L(θ) (only ``∇L[block[0]:block[1]]`` when ``block`` is given).

        *Collective* when the objective has a communicator.
        """
        params = self.params
        if theta.data_ptr() != params.flat.data_ptr():
            params.flat.copy_(theta)
        with self.timers.phase("evaluation"):
            if grad:
                params.zero_grad()
                terms = self.problem.loss_terms(self.samples)
                loss = sum(terms.values())
                loss.backward()
                head = params.grad if block is None else params.grad[block[0] : block[1]]
            else:
                with torch.no_grad():
                    terms = self.problem.loss_terms(self.samples)
                    loss = sum(terms.values())
                head = params.grad[:0]
            values = torch.stack([loss.detach(), *(t.detach() for t in terms.values())])
            buffer = torch.cat([head, values.to(head.dtype)])
        if self.comm is not None:
            with self.timers.phase("communication"):
                self.comm.allreduce(buffer)
        self.counters.add(self.grad_counter if grad else self.value_counter)
        tail = buffer[head.numel() :].tolist()
        return Evaluation(
            loss=tail[0],
            grad=buffer[: head.numel()] if grad else None,
            terms=dict(zip(terms.keys(), tail[1:])),
        )

    def restrict(self, start: int, stop: int) -> BlockObjective:
        """This loss as a function of ``θ[start:stop]`` (same samples, communicator and counter)."""
        return BlockObjective(self, start, stop)


class BlockObjective:
    """L(θ) as a function of the block ``θ[start:stop]``, the other entries held at ``base``.

    ``evaluate(theta_block)`` returns the block gradient R_s ∇L(E_s θ_s + rest);
    autograd skips the parameters outside the block.
    """

    def __init__(self, parent: Objective, start: int, stop: int):
        self.parent = parent
        self.start, self.stop = start, stop
        self.n = stop - start
        self.base = parent.params.flat.clone()

    @property
    def is_collective(self) -> bool:
        return self.parent.is_collective

    def set_base(self, theta: torch.Tensor) -> None:
        """Hold the entries outside the block at ``theta``'s."""
        self.base.copy_(theta)

    def evaluate(self, theta_block: torch.Tensor, grad: bool = True) -> Evaluation:
        """L and the block gradient at ``base`` with the block replaced. *Collective* when the parent is."""
        params = self.parent.params
        params.flat.copy_(self.base)
        params.flat[self.start : self.stop].copy_(theta_block)
        params.set_trainable(self.start, self.stop)
        try:
            return self.parent.evaluate(params.flat, grad, block=(self.start, self.stop))
        finally:
            params.set_trainable()
