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

__all__ = ["Transfer", "IdentityTransfer", "DepthTransfer"]


class Transfer:
    """Prolongation, restriction (its transpose) and projection between two levels.

    ``gain`` bounds ‖I x‖ / ‖x‖ (2-norm): a coarse step of length Δ / gain
    prolongs to a fine step no longer than Δ (RMTR's ‖I s‖ ≤ Δ).
    """

    gain: float = 1.0

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


class DepthTransfer(Transfer):
    """Between a ResNet of N_c residual blocks and one of N_f = 2 N_c (the next finer level in depth).

    Parameters
    ----------
    coarse_span, fine_span : ``(offset, parameters per block, blocks)`` of both networks
        (:meth:`ddnn.models.resnet.ResNet.block_span`); the layers before and
        after the blocks are the same in both and are copied
    mode : ``copy`` (fine blocks 2j and 2j+1 take coarse block j: piecewise
        constant in time) or ``linear`` (fine block 2j+1 takes the mean of
        coarse blocks j and j+1: linear in time)
    projection : ``average`` (θ_c = (IᵀI)⁻¹ Iᵀ θ_f, so that P I = identity) or
        ``injection`` (coarse block j takes fine block 2j)

    Notes
    -----
    The step h multiplies σ(W x + b) in the forward pass, so the block
    parameters do not scale with h: a fine network built by ``copy`` takes
    two steps of h/2 where the coarse one takes one step of h with the same
    W, and both discretise the same dynamics — they agree to O(h).
    Restriction is the transpose, R = Iᵀ (full weighting: a coarse block
    gathers its fine blocks' gradients).
    """

    def __init__(
        self,
        coarse_span: tuple[int, int, int],
        fine_span: tuple[int, int, int],
        n_coarse: int,
        n_fine: int,
        mode: str = "copy",
        projection: str = "average",
    ):
        (c_off, c_per, c_blocks), (f_off, f_per, f_blocks) = coarse_span, fine_span
        if c_off != f_off or c_per != f_per or f_blocks != 2 * c_blocks:
            raise ValueError(f"a depth transfer needs twice the blocks, got {c_blocks} -> {f_blocks}")
        if n_coarse - c_off - c_blocks * c_per != n_fine - f_off - f_blocks * f_per:
            raise ValueError("the layers after the blocks differ between the two networks")
        self.offset, self.per, self.nc = c_off, c_per, c_blocks
        self.n_coarse, self.n_fine = n_coarse, n_fine
        matrix = torch.zeros(2 * c_blocks, c_blocks, dtype=torch.float64)
        for j in range(c_blocks):
            matrix[2 * j, j] = 1.0
            if mode == "copy" or j == c_blocks - 1:
                matrix[2 * j + 1, j] = 1.0
            else:
                matrix[2 * j + 1, j] = matrix[2 * j + 1, j + 1] = 0.5
        self.matrix = matrix  # I on the block index: fine = matrix @ coarse
        self.gain = max(1.0, float(torch.linalg.matrix_norm(matrix, ord=2)))
        if projection == "average":
            self.projector = torch.linalg.solve(matrix.T @ matrix, matrix.T)
        else:
            self.projector = torch.zeros(c_blocks, 2 * c_blocks, dtype=torch.float64)
            self.projector[torch.arange(c_blocks), 2 * torch.arange(c_blocks)] = 1.0

    def _apply(self, x: torch.Tensor, matrix: torch.Tensor, size_out: int, blocks_in: int) -> torch.Tensor:
        out = x.new_empty(size_out)
        head, per = self.offset, self.per
        tail_in = head + blocks_in * per
        tail_out = head + matrix.shape[0] * per
        out[:head] = x[:head]
        blocks = x[head:tail_in].view(blocks_in, per)
        out[head:tail_out] = (matrix.to(x) @ blocks).reshape(-1)
        out[tail_out:] = x[tail_in:]
        return out

    def prolong(self, coarse: torch.Tensor) -> torch.Tensor:
        return self._apply(coarse, self.matrix, self.n_fine, self.nc)

    def restrict(self, fine: torch.Tensor) -> torch.Tensor:
        return self._apply(fine, self.matrix.T, self.n_coarse, 2 * self.nc)

    def project(self, fine: torch.Tensor) -> torch.Tensor:
        return self._apply(fine, self.projector, self.n_coarse, 2 * self.nc)
