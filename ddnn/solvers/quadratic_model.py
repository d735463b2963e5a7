"""The quadratic model of a trust-region step and compact quasi-Newton matrices.

A trust-region method minimises, each iteration, the model

    m(s) = gᵀs + ½ sᵀBs      subject to ‖s‖_p ≤ Δ,

of the change of the loss along a step s (m(0) = 0, so m(s) < 0 predicts a
decrease). :class:`QuadraticModel` bundles what a subproblem solver
(:mod:`ddnn.solvers.subproblem`) may use of B: products B v (exact
Hessian-vector products or a quasi-Newton matrix), a compact form
B = γI + Ψ M Ψᵀ (:class:`CompactForm`, from limited-memory quasi-Newton
histories), or the inverse B⁻¹ v when it is cheap (L-BFGS's two-loop
recursion). :func:`lbfgs_compact` gives the compact form of the existing
:class:`~ddnn.solvers.history.LBFGSHistory`.

Everything works on flat 1-D tensors of any floating dtype and device; only
k × k matrices (k the width of Ψ) go to the host in float64. Nothing here
communicates: every rank holds the same vectors and takes the same decisions.

References
----------
J. Nocedal, S. J. Wright, *Numerical Optimization*, 2nd ed., Springer 2006,
§4.1 (the model m and the trust-region subproblem), eq. (7.24) (compact BFGS).

R. H. Byrd, J. Nocedal, R. B. Schnabel, Representations of quasi-Newton
matrices and their use in limited memory methods, *Math. Program.* 63 (1994)
129–156, eq. (2.17) (compact representation of BFGS).

W. W. Hager, Updating the inverse of a matrix, *SIAM Review* 31 (1989)
221–239 (the Sherman–Morrison–Woodbury formula).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["CompactForm", "CompactEig", "QuadraticModel", "lbfgs_compact"]

# A k × k matrix whose smallest eigenvalue (in modulus) is below this many
# machine epsilons of the data's dtype, relative to its largest, is singular.
_SINGULAR_EPS = 10.0


def _host64(x: torch.Tensor) -> np.ndarray:
    """A (small) tensor as a float64 NumPy array on the host."""
    return x.detach().to(device="cpu", dtype=torch.float64).numpy()


@dataclass(frozen=True)
class CompactEig:
    """The eigendecomposition of a compact matrix B = γI + Ψ M Ψᵀ.

    Attributes
    ----------
    values : float64 host tensor ``(r,)``, ascending: the eigenvalues of B on
        range(V)
    vectors : V, ``(n, r)`` with orthonormal columns (dtype and device of Ψ)
        spanning a space that contains range(Ψ)
    complement : n − r, the dimension of range(V)^⊥ on which B = γI
    """

    values: torch.Tensor
    vectors: torch.Tensor
    complement: int


@dataclass(frozen=True, eq=False)
class CompactForm:
    """A symmetric n × n matrix in compact form, B = γI + Ψ M Ψᵀ.

    Parameters
    ----------
    gamma : γ, the eigenvalue of B on the orthogonal complement of range(Ψ)
    Psi : Ψ, ``(n, k)`` (k may be 0: then B = γI); any dtype and device
    M : the symmetric ``(k, k)`` middle matrix, float64 (converted when not)

    Notes
    -----
    B is never formed (except by :meth:`dense`, for tests). Products cost one
    pass over Ψ for Ψᵀv and one for Ψ c; the k-vector in between is
    multiplied by M in float64 on M's device.
    """

    gamma: float
    Psi: torch.Tensor
    M: torch.Tensor

    def __post_init__(self) -> None:
        if self.Psi.dim() != 2:
            raise ValueError(f"Psi must be an (n, k) matrix, got shape {tuple(self.Psi.shape)}")
        k = self.Psi.shape[1]
        if tuple(self.M.shape) != (k, k):
            raise ValueError(f"M must be ({k}, {k}) for Psi of width {k}, got {tuple(self.M.shape)}")
        if self.M.dtype != torch.float64:
            object.__setattr__(self, "M", self.M.to(torch.float64))
        object.__setattr__(self, "gamma", float(self.gamma))

    @property
    def n(self) -> int:
        return self.Psi.shape[0]

    @property
    def k(self) -> int:
        return self.Psi.shape[1]

    def _middle(self, p: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """M p in float64 for a k-vector p, returned in the dtype and device of ``like``."""
        return (self.M @ p.to(device=self.M.device, dtype=torch.float64)).to(device=like.device, dtype=like.dtype)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """B v = γ v + Ψ (M (Ψᵀ v)). Returns a new tensor."""
        if self.k == 0:
            return self.gamma * v
        c = self._middle(self.Psi.T @ v, v)
        return torch.addmv(v, self.Psi, c, beta=self.gamma)

    def dense(self) -> torch.Tensor:
        """B as an n × n matrix in the dtype of Ψ (for tests and small problems)."""
        eye = torch.eye(self.n, dtype=self.Psi.dtype, device=self.Psi.device)
        if self.k == 0:
            return self.gamma * eye
        m = self.M.to(device=self.Psi.device, dtype=self.Psi.dtype)
        return self.gamma * eye + self.Psi @ m @ self.Psi.T

    @functools.cached_property
    def _gram(self) -> np.ndarray:
        """ΨᵀΨ in float64 on the host (computed once)."""
        return _host64(self.Psi.T @ self.Psi)

    def solve(self, v: torch.Tensor) -> torch.Tensor:
        """B⁻¹ v by the Sherman–Morrison–Woodbury formula.

        With B = γ(I + Ψ (M/γ) Ψᵀ) and (I + U Wᵀ)⁻¹ = I − U (I + WᵀU)⁻¹ Wᵀ
        for U = Ψ, Wᵀ = MΨᵀ/γ:

            B⁻¹ v = (v − Ψ K⁻¹ M Ψᵀ v) / γ,     K = γI + M ΨᵀΨ   (k × k).

        The eigenvalues of K are those of B on range(Ψ) (K = γI + MRᵀR is
        similar to γI + RMRᵀ for Ψ = QR), and B = γI on its complement, so B
        is singular exactly when γ = 0 or K is.

        Raises
        ------
        ValueError
            when γ = 0 or K is singular to working precision (its smallest
            eigenvalue in modulus below 10 ε max(|γ|, |eigenvalues of K|), ε the
            machine epsilon of Ψ's dtype) or not finite: then B has no usable
            inverse. B may be indefinite; a nonsingular indefinite B is solved.
        """
        gamma = self.gamma
        if gamma == 0.0 or not np.isfinite(gamma):
            raise ValueError(f"B = γI + ΨMΨᵀ with γ = {gamma} has no Woodbury inverse")
        if self.k == 0:
            return v / gamma
        m = _host64(self.M)
        kmat = gamma * np.eye(self.k) + m @ self._gram
        if not np.all(np.isfinite(kmat)):
            raise ValueError("the Woodbury matrix γI + MΨᵀΨ is not finite")
        eig = np.abs(np.linalg.eigvals(kmat))
        eps = torch.finfo(self.Psi.dtype).eps
        if eig.min() <= _SINGULAR_EPS * eps * max(abs(gamma), eig.max()):
            raise ValueError("B = γI + ΨMΨᵀ is singular to working precision")
        p = _host64(self.Psi.T @ v)
        z = np.linalg.solve(kmat, m @ p)
        zt = torch.from_numpy(z).to(device=v.device, dtype=v.dtype)
        return torch.addmv(v, self.Psi, zt, alpha=-1.0) / gamma

    @functools.cached_property
    def _eig(self) -> CompactEig:
        # Thin QR Ψ = QR (Householder, so Q has orthonormal columns even when Ψ is rank
        # deficient: a dependent column only gives a zero row of R and an eigenvalue γ
        # below), then RMRᵀ = UΘUᵀ gives B = γI + (QU) Θ (QU)ᵀ: eigenvalues γ + θᵢ on
        # range(QU) and γ on its complement (Brust, Erway, Marcia 2017, §3).
        if self.k == 0:
            empty = torch.zeros(self.n, 0, dtype=self.Psi.dtype, device=self.Psi.device)
            return CompactEig(torch.zeros(0, dtype=torch.float64), empty, self.n)
        q, r = torch.linalg.qr(self.Psi, mode="reduced")  # q: (n, r), r = min(n, k)
        r64 = _host64(r)
        small = r64 @ _host64(self.M) @ r64.T
        theta, u = np.linalg.eigh(0.5 * (small + small.T))
        vectors = q @ torch.from_numpy(u).to(device=q.device, dtype=q.dtype)
        values = torch.from_numpy(theta + self.gamma)
        return CompactEig(values, vectors, self.n - q.shape[1])

    def eigh(self) -> CompactEig:
        """The eigendecomposition of B (computed once per compact form).

        Costs a thin QR of Ψ (O(nk²), on Ψ's device) and a k × k symmetric
        eigendecomposition on the host. Eigenvalues of B: ``values`` on
        range(``vectors``) and γ, with multiplicity ``complement``, on the rest.
        """
        return self._eig


@dataclass(eq=False)
class QuadraticModel:
    """The model m(s) = gᵀs + ½ sᵀBs of a trust-region subproblem.

    Parameters
    ----------
    g : the gradient, a flat tensor
    hvp : v ↦ B v; ``None`` means B = 0 (a first-order, linear model) unless
        ``compact`` is given, from which it is then derived
    compact : B in compact form, when it has one (must be the same B as ``hvp``)
    inverse : v ↦ B⁻¹ v when cheaply known (e.g. the L-BFGS two-loop recursion);
        must be the inverse of the B of ``hvp``/``compact``

    Attributes
    ----------
    hvp_count : number of products B v done through :meth:`matvec` (that is,
        through ``hvp``, also when ``hvp`` was derived from ``compact``);
        products a solver does directly with ``compact`` (e.g. the
        orthonormal-basis method) and solves with ``inverse`` are not
        counted. Callers read it to count Hessian-vector products or CG work.
    """

    g: torch.Tensor
    hvp: Callable[[torch.Tensor], torch.Tensor] | None = None
    compact: CompactForm | None = None
    inverse: Callable[[torch.Tensor], torch.Tensor] | None = None
    hvp_count: int = 0

    def __post_init__(self) -> None:
        if self.g.dim() != 1:
            raise ValueError(f"the gradient must be a flat vector, got shape {tuple(self.g.shape)}")
        if self.compact is not None:
            if self.compact.n != self.g.numel():
                raise ValueError(f"compact form of size {self.compact.n} for a gradient of size {self.g.numel()}")
            psi = self.compact.Psi
            if psi.dtype != self.g.dtype or psi.device != self.g.device:
                raise ValueError(f"Psi is {psi.dtype} on {psi.device}, the gradient {self.g.dtype} on {self.g.device}")
            if self.hvp is None:
                self.hvp = self.compact.matvec
        if self.inverse is not None and self.hvp is None:
            raise ValueError("an inverse was given without B (hvp or compact); B = 0 has no inverse")

    @property
    def first_order(self) -> bool:
        """Whether B = 0 (no ``hvp`` and no compact form)."""
        return self.hvp is None

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """B v (zeros when B = 0); counted in :attr:`hvp_count` unless B = 0."""
        if self.hvp is None:
            return torch.zeros_like(v)
        self.hvp_count += 1
        return self.hvp(v)

    def solve(self, v: torch.Tensor) -> torch.Tensor:
        """B⁻¹ v from ``inverse``, else from the compact form's Woodbury formula.

        Raises ``ValueError`` when neither is available or B is singular.
        """
        if self.inverse is not None:
            return self.inverse(v)
        if self.compact is not None:
            return self.compact.solve(v)
        raise ValueError("the model has neither an inverse nor a compact form")

    def value(self, s: torch.Tensor, Bs: torch.Tensor | None = None) -> float:
        """m(s) = gᵀs + ½ sᵀBs (negative for a predicted decrease).

        ``Bs`` is B s when the caller already has it; otherwise it is computed
        with :meth:`matvec` (one counted product, none when B = 0).
        """
        linear = float(torch.dot(self.g, s))
        if self.hvp is None:
            return linear
        if Bs is None:
            Bs = self.matvec(s)
        return linear + 0.5 * float(torch.dot(s, Bs))

    def predicted_decrease(self, s: torch.Tensor, Bs: torch.Tensor | None = None) -> float:
        """−m(s), the decrease of the loss the model predicts for the step s."""
        return -self.value(s, Bs)


def lbfgs_compact(history) -> CompactForm | None:
    """The compact form of the L-BFGS matrix B of an :class:`~ddnn.solvers.history.LBFGSHistory`.

    Byrd, Nocedal, Schnabel (1994), eq. (2.17), with B⁰ = σI, σ = yᵀy / sᵀy
    of the newest pair (the B that ``history.apply_direct`` applies)::

        B = σI − [σS  Y] N⁻¹ [σSᵀ; Yᵀ],    N = [[σ SᵀS, L], [Lᵀ, −D]],

    S, Y holding the pairs as columns, oldest first, L the strictly lower
    triangular part of SᵀY and D = diag(sᵢᵀyᵢ); so γ = σ, Ψ = [σS Y]
    (n × 2k) and M = −N⁻¹.

    Parameters
    ----------
    history : an ``LBFGSHistory`` (read only: its pairs ``S``, ``Y``, ``order()``
        and Gram matrices)

    Returns
    -------
    The compact form, or ``None`` when the history is empty (no curvature
    information; ``apply_direct`` is then the identity).
    """
    if history.count == 0:
        return None
    idx = np.array(history.order())
    gram = history._gram  # [SᵀS, SᵀY, YᵀY] by slot (read only)
    ss = gram[0][np.ix_(idx, idx)]
    sy = gram[1][np.ix_(idx, idx)]
    sigma = float(gram[2][idx[-1], idx[-1]] / sy[-1, -1])
    lower = np.tril(sy, -1)
    middle = np.block([[sigma * ss, lower], [lower.T, -np.diag(np.diag(sy))]])
    m = -np.linalg.inv(middle)
    m = 0.5 * (m + m.T)
    index = torch.as_tensor(idx, device=history.S.device)
    psi = torch.cat((sigma * history.S[index], history.Y[index])).T
    return CompactForm(sigma, psi, torch.from_numpy(m))
