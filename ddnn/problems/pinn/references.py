"""Reference solutions of the seed's PINN problems (NumPy, float64).

* Burgers: the Cole–Hopf solution evaluated by Gauss–Hermite quadrature.
* Klein–Gordon: the manufactured exact solution u = x cos t.
* Diffusion–transport: a Chebyshev collocation solution on the tensor grid,
  evaluated anywhere by barycentric interpolation and cached on disk.

References
----------
C. Basdevant, M. Deville, P. Haldenwang, J. M. Lacroix, J. Ouazzani,
R. Peyret, P. Orlandi, A. T. Patera, "Spectral and finite difference
solutions of the Burgers equation", Comput. Fluids 14 (1986) 23-41 (the
Cole–Hopf/Hermite formula and the check value u_x(0, 1.6037/π) ≈ −152.005).
M. Raissi, P. Perdikaris, G. E. Karniadakis, "Physics-informed neural
networks", J. Comput. Phys. 378 (2019) 686-707.
L. N. Trefethen, *Spectral Methods in MATLAB*, SIAM 2000, ch. 6-7
(Chebyshev differentiation matrices, 2-D collocation).
J.-P. Berrut, L. N. Trefethen, "Barycentric Lagrange interpolation",
SIAM Rev. 46 (2004) 501-517.
"""

from __future__ import annotations

import os
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = [
    "BURGERS_NU",
    "burgers_reference",
    "klein_gordon_reference",
    "klein_gordon_forcing",
    "DiffusionTransportReference",
    "diffusion_transport_reference",
    "chebyshev_points",
    "chebyshev_matrix",
    "barycentric_matrix",
    "cache_dir",
]

BURGERS_NU = 0.01 / np.pi


# ---------------------------------------------------------------------------
# Burgers


@lru_cache(maxsize=4)
def _hermgauss(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.hermite.hermgauss(nodes)


def burgers_reference(x, t, nu: float = BURGERS_NU, nodes: int = 100) -> np.ndarray:
    """Solution of u_t + u u_x = ν u_xx, u(0, x) = −sin(πx), u(t, ±1) = 0.

    The Cole–Hopf transformation gives (Basdevant et al. 1986, eq. 5)::

        u(x, t) = −∫ sin(π(x − η)) f(x − η) e^{−η²/4νt} dη / ∫ f(x − η) e^{−η²/4νt} dη,
        f(y) = exp(−cos(πy) / (2πν)),

    and with η = 2√(νt) z both integrals are Gauss–Hermite sums over nodes
    zᵢ, weights wᵢ, yᵢ = x − 2√(νt) zᵢ. The exponents −cos(πyᵢ)/(2πν) + log wᵢ
    span hundreds of units, so the largest is subtracted before
    exponentiating (log-sum-exp). 40 nodes are accurate to about 1e-6 only;
    80 and more resolve the shock at x = 0.

    Parameters
    ----------
    x, t : array-likes of the same (broadcast) shape, x ∈ [−1, 1], t ≥ 0
    nu : viscosity (default 0.01/π)
    nodes : Gauss–Hermite nodes (at least 80)

    Returns
    -------
    numpy.ndarray of the broadcast shape (float64)
    """
    if nodes < 80:
        raise ValueError(f"use at least 80 Gauss-Hermite nodes, got {nodes}")
    x, t = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(t, dtype=np.float64))
    shape = x.shape
    x, t = x.reshape(-1), t.reshape(-1)
    z, w = _hermgauss(nodes)
    out = np.empty_like(x)
    chunk = 8192
    for lo in range(0, x.size, chunk):
        xs, ts = x[lo : lo + chunk, None], t[lo : lo + chunk, None]
        y = xs - 2.0 * np.sqrt(nu * ts) * z[None, :]
        expo = -np.cos(np.pi * y) / (2.0 * np.pi * nu) + np.log(w)[None, :]
        expo -= expo.max(axis=1, keepdims=True)
        weights = np.exp(expo)
        out[lo : lo + chunk] = -(weights * np.sin(np.pi * y)).sum(axis=1) / weights.sum(axis=1)
    initial = t == 0.0
    out[initial] = -np.sin(np.pi * x[initial])
    return out.reshape(shape)


# ---------------------------------------------------------------------------
# Klein–Gordon


def klein_gordon_reference(x, t) -> np.ndarray:
    """The exact solution u = x cos t of the seed's Klein–Gordon problem."""
    x, t = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(t, dtype=np.float64))
    return x * np.cos(t)


def klein_gordon_forcing(x, t):
    """f = −x cos t + x² cos² t, so that u = x cos t solves u_tt − u_xx + u² = f.

    Works on NumPy arrays and torch tensors alike.
    """
    lib = np if isinstance(x, np.ndarray) or np.isscalar(x) else __import__("torch")
    c = lib.cos(t)
    return -x * c + (x * c) ** 2


# ---------------------------------------------------------------------------
# Chebyshev tools


def chebyshev_points(n: int, a: float = 0.0, b: float = 1.0) -> np.ndarray:
    """The n+1 Chebyshev–Lobatto points of [a, b], increasing."""
    return a + (b - a) * (1.0 - np.cos(np.pi * np.arange(n + 1) / n)) / 2.0


def chebyshev_matrix(n: int, a: float = 0.0, b: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Points and first-derivative matrix D of degree-n Chebyshev collocation on [a, b].

    Trefethen (2000), program ``cheb``, with the diagonal from the
    negative-sum trick (rows of D annihilate constants exactly).
    """
    s = np.cos(np.pi * np.arange(n + 1) / n)[::-1]  # increasing points of [−1, 1]
    c = np.ones(n + 1)
    c[0] = c[-1] = 2.0
    c *= (-1.0) ** np.arange(n + 1)
    diff = s[:, None] - s[None, :] + np.eye(n + 1)
    d = np.outer(c, 1.0 / c) / diff
    d -= np.diag(d.sum(axis=1))
    return a + (b - a) * (s + 1.0) / 2.0, d * (2.0 / (b - a))


def barycentric_matrix(nodes: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Matrix P with (P f)_i = the Chebyshev–Lobatto interpolant of f(nodes) at x_i.

    Barycentric formula of the second kind with weights (−1)^j, halved at
    the end points (Berrut & Trefethen 2004, eq. 5.4); exact at the nodes.
    """
    n = nodes.size - 1
    w = (-1.0) ** np.arange(n + 1)
    w[0] *= 0.5
    w[-1] *= 0.5
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    diff = x[:, None] - nodes[None, :]
    exact = diff == 0.0
    diff[exact] = 1.0
    terms = w[None, :] / diff
    p = terms / terms.sum(axis=1, keepdims=True)
    rows = exact.any(axis=1)
    p[rows] = exact[rows].astype(np.float64)
    return p


# ---------------------------------------------------------------------------
# Diffusion–transport


def cache_dir() -> Path:
    """Where computed references are kept: ``$DDNN_CACHE`` or ``~/.cache/ddnn``."""
    return Path(os.environ.get("DDNN_CACHE") or Path.home() / ".cache" / "ddnn")


def _atomic_save(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class DiffusionTransportReference:
    """Chebyshev collocation solution of −μΔu + b·∇u = 1 on (0, 1)², u = 0 on ∂Ω.

    The operator is L ⊗ I + I ⊗ L with the 1-D operator
    L = −μ d²/dx² + b_i d/dx on Chebyshev–Lobatto points; the
    ``(n − 1)²`` interior equations are solved directly (dense LU). Fast
    diagonalisation of L is *not* used: the eigenvectors of the
    convection-dominated L behave like e^{x/2μ} sin(kπx), a basis with
    condition number ~e^{1/2μ} = e^{50}. Chebyshev points cluster like n⁻²
    at the walls, so the layers of width μ at x = 1 and y = 1 are resolved
    spectrally: their Chebyshev coefficients decay like exp(−k²μ/2), and
    n = 64 gives about 1e-12 (:meth:`max_change`).

    Parameters
    ----------
    n : polynomial degree per direction
    mu : diffusion coefficient
    b : transport velocity (b₁, b₂)

    Attributes
    ----------
    nodes : (n+1,) Chebyshev–Lobatto points of [0, 1]
    values : (n+1, n+1) u(nodes[i], nodes[j])
    """

    def __init__(self, n: int = 64, mu: float = 1e-2, b: tuple[float, float] = (1.0, 1.0), *, values=None):
        self.n, self.mu, self.b = int(n), float(mu), (float(b[0]), float(b[1]))
        self.nodes, d = chebyshev_matrix(self.n)
        self.values = self._solve(d) if values is None else np.asarray(values, dtype=np.float64)

    def _solve(self, d: np.ndarray) -> np.ndarray:
        n, mu = self.n, self.mu
        d2 = d @ d
        inner = slice(1, n)
        ops = [(-mu * d2 + bi * d)[inner, inner] for bi in self.b]
        eye = np.eye(n - 1)
        # unknown U[i, j] = u(x_i, y_j), vectorised row-major: (L₁ ⊗ I + I ⊗ L₂) vec(U) = 1
        a = np.kron(ops[0], eye) + np.kron(eye, ops[1])
        u_inner = np.linalg.solve(a, np.ones((n - 1) ** 2)).reshape(n - 1, n - 1)
        values = np.zeros((n + 1, n + 1))
        values[inner, inner] = u_inner
        return values

    def __call__(self, x, y) -> np.ndarray:
        """u at points (x, y) (broadcast arrays in [0, 1]²)."""
        x, y = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
        px = barycentric_matrix(self.nodes, x.reshape(-1))
        py = barycentric_matrix(self.nodes, y.reshape(-1))
        return np.einsum("pi,ij,pj->p", px, self.values, py).reshape(x.shape)

    def grid(self, x, y) -> np.ndarray:
        """u on the tensor grid x × y: entry [i, j] = u(x[i], y[j])."""
        px = barycentric_matrix(self.nodes, np.asarray(x, dtype=np.float64))
        py = barycentric_matrix(self.nodes, np.asarray(y, dtype=np.float64))
        return px @ self.values @ py.T

    def max_change(self, other: DiffusionTransportReference, points: int = 201) -> float:
        """max |u − u_other| on a uniform points × points grid (a grid-convergence measure)."""
        s = np.linspace(0.0, 1.0, points)
        return float(np.abs(self.grid(s, s) - other.grid(s, s)).max())


def diffusion_transport_reference(
    n: int = 64, mu: float = 1e-2, b: tuple[float, float] = (1.0, 1.0), use_cache: bool = True
) -> DiffusionTransportReference:
    """The :class:`DiffusionTransportReference`, loaded from or saved to :func:`cache_dir`.

    The file name records n, μ and b; it is written atomically (temporary
    file, then ``os.replace``), so concurrent ranks never read a partial
    file. An unreadable or unwritable cache is ignored.
    """
    name = f"diffusion_transport_n{int(n)}_mu{float(mu):.6g}_b{float(b[0]):.6g}_{float(b[1]):.6g}.npz"
    path = cache_dir() / name
    if use_cache and path.is_file():
        try:
            with np.load(path) as data:
                values = data["values"]
            if values.shape == (n + 1, n + 1) and np.all(np.isfinite(values)):
                return DiffusionTransportReference(n, mu, b, values=values)
        except (OSError, ValueError, KeyError):
            pass
    ref = DiffusionTransportReference(n, mu, b)
    if use_cache:
        try:
            _atomic_save(path, values=ref.values, nodes=ref.nodes)
        except OSError:
            pass
    return ref
