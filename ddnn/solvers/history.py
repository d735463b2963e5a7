"""Limited-memory quasi-Newton history: the last m secant pairs and their Gram matrices.

:class:`LBFGSHistory` keeps the secant pairs (sᵢ, yᵢ), sᵢ = θᵢ₊₁ − θᵢ,
yᵢ = ∇L(θᵢ₊₁) − ∇L(θᵢ), as two stacked tensors ``S`` and ``Y`` of shape
``(memory, n)`` used as a ring buffer, and applies the L-BFGS inverse
``H g`` (two-loop recursion) and the direct matrix ``B v`` (compact
representation) without forming any n × n matrix.

Every vector operation on the stored pairs is a single matrix-vector product
with the stacked buffer ``W = [S; Y]`` (2m × n): the inner products
sᵢᵀsⱼ, sᵢᵀyⱼ, yᵢᵀyⱼ are kept in small Gram matrices updated when a pair
is pushed, so that the two-loop recursion runs on m-vectors of coefficients
("vector-free" L-BFGS, Chen, Wang, Zhou, Gao 2014) and costs two passes
over ``W`` instead of 4m vector operations. The Gram matrices and the
coefficient recursions live on the host in float64.

References
----------
J. Nocedal, S. J. Wright, *Numerical Optimization*, 2nd ed., Springer 2006:
Alg. 7.4 (two-loop recursion), eq. 7.20 (scaling of the initial matrix),
eq. 6.17/6.19 (BFGS updates).

R. H. Byrd, J. Nocedal, R. B. Schnabel, Representations of quasi-Newton
matrices and their use in limited memory methods, *Math. Program.* 63 (1994),
Theorem 2.3, eq. (2.17) (compact representation of B).

W. Chen, Z. Wang, J. Zhou, Large-scale L-BFGS using MapReduce, *NeurIPS* 2014
(two-loop recursion on inner products of the stored vectors).
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["LBFGSHistory"]

# Indices of the three Gram matrices in ``LBFGSHistory._gram``.
_SS, _SY, _YY = 0, 1, 2


class LBFGSHistory:
    """The last ``memory`` secant pairs of an L-BFGS method.

    Parameters
    ----------
    memory : number of pairs kept (m); the oldest is overwritten first
    n : length of the parameter vector
    device, dtype : where the pairs live (those of θ)

    Attributes
    ----------
    S, Y : views ``(memory, n)`` of the stacked ring buffer; slot ``i`` holds
        one pair; only the ``count`` slots ending just before ``head``
        (cyclically) are in use
    rho : float64 host tensor ``(memory,)``, ρᵢ = 1 / (yᵢᵀsᵢ) of every slot (a copy)
    count : number of pairs stored (≤ memory)
    head : the slot the next pair goes to
    last_products : (sᵀs, sᵀy, yᵀy) of the last pair offered to :meth:`push`, stored or not
    """

    def __init__(self, memory: int, n: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        if memory < 1:
            raise ValueError(f"memory must be at least 1, got {memory}")
        self.memory = int(memory)
        self.n = int(n)
        self._w = torch.zeros(2, self.memory, self.n, device=device, dtype=dtype)
        self.S = self._w[0]
        self.Y = self._w[1]
        # _gram[_SS][i, j] = sᵢᵀsⱼ, _gram[_SY][i, j] = sᵢᵀyⱼ, _gram[_YY][i, j] = yᵢᵀyⱼ (slot indices);
        # host-side float64 NumPy arrays, because they are updated and read entry by entry.
        self._gram = np.zeros((3, self.memory, self.memory))
        self._rho = np.zeros(self.memory)
        self.count = 0
        self.head = 0
        self.last_products: tuple[float, float, float] | None = None  # sᵀs, sᵀy, yᵀy of the last push

    # -- bookkeeping ------------------------------------------------------
    def __len__(self) -> int:
        return self.count

    @property
    def rho(self) -> torch.Tensor:
        return torch.from_numpy(self._rho.copy())

    @property
    def stacked(self) -> torch.Tensor:
        """``[S; Y]`` as one ``(2 memory, n)`` matrix (a view)."""
        return self._w.view(2 * self.memory, self.n)

    def order(self) -> list[int]:
        """Slots in use, oldest pair first."""
        m = self.memory
        return [(self.head - self.count + i) % m for i in range(self.count)]

    def reset(self) -> None:
        """Forget every pair (H becomes the identity)."""
        self.count = 0
        self.head = 0

    def scaling(self) -> float:
        """γ = sᵀy / yᵀy of the newest pair (H⁰ = γI, N&W eq. 7.20); 1 when empty."""
        if self.count == 0:
            return 1.0
        k = (self.head - 1) % self.memory
        return float(self._gram[_SY, k, k] / self._gram[_YY, k, k])

    # -- update -----------------------------------------------------------
    def push(self, s: torch.Tensor, y: torch.Tensor, eps: float = 1e-8) -> bool:
        """Store the pair (s, y) unless its curvature is too small.

        The pair is skipped when yᵀs ≤ eps ‖s‖ ‖y‖ (or any of these is not
        finite), which keeps every stored pair positive-definite and H
        symmetric positive definite (N&W §6.1, "skipping" strategy).

        Parameters
        ----------
        s, y : step and gradient change, length ``n`` (copied)
        eps : relative curvature threshold

        Returns
        -------
        True when the pair was stored.
        """
        pair = torch.stack((s.reshape(-1), y.reshape(-1)))
        # One transfer: row 0 = sᵀ[S; Y] then sᵀs, sᵀy; row 1 = yᵀ[S; Y] then yᵀs, yᵀy.
        products = torch.cat((pair @ self.stacked.T, pair @ pair.T), 1).to(device="cpu", dtype=torch.float64).numpy()
        m = self.memory
        (ss, sy), (_, yy) = products[:, 2 * m :].tolist()
        self.last_products = (ss, sy, yy)
        if not (math.isfinite(ss) and math.isfinite(sy) and math.isfinite(yy)):
            return False
        if sy <= eps * math.sqrt(ss * yy) or sy <= 0.0:
            return False
        h = self.head
        self._w[:, h].copy_(pair)
        g = self._gram
        g[_SS, h, :] = g[_SS, :, h] = products[0, :m]  # sᵀsⱼ
        g[_SY, h, :] = products[0, m : 2 * m]  # sᵀyⱼ (row h: s_hᵀyⱼ)
        g[_SY, :, h] = products[1, :m]  # sᵢᵀy (column h)
        g[_YY, h, :] = g[_YY, :, h] = products[1, m : 2 * m]  # yᵀyⱼ
        g[_SS, h, h], g[_SY, h, h], g[_YY, h, h] = ss, sy, yy  # slot h held the old pair above
        self._rho[h] = 1.0 / sy
        self.head = (h + 1) % m
        self.count = min(self.count + 1, m)
        return True

    # -- products ---------------------------------------------------------
    def _combine(self, base: torch.Tensor, beta: float, coef: list[float]) -> torch.Tensor:
        """beta · base + Σ coefᵢ Wᵢ over the rows of ``[S; Y]``."""
        c = torch.tensor(coef, dtype=base.dtype).to(base.device)
        return torch.addmv(base, self.stacked.T, c, beta=beta)

    def apply_inverse(self, g: torch.Tensor) -> torch.Tensor:
        """H g, the L-BFGS inverse Hessian approximation applied to ``g``.

        Two-loop recursion (N&W Alg. 7.4) with H⁰ = γI, γ = sᵀy / yᵀy of the
        newest pair (N&W eq. 7.20), H⁰ = I when the history is empty. The
        recursion runs on coefficients: with q = g − Σⱼ aⱼ yⱼ (j newer than i),

            aᵢ = ρᵢ (sᵢᵀg − Σ_{j newer} aⱼ sᵢᵀyⱼ),                  newest to oldest,
            bᵢ = ρᵢ (γ (yᵢᵀg − Σⱼ aⱼ yᵢᵀyⱼ) + Σ_{l older} cₗ sₗᵀyᵢ),   oldest to newest,
            cᵢ = aᵢ − bᵢ,

        and H g = γ g − γ Σ aⱼ yⱼ + Σ cᵢ sᵢ: one product with ``[S; Y]`` for
        the inner products and one for the combination.

        Returns a new tensor.
        """
        if self.count == 0:
            return g.clone()
        m = self.memory
        proj = (self.stacked @ g).tolist()  # sᵢᵀg (first m), yᵢᵀg (last m)
        sy = self._gram[_SY].tolist()
        yy = self._gram[_YY].tolist()
        rho = self._rho.tolist()
        order = self.order()
        a = [0.0] * m
        done: list[int] = []
        for i in reversed(order):
            a[i] = rho[i] * (proj[i] - sum(a[j] * sy[i][j] for j in done))
            done.append(i)
        k = order[-1]
        gamma = sy[k][k] / yy[k][k]
        c = [0.0] * m
        done = []
        for i in order:
            yr = gamma * (proj[m + i] - sum(a[j] * yy[i][j] for j in order))
            yr += sum(c[j] * sy[j][i] for j in done)
            c[i] = a[i] - rho[i] * yr
            done.append(i)
        return self._combine(g, gamma, c + [-gamma * aj for aj in a])

    def apply_direct(self, v: torch.Tensor) -> torch.Tensor:
        """B v, the L-BFGS Hessian approximation (the inverse of H) applied to ``v``.

        Compact representation (Byrd, Nocedal, Schnabel 1994, eq. 2.17) with
        B⁰ = σI, σ = yᵀy / sᵀy of the newest pair (σ = 1/γ, so that B = H⁻¹):

            B = σI − [σS  Y] M⁻¹ [σSᵀ; Yᵀ],   M = [[σ SᵀS, L], [Lᵀ, −D]],

        with S, Y holding the pairs as columns oldest first, L the strictly
        lower triangular part of SᵀY (Lᵢⱼ = sᵢᵀyⱼ, i > j) and D = diag(sᵢᵀyᵢ).
        B = I when the history is empty. Returns a new tensor.
        """
        if self.count == 0:
            return v.clone()
        m = self.memory
        idx = np.array(self.order())
        k = len(idx)
        ss = self._gram[_SS][np.ix_(idx, idx)]
        sy = self._gram[_SY][np.ix_(idx, idx)]
        sigma = float(self._gram[_YY, idx[-1], idx[-1]] / sy[-1, -1])
        lower = np.tril(sy, -1)
        middle = np.block([[sigma * ss, lower], [lower.T, -np.diag(np.diag(sy))]])
        proj = (self.stacked @ v).to(device="cpu", dtype=torch.float64).numpy()
        rhs = np.concatenate((sigma * proj[:m][idx], proj[m:][idx]))
        z = np.linalg.solve(middle, rhs)
        coef = np.zeros(2 * m)
        coef[idx] = -sigma * z[:k]
        coef[m + idx] = -z[k:]
        return self._combine(v, sigma, coef.tolist())

    # -- state ------------------------------------------------------------
    def state_dict(self) -> dict:
        """The pairs, Gram matrices, ρ and ring position (tensors and ints)."""
        return {
            "S": self.S.clone(),
            "Y": self.Y.clone(),
            "gram": torch.from_numpy(self._gram.copy()),
            "rho": torch.from_numpy(self._rho.copy()),
            "count": self.count,
            "head": self.head,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`; products afterwards are bit for bit those of the saved history."""
        if tuple(state["S"].shape) != (self.memory, self.n):
            raise ValueError(f"history of shape {tuple(state['S'].shape)}, expected {(self.memory, self.n)}")
        self.S.copy_(state["S"])
        self.Y.copy_(state["Y"])
        self._gram[...] = torch.as_tensor(state["gram"], dtype=torch.float64).cpu().numpy()
        self._rho[...] = torch.as_tensor(state["rho"], dtype=torch.float64).cpu().numpy()
        self.count = int(state["count"])
        self.head = int(state["head"])
