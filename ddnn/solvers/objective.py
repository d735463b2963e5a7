"""Objectives: the loss of a problem on a batch of samples, as a function of θ.

:class:`Objective` evaluates L, ∇L and Hessian-vector products ∇²L v at a
flat parameter vector θ, on a batch of samples: by default the current batch
of its sample source (a :class:`~ddnn.sampler.Sampler`, or fixed samples),
or on any batch the caller passes (``batch=``: the value and gradient at
two points on the same batch, as SVRG and SARAH need, are two calls with the
same batch). With a communicator it is *data parallel*: each rank evaluates
its shard of the batch and one allreduce of ``[∇L, L, terms...]`` gives the
batch values (the shard losses add up to the batch loss, see
:mod:`ddnn.samples`). Without one it is local to the calling rank.

Derived objectives, each a thin view of another one:

* :meth:`Objective.local` — the same loss on another communicator, counted
  under another name (the local problems of Schwarz methods);
* :meth:`Objective.on` — the same loss on other samples (a chunk of the batch);
* :class:`BlockObjective` — L as a function of one slice of θ, the rest held
  fixed (layer blocks);
* :class:`ShiftedObjective` — h(θ) = L(θ) + ⟨c, θ − θ₀⟩, first-order
  consistent coarse and local models.

Every evaluation is counted: ``grad_evals`` (calls) and ``grad_work``
(calls weighted by the share of the training set the batch holds, so that
methods with different batch sizes compare on one axis), likewise
``loss_evals``/``loss_work`` for value-only and ``hess_evals``/``hess_work``
for Hessian-vector products; objectives of local problems count under
``local_grad_evals`` etc.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ddnn.counters import Counters, Timers
from ddnn.parallel.comm import Comm
from ddnn.problems.base import Problem
from ddnn.sampler import FixedSamples
from ddnn.samples import Samples

__all__ = ["Evaluation", "Objective", "BlockObjective", "ShiftedObjective", "counter_names"]


@dataclass
class Evaluation:
    """L (and ∇L) at one point; ``grad`` is a fresh tensor owned by the caller."""

    loss: float
    grad: torch.Tensor | None
    terms: dict[str, float] = field(default_factory=dict)


def counter_names(counter: str) -> dict[str, str]:
    """The counters of an objective counting gradients under ``counter`` (e.g. ``grad_evals``).

    Returns the names for gradient, value-only and Hessian-vector evaluations
    (``grad_evals``, ``loss_evals``, ``hess_evals``) and their work in units of
    the full training set (``grad_work``, ``loss_work``, ``hess_work``).
    """
    names = {"grad": counter, "loss": counter.replace("grad", "loss"), "hess": counter.replace("grad", "hess")}
    names.update({f"{k}_work": v.replace("evals", "work") for k, v in list(names.items())})
    return names


class Objective:
    """L(θ) of ``problem`` on the batches of ``source``.

    Parameters
    ----------
    problem : evaluates loss terms with its model, whose parameters are a flat vector
    source : a :class:`~ddnn.sampler.Sampler` (its current batch is the
        default), a :class:`~ddnn.sampler.FixedSamples` or plain
        :class:`~ddnn.samples.Samples` (fixed); batches are *global*: with
        ``comm`` every rank evaluates its shard
    comm : reduce over ranks (data parallel); ``None`` for a rank-local objective
    counters : where evaluations are counted
    counter : counter name of gradient evaluations (``grad_evals`` for the
        global objective, ``local_grad_evals`` for subdomain objectives); see
        :func:`counter_names` for the others
    timers : where evaluation and communication time go
    """

    def __init__(
        self,
        problem: Problem,
        source: Any,
        comm: Comm | None = None,
        counters: Counters | None = None,
        counter: str = "grad_evals",
        timers: Timers | None = None,
    ):
        self.problem = problem
        self.source = FixedSamples(source) if isinstance(source, Samples) else source
        self.comm = comm
        self.counters = counters if counters is not None else Counters()
        self.timers = timers if timers is not None else Timers()
        self.counter = counter
        self.names = counter_names(counter)
        self.params = problem.params
        self.n = problem.params.numel

    # -- views --------------------------------------------------------------
    def local(self, comm: Comm | None, counter: str) -> Objective:
        """The same loss and batches reduced over ``comm`` instead, counted under ``counter``."""
        return Objective(self.problem, self.source, comm, self.counters, counter, self.timers)

    def on(self, source: Any, comm: Comm | None = None, counter: str | None = None) -> Objective:
        """The same loss on other samples (a source or fixed :class:`~ddnn.samples.Samples`)."""
        return Objective(self.problem, source, comm, self.counters, counter or self.counter, self.timers)

    def restrict(self, start: int, stop: int) -> BlockObjective:
        """This loss as a function of ``θ[start:stop]`` (same samples, communicator and counters)."""
        return BlockObjective(self, start, stop)

    def layer_bounds(self) -> list[tuple[int, int]]:
        """Flat ranges of the network's layers (for layer decompositions)."""
        return self.params.layer_bounds()

    @property
    def is_collective(self) -> bool:
        return self.comm is not None and self.comm.size > 1

    @property
    def batch(self) -> Samples:
        """The current global batch of the source."""
        return self.source.batch

    @property
    def key(self) -> int:
        """Changes whenever the default batch changes (an evaluation is valid only under its key)."""
        return self.source.key

    def _shard(self, batch: Samples | None) -> Samples:
        batch = self.source.batch if batch is None else batch
        if self.comm is None or self.comm.size == 1:
            return batch
        return batch.shard(self.comm.rank, self.comm.size)

    def _set(self, theta: torch.Tensor) -> None:
        params = self.params
        if theta.data_ptr() != params.flat.data_ptr():
            params.flat.copy_(theta)
        model = self.problem.model
        if not model.training:
            model.train()

    def _count(self, kind: str, samples: Samples) -> None:
        self.counters.add(self.names[kind])
        self.counters.add(self.names[f"{kind}_work"], samples.fraction)

    # -- evaluations --------------------------------------------------------
    def evaluate(self, theta: torch.Tensor, grad: bool = True, batch: Samples | None = None) -> Evaluation:
        """L(θ) and, if ``grad``, ∇L(θ) on ``batch`` (default: the current batch).

        *Collective* when the objective has a communicator.
        """
        return self._evaluate(theta, grad, batch, None)

    def _evaluate(
        self, theta: torch.Tensor, grad: bool, batch: Samples | None, block: tuple[int, int] | None
    ) -> Evaluation:
        params = self.params
        samples = self._shard(batch)
        self._set(theta)
        with self.timers.phase("evaluation"):
            if grad:
                params.zero_grad()
                terms = self.problem.loss_terms(samples)
                loss = sum(terms.values())
                loss.backward()
                head = params.grad if block is None else params.grad[block[0] : block[1]]
            else:
                with torch.no_grad():
                    terms = self.problem.loss_terms(samples)
                    loss = sum(terms.values())
                head = params.grad[:0]
            values = torch.stack([loss.detach(), *(t.detach() for t in terms.values())])
            buffer = torch.cat([head, values.to(head.dtype)])
        if self.comm is not None:
            with self.timers.phase("communication"):
                self.comm.allreduce(buffer)
        self._count("grad" if grad else "loss", samples)
        tail = buffer[head.numel() :].tolist()
        return Evaluation(
            loss=tail[0],
            grad=buffer[: head.numel()] if grad else None,
            terms=dict(zip(terms.keys(), tail[1:])),
        )

    def hvp(self, theta: torch.Tensor, v: torch.Tensor, batch: Samples | None = None) -> torch.Tensor:
        """∇²L(θ) v on ``batch`` (default: the current batch), by double backward. *Collective* when reduced.

        Pearlmutter's identity ∇²L v = ∇(∇L · v) (B. A. Pearlmutter, "Fast
        exact multiplication by the Hessian", Neural Comput. 6 (1994) 147-160).
        """
        samples = self._shard(batch)
        self._set(theta)
        params = self.problem.params
        leaves = params.parameters()
        with self.timers.phase("evaluation"), torch.enable_grad():
            terms = self.problem.loss_terms(samples, second_order=True)
            loss = sum(terms.values())
            grads = torch.autograd.grad(loss, leaves, create_graph=True, allow_unused=True)
            flat_grad = torch.cat(
                [(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, leaves)]
            )
            product = torch.autograd.grad(flat_grad @ v, leaves, allow_unused=True)
            out = torch.cat(
                [(h if h is not None else torch.zeros_like(p)).reshape(-1) for h, p in zip(product, leaves)]
            )
        out = out.detach()
        if self.comm is not None:
            with self.timers.phase("communication"):
                self.comm.allreduce(out)
        self._count("hess", samples)
        return out


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

    @property
    def key(self) -> int:
        return self.parent.key

    @property
    def batch(self) -> Samples:
        return self.parent.batch

    def set_base(self, theta: torch.Tensor) -> None:
        """Hold the entries outside the block at ``theta``'s."""
        self.base.copy_(theta)

    def _full(self, theta_block: torch.Tensor) -> torch.Tensor:
        params = self.parent.params
        params.flat.copy_(self.base)
        params.flat[self.start : self.stop].copy_(theta_block)
        return params.flat

    def evaluate(self, theta_block: torch.Tensor, grad: bool = True, batch: Samples | None = None) -> Evaluation:
        """L and the block gradient at ``base`` with the block replaced. *Collective* when the parent is."""
        params = self.parent.params
        flat = self._full(theta_block)
        params.set_trainable(self.start, self.stop)
        try:
            return self.parent._evaluate(flat, grad, batch, (self.start, self.stop))
        finally:
            params.set_trainable()

    def hvp(self, theta_block: torch.Tensor, v_block: torch.Tensor, batch: Samples | None = None) -> torch.Tensor:
        """R_s ∇²L E_s v: the block of the Hessian times ``v_block``. *Collective* when the parent is."""
        flat = self._full(theta_block)
        v = torch.zeros_like(flat)
        v[self.start : self.stop] = v_block
        return self.parent.hvp(flat, v, batch)[self.start : self.stop]


class ShiftedObjective:
    """h(θ) = L(θ) + ⟨c, θ − θ₀⟩: a first-order consistent model of another loss.

    The shift enters the value **and** the gradient: ∇h(θ) = ∇L(θ) + c, so
    with c = g − ∇L(θ₀) the model's gradient at θ₀ is the prescribed g (the
    global gradient for the local problems of APTS in data, the restricted
    fine gradient for the coarse levels of MG/OPT and RMTR). Second
    derivatives are those of L.

    Parameters
    ----------
    base : the objective shifted (anything with ``evaluate`` and ``hvp``)
    shift, theta0 : c and θ₀ (zero shift until :meth:`set_shift`)

    References
    ----------
    S. G. Nash, "A multigrid approach to discretized optimization problems",
    Optim. Methods Softw. 14 (2000) 99-116 (the first-order coherent coarse model).
    C. Gross, R. Krause, "On the convergence of recursive trust-region methods
    for multiscale nonlinear optimization and applications to nonlinear
    mechanics", SIAM J. Numer. Anal. 47 (2009) 3044-3069.
    """

    def __init__(self, base: Any, shift: torch.Tensor | None = None, theta0: torch.Tensor | None = None):
        self.base = base
        self.n = base.n
        self.shift = shift
        self.theta0 = theta0

    @property
    def is_collective(self) -> bool:
        return self.base.is_collective

    @property
    def key(self) -> int:
        return self.base.key

    @property
    def batch(self) -> Samples:
        return self.base.batch

    def set_shift(self, shift: torch.Tensor, theta0: torch.Tensor) -> None:
        """Use c = ``shift`` and θ₀ = ``theta0`` (both copied)."""
        self.shift = shift.detach().clone()
        self.theta0 = theta0.detach().clone()

    def evaluate(self, theta: torch.Tensor, grad: bool = True, batch: Samples | None = None) -> Evaluation:
        """h(θ) and ∇h(θ) = ∇L(θ) + c. *Collective* when the base is."""
        ev = self.base.evaluate(theta, grad, batch)
        if self.shift is None:
            return ev
        loss = ev.loss + float(torch.dot(self.shift, theta - self.theta0))
        return Evaluation(loss, ev.grad + self.shift if ev.grad is not None else None, ev.terms)

    def hvp(self, theta: torch.Tensor, v: torch.Tensor, batch: Samples | None = None) -> torch.Tensor:
        """∇²h(θ) v = ∇²L(θ) v. *Collective* when the base is."""
        return self.base.hvp(theta, v, batch)
