"""L-BFGS: agreement with torch.optim.LBFGS, convergence, momentum, failures and bit-for-bit resume."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import (
    FunctionObjective,
    least_squares_objective,
    logistic_regression,
    quadratic,
    random_spd,
    rosenbrock,
)

from ddnn import config, registry
from ddnn.options import Section
from ddnn.solvers.base import Status
from ddnn.solvers.lbfgs import LBFGS, LBFGSOptions
from ddnn.solvers.line_search import ArmijoOptions, FixedOptions, StrongWolfeOptions

F64 = torch.float64


def line_search(name: str, **kw) -> Section:
    options = {"strong_wolfe": StrongWolfeOptions, "armijo": ArmijoOptions, "fixed": FixedOptions}[name]
    return Section("line_search", name, options(**kw))


def run(objective, theta0, iters, **options):
    """Our L-BFGS for ``iters`` steps (or until it stops); the iterates after every step."""
    solver = LBFGS(LBFGSOptions(**options))
    solver.init(objective, theta0)
    iterates, reports = [], []
    for _ in range(iters):
        reports.append(solver.step())
        iterates.append(solver.theta.clone())
        if reports[-1].status != Status.RUNNING:
            break
    return solver, iterates, reports


def torch_lbfgs_iterates(fn, theta0, iters, memory, line_search_fn=None):
    """torch.optim.LBFGS, one iteration per step() call, with its stopping tests disabled."""
    x = theta0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS(
        [x],
        lr=1.0,
        max_iter=1,
        max_eval=26,
        history_size=memory,
        tolerance_grad=-1.0,
        tolerance_change=0.0,
        line_search_fn=line_search_fn,
    )

    def closure():
        opt.zero_grad()
        loss = fn(x)
        loss.backward()
        return loss

    out = []
    for _ in range(iters):
        opt.step(closure)
        out.append(x.detach().clone())
    return out


def quadratic_problem(n=20, cond=30.0, seed=3):
    a = random_spd(n, cond, seed=seed)
    b = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return a, b, quadratic(a, b)


# -- (a) agreement with torch.optim.LBFGS -------------------------------------------------------


@pytest.mark.parametrize("case", ["quadratic", "logistic"])
def test_fixed_step_matches_torch_lbfgs(case):
    if case == "quadratic":
        _, _, fn = quadratic_problem()
        theta0, memory = torch.zeros(20, dtype=F64), 4
    else:
        fn = logistic_regression(rows=80, features=6, seed=1)
        theta0, memory = torch.full((6,), 0.3, dtype=F64), 3
    iters = 10
    ours, iterates, _ = run(
        FunctionObjective(fn), theta0, iters, memory=memory, line_search=line_search("fixed"), curvature_eps=1e-12
    )
    reference = torch_lbfgs_iterates(fn, theta0, iters, memory)
    assert ours.context.counters["lbfgs_skipped_pairs"] == 0
    for k, (mine, theirs) in enumerate(zip(iterates, reference)):
        torch.testing.assert_close(mine, theirs, rtol=1e-12, atol=1e-13, msg=f"iterate {k + 1}")
    assert len(iterates) == iters and not torch.equal(iterates[-1], iterates[-2])


@pytest.mark.parametrize("case", ["rosenbrock", "logistic"])
def test_strong_wolfe_agrees_with_torch_lbfgs(case):
    """Both strong Wolfe L-BFGS, run to ‖g‖∞ ≤ 1e-9: same minimiser, similar numbers of evaluations."""
    if case == "rosenbrock":
        fn, theta0 = rosenbrock, torch.tensor([-1.2, 1.0], dtype=F64)
    else:
        fn, theta0 = logistic_regression(seed=2), torch.zeros(5, dtype=F64)
    tol = 1e-9
    objective = FunctionObjective(fn)
    ours, _, reports = run(objective, theta0, 200, memory=5, grad_tol=tol)
    assert reports[-1].status == Status.GRAD_TOL

    x = theta0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS(
        [x],
        max_iter=200,
        max_eval=2000,
        history_size=5,
        tolerance_grad=tol,
        tolerance_change=0.0,
        line_search_fn="strong_wolfe",
    )
    evals_torch = 0

    def closure():
        nonlocal evals_torch
        evals_torch += 1
        opt.zero_grad()
        loss = fn(x)
        loss.backward()
        return loss

    opt.step(closure)
    assert float(torch.func.grad(fn)(x.detach()).abs().max()) <= tol
    torch.testing.assert_close(ours.theta, x.detach(), rtol=0, atol=1e-7)
    if case == "rosenbrock":
        torch.testing.assert_close(ours.theta, torch.ones(2, dtype=F64), rtol=0, atol=1e-8)
    assert objective.evaluations <= 1.3 * evals_torch + 3, (objective.evaluations, evals_torch)
    assert evals_torch <= 1.3 * objective.evaluations + 3, (objective.evaluations, evals_torch)


# -- (b), (c) convergence -----------------------------------------------------------------------


@pytest.mark.parametrize("search", ["strong_wolfe", "armijo"])
def test_rosenbrock_converges(search):
    theta0 = torch.tensor([-1.2, 1.0], dtype=F64)
    solver, iterates, reports = run(
        FunctionObjective(rosenbrock), theta0, 100, line_search=line_search(search), grad_tol=1e-10
    )
    assert reports[-1].status == Status.GRAD_TOL
    assert len(iterates) <= 60
    torch.testing.assert_close(solver.theta, torch.ones(2, dtype=F64), rtol=0, atol=1e-6)


@pytest.mark.parametrize("search", ["strong_wolfe", "armijo"])
@pytest.mark.parametrize("memory", [1, 3, 10])
def test_quadratic_minimiser_is_the_closed_form(search, memory):
    a, b, _ = quadratic_problem(n=30, cond=100.0, seed=memory)
    solver, _, reports = run(
        FunctionObjective(quadratic(a, b, centred=True)),
        torch.zeros(30, dtype=F64),
        400,
        memory=memory,
        line_search=line_search(search),
        grad_tol=1e-11,
    )
    assert reports[-1].status == Status.GRAD_TOL
    torch.testing.assert_close(solver.theta, torch.linalg.solve(a, b), rtol=0, atol=1e-10)
    # ½xᵀAx − bᵀx itself: function values resolve the minimiser to about √(ε|f*|/λ_min)
    solver, _, reports = run(
        FunctionObjective(quadratic(a, b)),
        torch.zeros(30, dtype=F64),
        400,
        memory=memory,
        line_search=line_search(search),
        grad_tol=1e-6,
    )
    assert reports[-1].status == Status.GRAD_TOL
    torch.testing.assert_close(solver.theta, torch.linalg.solve(a, b), rtol=0, atol=1e-5)


def test_step_report_and_counters():
    _, _, fn = quadratic_problem()
    objective = FunctionObjective(fn)
    solver, iterates, reports = run(objective, torch.zeros(20, dtype=F64), 5)
    r = reports[-1]
    assert r.accepted and r.status == Status.RUNNING and r.step_size > 0
    assert r.step_norm == pytest.approx(float((iterates[-1] - iterates[-2]).norm()), rel=1e-12)
    assert r.loss == pytest.approx(float(fn(iterates[-1])), rel=1e-14)
    assert r.grad_norm == pytest.approx(float(torch.func.grad(fn)(iterates[-1]).norm()), rel=1e-12)
    assert solver.context.counters["line_search_evals"] + 1 == objective.evaluations
    assert all(a.loss > b.loss for a, b in zip(reports, reports[1:]))


# -- (e) momentum -------------------------------------------------------------------------------


@pytest.mark.parametrize("search", ["strong_wolfe", "armijo"])
def test_momentum_changes_the_iterates_and_converges(search):
    a, b, _ = quadratic_problem(n=15, cond=20.0, seed=7)
    fn = quadratic(a, b, centred=True)
    theta0 = torch.zeros(15, dtype=F64)
    _, plain, _ = run(FunctionObjective(fn), theta0, 3, line_search=line_search(search))
    solver, damped, reports = run(
        FunctionObjective(fn), theta0, 300, momentum=0.5, line_search=line_search(search), grad_tol=1e-10
    )
    assert not torch.allclose(plain[1], damped[1])
    assert solver.velocity is not None and solver.context.counters["lbfgs_resets"] == 0
    assert reports[-1].status == Status.GRAD_TOL
    torch.testing.assert_close(solver.theta, torch.linalg.solve(a, b), rtol=0, atol=1e-8)


def test_momentum_formula():
    # first step: v = μ p (v starts at zero); second: v = (1 − μ) v + μ p
    _, _, fn = quadratic_problem(n=6, seed=2)
    solver = LBFGS(LBFGSOptions(momentum=0.25, line_search=line_search("fixed"), first_step="unit", lr=0.1))
    solver.init(FunctionObjective(fn), torch.zeros(6, dtype=F64))
    _, g0 = solver.evaluate()
    solver.step()
    torch.testing.assert_close(solver.velocity, -0.25 * g0, rtol=0, atol=0)
    v1 = solver.velocity.clone()
    _, g1 = solver.evaluate()
    p = -solver.history.apply_inverse(g1)
    before = solver.theta.clone()
    solver.step()
    torch.testing.assert_close(solver.velocity, 0.75 * v1 + 0.25 * p)
    torch.testing.assert_close(solver.theta, before + 0.1 * solver.velocity)


# -- (f) resume bit for bit ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"momentum": 0.7, "line_search": line_search("armijo")},
        {"memory": 2, "line_search": line_search("fixed"), "lr": 0.5},
    ],
    ids=["strong_wolfe", "armijo_momentum", "fixed"],
)
def test_resume_is_bit_for_bit(options):
    torch.manual_seed(0)
    objective, problem = least_squares_objective(dtype=torch.float32)
    theta0 = problem.params.flat.clone()
    full = LBFGS(LBFGSOptions(**options))
    full.init(objective, theta0)
    full_reports = [full.step() for _ in range(6)]

    first = LBFGS(LBFGSOptions(**options))
    first.init(objective, theta0)
    for _ in range(3):
        first.step()
    state = first.state_dict()
    del first
    resumed = LBFGS(LBFGSOptions(**options))
    resumed.init(objective, torch.zeros_like(theta0))
    resumed.load_state_dict(state)
    resumed_reports = [resumed.step() for _ in range(3)]

    assert torch.equal(full.theta, resumed.theta)
    assert torch.equal(full.grad, resumed.grad)
    assert [r.loss for r in full_reports[3:]] == [r.loss for r in resumed_reports]
    assert full.iteration == resumed.iteration == 6


def test_state_dict_contents():
    _, _, fn = quadratic_problem(n=4)
    solver, _, _ = run(FunctionObjective(fn), torch.zeros(4, dtype=F64), 2, momentum=0.5)
    state = solver.state_dict()
    assert {"theta", "loss", "grad", "velocity", "history", "iteration", "restart"} <= set(state)
    assert state["history"]["S"].shape == (3, 4)
    state["theta"].add_(1.0)  # a copy, not the solver's tensor
    assert not torch.equal(state["theta"], solver.theta)


# -- failures and the pieces ASPQN uses ---------------------------------------------------------


def test_nan_loss_is_diverged():
    solver, _, reports = run(FunctionObjective(lambda x: (x**2).sum() * float("nan")), torch.ones(3, dtype=F64), 5)
    assert reports[-1].status == Status.DIVERGED_NAN and len(reports) == 1


def test_nan_after_a_fixed_step_is_diverged():
    def fn(x):
        return (x**2).sum() if x.abs().max() < 2 else x.sum() * float("nan")

    _, _, reports = run(
        FunctionObjective(fn), torch.ones(3, dtype=F64), 5, line_search=line_search("fixed"), lr=5.0, first_step="unit"
    )
    assert reports[-1].status == Status.DIVERGED_NAN


class WrongGradient(FunctionObjective):
    """Reports −∇f (from the start, or once :meth:`corrupt` is called): every search direction goes uphill."""

    def __init__(self, fn, wrong=True):
        super().__init__(fn)
        self.wrong = wrong

    def corrupt(self):
        """From now on the gradient is wrong; the key changes, so cached evaluations are dropped."""
        self.wrong = True
        self.key += 1

    def evaluate(self, theta, grad=True, batch=None):
        ev = super().evaluate(theta, grad)
        if ev.grad is not None and self.wrong:
            ev.grad = -ev.grad
        return ev


@pytest.mark.parametrize("search", ["strong_wolfe", "armijo"])
def test_line_search_failure_is_reported(search):
    _, _, reports = run(
        WrongGradient(lambda x: (x**2).sum()), torch.ones(3, dtype=F64), 5, line_search=line_search(search, max_evals=6)
    )
    assert reports[-1].status == Status.DIVERGED_LINE_SEARCH and not reports[-1].accepted


def test_line_search_failure_with_history_restarts_from_steepest_descent():
    _, _, fn = quadratic_problem(n=5)
    objective = WrongGradient(fn, wrong=False)
    solver, _, _ = run(objective, torch.zeros(5, dtype=F64), 3)
    assert solver.history.count == 3
    objective.corrupt()  # an uphill "gradient": no step may be accepted, not even one of rounding size
    report = solver.step()
    assert not report.accepted and report.status == Status.RUNNING
    assert solver.history.count == 0 and solver.context.counters["lbfgs_resets"] == 1
    assert solver.step().status == Status.DIVERGED_LINE_SEARCH


def test_non_descent_direction_resets_to_steepest_descent():
    _, _, fn = quadratic_problem(n=5)
    solver, _, _ = run(FunctionObjective(fn), torch.zeros(5, dtype=F64), 2)
    g = solver.grad
    solver.history.apply_inverse = lambda v: -v  # an indefinite H
    p = solver.direction(g)
    assert torch.equal(p, -g) and solver.history.count == 0


def test_grad_tol_stops_before_stepping():
    solver = LBFGS(LBFGSOptions(grad_tol=1e-3))
    objective = FunctionObjective(lambda x: (x**2).sum())
    solver.init(objective, torch.full((3,), 1e-4, dtype=F64))
    report = solver.step()
    assert report.status == Status.GRAD_TOL and report.step_size == 0.0 and objective.evaluations == 1


def test_set_point_keeps_history_and_uses_the_given_gradient():
    """The ASPQN pattern: move to θ^{k+1/2} with a known gradient, then one quasi-Newton step."""
    _, _, fn = quadratic_problem(n=8)
    objective = FunctionObjective(fn)
    solver, _, _ = run(objective, torch.zeros(8, dtype=F64), 2)
    count = solver.history.count
    theta_half = solver.theta + 0.01
    g_half = torch.func.grad(fn)(theta_half)
    before = objective.evaluations
    solver.set_point(theta_half, float(fn(theta_half)), g_half)
    assert solver.history.count == count
    result_loss = solver.step().loss
    assert result_loss < float(fn(theta_half))
    # the step's evaluations are the line search's only: the given gradient was used
    assert objective.evaluations - before == solver.context.counters["line_search_evals"] - (before - 1)
    solver.set_point(theta_half)  # without a gradient: the next step evaluates it
    assert solver.grad is None
    solver.step()


def test_line_step_and_push_compose_a_step():
    _, _, fn = quadratic_problem(n=6)
    objective = FunctionObjective(fn)
    reference, _, _ = run(objective, torch.zeros(6, dtype=F64), 2)

    manual = LBFGS(LBFGSOptions())
    manual.init(objective, torch.zeros(6, dtype=F64))
    for _ in range(2):
        loss, grad = manual.evaluate()
        p = manual.direction(grad)
        v, slope = manual.combine_momentum(p, grad)
        result = manual.line_step(manual.theta, loss, grad, v, slope)
        assert result.success
        manual.push(v * result.alpha, result.grad - grad)
        manual.set_point(manual.theta + result.alpha * v, result.loss, result.grad)
        manual._restart = False
    assert torch.equal(manual.theta, reference.theta)


def test_options_from_config():
    assert "lbfgs" in registry.names("solver")
    options = config._build_dataclass(LBFGSOptions, {"memory": 5, "line_search": "armijo"}, "solver")
    assert options.memory == 5 and options.line_search.name == "armijo"
    assert config._build_dataclass(LBFGSOptions, {}, "solver").line_search.name == "strong_wolfe"
    with pytest.raises(config.ConfigError):
        config._build_dataclass(LBFGSOptions, {"momentum": 0.0}, "solver")
    solver = LBFGS(options)
    assert type(solver.line_search).__name__ == "Armijo"
    assert math.isclose(LBFGS(LBFGSOptions()).line_search.options.c2, 0.9)
