"""Nonlinear multilevel minimisation: levels, transfers, coherent coarse models, sample hierarchies.

The pieces the ``multilevel`` solver (:mod:`ddnn.solvers.multilevel`) composes:

* :class:`~ddnn.multilevel.subsets.SubsetSource` — a coarse level's samples: a
  seeded, nested subset of the fine batch (redrawn every cycle or step, grown
  on demand);
* :class:`~ddnn.multilevel.model.CoarseModel` — the first-order coherent
  coarse model h(θ) = L(θ) + ⟨δg, θ − θ₀⟩, δg = R ∇h_fine − ∇L(θ₀), written once;
* :mod:`~ddnn.multilevel.transfer` — prolongation I, restriction R = Iᵀ and
  projection P between levels (identity for sample hierarchies, interpolation
  of residual blocks in depth for ResNets).
"""

from ddnn.multilevel.model import CoarseModel
from ddnn.multilevel.subsets import SubsetSource
from ddnn.multilevel.transfer import DepthTransfer, IdentityTransfer, Transfer

__all__ = ["CoarseModel", "SubsetSource", "Transfer", "IdentityTransfer", "DepthTransfer"]
