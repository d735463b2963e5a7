"""First-order baselines: Adam and SGD from ``torch.optim`` over the flat vector θ.

The solvers hold θ as one leaf tensor, set its ``.grad`` from
``objective.evaluate`` and call the torch optimiser's ``step``; nothing of
the update rule is re-implemented here. Their state is θ plus the torch
optimiser's ``state_dict`` (moments, step counts), so a resumed run continues
bit for bit.

References
----------
D. P. Kingma, J. Ba, Adam: a method for stochastic optimization, *ICLR* 2015.

I. Sutskever, J. Martens, G. Dahl, G. Hinton, On the importance of
initialization and momentum in deep learning, *ICML* 2013 (SGD with
momentum and Nesterov momentum as implemented by ``torch.optim.SGD``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ddnn.errors import ConfigError
from ddnn.options import option
from ddnn.registry import register
from ddnn.solvers.base import Solver, SolverContext, Status, StepReport

__all__ = ["AdamOptions", "Adam", "SGDOptions", "SGD", "clone_state"]


def clone_state(value: Any) -> Any:
    """A deep copy of nested dicts/lists/tuples whose tensors are cloned (plain values kept)."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {k: clone_state(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(clone_state(v) for v in value)
    return value


class _TorchOptimizerSolver(Solver):
    """A :class:`Solver` driving one ``torch.optim`` optimiser over θ."""

    def __init__(self, options: Any, context: SolverContext | None = None):
        super().__init__(options, context)
        self.optimizer: torch.optim.Optimizer | None = None
        self.iteration = 0

    def make_optimizer(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        raise NotImplementedError

    def init(self, objective: Any, theta: torch.Tensor) -> None:
        """Start from ``theta`` (copied) with fresh optimiser state; no evaluation."""
        super().init(objective, theta)
        self.optimizer = self.make_optimizer([self.theta])
        self.iteration = 0

    def step(self) -> StepReport:
        """Evaluate ∇L(θ) and take one optimiser step. *Collective* when the objective is.

        The report's loss and gradient norm are those at θ before the step.
        """
        ev = self.objective.evaluate(self.theta, grad=True)
        grad_norm = float(torch.linalg.vector_norm(ev.grad))
        if not (math.isfinite(ev.loss) and math.isfinite(grad_norm)):
            return StepReport(ev.loss, grad_norm, accepted=False, status=Status.DIVERGED_NAN, terms=dict(ev.terms))
        previous = self.theta.clone()
        self.theta.grad = ev.grad
        for group in self.optimizer.param_groups:  # the options drive the step (an LR scheduler changes them)
            group["lr"] = self.options.lr
        step = type(self.optimizer).step
        # the update without torch's step hooks: they belong to the caller's optimiser, which fires them once
        getattr(step, "__wrapped__", step)(self.optimizer)
        self.theta.grad = None
        self.iteration += 1
        step_norm = float(torch.linalg.vector_norm(self.theta - previous))
        lr = float(self.optimizer.param_groups[0]["lr"])
        return StepReport(ev.loss, grad_norm, step_norm, lr, terms=dict(ev.terms), loss_before=ev.loss)

    def state_dict(self) -> dict:
        """θ, the torch optimiser's state (cloned) and the iteration count."""
        return {
            "theta": self.theta.clone(),
            "optimizer": clone_state(self.optimizer.state_dict()),
            "iteration": self.iteration,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` after :meth:`init`."""
        self.theta.copy_(state["theta"])
        self.optimizer.load_state_dict(clone_state(state["optimizer"]))
        self.iteration = int(state["iteration"])


@dataclass(frozen=True)
class AdamOptions:
    lr: float = option(1e-3, "learning rate", gt=0.0)
    betas: tuple[float, ...] = option((0.9, 0.999), "decay rates of the first and second moments", min=0.0, lt=1.0)
    eps: float = option(1e-8, "added to the root of the second moment", gt=0.0)
    weight_decay: float = option(0.0, "L2 penalty added to the gradient", min=0.0)
    amsgrad: bool = option(False, "use the running maximum of the second moment (AMSGrad)")

    def check(self, prefix: str) -> None:
        if len(self.betas) != 2:
            raise ConfigError(f"{prefix}.betas" if prefix else "betas", f"expected two values, got {self.betas}")


@register("solver", "adam", AdamOptions)
class Adam(_TorchOptimizerSolver):
    """Adam with a fixed learning rate (``torch.optim.Adam``, Kingma & Ba 2015)."""

    def make_optimizer(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        o = self.options
        return torch.optim.Adam(
            params, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay, amsgrad=o.amsgrad
        )


@dataclass(frozen=True)
class SGDOptions:
    lr: float = option(1e-3, "learning rate", gt=0.0)
    momentum: float = option(0.0, "momentum factor", min=0.0)
    dampening: float = option(0.0, "dampening of the momentum", min=0.0)
    nesterov: bool = option(False, "Nesterov momentum (needs momentum > 0 and dampening 0)")
    weight_decay: float = option(0.0, "L2 penalty added to the gradient", min=0.0)

    def check(self, prefix: str) -> None:
        if self.nesterov and (self.momentum <= 0.0 or self.dampening != 0.0):
            raise ConfigError(f"{prefix}.nesterov" if prefix else "nesterov", "needs momentum > 0 and dampening 0")


@register("solver", "sgd", SGDOptions)
class SGD(_TorchOptimizerSolver):
    """(Stochastic) gradient descent with optional momentum (``torch.optim.SGD``)."""

    def make_optimizer(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        o = self.options
        return torch.optim.SGD(
            params,
            lr=o.lr,
            momentum=o.momentum,
            dampening=o.dampening,
            nesterov=o.nesterov,
            weight_decay=o.weight_decay,
        )
