"""Transfer operators between the parameter spaces of two levels.

A transfer links a coarse level to the next finer one: prolongation
I: coarse → fine (a correction found on the coarse level, taken to the fine
one), restriction R = Iᵀ: fine → coarse (of gradients), and projection
P: fine → coarse (of iterates; P I = identity). Sample hierarchies share
one parameter space (all three are the identity); ResNet depth hierarchies
interpolate residual blocks in depth.

References
----------
S. G. Nash, A multigrid approach to discretized optimization problems,
Optim. Methods Softw. 14 (2000) 99–116.
S. Gratton, A. Sartenaer, Ph. L. Toint, Recursive trust-region methods for
multiscale nonlinear optimization, SIAM J. Optim. 19 (2008) 414–444.
"""

from __future__ import annotations

import torch

__all__ = ["Transfer", "IdentityTransfer"]


class Transfer:
    """Prolongation, restriction (its transpose) and projection between two levels."""

    def prolong(self, coarse: torch.Tensor) -> torch.Tensor:
        """I x: a coarse vector (a correction) on the fine level."""
        raise NotImplementedError

    def restrict(self, fine: torch.Tensor) -> torch.Tensor:
        """R g = Iᵀ g: a fine vector (a gradient) on the coarse level."""
        raise NotImplementedError

    def project(self, fine: torch.Tensor) -> torch.Tensor:
        """P θ: a fine iterate on the coarse level."""
        raise NotImplementedError


class IdentityTransfer(Transfer):
    """Both levels have the same parameters (sample hierarchies): I = R = P = identity."""

    def prolong(self, coarse: torch.Tensor) -> torch.Tensor:
        return coarse.clone()

    def restrict(self, fine: torch.Tensor) -> torch.Tensor:
        return fine.clone()

    def project(self, fine: torch.Tensor) -> torch.Tensor:
        return fine.clone()
