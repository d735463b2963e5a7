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


def split_layers(n_layers: int, n_blocks: int, sizes: list[int] | None = None) -> list[list[int]]:
    """Consecutive groups of layer indices: of near-equal counts, or of near-equal total ``sizes``.

    Without ``sizes`` earlier groups take the remainder. With ``sizes`` (the
    parameters of every layer) the groups minimise the largest group's size
    (a contiguous partition by binary search on that bound), every group
    keeping at least one layer.
    """
    if not 1 <= n_blocks <= n_layers:
        raise ValueError(f"cannot split {n_layers} layers into {n_blocks} blocks")
    if sizes is not None:
        return _balanced_split(list(sizes), n_blocks)
    base, extra = divmod(n_layers, n_blocks)
    groups, first = [], 0
    for s in range(n_blocks):
        count = base + (1 if s < extra else 0)
        groups.append(list(range(first, first + count)))
        first += count
    return groups


def _balanced_split(sizes: list[int], n_blocks: int) -> list[list[int]]:
    """Contiguous groups of ``n_blocks`` minimising the largest sum of ``sizes``."""

    def groups_for(bound: int) -> list[list[int]] | None:
        groups: list[list[int]] = [[]]
        total = 0
        for i, size in enumerate(sizes):
            # start a new group when this one would overflow, or when the layers left are just enough
            left = len(sizes) - i
            if groups[-1] and (total + size > bound or left == n_blocks - len(groups)):
                groups.append([])
                total = 0
            groups[-1].append(i)
            total += size
            if total > bound:
                return None
        return groups if len(groups) == n_blocks else None

    low, high = max(sizes), sum(sizes)
    while low < high:
        mid = (low + high) // 2
        if groups_for(mid) is not None:
            high = mid
        else:
            low = mid + 1
    return groups_for(low)


class LayerDecomposition(Decomposition):
    """S blocks of consecutive layers of a flat parameter vector.

    Parameters
    ----------
    layer_bounds : flat ``(start, stop)`` of every layer, in order and contiguous
    groups : the layer indices of every block (consecutive, covering every layer)
    overlap : whole layers added on each side of every block
    data_chunk : ``(part, parts)``: local problems see only chunk ``part`` of
        ``parts`` of every batch (the inexact, stochastic variant of APTS in
        weights, Cruz Alegría et al. 2025): no communication in local solves,
        and a first-order consistency term makes the block gradient at the
        outer iterate the restricted batch gradient

    Raises
    ------
    ValueError when a group is empty or not consecutive, or a layer is in no block.
    """

    kind = "layers"

    def __init__(
        self,
        layer_bounds: list[tuple[int, int]],
        groups: list[list[int]],
        overlap: int = 0,
        data_chunk: tuple[int, int] | None = None,
    ):
        self.data_chunk = data_chunk
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
        """L as a function of block s, the other blocks held fixed (:class:`~ddnn.solvers.objective.BlockObjective`).

        With ``data_chunk`` the block loss of this rank's chunk of the batch,
        shifted by :meth:`begin` (a ``ShiftedObjective``).
        """
        b = self.blocks[s]
        if self.data_chunk is None:
            return objective.restrict(b.start, b.stop)
        from ddnn.decomposition.samples import ChunkSource, SampleDecomposition
        from ddnn.solvers.objective import ShiftedObjective

        part, parts = self.data_chunk
        chunk = ChunkSource(objective.source, SampleDecomposition(parts), part)
        return ShiftedObjective(objective.on(chunk, None).restrict(b.start, b.stop))

    def begin(self, s: int, local: Any, theta: torch.Tensor, current: Any) -> torch.Tensor:
        """Hold the other blocks at θ; the local start is R_s θ.

        With ``data_chunk``: c = R_s ∇L(θ; batch) − ∇_s L(θ; chunk), one local
        gradient evaluation on the chunk.
        """
        start = self.restrict(theta, s)
        if self.data_chunk is None:
            local.set_base(theta)
            return start
        local.base.set_base(theta)
        chunk_grad = local.base.evaluate(start, grad=True).grad
        local.set_shift(self.restrict(current.grad, s) - chunk_grad, start)
        return start
