"""Nonlinear Klein–Gordon equation with a manufactured solution, as in the seed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ddnn.problems.pinn.base import PINNProblem, TimeDependentPINNOptions
from ddnn.problems.pinn.derivatives import Jet, autograd_jet, mlp_jet
from ddnn.problems.pinn.references import klein_gordon_forcing, klein_gordon_reference
from ddnn.problems.pinn.sampling import sample_box
from ddnn.registry import register

__all__ = ["KleinGordonOptions", "KleinGordon"]


@dataclass(frozen=True)
class KleinGordonOptions(TimeDependentPINNOptions):
    """Options of the Klein–Gordon PINN (the common PINN options)."""


@register("problem", "klein_gordon", KleinGordonOptions)
class KleinGordon(PINNProblem):
    """Klein–Gordon PINN: u_tt + α u_xx + β u + γ u² = f on (t, x) ∈ (0, 12] × (−1, 1).

    α = −1, β = 0, γ = 1 and f = −x cos t + x² cos² t, so that the exact
    solution is u = x cos t. Initial conditions u(0, x) = x, u_t(0, x) = 0;
    boundary conditions u(t, −1) = −cos t, u(t, 1) = cos t. Network input
    columns ``(x, t)``. Loss terms: ``interior`` rows ``(x, t)``;
    ``boundary`` rows ``(±1, t, ±cos t)``; ``initial`` rows ``(x, 0, x, 0)``
    (the last two columns are the targets of u and u_t, and both misfits
    enter the term). The error is measured on a 201 × 201 grid of
    [−1, 1] × [0, 12] against u = x cos t.

    References
    ----------
    M. Raissi, P. Perdikaris, G. E. Karniadakis, "Physics-informed neural
    networks", J. Comput. Phys. 378 (2019) 686-707.
    A. Kopaničáková, H. Kothari, G. E. Karniadakis, R. Krause, "Enhancing
    training of physics-informed neural networks using domain-decomposition
    based preconditioning strategies", SIAM J. Sci. Comput. (2024) (this
    problem, 6 hidden layers of 50 neurons).
    """

    default_model = {"name": "mlp", "width": 50, "depth": 6, "activation": "tanh"}
    alpha, beta, gamma = -1.0, 0.0, 1.0
    t_end = 12.0
    # u_tt + α u_xx as one combined second-order row of the jet
    combined = ({1: 1.0, 0: alpha},)
    terms = ("interior", "boundary", "initial")

    def draw(self, term: str, n: int, seed: int) -> torch.Tensor:
        method = self.options.sampling
        if term == "interior":
            return sample_box(method, n, (-1.0, 0.0), (1.0, self.t_end), seed)
        if term == "boundary":
            t = sample_box(method, n, (0.0,), (self.t_end,), seed)[:, 0]
            x = torch.where(torch.arange(n) % 2 == 0, -1.0, 1.0).to(torch.float64)
            return torch.stack([x, t, x * torch.cos(t)], dim=1)
        if term == "initial":
            x = sample_box(method, n, (-1.0,), (1.0,), seed)[:, 0]
            zero = torch.zeros_like(x)
            return torch.stack([x, zero, x, zero], dim=1)
        raise KeyError(term)

    def residual(self, x: torch.Tensor, jet: Jet) -> torch.Tensor:
        u = jet.u
        f = klein_gordon_forcing(x[:, 0], x[:, 1])
        out = jet.combined[0] - f
        if self.beta:
            out = out + self.beta * u
        return out + self.gamma * u * u

    def misfit(self, term: str, rows: torch.Tensor, second_order: bool = False) -> torch.Tensor:
        if term != "initial":
            return super().misfit(term, rows, second_order)
        x = rows[:, :2]
        fn = mlp_jet if self.use_jet and not second_order else autograd_jet
        jet = fn(self.model, x, (1,), ())
        return torch.stack([jet.u - rows[:, 2], jet.first[1] - rows[:, 3]], dim=1)

    grid_shape = (201, 201)

    def evaluation_grid(self) -> tuple[np.ndarray, np.ndarray]:
        xx, tt = np.meshgrid(np.linspace(-1.0, 1.0, 201), np.linspace(0.0, self.t_end, 201), indexing="ij")
        points = np.stack([xx.reshape(-1), tt.reshape(-1)], axis=1)
        return points, klein_gordon_reference(points[:, 0], points[:, 1])
