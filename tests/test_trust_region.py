"""Trust-region solvers: convergence on closed forms, the ratio test and radius control, rejected NaN
trials, validation of compositions, APTS as trust-region control around Schwarz, and state round trips."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import (
    FunctionObjective,
    LeastSquaresProblem,
    logistic_regression,
    make_mlp,
    quadratic,
    random_spd,
    rosenbrock,
)

from ddnn import config as cfg
from ddnn.errors import ConfigError
from ddnn.solvers.base import SolverContext, Status
from ddnn.solvers.objective import Objective
from ddnn.solvers.radius import RadiusControl, RadiusOptions
from ddnn.solvers.trust_region import TrustRegion, TrustRegionOptions

F64 = torch.float64


def run(objective, theta0, iters, **options):
    solver = TrustRegion(TrustRegionOptions(**options))
    solver.init(objective, theta0)
    reports = []
    for _ in range(iters):
        reports.append(solver.step())
        if reports[-1].status != Status.RUNNING:
            break
    return solver, reports


VARIANTS = [
    {"order": 1, "radius": 0.5},
    {"order": 2, "hessian": "sr1"},
    {"order": 2, "hessian": "lbfgs"},
    {"order": 2, "hessian": "exact"},
    {"order": 2, "hessian": "sr1", "subproblem": cfg.section("subproblem", "cg")},
    {"order": 2, "hessian": "lbfgs", "subproblem": cfg.section("subproblem", "dogleg")},
    {"order": 2, "hessian": "exact", "norm": "inf"},
]


def _label(v):
    return "-".join(f"{k}={getattr(x, 'name', x)}" for k, x in v.items())


@pytest.mark.parametrize("variant", VARIANTS, ids=_label)
def test_converges_on_a_quadratic(variant):
    a, b = random_spd(12, cond=20.0, seed=1), torch.linspace(-1, 1, 12, dtype=F64)
    fn = quadratic(a, b, centred=True)
    iters = 3000 if variant["order"] == 1 else 300
    solver, reports = run(FunctionObjective(fn), torch.zeros(12, dtype=F64), iters, grad_tol=1e-9, **variant)
    assert reports[-1].status == Status.GRAD_TOL
    torch.testing.assert_close(solver.theta, torch.linalg.solve(a, b), rtol=1e-6, atol=1e-7)
    losses = [r.loss for r in reports]
    assert all(y <= x for x, y in zip(losses, losses[1:]))  # monotone: rejected steps keep the iterate


@pytest.mark.parametrize("variant", VARIANTS[1:4], ids=_label)
def test_converges_on_rosenbrock(variant):
    solver, reports = run(
        FunctionObjective(rosenbrock), torch.tensor([-1.2, 1.0, -1.2, 1.0], dtype=F64), 2000, grad_tol=1e-6, **variant
    )
    assert reports[-1].status == Status.GRAD_TOL
    torch.testing.assert_close(solver.theta, torch.ones(4, dtype=F64), rtol=1e-5, atol=1e-5)


def test_exact_newton_trust_region_converges_quadratically_on_logistic_regression():
    fn = logistic_regression(rows=80, features=6, reg=1e-2, seed=2)
    objective = FunctionObjective(fn)
    solver, reports = run(objective, torch.zeros(6, dtype=F64), 30, hessian="exact", radius=10.0, grad_tol=1e-13)
    assert reports[-1].status == Status.GRAD_TOL and len(reports) < 15
    norms = [r.grad_norm for r in reports if r.accepted and r.step_norm > 0]
    # near the solution the gradient norm is squared every step (up to a constant): a quadratic rate
    tail = [n for n in norms if n < 1e-2]
    assert len(tail) >= 3 and all(b < 1e3 * a * a for a, b in zip(tail, tail[1:]))
    assert tail[-1] < 1e-13
    assert objective.counters["hess_evals"] > 0


def test_a_nonfinite_trial_is_rejected_and_the_radius_shrinks():
    calls = {"n": 0}

    def fn(x):  # finite at the start, NaN at the first trial, a bowl afterwards
        calls["n"] += 1
        value = (x**2).sum()
        return value * math.nan if calls["n"] == 2 else value

    solver, reports = run(FunctionObjective(fn), torch.ones(3, dtype=F64), 2, order=1, radius=0.5)
    first = reports[0]
    assert not first.accepted and first.status == Status.RUNNING and math.isfinite(first.loss)
    assert reports[1].radius == pytest.approx(0.125)  # Δ shrank by 1/4 after the NaN trial
    # then the first-order step -Δ g/|g| of the shrunk radius
    expected = torch.full((3,), 1.0 - 0.125 / math.sqrt(3), dtype=F64)
    torch.testing.assert_close(solver.theta, expected, rtol=1e-15, atol=1e-15)
    assert reports[1].accepted and solver.context.counters["tr_nonfinite_trials"] == 1


def test_radius_control_follows_the_ratio():
    control = RadiusControl(RadiusOptions(radius=1.0, max_radius=3.0))
    control.update(0.1, True)
    assert control.radius == 0.25
    control.update(0.9, False)  # very successful, but inside the region: unchanged
    assert control.radius == 0.25
    for _ in range(5):
        control.update(0.9, True)
    assert control.radius == 3.0  # capped at max_radius
    assert control.ratio(1.0, 0.5, 1.0) == 0.5 and control.ratio(1.0, math.nan, 1.0) == -math.inf
    assert control.accepts(1e-4) and not control.accepts(0.0)


def test_non_monotone_acceptance_compares_with_the_window():
    control = RadiusControl(RadiusOptions(window=3))
    for loss in (5.0, 2.0, 1.5):
        control.accepted(loss)
    assert control.recent == [2.0, 1.5]  # the last window - 1 losses
    assert control.ratio(1.0, 1.5, 1.0) == pytest.approx(0.5)  # against max(1, 2, 1.5)
    monotone = RadiusControl(RadiusOptions())
    assert monotone.ratio(1.0, 1.5, 1.0) == -0.5


def test_state_round_trip_continues_bit_for_bit():
    fn = logistic_regression(rows=40, features=5, seed=4)
    straight, _ = run(FunctionObjective(fn), torch.zeros(5, dtype=F64), 8)
    first, _ = run(FunctionObjective(fn), torch.zeros(5, dtype=F64), 4)
    second = TrustRegion(TrustRegionOptions())
    second.init(FunctionObjective(fn), torch.zeros(5, dtype=F64))
    second.load_state_dict(first.state_dict())
    for _ in range(4):
        second.step()
    assert torch.equal(second.theta, straight.theta) and second.control.radius == straight.control.radius


@pytest.mark.parametrize(
    "solver, key",
    [
        ({"name": "trust_region", "order": 1, "subproblem": "obs"}, "solver.subproblem"),
        ({"name": "trust_region", "hessian": "exact", "subproblem": "dogleg"}, "solver.subproblem"),
        ({"name": "trust_region", "norm": "inf", "subproblem": "obs"}, "solver.subproblem"),
        ({"name": "trust_region", "npc": {"name": "schwarz", "local": "lbfgs"}}, "solver.npc.local.name"),
        ({"name": "trust_region", "global_steps": 2}, "solver.global_steps"),
        ({"name": "trust_region", "eta": 0.5}, "solver.eta"),
        ({"name": "trust_region", "radius": 100.0}, "solver.radius"),
    ],
)
def test_impossible_compositions_are_input_errors(solver, key):
    raw = {"problem": {"name": "regression", "n_samples": 20}, "solver": solver}
    with pytest.raises(ConfigError) as info:
        cfg.parse(raw)
    assert info.value.key == key


# -- APTS: trust-region control around Schwarz --------------------------------------------------


def _apts(problem, decomposition, subdomains, local_iters=1, **options):
    local_norm = options.get("norm", 2)
    raw = {
        "name": "trust_region",
        "order": 1,
        **options,
        "npc": {
            "name": "schwarz",
            "decomposition": decomposition,
            "subdomains": subdomains,
            "local_iters": local_iters,
            "local": {"name": "trust_region", "order": 1, "norm": local_norm},
        },
    }
    context = SolverContext()
    solver = context.build_solver(cfg.section("solver", raw))
    objective = Objective(problem, problem.training_samples(), None, context.counters)
    solver.init(objective, problem.params.flat)
    return solver, objective, context


@pytest.mark.parametrize("decomposition", ["samples", "layers"])
def test_apts_with_one_subdomain_takes_the_trust_region_step(decomposition):
    problem = LeastSquaresProblem(make_mlp(width=5, depth=2), rows=30)
    theta0 = problem.params.flat.clone()
    apts, objective, _ = _apts(problem, decomposition, 1)
    tr = TrustRegion(TrustRegionOptions(order=1))
    tr.init(objective, theta0)
    report_apts, report_tr = apts.step(), tr.step()
    assert report_apts.accepted and report_tr.accepted
    torch.testing.assert_close(apts.theta, tr.theta, rtol=1e-12, atol=1e-14)
    assert report_apts.loss == pytest.approx(report_tr.loss, rel=1e-12)


@pytest.mark.parametrize("decomposition, norm", [("samples", 2), ("layers", "inf"), ("layers", 2)])
def test_apts_correction_stays_inside_the_radius_and_decreases_the_loss(decomposition, norm):
    problem = LeastSquaresProblem(make_mlp(width=6, depth=3), rows=48)
    apts, objective, context = _apts(problem, decomposition, 3, local_iters=3, norm=norm, radius=0.05)
    start = objective.evaluate(problem.params.flat).loss
    for _ in range(10):
        before = apts.theta.clone()
        report = apts.step()
        p = math.inf if norm == "inf" else 2
        assert float(torch.linalg.vector_norm(apts.theta - before, ord=p)) <= report.radius * (1 + 1e-9)
    assert report.loss < start
    assert context.counters["local_grad_evals"] > 0 and context.counters["tr_accepted"] > 0
