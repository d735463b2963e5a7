"""Subdomains in weight space: blocks of consecutive layers.

A network's flat parameter vector θ ∈ Rⁿ is the concatenation of its layers'
parameters (:meth:`ddnn.flat.FlatParams.layer_bounds`). Subdomain s owns the
consecutive layers ``layers[s]``, i.e. the slice ``[start_s, stop_s)`` of θ:

* restriction  R_s θ = θ[start_s:stop_s]  (a view, no copy),
* extension    E_s y  = y placed at ``[start_s, stop_s)``, zeros elsewhere.

With overlap (whole layers shared by neighbouring blocks), the additive
combination averages by a partition of unity: Σ_s D_s E_s y_s with diagonal
weights D_s = 1 / (number of blocks holding the entry) on the block, so that
Σ_s D_s E_s R_s = I (Dolean, Jolivet, Nataf, *An Introduction to Domain
Decomposition Methods*, SIAM 2015, §1.3; Kopaničáková et al., SISC 2024, §3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ddnn.decomposition.base import Decomposition

__all__ = ["LayerBlock", "LayerDecomposition", "split_layers"]


@dataclass(frozen=True)
class LayerBlock:
    """One subdomain: layers ``first..last`` (inclusive) = flat slice ``[start, stop)``."""

    index: int
    first: int
    last: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


def split_layers(n_layers: int, n_blocks: int) -> list[list[int]]:
    """Consecutive, near-equal groups of layer indices (earlier groups take the remainder)."""
    if not 1 <= n_blocks <= n_layers:
        raise ValueError(f"cannot split {n_layers} layers into {n_blocks} blocks")
    base, extra = divmod(n_layers, n_blocks)
    groups, first = [], 0
    for s in range(n_blocks):
        count = base + (1 if s < extra else 0)
        groups.append(list(range(first, first + count)))
        first += count
    return groups


class LayerDecomposition(Decomposition):
    """S blocks of consecutive layers of a flat parameter vector.

    Parameters
    ----------
    layer_bounds : flat ``(start, stop)`` of every layer, in order and contiguous
    groups : the layer indices of every block (consecutive, covering every layer)
    overlap : whole layers added on each side of every block

    Raises
    ------
    ValueError when a group is empty or not consecutive, or a layer is in no block.
    """

    kind = "layers"

    def __init__(self, layer_bounds: list[tuple[int, int]], groups: list[list[int]], overlap: int = 0):
        n_layers = len(layer_bounds)
        self.layer_bounds = list(layer_bounds)
        self.n = layer_bounds[-1][1] if layer_bounds else 0
        covered = set()
        blocks = []
        for s, group in enumerate(groups):
            if not group:
                raise ValueError(f"block {s} has no layers")
            if list(group) != list(range(group[0], group[-1] + 1)):
                raise ValueError(f"block {s}: layers {group} are not consecutive")
            if group[0] < 0 or group[-1] >= n_layers:
                raise ValueError(f"block {s}: layers {group} outside 0..{n_layers - 1}")
            first = max(0, group[0] - overlap)
            last = min(n_layers - 1, group[-1] + overlap)
            covered.update(range(first, last + 1))
            blocks.append(LayerBlock(s, first, last, layer_bounds[first][0], layer_bounds[last][1]))
        missing = sorted(set(range(n_layers)) - covered)
        if missing:
            raise ValueError(f"layers {missing} belong to no block")
        self.blocks: tuple[LayerBlock, ...] = tuple(blocks)
        multiplicity = torch.zeros(self.n, dtype=torch.float64)
        for b in self.blocks:
            multiplicity[b.start : b.stop] += 1
        self.multiplicity = multiplicity
        self.overlapping = bool((multiplicity > 1).any())

    @classmethod
    def even(cls, layer_bounds: list[tuple[int, int]], n_blocks: int, overlap: int = 0) -> LayerDecomposition:
        """``n_blocks`` near-equal groups of consecutive layers."""
        return cls(layer_bounds, split_layers(len(layer_bounds), n_blocks), overlap)

    def __len__(self) -> int:
        return len(self.blocks)

    def restrict(self, theta: torch.Tensor, s: int) -> torch.Tensor:
        """R_s θ: the block's slice (a view)."""
        b = self.blocks[s]
        return theta[b.start : b.stop]

    def extend(self, y: torch.Tensor, s: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """E_s y: ``y`` in the block's slice of a zero vector (added into ``out`` when given)."""
        b = self.blocks[s]
        if out is None:
            out = torch.zeros(self.n, dtype=y.dtype, device=y.device)
        out[b.start : b.stop] += y
        return out

    def weights(self, s: int, like: torch.Tensor) -> torch.Tensor:
        """Partition-of-unity weights D_s on the block's slice (ones without overlap)."""
        b = self.blocks[s]
        return (1.0 / self.multiplicity[b.start : b.stop]).to(dtype=like.dtype, device=like.device)

    def extend_weighted(self, y: torch.Tensor, s: int, out: torch.Tensor) -> torch.Tensor:
        """``out += D_s E_s y``: the additive combination, averaged where blocks overlap."""
        b = self.blocks[s]
        if self.overlapping:
            out[b.start : b.stop] += self.weights(s, y) * y
        else:
            out[b.start : b.stop] += y
        return out

    def local_radius(self, radius: float, norm: str) -> float:
        """Δ in the ∞-norm (disjoint blocks, or averaged where they overlap); Δ/√S in the 2-norm.

        With weights D_s ≥ 0 summing to one, |Σ_s D_s E_s s_s|_i ≤ max_s |s_s,i|, so the
        combined correction has ∞-norm ≤ Δ and 2-norm² ≤ Σ_s ‖s_s‖² ≤ S (Δ/√S)².
        """
        return radius if norm == "inf" else radius / math.sqrt(len(self.blocks))

    def local_objective(self, objective: Any, s: int) -> Any:
        """L as a function of block s, the other blocks held fixed (:class:`~ddnn.solvers.objective.BlockObjective`)."""
        b = self.blocks[s]
        return objective.restrict(b.start, b.stop)

    def begin(self, s: int, local: Any, theta: torch.Tensor, current: Any) -> torch.Tensor:
        """Hold the other blocks at θ; the local start is R_s θ. No evaluation."""
        local.set_base(theta)
        return self.restrict(theta, s)
