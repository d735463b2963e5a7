"""The subdomain protocol shared by weight-space and data-space decompositions.

A decomposition splits one optimisation problem into S local problems
(PETSc's nonlinear additive Schwarz speaks of the same transfer maps):

* ``restrict(θ, s)`` — R_s θ, the unknowns of local problem s (a slice of θ
  for a block of layers; all of θ for a chunk of samples);
* ``extend(y, s)`` — E_s y, local unknowns put back into a full vector;
* ``weights(s)`` — the diagonal D_s with which corrections are combined,
  Σ_s D_s E_s (θ_s* − R_s θ) (a partition of unity where layer blocks
  overlap; ones for sample chunks, whose corrections add up);
* ``blocks_of(rank, size)`` — ownership: the subdomains a rank solves;
* ``local_objective(objective, s)`` and ``begin(s, local, θ, current)`` — the
  local problem built from the global objective and set up at the outer
  iterate θ (the other blocks held at θ; or the chunk loss shifted to be
  first-order consistent at θ).

:class:`~ddnn.solvers.schwarz.Schwarz` uses only this protocol, so the same
additive and multiplicative iterations serve ASPQN/MSPQN (layers) and APTS
in data (samples) and in weights (layers).
"""

from __future__ import annotations

import abc
from typing import Any

import torch

__all__ = ["Decomposition"]


class Decomposition(abc.ABC):
    """S subdomains of one problem (see the module docstring)."""

    #: "layers" (weight space) or "samples" (data space)
    kind: str = ""

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def restrict(self, theta: torch.Tensor, s: int) -> torch.Tensor:
        """R_s θ, the local unknowns (a view)."""

    @abc.abstractmethod
    def extend(self, y: torch.Tensor, s: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """E_s y (added into ``out`` when given)."""

    @abc.abstractmethod
    def weights(self, s: int, like: torch.Tensor) -> torch.Tensor:
        """The combination weights D_s on the local unknowns."""

    def extend_weighted(self, y: torch.Tensor, s: int, out: torch.Tensor) -> torch.Tensor:
        """``out += D_s E_s y``."""
        return self.extend(self.weights(s, y) * y, s, out)

    @abc.abstractmethod
    def local_radius(self, radius: float, norm: str) -> float:
        """The radius of every local trust region such that the combined correction stays within ``radius``."""

    def blocks_of(self, rank: int, size: int) -> list[int]:
        """Subdomains solved by ``rank`` (round-robin; several per rank when S > size)."""
        return [s for s in range(len(self)) if s % size == rank]

    @abc.abstractmethod
    def local_objective(self, objective: Any, s: int) -> Any:
        """The loss of local problem s, built from ``objective`` (already on the subdomain's communicator)."""

    @abc.abstractmethod
    def begin(self, s: int, local: Any, theta: torch.Tensor, current: Any) -> torch.Tensor:
        """Set ``local`` (the objective of subdomain s) up at the outer iterate θ; return the local start.

        ``current`` holds L and ∇L at θ.

        *Collective* over the local objective's communicator when it evaluates.
        """
