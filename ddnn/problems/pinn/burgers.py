"""Viscous Burgers equation, the benchmark of Raissi et al. (2019) and of the seed."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ddnn.problems.pinn.base import PINNProblem, TimeDependentPINNOptions
from ddnn.problems.pinn.derivatives import Jet
from ddnn.problems.pinn.references import BURGERS_NU, burgers_reference
from ddnn.problems.pinn.sampling import sample_box
from ddnn.registry import register

__all__ = ["BurgersOptions", "Burgers"]


@dataclass(frozen=True)
class BurgersOptions(TimeDependentPINNOptions):
    """Options of the Burgers PINN (the common PINN options)."""


@register("problem", "burgers", BurgersOptions)
class Burgers(PINNProblem):
    """Burgers PINN: u_t + u u_x − (0.01/π) u_xx = 0 on x ∈ [−1, 1], t ∈ [0, 1].

    Initial condition u(0, x) = −sin(πx), boundary condition u(t, ±1) = 0.
    Network input columns ``(x, t)``. Loss terms: ``interior`` rows
    ``(x, t)``; ``boundary`` rows ``(x, t, 0)`` alternating between x = −1
    and x = 1; ``initial`` rows ``(x, 0, −sin πx)``. The error is measured on
    the standard data set grid x = linspace(−1, 1, 256) × t = linspace(0,
    0.99, 100) against the Cole–Hopf solution
    (:func:`~ddnn.problems.pinn.references.burgers_reference`).

    References
    ----------
    M. Raissi, P. Perdikaris, G. E. Karniadakis, "Physics-informed neural
    networks", J. Comput. Phys. 378 (2019) 686-707, section 3.1.1 (the same
    problem and network, 8 hidden layers of 20 tanh neurons).
    A. Kopaničáková, H. Kothari, G. E. Karniadakis, R. Krause, "Enhancing
    training of physics-informed neural networks using domain-decomposition
    based preconditioning strategies", SIAM J. Sci. Comput. (2024) (L-BFGS,
    ASPQN and MSPQN on this problem).
    """

    default_model = {"name": "mlp", "width": 20, "depth": 8, "activation": "tanh"}
    first = (0, 1)
    second = (0,)
    terms = ("interior", "boundary", "initial")
    nu = BURGERS_NU

    def draw(self, term: str, n: int, seed: int) -> torch.Tensor:
        method = self.options.sampling
        if term == "interior":
            return sample_box(method, n, (-1.0, 0.0), (1.0, 1.0), seed)
        if term == "boundary":
            t = sample_box(method, n, (0.0,), (1.0,), seed)[:, 0]
            x = torch.where(torch.arange(n) % 2 == 0, -1.0, 1.0).to(torch.float64)
            return torch.stack([x, t, torch.zeros_like(t)], dim=1)
        if term == "initial":
            x = sample_box(method, n, (-1.0,), (1.0,), seed)[:, 0]
            return torch.stack([x, torch.zeros_like(x), -torch.sin(math.pi * x)], dim=1)
        raise KeyError(term)

    def residual(self, x: torch.Tensor, jet: Jet) -> torch.Tensor:
        return jet.first[1] + jet.u * jet.first[0] - self.nu * jet.second[0]

    grid_shape = (256, 100)

    def evaluation_grid(self) -> tuple[np.ndarray, np.ndarray]:
        xx, tt = np.meshgrid(np.linspace(-1.0, 1.0, 256), np.linspace(0.0, 0.99, 100), indexing="ij")
        points = np.stack([xx.reshape(-1), tt.reshape(-1)], axis=1)
        return points, burgers_reference(points[:, 0], points[:, 1], self.nu)
