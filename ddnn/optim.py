"""ddnn's solvers as ``torch.optim`` optimisers driven by a closure.

::

    opt = ddnn.optim.LBFGS(model.parameters(), memory=3, line_search="strong_wolfe", momentum=1.0)

    def closure():
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        return loss

    for _ in range(100):
        opt.step(closure)

The parameters are re-homed into one contiguous buffer when the optimiser is
built: every ``p.data`` becomes a slice of a flat tensor and every ``p.grad``
a slice of a flat gradient buffer (the parameter objects themselves are kept,
so the model and any other references stay valid). Evaluating the closure
then leaves ∇L in the flat buffer, with no gathering copy per evaluation,
and the solver works on flat vectors as it does inside ``python -m ddnn``.

Gradients live in the flat buffer: :meth:`SolverOptimizer.zero_grad` zeroes
it in place (``set_to_none`` is ignored), and gradients a closure leaves
elsewhere (after ``model.zero_grad()`` set them to ``None``) are copied back
into it after each evaluation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import torch

from ddnn import config, registry
from ddnn.solvers.base import SolverContext, Status
from ddnn.solvers.first_order import clone_state
from ddnn.solvers.objective import Evaluation

__all__ = ["FlatParamList", "ClosureObjective", "SolverOptimizer", "LBFGS"]


class FlatParamList:
    """Make a list of tensors views into one flat parameter buffer and one flat gradient buffer.

    Parameters
    ----------
    params : leaf tensors of one dtype and device (their values are kept)

    Attributes
    ----------
    flat, grad : the contiguous value and gradient buffers
    """

    def __init__(self, params: list[torch.Tensor]):
        if not params:
            raise ValueError("no parameters to optimise")
        dtypes = {p.dtype for p in params}
        devices = {p.device for p in params}
        if len(dtypes) != 1 or len(devices) != 1:
            raise ValueError(f"parameters must share one dtype and device, got {dtypes} on {devices}")
        self.params = params
        total = sum(p.numel() for p in params)
        self.flat = torch.empty(total, dtype=params[0].dtype, device=params[0].device)
        self.grad = torch.zeros_like(self.flat)
        self.bounds: list[tuple[int, int]] = []
        offset = 0
        with torch.no_grad():
            for p in params:
                stop = offset + p.numel()
                self.flat[offset:stop].copy_(p.reshape(-1))
                self.bounds.append((offset, stop))
                offset = stop
        self._grad_views = [self.grad[a:b].view(p.shape) for p, (a, b) in zip(params, self.bounds)]
        for p, (a, b), g in zip(params, self.bounds, self._grad_views):
            p.data = self.flat[a:b].view(p.shape)
            p.grad = g

    @property
    def numel(self) -> int:
        return self.flat.numel()

    def zero_grad(self) -> None:
        """Zero the gradient buffer in place and re-attach every ``p.grad`` to it."""
        self.grad.zero_()
        for p, g in zip(self.params, self._grad_views):
            if p.grad is not g:
                p.grad = g

    def gather_grad(self) -> torch.Tensor:
        """The gradient buffer, after copying in any ``p.grad`` that autograd left outside it."""
        for p, (a, b), g in zip(self.params, self.bounds, self._grad_views):
            current = p.grad
            if current is g:  # autograd accumulated into the view, in place
                continue
            if current is None:
                self.grad[a:b].zero_()
            elif current.data_ptr() != g.data_ptr():
                self.grad[a:b].copy_(current.reshape(-1))
            p.grad = g
        return self.grad


class ClosureObjective:
    """The objective protocol (``evaluate(theta, grad)``) around a ``torch.optim`` closure.

    The closure zeroes the gradients, computes the loss, calls ``backward()``
    and returns the loss. It always computes the gradient, so a value-only
    evaluation costs as much as a full one here.
    """

    key = 0  # the closure decides its data; ``reevaluate`` handles closures that change
    comm = None

    def __init__(self, params: FlatParamList):
        self.params = params
        self.closure: Callable[[], Any] | None = None
        self.n = params.numel
        self.evaluations = 0

    @property
    def is_collective(self) -> bool:
        return False

    def evaluate(self, theta: torch.Tensor, grad: bool = True) -> Evaluation:
        """L(θ) (and a fresh copy of ∇L(θ)) from the closure, with the parameters set to θ."""
        flat = self.params.flat
        if theta.data_ptr() != flat.data_ptr():
            flat.copy_(theta)
        with torch.enable_grad():
            loss = self.closure()
        self.evaluations += 1
        value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
        return Evaluation(value, self.params.gather_grad().clone() if grad else None)


class SolverOptimizer(torch.optim.Optimizer):
    """Any ddnn solver that needs only an objective (``lbfgs``, ``adam``, ``sgd``) as a torch optimiser.

    Parameters
    ----------
    params : the parameters (one group; they become views of a flat buffer)
    solver : registered solver name
    max_iter : solver iterations per :meth:`step` call
    reevaluate : evaluate the closure at the start of every :meth:`step`
        call (needed when the closure changes between calls, e.g. mini-batches,
        or when the parameters are changed outside the optimiser); ``False``
        reuses the loss and gradient the previous call ended with
    options : the solver's options, validated as in an input file (component
        options such as ``line_search`` take a name or a mapping with ``name``)

    Attributes
    ----------
    solver : the ddnn solver
    last_report : the :class:`~ddnn.solvers.base.StepReport` of the last iteration
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        solver: str,
        max_iter: int = 1,
        reevaluate: bool = True,
        **options: Any,
    ):
        entry = registry.lookup("solver", solver)
        solver_options = config.section(
            "solver", {"name": solver, **options}, f"ddnn.optim.{entry.cls.__name__}"
        ).options
        defaults = {"lr": getattr(solver_options, "lr", 0.0), "max_iter": max_iter, "reevaluate": reevaluate}
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError(f"{type(self).__name__} supports one parameter group only")
        self._flat = FlatParamList(self.param_groups[0]["params"])
        self._objective = ClosureObjective(self._flat)
        self.solver = entry.cls(solver_options, SolverContext())
        self.solver.init(self._objective, self._flat.flat)
        self.last_report = None

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero the flat gradient buffer in place (``set_to_none`` is ignored)."""
        self._flat.zero_grad()

    @torch.no_grad()
    def step(self, closure: Callable[[], Any]) -> torch.Tensor:  # type: ignore[override]
        """Run ``max_iter`` solver iterations; returns the loss at the starting point (a 0-dim tensor).

        Stops early when the solver reports a reason other than running
        (converged or diverged; see ``last_report``).
        """
        if closure is None:
            raise ValueError(f"{type(self).__name__}.step needs a closure")
        group = self.param_groups[0]
        if hasattr(self.solver.options, "lr") and group["lr"] != self.solver.options.lr:  # an LR scheduler
            self.solver.options = dataclasses.replace(self.solver.options, lr=float(group["lr"]))
        self._objective.closure = closure
        solver = self.solver
        start_loss = None
        if hasattr(solver, "evaluate"):  # a solver that keeps L and ∇L of its iterate
            if group["reevaluate"] or solver.grad is None:
                solver.set_point(self._flat.flat)
            start_loss, _ = solver.evaluate()
        else:
            solver.theta.copy_(self._flat.flat)
        for _ in range(group["max_iter"]):
            report = solver.step()
            self.last_report = report
            if start_loss is None:
                start_loss = report.loss
            if report.status != Status.RUNNING:
                break
        self._flat.flat.copy_(solver.theta)
        return torch.tensor(start_loss, dtype=torch.float64)

    def state_dict(self) -> dict:
        """torch's optimizer state plus the solver's state (under ``"solver"``)."""
        state = super().state_dict()
        state["solver"] = clone_state(self.solver.state_dict())
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore :meth:`state_dict`; the parameters are set to the saved iterate."""
        state_dict = dict(state_dict)
        solver_state = state_dict.pop("solver", None)
        super().load_state_dict(state_dict)
        if solver_state is not None:
            self.solver.load_state_dict(clone_state(solver_state))
            self._flat.flat.copy_(self.solver.theta)


class LBFGS(SolverOptimizer):
    """ddnn's L-BFGS (:class:`ddnn.solvers.lbfgs.LBFGS`) as a torch optimiser.

    One :meth:`step` call is ``max_iter`` L-BFGS iterations (default one),
    each with its own line search. See :class:`ddnn.solvers.lbfgs.LBFGSOptions`
    for the options; ``line_search`` is ``"strong_wolfe"``, ``"armijo"``,
    ``"fixed"`` or a mapping such as ``{"name": "armijo", "c1": 1e-3}``.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        memory: int = 3,
        line_search: str | dict = "strong_wolfe",
        momentum: float = 1.0,
        lr: float = 1.0,
        curvature_eps: float = 1e-8,
        first_step: str = "scaled",
        grad_tol: float = 0.0,
        max_iter: int = 1,
        reevaluate: bool = True,
    ):
        super().__init__(
            params,
            "lbfgs",
            max_iter=max_iter,
            reevaluate=reevaluate,
            memory=memory,
            line_search=line_search,
            momentum=momentum,
            lr=lr,
            curvature_eps=curvature_eps,
            first_step=first_step,
            grad_tol=grad_tol,
        )
