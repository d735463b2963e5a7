"""Limited-memory SR1: the last m secant pairs and the compact form of the SR1 matrix.

:class:`LSR1History` keeps the secant pairs (sᵢ, yᵢ) in a ring buffer (as
:class:`~ddnn.solvers.history.LBFGSHistory` does) and represents the L-SR1
matrix in compact form (Byrd, Nocedal, Schnabel 1994, Theorem 5.1; Nocedal &
Wright 2006, eq. 7.29)::

    B = γI + Ψ M Ψᵀ,   Ψ = Y − γS,   M = N⁻¹,   N = D + L + Lᵀ − γ SᵀS,

S, Y holding the pairs as columns, oldest first, L the strictly lower
triangular part of SᵀY and D = diag(sᵢᵀyᵢ). This B is the result of the SR1
updates (N&W eq. 6.24)

    B ← B + (y − Bs)(y − Bs)ᵀ / ((y − Bs)ᵀs)

applied pair by pair, oldest first, from B⁰ = γI; the pivots of the LDLᵀ
factorisation of N (no pivoting) are exactly the denominators (y − Bs)ᵀs of
these updates, so N is nonsingular exactly when every update is defined. B
may be indefinite; a trust region handles that (the subproblem solvers of
:mod:`ddnn.solvers.subproblem`, in particular ``obs``).

Only k × k quantities (Gram matrices, N and M) live on the host in float64;
the pairs stay on their device and dtype, and a product B v is two passes
over the stacked buffer ``[S; Y]``.

References
----------
R. H. Byrd, J. Nocedal, R. B. Schnabel, Representations of quasi-Newton
matrices and their use in limited memory methods, *Math. Program.* 63 (1994)
129–156, Theorem 5.1 (compact SR1).

J. Nocedal, S. J. Wright, *Numerical Optimization*, 2nd ed., Springer 2006:
eq. 6.24 (SR1 update), eq. 6.26 (skipping rule), eq. 7.29 (compact L-SR1).

J. J. Brust, J. B. Erway, R. F. Marcia, On solving L-SR1 trust-region
subproblems, *Comput. Optim. Appl.* 66 (2017) 245–266 (L-SR1 trust regions;
γ is the eigenvalue of B on the complement of range(Ψ), B may be indefinite).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import torch

from ddnn.solvers.quadratic_model import CompactForm

__all__ = ["LSR1History", "PairRule", "denominator_rule", "GAMMA_RULES"]

# Indices of the three Gram matrices in ``LSR1History._gram`` (as in LBFGSHistory).
_SS, _SY, _YY = 0, 1, 2

GAMMA_RULES = ("ratio", "fixed")

PairRule = Callable[[float, float, float], bool]
"""rule(sᵀr, ‖s‖, ‖r‖) -> accept, for the SR1 residual r = y − Bs of an offered pair."""


def denominator_rule(eps: float = 1e-8) -> PairRule:
    """The SR1 skipping rule of N&W eq. (6.26): accept when |sᵀr| ≥ eps ‖s‖ ‖r‖.

    r = y − Bs is the residual of the secant equation under the current B.
    Pairs with r = 0 pass this rule (the update would change nothing); they
    are refused by :class:`LSR1History`'s conditioning test instead.
    """

    return functools.partial(_denominator, eps=eps)  # picklable, unlike a local function


def _denominator(sr: float, s_norm: float, r_norm: float, eps: float) -> bool:
    return abs(sr) >= eps * s_norm * r_norm


class LSR1History:
    """The last ``memory`` secant pairs of a limited-memory SR1 method, B in compact form.

    Parameters
    ----------
    memory : number of pairs kept (m); the oldest is overwritten first
    n : length of the parameter vector
    device, dtype : where the pairs live (those of θ)
    gamma_rule : how γ in B⁰ = γI is chosen when a pair is stored:
        ``"ratio"`` (default): γ = max(yᵀy / sᵀy, ``gamma_min``) of the newest
        pair when sᵀy > 0, else the previous γ (``gamma0`` at first) — the
        usual scaling of the initial quasi-Newton matrix (the inverse of
        N&W eq. 6.20's H⁰ scaling, also L-BFGS's B⁰, see
        :func:`~ddnn.solvers.quadratic_model.lbfgs_compact`); by Cauchy–Schwarz
        yᵀy/sᵀy ≥ sᵀy/sᵀs, the curvature along s, so B⁰ overestimates the
        curvature and the SR1 corrections lower it (B may become indefinite);
        ``"fixed"``: γ = ``gamma0`` always.
    gamma0 : γ of the empty history (B = γ₀I) and of the ``"fixed"`` rule
    gamma_min : positive floor of γ under the ``"ratio"`` rule
    eps : threshold of the default pair rule, :func:`denominator_rule` (N&W eq. 6.26)
    rule : a pluggable pair rule ``rule(sᵀr, ‖s‖, ‖r‖) -> bool`` replacing the
        default one
    max_condition : largest accepted condition number of the scaled middle
        matrix Ñ = D_s⁻¹ N D_s⁻¹, D_s = diag(‖sᵢ‖) (the scaling makes the test
        independent of the step lengths); default ``min(1e8, 0.01 / ε)``, ε
        the machine epsilon of ``dtype`` (1e8 in float64, about 8e4 in float32)

    Notes
    -----
    :meth:`push` refuses a pair (and changes nothing) when

    1. s, y or their inner products are not finite, or s = 0;
    2. the pair rule fails for r = y − B s, B the compact matrix of the pairs
       that stay (the oldest is dropped when the history is full) under the
       new γ: by default |sᵀr| < eps ‖s‖ ‖r‖ (N&W eq. 6.26);
    3. the middle matrix N with the pair appended has a scaled condition
       number above ``max_condition`` (or is singular): accepting the pair
       would make M = N⁻¹ unreliable. This also refuses pairs with r = 0.

    When the new γ makes the middle matrix of the pairs that stay
    ill-conditioned by itself (their SR1 recursion from γI breaks down, which
    can happen when γ changes or the oldest pair is dropped), the oldest
    pairs are dropped until it is not, before 2. and 3. are checked, so that
    a full history can never get stuck.

    Attributes
    ----------
    S, Y : views ``(memory, n)`` of the stacked ring buffer; only the ``count``
        slots ending just before ``head`` (cyclically) are in use
    count : number of pairs stored (≤ memory)
    head : the slot the next pair goes to
    gamma : the current γ
    last_products : (sᵀs, sᵀy, yᵀy) of the last pair offered to :meth:`push`
    """

    def __init__(
        self,
        memory: int,
        n: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        gamma_rule: str = "ratio",
        gamma0: float = 1.0,
        gamma_min: float = 1e-8,
        eps: float = 1e-8,
        rule: PairRule | None = None,
        max_condition: float | None = None,
    ):
        if memory < 1:
            raise ValueError(f"memory must be at least 1, got {memory}")
        if gamma_rule not in GAMMA_RULES:
            raise ValueError(f"unknown gamma_rule {gamma_rule!r}; known: {', '.join(GAMMA_RULES)}")
        if not (gamma0 > 0.0 and math.isfinite(gamma0)) or not gamma_min > 0.0:
            raise ValueError(f"gamma0 and gamma_min must be positive, got {gamma0}, {gamma_min}")
        self.memory = int(memory)
        self.n = int(n)
        self.gamma_rule = gamma_rule
        self.gamma0 = float(gamma0)
        self.gamma_min = float(gamma_min)
        self.rule = rule if rule is not None else denominator_rule(eps)
        if max_condition is None:
            max_condition = min(1e8, 0.01 / torch.finfo(dtype).eps)
        self.max_condition = float(max_condition)
        self._w = torch.zeros(2, self.memory, self.n, device=device, dtype=dtype)
        self.S = self._w[0]
        self.Y = self._w[1]
        # _gram[_SS][i, j] = sᵢᵀsⱼ, _gram[_SY][i, j] = sᵢᵀyⱼ, _gram[_YY][i, j] = yᵢᵀyⱼ (slot indices).
        self._gram = np.zeros((3, self.memory, self.memory))
        self._middle = np.zeros((0, 0))  # M = N⁻¹ over order(), oldest first
        self.gamma = self.gamma0
        self.count = 0
        self.head = 0
        self.last_products: tuple[float, float, float] | None = None

    # -- bookkeeping ------------------------------------------------------
    def __len__(self) -> int:
        return self.count

    @property
    def stacked(self) -> torch.Tensor:
        """``[S; Y]`` as one ``(2 memory, n)`` matrix (a view)."""
        return self._w.view(2 * self.memory, self.n)

    def order(self) -> list[int]:
        """Slots in use, oldest pair first."""
        m = self.memory
        return [(self.head - self.count + i) % m for i in range(self.count)]

    def reset(self) -> None:
        """Forget every pair: B = γ₀I."""
        self.count = 0
        self.head = 0
        self.gamma = self.gamma0
        self._middle = np.zeros((0, 0))

    def _next_gamma(self, sy: float, yy: float) -> float:
        """γ after storing a pair with these products (see ``gamma_rule``)."""
        if self.gamma_rule == "fixed":
            return self.gamma0
        if sy > 0.0 and math.isfinite(yy / sy):
            return max(yy / sy, self.gamma_min)
        return max(self.gamma, self.gamma_min)

    # -- middle matrix ----------------------------------------------------
    def _n_matrix(self, slots: list[int], gamma: float) -> np.ndarray:
        """N = D + L + Lᵀ − γ SᵀS over stored slots (oldest first)."""
        idx = np.array(slots, dtype=int)
        ss = self._gram[_SS][np.ix_(idx, idx)]
        sy = self._gram[_SY][np.ix_(idx, idx)]
        lower = np.tril(sy, -1)
        return np.diag(np.diag(sy)) + lower + lower.T - gamma * ss

    def _inverse_if_conditioned(self, n_mat: np.ndarray, s_norms: np.ndarray) -> np.ndarray | None:
        """N⁻¹ when the scaled Ñ = D_s⁻¹ N D_s⁻¹ has cond(Ñ) ≤ max_condition, else ``None``."""
        if n_mat.size == 0:
            return np.zeros((0, 0))
        scaled = n_mat / np.outer(s_norms, s_norms)
        if not np.all(np.isfinite(scaled)):
            return None
        cond = np.linalg.cond(scaled)
        if not (math.isfinite(cond) and cond <= self.max_condition):
            return None
        inv = np.linalg.inv(scaled) / np.outer(s_norms, s_norms)  # N⁻¹ = D_s⁻¹ Ñ⁻¹ D_s⁻¹
        return 0.5 * (inv + inv.T)

    def _s_norms(self, slots: list[int]) -> np.ndarray:
        return np.sqrt(np.array([self._gram[_SS, i, i] for i in slots]))

    # -- update -----------------------------------------------------------
    def push(self, s: torch.Tensor, y: torch.Tensor) -> bool:
        """Store the pair (s, y) unless the SR1 update it defines is unsafe (see the class notes).

        Parameters
        ----------
        s, y : step and gradient change, length ``n`` (copied)

        Returns
        -------
        True when the pair was stored.
        """
        pair = torch.stack((s.reshape(-1), y.reshape(-1))).to(self._w.dtype)
        # One transfer: row 0 = sᵀ[S; Y] then sᵀs, sᵀy; row 1 = yᵀ[S; Y] then yᵀs, yᵀy.
        products = torch.cat((pair @ self.stacked.T, pair @ pair.T), 1).to(device="cpu", dtype=torch.float64).numpy()
        m = self.memory
        (ss, sy), (_, yy) = products[:, 2 * m :].tolist()
        self.last_products = (ss, sy, yy)
        # Finite sᵀs and yᵀy imply finite s and y; s = 0 defines no update.
        if not np.all(np.isfinite(products)) or ss <= 0.0:
            return False
        gamma = self._next_gamma(sy, yy)
        kept = self.order()[1:] if self.count == m else self.order()
        # Drop the oldest pairs while they do not define a well-conditioned SR1 matrix under γ.
        while True:
            m_kept = self._inverse_if_conditioned(self._n_matrix(kept, gamma), self._s_norms(kept))
            if m_kept is not None:
                break
            kept = kept[1:]
        # r = y − B s with B = γI + Ψ M Ψᵀ of the kept pairs, Ψᵀs = Yᵀs − γSᵀs.
        idx = np.array(kept, dtype=int)
        psi_s = products[0, m:][idx] - gamma * products[0, :m][idx]
        w = m_kept @ psi_s
        coef = np.zeros(2 * m)
        coef[idx] = gamma * w  # −Ψ w = −Y w + γ S w
        coef[m + idx] = -w
        r = torch.addmv(pair[1] - gamma * pair[0], self.stacked.T, self._vector(coef))
        sr, rr = (torch.stack((pair[0], r)) @ r).tolist()
        if not (math.isfinite(sr) and math.isfinite(rr)):
            return False
        if not self.rule(sr, math.sqrt(ss), math.sqrt(max(rr, 0.0))):
            return False
        # N with the new pair appended (newest last): row k is sᵀyᵢ − γ sᵀsᵢ = (L)ₖᵢ − γ sᵀsᵢ for older i,
        # the diagonal sᵀy − γ sᵀs.
        k = len(kept)
        n_new = np.zeros((k + 1, k + 1))
        n_new[:k, :k] = self._n_matrix(kept, gamma)
        row = products[0, m:][idx] - gamma * products[0, :m][idx]  # s_newᵀ yᵢ − γ s_newᵀ sᵢ
        n_new[k, :k] = n_new[:k, k] = row
        n_new[k, k] = sy - gamma * ss
        m_new = self._inverse_if_conditioned(n_new, np.append(self._s_norms(kept), math.sqrt(ss)))
        if m_new is None:
            return False
        self._store(pair, products, ss, sy, yy)
        self.count = k + 1
        self.gamma = gamma
        self._middle = m_new
        return True

    def _store(self, pair: torch.Tensor, products: np.ndarray, ss: float, sy: float, yy: float) -> None:
        """Write the pair into slot ``head`` with its Gram entries and advance the ring."""
        m = self.memory
        h = self.head
        self._w[:, h].copy_(pair)
        g = self._gram
        g[_SS, h, :] = g[_SS, :, h] = products[0, :m]  # sᵀsⱼ
        g[_SY, h, :] = products[0, m : 2 * m]  # sᵀyⱼ (row h)
        g[_SY, :, h] = products[1, :m]  # sᵢᵀy (column h)
        g[_YY, h, :] = g[_YY, :, h] = products[1, m : 2 * m]  # yᵀyⱼ
        g[_SS, h, h], g[_SY, h, h], g[_YY, h, h] = ss, sy, yy  # slot h held the old pair above
        self.head = (h + 1) % m

    def _vector(self, coef: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(coef).to(device=self._w.device, dtype=self._w.dtype)

    # -- products ---------------------------------------------------------
    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """B v = γ v + Ψ M Ψᵀ v with Ψᵀv = Yᵀv − γ Sᵀv (γ₀ v when empty). Returns a new tensor."""
        if self.count == 0:
            return self.gamma * v
        m = self.memory
        idx = np.array(self.order(), dtype=int)
        proj = (self.stacked @ v).to(device="cpu", dtype=torch.float64).numpy()
        c = self._middle @ (proj[m:][idx] - self.gamma * proj[:m][idx])
        coef = np.zeros(2 * m)
        coef[idx] = -self.gamma * c
        coef[m + idx] = c
        return torch.addmv(v, self.stacked.T, self._vector(coef), beta=self.gamma)

    def compact(self) -> CompactForm:
        """B as a :class:`~ddnn.solvers.quadratic_model.CompactForm`: γ, Ψ = Y − γS (n × k), M.

        An empty history gives Ψ of width 0 and γ = γ₀: B = γ₀I (not B = 0),
        so a trust-region step from an empty history is a scaled steepest
        descent step. Ψ is a new tensor (the buffer may change afterwards).
        """
        index = torch.as_tensor(self.order(), dtype=torch.long, device=self._w.device)
        psi = (self.Y[index] - self.gamma * self.S[index]).T
        return CompactForm(self.gamma, psi, torch.from_numpy(self._middle.copy()))

    # -- state ------------------------------------------------------------
    def state_dict(self) -> dict:
        """The pairs, Gram matrices, γ, M and ring position (tensors and ints)."""
        return {
            "S": self.S.clone(),
            "Y": self.Y.clone(),
            "gram": torch.from_numpy(self._gram.copy()),
            "middle": torch.from_numpy(self._middle.copy()),
            "gamma": torch.tensor(self.gamma, dtype=torch.float64),
            "count": self.count,
            "head": self.head,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`; products afterwards are bit for bit those of the saved history."""
        if tuple(state["S"].shape) != (self.memory, self.n):
            raise ValueError(f"history of shape {tuple(state['S'].shape)}, expected {(self.memory, self.n)}")
        count = int(state["count"])
        if tuple(state["middle"].shape) != (count, count):
            raise ValueError(f"middle matrix of shape {tuple(state['middle'].shape)} for {count} pairs")
        self.S.copy_(state["S"])
        self.Y.copy_(state["Y"])
        self._gram[...] = torch.as_tensor(state["gram"], dtype=torch.float64).cpu().numpy()
        self._middle = torch.as_tensor(state["middle"], dtype=torch.float64).cpu().numpy().copy()
        self.gamma = float(state["gamma"])
        self.count = count
        self.head = int(state["head"])
