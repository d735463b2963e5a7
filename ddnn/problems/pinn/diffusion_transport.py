"""Stationary diffusion–transport (convection–diffusion) with boundary layers, as in the seed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ddnn.problems.pinn.base import PINNOptions, PINNProblem
from ddnn.problems.pinn.derivatives import Jet
from ddnn.problems.pinn.references import diffusion_transport_reference
from ddnn.problems.pinn.sampling import sample_box
from ddnn.registry import register

__all__ = ["DiffusionTransportOptions", "DiffusionTransport"]


@dataclass(frozen=True)
class DiffusionTransportOptions(PINNOptions):
    """Options of the diffusion–transport PINN (the common PINN options, no initial term)."""


@register("problem", "diffusion_transport", DiffusionTransportOptions)
class DiffusionTransport(PINNProblem):
    """Diffusion–transport PINN: −μΔu + b·∇u = 1 on (0, 1)², u = 0 on ∂Ω, μ = 10⁻², b = (1, 1).

    The solution has boundary layers of width ~μ along x₁ = 1 and x₂ = 1.
    Network input columns ``(x1, x2)``. Loss terms: ``interior`` rows
    ``(x1, x2)``; ``boundary`` rows ``(x1, x2, 0)`` on the four sides (a
    sampled arc length along the perimeter). The error is measured on a
    201 × 201 grid of [0, 1]² (boundary included) against a Chebyshev
    collocation solution
    (:class:`~ddnn.problems.pinn.references.DiffusionTransportReference`).

    References
    ----------
    M. Raissi, P. Perdikaris, G. E. Karniadakis, "Physics-informed neural
    networks", J. Comput. Phys. 378 (2019) 686-707.
    A. Kopaničáková, H. Kothari, G. E. Karniadakis, R. Krause, "Enhancing
    training of physics-informed neural networks using domain-decomposition
    based preconditioning strategies", SIAM J. Sci. Comput. (2024) (this
    problem, 10 hidden layers of 50 neurons).
    """

    default_model = {"name": "mlp", "width": 50, "depth": 10, "activation": "tanh"}
    mu = 1e-2
    b = (1.0, 1.0)
    first = (0, 1)
    # −μΔu as one combined second-order row of the jet
    combined = ({0: -mu, 1: -mu},)
    terms = ("interior", "boundary")

    def draw(self, term: str, n: int, seed: int) -> torch.Tensor:
        method = self.options.sampling
        if term == "interior":
            return sample_box(method, n, (0.0, 0.0), (1.0, 1.0), seed)
        if term == "boundary":
            # arc length s ∈ [0, 4) along the perimeter, counter-clockwise from the origin
            s = sample_box(method, n, (0.0,), (4.0,), seed)[:, 0]
            side = s.floor().clamp(max=3.0)
            p = s - side
            one, zero = torch.ones_like(p), torch.zeros_like(p)
            x1 = torch.where(side == 0, p, torch.where(side == 1, one, torch.where(side == 2, 1.0 - p, zero)))
            x2 = torch.where(side == 0, zero, torch.where(side == 1, p, torch.where(side == 2, one, 1.0 - p)))
            return torch.stack([x1, x2, zero], dim=1)
        raise KeyError(term)

    def residual(self, x: torch.Tensor, jet: Jet) -> torch.Tensor:
        return jet.combined[0] + self.b[0] * jet.first[0] + self.b[1] * jet.first[1] - 1.0

    grid_shape = (201, 201)
    input_names = ("x1", "x2")

    def evaluation_grid(self) -> tuple[np.ndarray, np.ndarray]:
        s = np.linspace(0.0, 1.0, 201)
        reference = diffusion_transport_reference(mu=self.mu, b=self.b)
        xx, yy = np.meshgrid(s, s, indexing="ij")
        points = np.stack([xx.reshape(-1), yy.reshape(-1)], axis=1)
        return points, reference.grid(s, s).reshape(-1)
