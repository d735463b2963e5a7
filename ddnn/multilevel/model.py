"""The first-order coherent coarse model, in one place.

On a coarse level l with loss L^l, a V-cycle minimises

    h^l(θ) = L^l(θ) + ⟨δg^l, θ − θ₀^l⟩,   δg^l = R ∇h^{l+1}(θ^{l+1}) − ∇L^l(θ₀^l),

so that ∇h^l(θ₀^l) = R ∇h^{l+1}(θ^{l+1}): the coarse model starts with the
fine gradient (Nash 2000, MG/OPT; Gratton, Sartenaer & Toint 2008, RMTR).
The anchor (θ₀, target gradient) is set by the cycle. When the level's
samples change between steps (a new mini-batch per step: SVRG, SARAH) the
shift is recomputed on the new batch at the same anchor — this is the
variance-reduced gradient ∇L_B(θ) − ∇L_B(θ₀) + g₀.

References
----------
S. G. Nash, A multigrid approach to discretized optimization problems,
Optim. Methods Softw. 14 (2000) 99–116.
R. Johnson, T. Zhang, Accelerating stochastic gradient descent using
predictive variance reduction, NeurIPS 2013 (SVRG).
L. M. Nguyen, J. Liu, K. Scheinberg, M. Takáč, SARAH: a novel method for
machine learning problems using stochastic recursive gradient, ICML 2017.
"""

from __future__ import annotations

from typing import Any

import torch

from ddnn.solvers.objective import Evaluation, ShiftedObjective

__all__ = ["CoarseModel"]


class CoarseModel(ShiftedObjective):
    """h(θ) = L(θ) + ⟨g₀ − ∇L(θ₀), θ − θ₀⟩ on the level's current batch.

    Parameters
    ----------
    base : the level's loss L (an objective on the level's samples)

    Attributes
    ----------
    anchor : (θ₀, g₀) or ``None`` (no shift: h = L, the finest level)
    last : (θ, ∇h(θ)) of the last gradient evaluation (SARAH moves the anchor there)
    """

    def __init__(self, base: Any):
        super().__init__(base)
        self.anchor: tuple[torch.Tensor, torch.Tensor] | None = None
        self.last: tuple[torch.Tensor, torch.Tensor] | None = None
        self._shift_key: int | None = None
        self._anchors = 0  # anchors set so far: the model changes with every one

    @property
    def key(self) -> int:
        """Changes with the batch and with every new anchor (solvers drop evaluations of an older model)."""
        return self.base.key + (self._anchors << 32)

    def set_anchor(self, theta0: torch.Tensor, target: torch.Tensor) -> None:
        """Make ∇h(θ₀) = ``target`` (copied); the shift is computed on the batch when first needed."""
        self.anchor = (theta0.detach().clone(), target.detach().clone())
        self._shift_key = None
        self._anchors += 1

    def _ensure_shift(self) -> None:
        """c = g₀ − ∇L(θ₀) on the current batch (one gradient evaluation when the batch or anchor changed)."""
        if self.anchor is None or self._shift_key == self.base.key:
            return
        theta0, target = self.anchor
        self.set_shift(target - self.base.evaluate(theta0).grad, theta0)
        self._shift_key = self.base.key

    def evaluate(self, theta: torch.Tensor, grad: bool = True, batch: Any = None) -> Evaluation:
        """h(θ) and ∇h(θ). *Collective* when the base is."""
        self._ensure_shift()
        ev = super().evaluate(theta, grad, batch)
        if grad:
            self.last = (theta.detach().clone(), ev.grad.clone())
        return ev

    def state_dict(self) -> dict:
        state: dict = {"anchors": self._anchors}
        if self.anchor is not None:
            state["anchor"] = {"theta": self.anchor[0].clone(), "target": self.anchor[1].clone()}
        if self.shift is not None:
            state["shift"] = {"c": self.shift.clone(), "theta0": self.theta0.clone(), "key": self._shift_key}
        if self.last is not None:
            state["last"] = {"theta": self.last[0].clone(), "grad": self.last[1].clone()}
        return state

    def load_state_dict(self, state: dict, like: torch.Tensor) -> None:
        self._anchors = int(state["anchors"])
        self.anchor = (
            (state["anchor"]["theta"].to(like), state["anchor"]["target"].to(like)) if "anchor" in state else None
        )
        if "shift" in state:
            self.shift, self.theta0 = state["shift"]["c"].to(like), state["shift"]["theta0"].to(like)
            self._shift_key = None if state["shift"]["key"] is None else int(state["shift"]["key"])
        else:
            self.shift, self.theta0, self._shift_key = None, None, None
        self.last = (state["last"]["theta"].to(like), state["last"]["grad"].to(like)) if "last" in state else None
