"""Trust-region subproblem solvers against a dense Moré–Sorensen reference and closed forms."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from ddnn.solvers.quadratic_model import CompactForm, QuadraticModel
from ddnn.solvers.subproblem import (
    NEEDS,
    NORMS,
    Cauchy,
    CauchyOptions,
    CGOptions,
    Dogleg,
    OrthonormalBasis,
    SteihaugCG,
    SubproblemResult,
    _box_roots,
    _diagonal_trs,
    _finish,
    _sphere_roots,
    cauchy_point,
)

F64 = torch.float64
SOLVERS = {"cauchy": Cauchy, "dogleg": Dogleg, "cg": SteihaugCG, "obs": OrthonormalBasis}


# ---------------------------------------------------------------------------
# Dense reference (Moré & Sorensen 1983, from a full eigendecomposition)


def dense_trs(b: torch.Tensor, g: torch.Tensor, radius: float):
    """(s, hard_vector) minimising gᵀs + ½sᵀBs on ‖s‖₂ ≤ Δ; hard_vector is u of the hard case, else None.

    (B + λI)s = −g, λ ≥ max(0, −λ_min), λ(Δ − ‖s‖) = 0: the Newton step when B is positive
    definite and it fits, else λ by bisection on ‖s(λ)‖ = Δ, else (the hard case, g ⟂ the
    eigenvectors of λ_min and ‖(B − λ_min I)⁺g‖ < Δ) s = −(B − λ_min I)⁺g + τu.
    """
    lam, q = torch.linalg.eigh(b)
    c = q.T @ g
    lam_min = float(lam[0])
    if lam_min > 0:
        s = -q @ (c / lam)
        if s.norm() <= radius:
            return s, None
    scale = max(float(lam.abs().max()), 1.0)
    eig_min = (lam - lam_min).abs() <= 1e-9 * scale
    if float(c[eig_min].norm()) <= 1e-10 * float(g.norm()) and lam_min <= 0:
        coef = torch.where(eig_min, torch.zeros_like(c), -c / torch.where(eig_min, 1.0, lam - lam_min))
        s0 = q @ coef
        if s0.norm() < radius:
            u = q[:, 0]
            return s0 + math.sqrt(radius**2 - float(s0 @ s0)) * u, u
    # bisection on ‖s(λ)‖ − Δ (decreasing in λ) for t = λ − max(0, −λ_min), with d = λᵢ + max(0, −λ_min)
    # formed once so that d = 0 exactly at λ_min: accurate next to the pole (the nearly hard case)
    d = lam - lam_min if lam_min < 0 else lam
    lo, hi = 0.0, float(g.norm()) / radius + 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if float((c / (d + mid)).norm()) > radius:
            lo = mid
        else:
            hi = mid
    return -q @ (c / (d + hi)), None


def model_value(b, g, s) -> float:
    s = s.to(F64)
    return float(g.to(F64) @ s + 0.5 * s @ (b.to(F64) @ s))


def cauchy_decrease(b, g, radius, norm="2") -> float:
    """−m of the Cauchy point along −g (N&W eq. 4.11–4.12; for p = ∞ with the largest step Δ/‖g‖_∞)."""
    gg, gbg = float(g @ g), float(g @ b @ g)
    t_max = radius / (math.sqrt(gg) if norm == "2" else float(g.abs().max()))
    t = t_max if gbg <= 0 else min(gg / gbg, t_max)
    return t * gg - 0.5 * t * t * gbg


def make_compact(n, k, gamma, theta, seed, orthonormal_range=True):
    """B = γI + V diag(θ) Vᵀ (V n × k orthonormal) written as Ψ M Ψᵀ with a non-orthonormal Ψ = V R₀."""
    gen = torch.Generator().manual_seed(seed)
    v, _ = torch.linalg.qr(torch.randn(n, k, generator=gen, dtype=F64))
    r0 = torch.randn(k, k, generator=gen, dtype=F64) + 3.0 * torch.eye(k, dtype=F64)
    r0_inv = torch.linalg.inv(r0)
    m = r0_inv @ torch.diag(torch.as_tensor(theta, dtype=F64)) @ r0_inv.T
    return CompactForm(gamma, v @ r0, 0.5 * (m + m.T)), v


def model_of(compact: CompactForm, g: torch.Tensor) -> QuadraticModel:
    b = compact.dense()
    return QuadraticModel(g, hvp=lambda x: b @ x, compact=compact)


def rand(n, seed, dtype=F64):
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def cases():
    """(name, compact B, g, Δ, hard-case vectors or None) of the comparison problems (n = 5..30)."""
    out = []
    # interior: positive definite, Δ beyond the Newton step
    cf, _ = make_compact(12, 4, 1.5, [0.5, 1.0, 2.0, 4.0], seed=1)
    g = rand(12, 2)
    out.append(("interior", cf, g, 10 * float(cf.solve(g).norm())))
    # boundary: positive definite, Δ inside the Newton step
    cf, _ = make_compact(20, 5, 0.8, [0.1, 1.0, 3.0, 8.0, 20.0], seed=3)
    g = rand(20, 4)
    out.append(("boundary", cf, g, 0.3 * float(cf.solve(g).norm())))
    # indefinite, negative eigenvalue in range(Ψ)
    cf, _ = make_compact(15, 3, 1.0, [-3.0, 0.5, 2.0], seed=5)
    out.append(("indefinite", cf, rand(15, 6), 1.0))
    # indefinite with γ < 0: the lowest eigenvalue is on the complement of range(Ψ)
    cf, _ = make_compact(9, 4, -0.5, [1.0, 1.5, 2.0, 3.0], seed=7)
    out.append(("negative-gamma", cf, rand(9, 8), 0.7))
    # hard case, λ_min in range(Ψ): g ⟂ its eigenvector
    cf, v = make_compact(10, 3, 1.0, [-2.0, 0.5, 3.0], seed=9)
    g = rand(10, 10)
    g = g - (v[:, 0] @ g) * v[:, 0]
    out.append(("hard-range", cf, g, 5.0))
    # hard case, λ_min = γ < 0 on the complement: g ∈ range(Ψ)
    cf, v = make_compact(8, 3, -0.5, [1.5, 2.5, 3.5], seed=11)
    g = v @ rand(3, 12)
    out.append(("hard-complement", cf, g, 5.0))
    # B = 0
    out.append(("zero", CompactForm(0.0, torch.zeros(6, 0, dtype=F64), torch.zeros(0, 0, dtype=F64)), rand(6, 13), 0.4))
    # Ψ wider than n (no complement), general random symmetric M, mildly indefinite
    gen = torch.Generator().manual_seed(14)
    psi = torch.randn(5, 7, generator=gen, dtype=F64)
    mm = torch.randn(7, 7, generator=gen, dtype=F64)
    out.append(("wide", CompactForm(0.3, psi, 0.05 * (mm + mm.T)), rand(5, 15), 0.8))
    # a rank-deficient Ψ (a repeated column), n = 30
    psi = torch.randn(30, 4, generator=gen, dtype=F64)
    psi = torch.cat((psi, psi[:, :1]), 1)
    mm = torch.randn(5, 5, generator=gen, dtype=F64)
    out.append(("rank-deficient", CompactForm(0.9, psi, 0.1 * (mm + mm.T)), rand(30, 16), 0.5))
    return out


CASES = cases()
CASE_IDS = [c[0] for c in CASES]


# ---------------------------------------------------------------------------
# The compact form and the model


def test_compact_form_products_solve_and_eigh():
    cf, _ = make_compact(11, 4, 0.7, [-1.0, 0.5, 2.0, 5.0], seed=20)
    b = cf.dense()
    v = rand(11, 21)
    torch.testing.assert_close(cf.matvec(v), b @ v, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(cf.solve(v), torch.linalg.solve(b, v), rtol=1e-10, atol=1e-10)
    eig = cf.eigh()
    assert eig.complement == 7 and eig.vectors.shape == (11, 4)
    values = torch.cat((eig.values, torch.full((7,), 0.7, dtype=F64))).sort().values
    torch.testing.assert_close(values, torch.linalg.eigvalsh(b), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(eig.vectors.T @ eig.vectors, torch.eye(4, dtype=F64), rtol=0, atol=1e-12)


def test_compact_solve_refuses_singular_b():
    cf, _ = make_compact(6, 2, 1.0, [-1.0, 2.0], seed=22)  # eigenvalue γ + θ = 0
    with pytest.raises(ValueError):
        cf.solve(rand(6, 23))
    with pytest.raises(ValueError):
        CompactForm(0.0, torch.zeros(6, 0, dtype=F64), torch.zeros(0, 0, dtype=F64)).solve(rand(6, 23))
    with pytest.raises(ValueError):
        CompactForm(1.0, torch.zeros(6, 2, dtype=F64), torch.zeros(3, 3, dtype=F64))


def test_quadratic_model_value_and_count():
    cf, _ = make_compact(7, 2, 1.0, [0.5, 2.0], seed=24)
    g, s = rand(7, 25), rand(7, 26)
    model = QuadraticModel(g, compact=cf)
    assert model.value(s) == pytest.approx(model_value(cf.dense(), g, s), rel=1e-12)
    assert model.predicted_decrease(s) == pytest.approx(-model_value(cf.dense(), g, s), rel=1e-12)
    assert model.hvp_count == 2
    linear = QuadraticModel(g)
    assert linear.first_order and linear.value(s) == pytest.approx(float(g @ s))
    assert torch.equal(linear.matvec(s), torch.zeros_like(s)) and linear.hvp_count == 0
    with pytest.raises(ValueError):
        QuadraticModel(g, inverse=lambda x: x)  # an inverse of B = 0


# ---------------------------------------------------------------------------
# Exact solution (obs) against the dense reference


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_obs_matches_dense_reference(case):
    name, cf, g, radius = case
    b = cf.dense()
    s_ref, u = dense_trs(b, g, radius)
    model = QuadraticModel(g, compact=cf)
    result = OrthonormalBasis().solve(model, radius, "2")
    s = result.step
    assert s.dtype == F64 and result.hvps == 0 and model.hvp_count == 0
    assert float(s.norm()) <= radius * (1 + 1e-12)
    m_ref, m = model_value(b, g, s_ref), model_value(b, g, s)
    assert m == pytest.approx(m_ref, rel=1e-8, abs=1e-12)
    assert result.predicted_decrease == pytest.approx(-m, rel=1e-10, abs=1e-14)
    if name == "hard-complement":  # the γ-eigenspace has dimension n − k: compare the part in range(Ψ)
        q, _ = torch.linalg.qr(cf.Psi)
        torch.testing.assert_close(q @ (q.T @ s), q @ (q.T @ s_ref), rtol=0, atol=1e-8 * radius)
        assert float(s.norm()) == pytest.approx(radius, rel=1e-12) and result.on_boundary
    elif u is not None:  # hard case: s = s₀ ± τu
        torch.testing.assert_close(s - (u @ s) * u, s_ref - (u @ s_ref) * u, rtol=0, atol=1e-8 * radius)
        assert abs(float(u @ s)) == pytest.approx(abs(float(u @ s_ref)), rel=1e-8)
    else:
        torch.testing.assert_close(s, s_ref, rtol=0, atol=1e-8 * radius)
    assert result.on_boundary == (name != "interior")
    assert result.negative_curvature == bool(torch.linalg.eigvalsh(b).min() < 0)


def test_obs_nearly_hard_case_is_continuous():
    """g with a tiny component along the λ_min eigenvector: close to the hard-case solution, feasible."""
    cf, v = make_compact(10, 3, 1.0, [-2.0, 0.5, 3.0], seed=9)
    g = rand(10, 10)
    g = g - (v[:, 0] @ g) * v[:, 0]
    b = cf.dense()
    for eps in (1e-6, 1e-9, 1e-13):
        g_eps = g + eps * v[:, 0]
        s_ref, _ = dense_trs(b, g_eps, 5.0)
        s = OrthonormalBasis().solve(QuadraticModel(g_eps, compact=cf), 5.0).step
        assert model_value(b, g_eps, s) == pytest.approx(model_value(b, g_eps, s_ref), rel=1e-8)
        assert float(s.norm()) <= 5.0 * (1 + 1e-12)


def test_obs_nearly_hard_case_on_the_complement():
    """λ_min = γ < 0 on the complement and a tiny g_⊥: the step's part in range(Ψ) is still accurate."""
    cf, v = make_compact(8, 3, -0.5, [1.5, 2.5, 3.5], seed=11)
    b = cf.dense()
    w = rand(8, 17)
    w = w - v @ (v.T @ w)
    for eps in (1e-6, 1e-10):
        g = v @ rand(3, 12) + eps * w / w.norm()
        s_ref, _ = dense_trs(b, g, 5.0)
        s = OrthonormalBasis().solve(QuadraticModel(g, compact=cf), 5.0).step
        assert model_value(b, g, s) == pytest.approx(model_value(b, g, s_ref), rel=1e-10)
        torch.testing.assert_close(v @ (v.T @ s), v @ (v.T @ s_ref), rtol=0, atol=1e-9)


def test_diagonal_subproblem_hard_case_direction():
    """In the (nearly) hard case the eigenvector component points along −c_E, the limit of x(σ) = −c/(λ + σ)."""
    lam = torch.tensor([-1.0, 1.0], dtype=F64).numpy()
    for sign in (1.0, -1.0):
        c = torch.tensor([sign * 1e-30, 1.0], dtype=F64).numpy()
        sol = _diagonal_trs(lam, c, 5.0, 1e-14, 1e-12, 100)
        assert sol.hard_case and sol.on_boundary and sol.sigma == 1.0
        assert sol.x[1] == pytest.approx(-0.5) and sol.x[0] == pytest.approx(-sign * math.sqrt(25 - 0.25))
    sol = _diagonal_trs(lam, torch.tensor([0.0, 1.0], dtype=F64).numpy(), 5.0, 1e-14, 1e-12, 100)
    assert sol.hard_case and abs(sol.x[0]) == pytest.approx(math.sqrt(25 - 0.25))


def test_obs_singular_positive_semidefinite_b_gives_the_minimum_norm_interior_step():
    """B ⪰ 0 with a zero eigenvalue, g ⟂ its eigenvector, Δ large: s = −B⁺g inside (not moved to the boundary)."""
    cf, v = make_compact(9, 3, 1.0, [-1.0, 0.5, 2.0], seed=18)  # eigenvalue γ + θ₀ = 0
    b = cf.dense()
    g = rand(9, 19)
    g = g - (v[:, 0] @ g) * v[:, 0]
    result = OrthonormalBasis().solve(QuadraticModel(g, compact=cf), 50.0)
    torch.testing.assert_close(result.step, -torch.linalg.pinv(b, hermitian=True, rtol=1e-10) @ g, rtol=0, atol=1e-10)
    assert not result.on_boundary
    assert model_value(b, g, result.step) == pytest.approx(model_value(b, g, dense_trs(b, g, 50.0)[0]), rel=1e-10)


def test_secular_equation_converges_by_newton():
    for name, cf, g, radius in CASES:
        if name in ("interior", "hard-range", "hard-complement"):
            continue
        eig = cf.eigh()
        extra = 1 if eig.complement else 0  # one basis vector g_⊥/‖g_⊥‖ for the γ-eigenspace
        lam = torch.cat((eig.values, torch.full((extra,), cf.gamma, dtype=F64))).numpy()
        c_par = eig.vectors.T @ g
        c = torch.cat((c_par, (g - eig.vectors @ c_par).norm().reshape(1)))[: lam.size].numpy()
        sol = _diagonal_trs(lam, c, radius, 1e-14, 1e-13, 100)
        assert sol.on_boundary and 1 <= sol.iterations <= 12, (name, sol.iterations)
        assert math.sqrt(float(sol.x @ sol.x)) == pytest.approx(radius, rel=1e-12)


def test_finish_scales_a_step_outside_the_region_and_its_model_value():
    g = torch.tensor([1.0, -2.0], dtype=F64)
    b = torch.tensor([[3.0, 1.0], [1.0, -1.0]], dtype=F64)
    step = torch.tensor([0.6, 0.9], dtype=F64)
    for norm, size in (("2", float(step.norm())), ("inf", 0.9)):
        result = _finish(step, model_value(b, g, step), 0.5, norm, g, on_boundary=False)
        torch.testing.assert_close(result.step, step * 0.5 / size, rtol=1e-14, atol=0)
        assert result.on_boundary
        assert result.predicted_decrease == pytest.approx(-model_value(b, g, result.step), rel=1e-13)


def test_obs_zero_gradient_with_negative_curvature_moves_along_it():
    cf, v = make_compact(6, 2, 1.0, [-3.0, 1.0], seed=27)
    result = OrthonormalBasis().solve(QuadraticModel(torch.zeros(6, dtype=F64), compact=cf), 0.5)
    assert float(result.step.norm()) == pytest.approx(0.5, rel=1e-12)
    assert result.predicted_decrease == pytest.approx(0.5 * 2.0 * 0.25, rel=1e-10)  # −½ λ_min Δ²


# ---------------------------------------------------------------------------
# CG, dogleg and Cauchy against the reference and the Cauchy decrease


def pd_case(n, seed, radius_factor):
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=gen, dtype=F64)
    b = a @ a.T / n + 0.1 * torch.eye(n, dtype=F64)
    g = torch.randn(n, generator=gen, dtype=F64)
    return b, g, radius_factor * float(torch.linalg.solve(b, g).norm())


@pytest.mark.parametrize("n", [5, 17, 30])
def test_cg_interior_matches_newton_step(n):
    b, g, radius = pd_case(n, seed=n, radius_factor=2.0)
    model = QuadraticModel(g, hvp=lambda x: b @ x)
    rtol = 1e-10
    result = SteihaugCG(CGOptions(max_iter=200, rtol=rtol)).solve(model, radius)
    newton = -torch.linalg.solve(b, g)
    # ‖r‖ ≤ rtol ‖g‖ gives ‖s − s*‖ ≤ ‖B⁻¹‖ rtol ‖g‖
    bound = rtol * float(g.norm()) / float(torch.linalg.eigvalsh(b).min())
    assert float((result.step - newton).norm()) <= 10 * bound
    assert not result.on_boundary and not result.negative_curvature
    assert result.iterations == result.hvps == model.hvp_count >= 1
    assert result.predicted_decrease == pytest.approx(-model_value(b, g, result.step), rel=1e-10)


@pytest.mark.parametrize("n", [5, 17, 30])
def test_cg_and_dogleg_on_positive_definite_boundary_cases(n):
    """Between the Cauchy point and the exact solution; CG at least half the optimal decrease (Yuan 2000)."""
    b, g, radius = pd_case(n, seed=100 + n, radius_factor=0.4)
    exact = -model_value(b, g, dense_trs(b, g, radius)[0])
    cauchy = cauchy_decrease(b, g, radius)
    cg = SteihaugCG(CGOptions(max_iter=200, rtol=1e-12)).solve(QuadraticModel(g, hvp=lambda x: b @ x), radius)
    assert cg.on_boundary
    dogleg_model = QuadraticModel(g, hvp=lambda x: b @ x, inverse=lambda x: torch.linalg.solve(b, x))
    dogleg = Dogleg().solve(dogleg_model, radius)
    assert dogleg.hvps == 1 and dogleg.on_boundary
    for result in (cg, dogleg):
        assert float(result.step.norm()) <= radius * (1 + 1e-12)
        assert result.predicted_decrease == pytest.approx(-model_value(b, g, result.step), rel=1e-10)
        assert cauchy * (1 - 1e-12) <= result.predicted_decrease <= exact * (1 + 1e-12)
    assert cg.predicted_decrease >= 0.5 * exact


def test_dogleg_interior_is_the_newton_step_and_falls_back_on_indefinite_b():
    b, g, radius = pd_case(8, seed=30, radius_factor=1.5)
    model = QuadraticModel(g, hvp=lambda x: b @ x, inverse=lambda x: torch.linalg.solve(b, x))
    result = Dogleg().solve(model, radius)
    torch.testing.assert_close(result.step, -torch.linalg.solve(b, g), rtol=1e-12, atol=1e-12)
    assert not result.on_boundary
    # gᵀBg < 0: the Cauchy point on the boundary
    cf, _ = make_compact(8, 2, -1.0, [-1.0, 0.5], seed=31)
    g = rand(8, 32)
    result = Dogleg().solve(QuadraticModel(g, compact=cf), 0.3)
    torch.testing.assert_close(result.step, -0.3 * g / g.norm(), rtol=1e-12, atol=1e-14)
    assert result.negative_curvature and result.on_boundary
    # singular B (the Woodbury solve fails): the Cauchy point
    cf, _ = make_compact(8, 2, 1.0, [-1.0, 2.0], seed=33)
    result = Dogleg().solve(QuadraticModel(g, compact=cf), 10.0)
    assert result.predicted_decrease == pytest.approx(cauchy_decrease(cf.dense(), g, 10.0), rel=1e-12)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("name", list(SOLVERS))
def test_feasible_and_cauchy_decrease_on_all_cases(case, name):
    _, cf, g, radius = case
    cls = SOLVERS[name]
    model = model_of(cf, g)
    if name == "dogleg":
        model = QuadraticModel(g, compact=cf)
    result = cls().solve(model, radius, "2")
    b = cf.dense()
    assert isinstance(result, SubproblemResult) and result.step.dtype == F64
    assert float(result.step.norm()) <= radius * (1 + 1e-12)
    assert result.predicted_decrease >= cauchy_decrease(b, g, radius) * (1 - 1e-12) - 1e-15
    assert result.predicted_decrease == pytest.approx(-model_value(b, g, result.step), rel=1e-10, abs=1e-14)
    exact = -model_value(b, g, dense_trs(b, g, radius)[0])
    assert result.predicted_decrease <= exact * (1 + 1e-10) + 1e-14


@pytest.mark.parametrize("seed", range(12))
def test_random_problems_all_solvers(seed):
    """Random indefinite compact B, random Δ: feasibility and the Cauchy decrease for every solver."""
    gen = torch.Generator().manual_seed(1000 + seed)
    n = int(torch.randint(5, 31, (1,), generator=gen))
    k = int(torch.randint(1, 6, (1,), generator=gen))
    psi = torch.randn(n, k, generator=gen, dtype=F64)
    mm = torch.randn(k, k, generator=gen, dtype=F64)
    cf = CompactForm(float(torch.rand(1, generator=gen)) * 2 - 0.5, psi, 0.3 * (mm + mm.T))
    g = torch.randn(n, generator=gen, dtype=F64)
    radius = float(10 ** (torch.rand(1, generator=gen) * 3 - 2))
    b = cf.dense()
    exact = -model_value(b, g, dense_trs(b, g, radius)[0])
    for name, cls in SOLVERS.items():
        model = QuadraticModel(g, compact=cf) if name == "dogleg" else model_of(cf, g)
        result = cls().solve(model, radius)
        assert float(result.step.norm()) <= radius * (1 + 1e-12), name
        assert result.predicted_decrease >= cauchy_decrease(b, g, radius) * (1 - 1e-12), name
        assert result.predicted_decrease <= exact * (1 + 1e-10) + 1e-14, name
        if name == "obs":
            assert result.predicted_decrease == pytest.approx(exact, rel=1e-8)


def test_cg_negative_curvature_goes_to_the_boundary():
    """B negative definite: the first direction −g has negative curvature; the step is −Δ g/‖g‖ (τ > 0 wins)."""
    n = 6
    b = -torch.diag(torch.arange(1.0, n + 1, dtype=F64))
    g = rand(n, 40)
    for norm, step in (("2", -0.5 * g / g.norm()), ("inf", -0.5 * g / g.abs().max())):
        result = SteihaugCG().solve(QuadraticModel(g, hvp=lambda x: b @ x), 0.5, norm)
        torch.testing.assert_close(result.step, step, rtol=1e-12, atol=1e-14)
        assert result.negative_curvature and result.on_boundary and result.iterations == 1
    # negative curvature found at a later iteration, from an interior iterate
    b = torch.diag(torch.tensor([1.0, -1.0], dtype=F64))
    g = torch.tensor([-1.0, -0.1], dtype=F64)
    result = SteihaugCG(CGOptions(rtol=1e-12)).solve(QuadraticModel(g, hvp=lambda x: b @ x), 3.0)
    assert result.negative_curvature and result.iterations == 2
    assert float(result.step.norm()) == pytest.approx(3.0, rel=1e-12)
    assert result.predicted_decrease >= cauchy_decrease(b, g, 3.0)
    assert result.predicted_decrease == pytest.approx(-model_value(b, g, result.step), rel=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_boundary_roots(seed):
    """τ₋ ≤ 0 ≤ τ₊ with z + τd on the sphere / the box surface, for z inside."""
    gen = torch.Generator().manual_seed(seed)
    z, d = 0.3 * torch.randn(7, generator=gen, dtype=F64), torch.randn(7, generator=gen, dtype=F64)
    radius = 1.5
    lo, hi = _sphere_roots(z, d, radius)
    assert lo <= 0 <= hi
    for tau in (lo, hi):
        assert float((z + tau * d).norm()) == pytest.approx(radius, rel=1e-13)
    lo, hi = _box_roots(z, d, radius)
    assert lo <= 0 <= hi
    for tau in (lo, hi):
        assert float((z + tau * d).abs().max()) == pytest.approx(radius, rel=1e-13)
    lo, hi = _sphere_roots(torch.zeros(7, dtype=F64), d, radius)
    assert hi == pytest.approx(-lo) and hi == pytest.approx(radius / float(d.norm()))


# ---------------------------------------------------------------------------
# Cauchy point closed forms, first order


def test_cauchy_closed_forms():
    b, g, radius = pd_case(9, seed=50, radius_factor=0.5)
    model = QuadraticModel(g, hvp=lambda x: b @ x)
    result = Cauchy().solve(model, radius, "2")
    gg, gbg = float(g @ g), float(g @ b @ g)
    tau = min(float(g.norm()) ** 3 / (radius * gbg), 1.0)  # N&W eq. 4.12
    torch.testing.assert_close(result.step, -tau * radius * g / g.norm(), rtol=1e-12, atol=1e-14)
    assert result.hvps == 1 and result.predicted_decrease == pytest.approx(cauchy_decrease(b, g, radius))
    # first order (B = 0): s = −Δ g/‖g‖ and s = −Δ sign(g)
    linear = QuadraticModel(g)
    result = Cauchy().solve(linear, radius, "2")
    torch.testing.assert_close(result.step, -radius * g / g.norm(), rtol=1e-14, atol=1e-15)
    assert result.predicted_decrease == pytest.approx(radius * math.sqrt(gg)) and result.hvps == 0
    result = Cauchy().solve(linear, radius, "inf")
    assert torch.equal(result.step, -radius * torch.sign(g))
    assert result.predicted_decrease == pytest.approx(radius * float(g.abs().sum()))
    result = Cauchy(CauchyOptions(sign_direction=False)).solve(linear, radius, "inf")
    torch.testing.assert_close(result.step, -radius * g / g.abs().max(), rtol=1e-14, atol=1e-15)


def test_zero_gradient_gives_zero_step():
    g = torch.zeros(5, dtype=F64)
    cf, _ = make_compact(5, 2, 1.0, [0.5, 1.0], seed=51)
    for name, cls in SOLVERS.items():
        result = cls().solve(QuadraticModel(g, compact=cf), 1.0)
        assert torch.equal(result.step, g) and result.predicted_decrease == 0.0, name


# ---------------------------------------------------------------------------
# The ∞-norm


def box_grid_best(b, g, radius, points=401) -> float:
    """Largest decrease −m over a grid of the square ‖s‖_∞ ≤ Δ (n = 2)."""
    t = torch.linspace(-radius, radius, points, dtype=F64)
    s = torch.cartesian_prod(t, t)
    m = s @ g + 0.5 * ((s @ b) * s).sum(1)
    return float(-m.min())


@pytest.mark.parametrize("seed", range(6))
def test_infinity_norm_feasible_and_cauchy_decrease(seed):
    gen = torch.Generator().manual_seed(60 + seed)
    n = int(torch.randint(5, 31, (1,), generator=gen))
    a = torch.randn(n, n, generator=gen, dtype=F64)
    b = 0.5 * (a + a.T) + (2.0 if seed % 2 else 0.0) * torch.eye(n, dtype=F64)  # PD-ish and indefinite
    g = torch.randn(n, generator=gen, dtype=F64)
    radius = float(10 ** (torch.rand(1, generator=gen) * 2 - 1.5))
    for cls in (Cauchy, SteihaugCG):
        model = QuadraticModel(g, hvp=lambda x: b @ x)
        result = cls().solve(model, radius, "inf")
        assert float(result.step.abs().max()) <= radius * (1 + 1e-12)
        assert result.predicted_decrease >= cauchy_decrease(b, g, radius, "inf") * (1 - 1e-12)
        assert result.predicted_decrease == pytest.approx(-model_value(b, g, result.step), rel=1e-10, abs=1e-14)


def test_infinity_norm_two_dimensional_grid():
    g = torch.tensor([0.7, -0.2], dtype=F64)
    radius = 0.5
    # B = 0: the exact minimiser is the corner −Δ sign(g)
    zero = torch.zeros(2, 2, dtype=F64)
    result = Cauchy().solve(QuadraticModel(g), radius, "inf")
    assert torch.equal(result.step, -radius * torch.sign(g))
    assert result.predicted_decrease == pytest.approx(box_grid_best(zero, g, radius), rel=1e-12)
    cg = SteihaugCG().solve(QuadraticModel(g, hvp=lambda x: zero @ x), radius, "inf")
    assert cg.predicted_decrease <= box_grid_best(zero, g, radius) * (1 + 1e-12)
    # B ≠ 0: never more than the best grid point (plus the grid resolution), never less than Cauchy
    for b in (torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=F64), torch.tensor([[1.0, 0.3], [0.3, -2.0]], dtype=F64)):
        best = box_grid_best(b, g, radius)
        slack = (2 * radius / 400) * (float(g.abs().sum()) + 2 * radius * float(b.abs().sum()))
        for cls in (Cauchy, SteihaugCG):
            result = cls().solve(QuadraticModel(g, hvp=lambda x, b=b: b @ x), radius, "inf")
            assert float(result.step.abs().max()) <= radius * (1 + 1e-12)
            assert cauchy_decrease(b, g, radius, "inf") * (1 - 1e-12) <= result.predicted_decrease
            assert result.predicted_decrease <= best + slack


# ---------------------------------------------------------------------------
# float32, dtype/device, configuration checks


@pytest.mark.parametrize(
    "name, norm", [(name, norm) for name in SOLVERS for norm in NORMS if norm in SOLVERS[name].norms]
)
def test_float32_inputs(name, norm):
    cls = SOLVERS[name]
    for _, cf, g, radius in CASES:
        cf32 = CompactForm(cf.gamma, cf.Psi.float(), cf.M)
        g32 = g.float()
        b = cf.dense()
        model = QuadraticModel(g32, compact=cf32)
        result = cls().solve(model, radius, norm)
        assert result.step.dtype == torch.float32 and result.step.device == g32.device
        size = float(result.step.abs().max()) if norm == "inf" else float(result.step.double().norm())
        assert size <= radius * (1 + 1e-6)
        assert result.predicted_decrease >= cauchy_decrease(b, g, radius, norm) * (1 - 1e-4) - 1e-6
        assert result.predicted_decrease == pytest.approx(-model_value(b, g, result.step), rel=1e-4, abs=1e-6)
        if name == "obs":
            exact = -model_value(b, g, dense_trs(b, g, radius)[0])
            assert result.predicted_decrease == pytest.approx(exact, rel=1e-4, abs=1e-6)


def test_configuration_checks():
    g = rand(5, 70)
    linear = QuadraticModel(g)
    for name in ("dogleg", "cg", "obs"):
        with pytest.raises(ValueError):
            SOLVERS[name]().solve(linear, 1.0)
    with pytest.raises(ValueError):
        OrthonormalBasis().solve(QuadraticModel(g, hvp=lambda x: x), 1.0)  # no compact form
    cf, _ = make_compact(5, 2, 1.0, [0.5, 1.0], seed=71)
    for name in ("dogleg", "obs"):
        with pytest.raises(ValueError):
            SOLVERS[name]().solve(QuadraticModel(g, compact=cf), 1.0, "inf")
    for radius in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError):
            Cauchy().solve(linear, radius)
    with pytest.raises(ValueError):
        Cauchy().solve(QuadraticModel(torch.full((5,), math.nan, dtype=F64)), 1.0)
    with pytest.raises(FloatingPointError):
        SteihaugCG().solve(QuadraticModel(g, hvp=lambda x: x * math.nan), 1.0)


def test_registration_and_declarations():
    expected = {"cauchy": (("2", "inf"), "none"), "dogleg": (("2",), "inverse_or_compact")}
    expected.update({"cg": (("2", "inf"), "hvp"), "obs": (("2",), "compact")})
    for name, cls in SOLVERS.items():
        assert cls.registered_name == name
        assert (cls.norms, cls.needs) == expected[name] and cls.needs in NEEDS
        options = cls().options
        assert dataclasses.is_dataclass(options)
        for f in dataclasses.fields(options):
            assert f.metadata.get("doc"), (name, f.name)
    assert CGOptions().rtol == 0.5 and CGOptions().max_iter == 50


def test_hvp_counts():
    b, g, radius = pd_case(7, seed=80, radius_factor=0.5)
    model = QuadraticModel(g, hvp=lambda x: b @ x)
    assert Cauchy().solve(model, radius, "2").hvps == 1
    assert Cauchy().solve(model, radius, "inf").hvps == 2
    result = SteihaugCG().solve(model, radius, "2")
    assert result.hvps == result.iterations
    assert model.hvp_count == 3 + result.iterations
    assert cauchy_point(model, radius).predicted_decrease == pytest.approx(cauchy_decrease(b, g, radius))
