"""Line searches on the 1-D test functions of Moré & Thuente (1994), and their failure modes."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import FunctionObjective

from ddnn import registry
from ddnn.errors import ConfigError
from ddnn.options import Section
from ddnn.solvers.line_search import (
    Armijo,
    ArmijoOptions,
    Fixed,
    FixedOptions,
    Ray,
    StrongWolfe,
    StrongWolfeOptions,
    cubic_minimizer,
    negligible_step,
    quadratic_minimizer,
)


# -- Moré & Thuente (1994), section 5: φ(α) on α ≥ 0 with φ'(0) < 0 ----------
def mt1(a, beta=2.0):
    return -a / (a**2 + beta)


def mt2(a, beta=0.004):
    return (a + beta) ** 5 - 2.0 * (a + beta) ** 4


def mt3(a, beta=0.01, ell=39.0):
    if a.item() <= 1.0 - beta:
        base = 1.0 - a
    elif a.item() >= 1.0 + beta:
        base = a - 1.0
    else:
        base = (a - 1.0) ** 2 / (2.0 * beta) + beta / 2.0
    return base + 2.0 * (1.0 - beta) / (ell * math.pi) * torch.sin(ell * math.pi / 2.0 * a)


def _gamma(b):
    return math.sqrt(1.0 + b * b) - b


def mt456(b1, b2):
    def phi(a):
        return _gamma(b1) * torch.sqrt((1.0 - a) ** 2 + b2**2) + _gamma(b2) * torch.sqrt(a**2 + b1**2)

    return phi


# (function, c1, c2) as in Moré & Thuente's tables 1-6 (μ = c1, η = c2).
CASES = {
    "mt1": (mt1, 1e-3, 1e-1),
    "mt2": (mt2, 1e-1, 1e-1),
    "mt3": (mt3, 1e-1, 1e-1),
    "mt4": (mt456(1e-3, 1e-3), 1e-3, 1e-3),
    "mt5": (mt456(1e-2, 1e-3), 1e-3, 1e-3),
    "mt6": (mt456(1e-3, 1e-2), 1e-3, 1e-3),
}
ALPHA0 = (1e-3, 1e-1, 1e1, 1e3)


class OneDim:
    """φ as the line-search callable: (loss, grad (1-element tensor), slope) with d = 1."""

    def __init__(self, fn):
        self.fn = fn
        self.calls = 0
        self.grad_calls = 0

    def value_and_slope(self, alpha: float) -> tuple[float, float]:
        a = torch.tensor(alpha, dtype=torch.float64, requires_grad=True)
        f = self.fn(a)
        (d,) = torch.autograd.grad(f, a)
        return f.item(), d.item()

    def __call__(self, alpha: float, need_grad: bool = True):
        self.calls += 1
        f, d = self.value_and_slope(alpha)
        if not need_grad:
            return f, None, None
        self.grad_calls += 1
        return f, torch.tensor([d], dtype=torch.float64), d


@pytest.mark.parametrize("alpha0", ALPHA0)
@pytest.mark.parametrize("name", sorted(CASES))
def test_strong_wolfe_more_thuente(name, alpha0):
    fn, c1, c2 = CASES[name]
    phi = OneDim(fn)
    f0, d0 = phi.value_and_slope(0.0)
    assert d0 < 0
    search = StrongWolfe(StrongWolfeOptions(c1=c1, c2=c2, max_evals=30))
    res = search.search(phi, f0, d0, alpha0)
    assert res.success, (name, alpha0, res)
    assert res.evals == phi.calls <= 30
    f, d = phi.value_and_slope(res.alpha)
    assert res.loss == f and res.dphi == d
    assert f <= f0 + c1 * res.alpha * d0  # sufficient decrease
    assert abs(d) <= c2 * abs(d0)  # strong curvature condition


@pytest.mark.parametrize("alpha0", ALPHA0)
@pytest.mark.parametrize("name", sorted(CASES))
def test_armijo_more_thuente(name, alpha0):
    fn, c1, _ = CASES[name]
    phi = OneDim(fn)
    f0, d0 = phi.value_and_slope(0.0)
    res = Armijo(ArmijoOptions(c1=c1, max_evals=40)).search(phi, f0, d0, alpha0)
    assert res.success
    assert res.loss <= f0 + c1 * res.alpha * d0
    assert res.grad is not None and res.dphi == pytest.approx(phi.value_and_slope(res.alpha)[1])
    # backtracking: α is α0 shrunk by whole powers of 1/2, and the previous trial was rejected
    k = round(math.log2(alpha0 / res.alpha))
    assert res.alpha == pytest.approx(alpha0 * 0.5**k)
    if k > 0:
        prev = 2.0 * res.alpha
        assert phi.value_and_slope(prev)[0] > f0 + c1 * prev * d0
    # value-only trials after the first (which computes the gradient), one gradient at the accepted point
    assert phi.grad_calls == (1 if k == 0 else 2)
    assert res.evals == phi.calls


def test_armijo_value_only_trials():
    phi = OneDim(mt1)
    f0, d0 = phi.value_and_slope(0.0)
    res = Armijo(ArmijoOptions(grad_first_trial=False)).search(phi, f0, d0, 1e3)
    assert res.success and phi.grad_calls == 1 and res.evals == phi.calls


def test_fixed_is_one_evaluation():
    phi = OneDim(mt1)
    f0, d0 = phi.value_and_slope(0.0)
    res = Fixed(FixedOptions(scale=0.5)).search(phi, f0, d0, 3.0)
    assert (res.alpha, res.evals, res.success, phi.calls) == (1.5, 1, True, 1)
    assert res.loss == phi.value_and_slope(1.5)[0]


def test_failure_is_reported_with_the_best_point():
    # The slope given is inconsistent with the values (φ increases): nothing is acceptable.
    phi = OneDim(lambda a: a**2 + a)
    for search in (StrongWolfe(StrongWolfeOptions(max_evals=8)), Armijo(ArmijoOptions(max_evals=8))):
        phi.calls = 0
        g0 = torch.tensor([-1.0], dtype=torch.float64)
        res = search.search(phi, 0.0, -1.0, 1.0, grad0=g0)
        assert not res.success
        assert res.alpha == 0.0 and res.loss == 0.0 and res.grad is g0
        assert res.evals == phi.calls <= 8


def test_steps_below_the_relative_tolerance_are_never_taken():
    """An uphill direction whose values dip below φ(0) by rounding at tiny steps: no step is reported."""

    def fn(a):  # φ(α) = α for α >= 1e-12, and a rounding-size dip below φ(0) = 0 closer to 0
        return a if a.item() >= 1e-12 else 0.0 * a - 1e-30

    for search in (StrongWolfe(StrongWolfeOptions(max_evals=60)), Armijo(ArmijoOptions(max_evals=60))):
        phi = OneDim(fn)
        g0 = torch.tensor([-1.0], dtype=torch.float64)
        res = search.search(phi, 0.0, -1.0, 1.0, grad0=g0, min_alpha=1e-12)
        assert not res.success and res.alpha == 0.0 and res.grad is g0
        # without the tolerance the same search takes the rounding "decrease"
        assert search.search(OneDim(fn), 0.0, -1.0, 1.0, grad0=g0).alpha > 0.0


def test_negligible_step_is_relative_to_the_iterate():
    theta = torch.full((4,), 3.0, dtype=torch.float64)
    d = torch.ones(4, dtype=torch.float64)
    assert negligible_step(theta, d) == pytest.approx(torch.finfo(torch.float64).eps * 3.0)
    assert negligible_step(theta.float(), d.float()) == pytest.approx(torch.finfo(torch.float32).eps * 3.0)
    assert negligible_step(torch.zeros(4), d) == 0.0 and negligible_step(theta, torch.zeros(4)) == 0.0


def test_budget_exhausted_returns_best_decrease():
    # Strong Wolfe with a curvature condition that is almost never met: returns the best point found.
    phi = OneDim(mt3)
    f0, d0 = phi.value_and_slope(0.0)
    res = StrongWolfe(StrongWolfeOptions(c1=1e-4, c2=1e-9, max_evals=4)).search(phi, f0, d0, 1e-3)
    assert not res.success and res.evals == 4
    assert 0 < res.alpha and res.loss < f0


def test_non_descent_direction_is_refused():
    phi = OneDim(mt1)
    res = StrongWolfe(StrongWolfeOptions()).search(phi, 0.0, 1.0, 1.0)
    assert not res.success and res.evals == 0 and phi.calls == 0


def test_non_finite_values_are_backed_off():
    def fn(a):
        return (a - 1.0) ** 2 if a.item() < 5.0 else a * float("nan")

    for search in (StrongWolfe(StrongWolfeOptions()), Armijo(ArmijoOptions())):
        phi = OneDim(fn)
        res = search.search(phi, 1.0, -2.0, 100.0)
        assert res.success and math.isfinite(res.loss) and res.alpha < 5.0


def test_interpolation_formulas():
    # cubic with a minimiser at 2: φ(α) = (α − 2)²(α + 1) → φ' = (α − 2)(3α)
    def f(a):
        return (a - 2.0) ** 2 * (a + 1.0)

    def d(a):
        return 3.0 * a * (a - 2.0)

    assert cubic_minimizer(0.5, f(0.5), d(0.5), 3.0, f(3.0), d(3.0)) == pytest.approx(2.0)
    assert cubic_minimizer(3.0, f(3.0), d(3.0), 0.5, f(0.5), d(0.5)) == pytest.approx(2.0)
    assert quadratic_minimizer(0.0, 4.0, -4.0, 3.0, 1.0) == pytest.approx(2.0)  # (α − 2)²
    assert quadratic_minimizer(0.0, 0.0, -1.0, 1.0, -2.0) is None  # concave


def test_ray_evaluates_along_the_direction():
    obj = FunctionObjective(lambda x: (x**2).sum())
    theta = torch.tensor([1.0, 2.0], dtype=torch.float64)
    d = torch.tensor([-1.0, 0.0], dtype=torch.float64)
    ray = Ray(obj, theta, d)
    f, g, slope = ray(0.5, True)
    assert f == 0.25 + 4.0 and torch.equal(g, torch.tensor([1.0, 4.0], dtype=torch.float64)) and slope == -1.0
    assert ray(1.0, False) == (4.0, None, None)
    assert torch.equal(theta, torch.tensor([1.0, 2.0], dtype=torch.float64))


def test_registered_components():
    assert {"strong_wolfe", "armijo", "fixed"} <= set(registry.names("line_search"))
    search = registry.build("line_search", Section("line_search", "armijo", ArmijoOptions(shrink=0.25)))
    assert isinstance(search, Armijo) and search.options.shrink == 0.25
    with pytest.raises(ConfigError):
        StrongWolfeOptions(c1=0.5, c2=0.4).check("solver.line_search")
