"""The objective protocol around a ``torch.optim`` closure.

:class:`ClosureObjective` is what the solvers of :mod:`ddnn.solvers` see of
a user's closure: ``evaluate(theta, grad=True) -> Evaluation`` with the
parameters set to θ, plus the rest of the objective protocol of
:mod:`ddnn.solvers.objective` that composite solvers use — ``key`` (changes
when the closure changes), ``comm`` (data-parallel reduction),
``local(comm, counter)`` (the local problems of Schwarz methods),
``restrict(start, stop)`` (a :class:`~ddnn.solvers.objective.BlockObjective`
of a block of parameters) and ``layer_bounds()`` (the blocks the
decomposition groups). So :class:`~ddnn.solvers.schwarz.Schwarz` and the
trust-region methods run on a closure unchanged.

Data parallelism
----------------
With a communicator of several ranks every evaluation is reduced: one
allreduce of ``[∇L, L]`` sums the ranks' contributions, so each rank's closure
returns *its share of the loss* (e.g. the sum of its rows' squared errors
divided by the number of rows of all ranks). A closure can be written in two
ways:

* ``closure()`` — evaluates the data this rank holds. Evaluations reduced
  over all ranks (L-BFGS, Adam, trust region, MSPQN) are right; local
  problems solved by one rank or a few (ASPQN on several ranks) would see
  only this rank's data, so they are refused with an error.
* ``closure(shard)`` — every rank holds all the data and evaluates the rows
  ``shard`` selects (a :class:`Shard`: ``shard(x)`` are the rows ``part`` of
  ``parts`` near-equal contiguous chunks of ``x``). The objective chooses the
  shard: the rank's share of the batch for a reduction over all ranks, the
  whole batch for a local problem solved by one rank. This is exactly how
  ``python -m ddnn`` shares its samples, so the library and the program take
  the same iterates.

The closure's loss terms must add up over shards to the loss of the whole
data: divide sums by the number of rows of all shards, not of this one.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ddnn.counters import Counters
from ddnn.parallel.comm import Comm
from ddnn.solvers.objective import BlockObjective, Evaluation, counter_names

__all__ = ["Shard", "ClosureObjective", "takes_shard"]


@dataclass(frozen=True)
class Shard:
    """Rows ``part`` of ``parts`` near-equal contiguous chunks (the split of :meth:`ddnn.samples.Samples.shard`).

    ``shard(x)`` slices a tensor (or each tensor of a tuple) along its first
    dimension; ``shard.rows(n)`` is the slice itself. ``Shard(0, 1)`` is all rows.
    """

    part: int = 0
    parts: int = 1

    def rows(self, n: int) -> slice:
        """The rows of this shard among ``n``."""
        return slice((n * self.part) // self.parts, (n * (self.part + 1)) // self.parts)

    def __call__(self, x: Any) -> Any:
        if isinstance(x, (tuple, list)):
            return type(x)(self(v) for v in x)
        return x[self.rows(x.shape[0])]

    @property
    def whole(self) -> bool:
        return self.parts == 1


def takes_shard(closure: Callable[..., Any]) -> bool:
    """Whether ``closure`` accepts a positional argument (then it is called with a :class:`Shard`)."""
    try:
        signature = inspect.signature(closure)
    except (TypeError, ValueError):
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return any(p.kind in (*positional, inspect.Parameter.VAR_POSITIONAL) for p in signature.parameters.values())


class _Closure:
    """The closure an objective and all its views evaluate, with its key and the type of its loss."""

    def __init__(self, key: int = 0):
        self.fn: Callable[..., Any] | None = None
        self.takes_shard = False
        self.key = key
        self.loss_type: tuple[torch.dtype, torch.device] | None = None  # None: the closure returns floats

    def set(self, fn: Callable[..., Any], renew: bool = False, judge: bool = True) -> None:
        """Use ``fn``; ``renew``, or (when ``judge``) a closure other than the last, changes the key.

        A new key drops every evaluation cached under the old one.
        """
        if renew or (judge and fn != self.fn):
            self.key += 1
        if fn != self.fn:
            self.fn = fn
            self.takes_shard = takes_shard(fn)

    def __getstate__(self) -> dict[str, Any]:  # closures rarely pickle; a copy gets the next one from step()
        return {"fn": None, "takes_shard": False, "key": self.key, "loss_type": self.loss_type}


class ClosureObjective:
    """L(θ) given by a closure over parameters that live in a :class:`~ddnn.optim.params.FlatParamList`.

    Parameters
    ----------
    params : the flat parameter buffer the closure's model reads
    comm : reduce every evaluation over these ranks (``None``: this rank alone)
    counters : where evaluations are counted (``closure_calls`` and, as for
        :class:`~ddnn.solvers.objective.Objective`, ``grad_evals`` /
        ``grad_work`` or ``local_grad_evals`` / ... under ``counter``)
    counter : the counter name of gradient evaluations
    units : flat ``(start, stop)`` of the blocks a layer decomposition groups
        (default: every tensor of ``params`` is one)
    world : the communicator of the whole optimiser (``comm`` of the global objective)

    Notes
    -----
    Before every call the gradient buffer is zeroed, so a closure that
    forgets ``zero_grad()`` is still right; gradients the closure leaves
    outside the buffer (``set_to_none``) are copied in. The closure always
    computes a gradient, so a value-only evaluation costs a full one.
    Hessian-vector products are not available from a closure.
    """

    def __init__(
        self,
        params: Any,
        comm: Comm | None = None,
        counters: Counters | None = None,
        counter: str = "grad_evals",
        units: list[tuple[int, int]] | None = None,
        world: Comm | None = None,
        closure: _Closure | None = None,
    ):
        self.params = params
        self.comm = comm if comm is not None and comm.size > 1 else None
        self.world = world if world is not None else self.comm
        self.counters = counters if counters is not None else Counters()
        self.counter = counter
        self.names = counter_names(counter)
        self.units = list(units) if units is not None else list(params.bounds)
        self.closure = closure if closure is not None else _Closure()
        self.n = params.numel

    # -- protocol ---------------------------------------------------------------
    @property
    def key(self) -> int:
        """Changes whenever the closure changes (an evaluation is valid only under its key)."""
        return self.closure.key

    @property
    def is_collective(self) -> bool:
        return self.comm is not None

    @property
    def batch(self) -> None:
        """A closure decides its data itself: there is no batch to pass around."""
        return None

    def local(self, comm: Comm | None, counter: str) -> ClosureObjective:
        """The same closure reduced over ``comm`` instead, counted under ``counter``."""
        return ClosureObjective(self.params, comm, self.counters, counter, self.units, self.world, self.closure)

    def restrict(self, start: int, stop: int) -> BlockObjective:
        """L as a function of ``θ[start:stop]``, the rest held fixed (autograd skips the rest)."""
        return BlockObjective(self, start, stop)

    def layer_bounds(self) -> list[tuple[int, int]]:
        """The flat ranges a layer decomposition groups into blocks (the optimiser's blocks or layers)."""
        return list(self.units)

    def evaluate(self, theta: torch.Tensor, grad: bool = True, batch: Any = None) -> Evaluation:
        """L(θ) and, if ``grad``, a fresh ∇L(θ). *Collective* when the objective has a communicator."""
        return self._evaluate(theta, grad, batch, None)

    def hvp(self, theta: torch.Tensor, v: torch.Tensor, batch: Any = None) -> torch.Tensor:
        raise NotImplementedError(
            "Hessian-vector products need the loss graph, which a closure does not return "
            "(use hessian='sr1' or 'lbfgs', or order=1)"
        )

    # -- evaluation ---------------------------------------------------------------
    def _shard(self) -> Shard | None:
        """The shard the closure evaluates (``None``: a plain closure on this rank's own data)."""
        if self.closure.takes_shard:
            return Shard(self.comm.rank, self.comm.size) if self.comm is not None else Shard()
        if self.world is not None and self.world.size > 1 and self.comm is not self.world:
            raise ValueError(
                "local problems solved by some of the ranks need the data of all ranks, but a closure "
                "without arguments evaluates only this rank's data: write it as closure(shard), every rank "
                "holding all the data and evaluating the rows shard(x) (see ddnn.optim.closure)"
            )
        return None

    def call(self) -> Any:
        """Call the closure once (gradients enabled, buffer zeroed first); its loss as it returned it."""
        fn = self.closure.fn
        if fn is None:
            raise ValueError("no closure: step(closure) sets it")
        shard = self._shard()
        self.params.zero_grad()
        with torch.enable_grad():
            loss = fn(shard) if shard is not None else fn()
        if loss is None:
            raise ValueError("the closure returned None: it must return the loss")
        self.counters.add("closure_calls")
        if isinstance(loss, torch.Tensor):
            if loss.numel() != 1:
                raise ValueError(f"the closure returned a tensor of shape {tuple(loss.shape)}, not a scalar loss")
            self.closure.loss_type = (loss.dtype, loss.device)
        return loss

    def _evaluate(self, theta: torch.Tensor, grad: bool, batch: Any, block: tuple[int, int] | None) -> Evaluation:
        if batch is not None:
            raise ValueError("a closure objective evaluates the closure's own data (no batch= argument)")
        flat = self.params.flat
        if theta.data_ptr() != flat.data_ptr():
            flat.copy_(theta)
        loss = self.call()
        value = loss.detach().reshape(1) if isinstance(loss, torch.Tensor) else torch.tensor([float(loss)])
        if grad:
            g = self.params.gather_grad()
            head = g if block is None else g[block[0] : block[1]]
            buffer = torch.cat([head, value.to(device=head.device, dtype=head.dtype)])
        else:
            buffer = value.to(device=flat.device, dtype=flat.dtype)
        if self.comm is not None:
            self.comm.allreduce(buffer)
        self.counters.add(self.names["grad" if grad else "loss"])
        self.counters.add(self.names["grad_work" if grad else "loss_work"], 1.0)
        return Evaluation(float(buffer[-1]), buffer[:-1] if grad else None)
