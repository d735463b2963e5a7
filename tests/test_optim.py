"""ddnn.optim: the solvers as torch optimisers with a closure."""

from __future__ import annotations

import pytest
import torch
from helpers import LeastSquaresProblem, least_squares_objective, make_mlp

import ddnn.optim
from ddnn import config
from ddnn.errors import ConfigError
from ddnn.solvers.base import Status
from ddnn.solvers.first_order import SGD, Adam, AdamOptions, SGDOptions
from ddnn.solvers.lbfgs import LBFGS, LBFGSOptions


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def closure_for(model, opt, problem, set_to_none=False):
    rows = problem.training_samples().terms["data"]
    x, u = rows[:, :2], rows[:, 2:]

    def closure():
        if set_to_none:
            model.zero_grad(set_to_none=True)
        else:
            opt.zero_grad()
        loss = ((model(x) - u) ** 2).sum() / rows.shape[0]
        loss.backward()
        return loss

    return closure


def flat_of(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def lbfgs(model, **options):
    """ddnn.optim.LBFGS with one iteration per step and without torch's tolerances, as the bare solver."""
    options = {"memory": 3, "line_search": "strong_wolfe", **options}
    return ddnn.optim.LBFGS(model.parameters(), max_iter=1, tolerance_grad=0.0, tolerance_change=0.0, **options)


@pytest.mark.parametrize(
    "options",
    [{}, {"line_search": "armijo", "momentum": 0.6}, {"line_search": {"name": "fixed"}, "lr": 0.2, "memory": 5}],
    ids=["strong_wolfe", "armijo_momentum", "fixed"],
)
def test_same_iterates_as_the_solver(options):
    objective, problem = least_squares_objective()
    solver_options = config._build_dataclass(LBFGSOptions, dict(options), "solver")
    solver = LBFGS(solver_options)
    solver.init(objective, problem.params.flat)

    model = make_mlp()  # same seed: the same initial weights
    opt = lbfgs(model, reevaluate=False, **options)
    closure = closure_for(model, opt, problem)
    torch.testing.assert_close(flat_of(model), solver.theta, rtol=0, atol=0)
    for k in range(8):
        report = solver.step()
        opt.step(closure)
        assert torch.equal(flat_of(model), solver.theta), f"iterate {k + 1}"
        assert opt.last_report.loss == report.loss
    assert report.status == Status.RUNNING


@pytest.mark.parametrize("variant", ["additive", "multiplicative"])
def test_schwarz_on_a_closure_takes_the_iterates_of_the_objective(variant):
    """ASPQN/MSPQN on a closure equal the solver with a Schwarz npc on ddnn's Objective, bit for bit."""
    objective, problem = least_squares_objective(depth=3)
    npc = {"name": "schwarz", "variant": variant, "subdomains": 2, "local_iters": 3}
    section = config.section("solver", {"name": "lbfgs", "npc": npc})
    solver = LBFGS(section.options)
    solver.init(objective, problem.params.flat)

    model = make_mlp(depth=3)
    cls = ddnn.optim.ASPQN if variant == "additive" else ddnn.optim.MSPQN
    opt = cls(model, blocks="layers", subdomains=2, local_iters=3)
    closure = closure_for(model, opt, problem)
    for k in range(3):
        solver.step()
        opt.step(closure)
        assert torch.equal(flat_of(model), solver.theta), f"iterate {k + 1}"
    assert opt.counters["local_grad_evals"] == objective.counters["local_grad_evals"] > 0


def test_reevaluating_each_call_gives_the_same_iterates_for_more_closure_calls():
    _, problem = least_squares_objective()
    runs = []
    for reevaluate in (False, "auto", True):
        model = make_mlp()
        opt = lbfgs(model, reevaluate=reevaluate)
        closure = closure_for(model, opt, problem)
        losses = [float(opt.step(closure)) for _ in range(5)]
        runs.append((flat_of(model), losses, opt.state["closure_calls"]))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][0], runs[2][0])
    assert runs[0][1] == runs[1][1] == runs[2][1]
    assert runs[0][2] == runs[1][2] == runs[2][2] - 4  # True: one more call per step after the first


def test_a_new_closure_object_is_evaluated_anew():
    _, problem = least_squares_objective()
    model = make_mlp()
    opt = lbfgs(model)
    opt.step(closure_for(model, opt, problem))
    calls = opt.state["closure_calls"]
    opt.step(closure_for(model, opt, problem))  # a new object: the start is evaluated again
    same = closure_for(model, opt, problem)
    opt.step(same)
    after_new = opt.state["closure_calls"]
    opt.step(same)
    assert after_new - calls > opt.state["closure_calls"] - after_new


def test_parameters_become_views_of_one_buffer():
    model = make_mlp()
    params = list(model.parameters())
    before = flat_of(model)
    opt = ddnn.optim.LBFGS(model.parameters())
    flat = opt._flat.flat
    assert torch.equal(flat, before)
    assert all(p.data.data_ptr() == flat[a:].data_ptr() for p, (a, _) in zip(params, opt._flat.bounds))
    assert list(model.parameters())[0] is params[0]  # the Parameter objects are kept
    with torch.no_grad():
        flat.zero_()
    assert all(float(p.detach().abs().sum()) == 0.0 for p in model.parameters())


def test_gradients_set_to_none_are_recovered():
    _, problem = least_squares_objective()
    results = []
    for set_to_none in (False, True):
        model = make_mlp()
        opt = ddnn.optim.LBFGS(model.parameters(), max_iter=4)
        opt.step(closure_for(model, opt, problem, set_to_none=set_to_none))
        results.append(flat_of(model))
        assert all(
            p.grad.data_ptr() == opt._flat.grad[a:].data_ptr()
            for p, (a, _) in zip(model.parameters(), opt._flat.bounds)
        )
    assert torch.equal(results[0], results[1])


def test_state_dict_resumes_bit_for_bit():
    _, problem = least_squares_objective()
    model = make_mlp()
    opt = lbfgs(model, momentum=0.8)
    closure = closure_for(model, opt, problem)
    for _ in range(3):
        opt.step(closure)
    state = opt.state_dict()
    for _ in range(3):
        opt.step(closure)
    final = flat_of(model)

    model2 = make_mlp(seed=123)
    opt2 = lbfgs(model2, momentum=0.8)
    opt2.load_state_dict(state)
    closure2 = closure_for(model2, opt2, problem)
    for _ in range(3):
        opt2.step(closure2)
    assert torch.equal(flat_of(model2), final)


def test_max_iter_and_convergence_stop():
    _, problem = least_squares_objective()
    model = make_mlp()
    opt = ddnn.optim.LBFGS(
        model.parameters(), max_iter=50, max_eval=200, tolerance_grad=2e-2, line_search_fn="strong_wolfe"
    )
    closure = closure_for(model, opt, problem)
    start = opt.step(closure)
    assert isinstance(start, torch.Tensor) and start.ndim == 0 and start.dtype == torch.float64
    assert opt.last_report.status == Status.GRAD_TOL
    assert 0 < opt.solver.iteration < 50
    assert opt.state[next(model.parameters())]["n_iter"] == opt.solver.iteration
    assert closure().item() < start.item()


def test_lr_follows_the_param_group():
    model = make_mlp()
    opt = lbfgs(model, line_search="fixed", lr=0.5, first_step="unit")
    _, problem = least_squares_objective()
    closure = closure_for(model, opt, problem)
    opt.param_groups[0]["lr"] = 0.25
    before = flat_of(model)
    opt.step(closure)
    assert opt.solver.options.lr == 0.25 and opt.last_report.step_size == 0.25
    assert not torch.equal(before, flat_of(model))


def test_bad_options_are_value_errors_naming_the_option():
    model = make_mlp()
    for kwargs, name in [
        ({"memory": 0}, "memory"),
        ({"history_size": 0}, "history_size"),
        ({"line_search": "bogus"}, "line_search"),
        ({"momentum": 2.0}, "momentum"),
    ]:
        with pytest.raises(ValueError, match=name) as info:
            ddnn.optim.LBFGS(model.parameters(), **kwargs)
        assert isinstance(info.value, ConfigError)


def test_generic_solver_optimizer_runs_adam():
    _, problem = least_squares_objective()
    model = make_mlp()
    opt = ddnn.optim.SolverOptimizer(model.parameters(), "adam", lr=1e-2)
    closure = closure_for(model, opt, problem)
    losses = [float(opt.step(closure)) for _ in range(20)]
    assert losses[-1] < losses[0]
    assert opt.state["closure_calls"] == 20


def test_problem_helper_is_a_problem():
    assert issubclass(LeastSquaresProblem, ddnn.problems.base.Problem)


# -- Adam and SGD solvers against torch.optim run directly --------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: (
            Adam(AdamOptions(lr=1e-2, betas=(0.8, 0.99), weight_decay=1e-3)),
            lambda p: torch.optim.Adam(p, lr=1e-2, betas=(0.8, 0.99), weight_decay=1e-3),
        ),
        lambda: (Adam(AdamOptions(lr=3e-3, amsgrad=True)), lambda p: torch.optim.Adam(p, lr=3e-3, amsgrad=True)),
        lambda: (SGD(SGDOptions(lr=0.05)), lambda p: torch.optim.SGD(p, lr=0.05)),
        lambda: (
            SGD(SGDOptions(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)),
            lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4),
        ),
    ],
    ids=["adam", "amsgrad", "sgd", "sgd_nesterov"],
)
def test_first_order_solvers_match_torch(make):
    solver, torch_opt = make()
    objective, problem = least_squares_objective(dtype=torch.float32)
    solver.init(objective, problem.params.flat)
    model = make_mlp(dtype=torch.float32)
    opt = torch_opt(model.parameters())
    rows = problem.training_samples().terms["data"]
    reports = []
    for _ in range(10):
        reports.append(solver.step())
        opt.zero_grad()
        loss = ((model(rows[:, :2]) - rows[:, 2:]) ** 2).sum() / rows.shape[0]
        loss.backward()
        opt.step()
        torch.testing.assert_close(solver.theta, flat_of(model), rtol=1e-6, atol=1e-7)
    assert reports[-1].loss < reports[0].loss and reports[-1].status == Status.RUNNING
    assert reports[-1].step_norm > 0


@pytest.mark.parametrize(
    "make", [lambda: Adam(AdamOptions(lr=1e-2)), lambda: SGD(SGDOptions(lr=0.1, momentum=0.5))], ids=["adam", "sgd"]
)
def test_first_order_resume_is_bit_for_bit(make):
    objective, problem = least_squares_objective(dtype=torch.float32)
    theta0 = problem.params.flat.clone()
    full = make()
    full.init(objective, theta0)
    for _ in range(6):
        full.step()
    first = make()
    first.init(objective, theta0)
    for _ in range(3):
        first.step()
    state = first.state_dict()
    for _ in range(2):
        first.step()  # the saved state must not change afterwards
    resumed = make()
    resumed.init(objective, torch.zeros_like(theta0))
    resumed.load_state_dict(state)
    for _ in range(3):
        resumed.step()
    assert torch.equal(full.theta, resumed.theta) and resumed.iteration == 6


def test_first_order_options_are_checked():
    with pytest.raises(ConfigError):
        config._build_dataclass(SGDOptions, {"nesterov": True}, "solver")
    with pytest.raises(ConfigError):
        config._build_dataclass(AdamOptions, {"betas": [0.9]}, "solver")
    with pytest.raises(ConfigError):
        config._build_dataclass(AdamOptions, {"betas": [0.9, 1.0]}, "solver")
    assert config._build_dataclass(AdamOptions, {"betas": [0.5, 0.6]}, "solver").betas == (0.5, 0.6)


def test_first_order_nan_is_diverged():
    from helpers import FunctionObjective

    solver = SGD(SGDOptions())
    solver.init(FunctionObjective(lambda x: x.sum() * float("nan")), torch.ones(3))
    assert solver.step().status == Status.DIVERGED_NAN
