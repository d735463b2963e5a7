"""ddnn.optim as a drop-in for torch.optim: LBFGS's arguments and meaning, Adam and SGD with schedulers, errors."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

import ddnn.optim as O
from ddnn.errors import ConfigError

X = torch.rand(40, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 2 - 1
Y = torch.sin(2 * X[:, :1]) * X[:, 1:]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1)).double()


def closure_for(model, opt, calls=None):
    def closure():
        if calls is not None:
            calls.append(1)
        opt.zero_grad()
        loss = ((model(X) - Y) ** 2).mean()
        loss.backward()
        return loss

    return closure


def flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


# -- LBFGS ------------------------------------------------------------------------------------------


def test_lbfgs_takes_torch_arguments_in_torch_order_with_torch_defaults():
    theirs = inspect.signature(torch.optim.LBFGS).parameters
    ours = inspect.signature(O.LBFGS).parameters
    assert list(ours)[: len(theirs)] == list(theirs)
    for name, p in theirs.items():
        assert ours[name].default == p.default, name
    model = make_model()
    opt = O.LBFGS(model.parameters())
    reference = torch.optim.LBFGS(make_model().parameters())
    for key in ("lr", "max_iter", "max_eval", "tolerance_grad", "tolerance_change", "history_size", "line_search_fn"):
        assert opt.param_groups[0][key] == reference.param_groups[0][key], key


def test_lbfgs_without_line_search_takes_torch_iterates():
    """Fixed steps of lr (torch's default): the same iterates as torch.optim.LBFGS up to rounding."""
    runs = []
    for cls in (torch.optim.LBFGS, O.LBFGS):
        model = make_model()
        opt = cls(model.parameters(), lr=0.5, max_iter=6, history_size=4)
        calls: list = []
        closure = closure_for(model, opt, calls)
        losses = [float(opt.step(closure).detach()) for _ in range(4)]  # torch returns the graph too
        runs.append((flat(model), losses, len(calls), opt.state[next(model.parameters())]))
    (theirs, their_losses, their_calls, their_state), (ours, our_losses, our_calls, our_state) = runs
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    assert our_losses == pytest.approx(their_losses, rel=1e-10)
    assert our_state["n_iter"] == their_state["n_iter"] == 24
    # torch skips the evaluation at the last point of a step and makes it at the start of the next
    # one; ddnn evaluates it once (it needs the gradient there) and reuses it: one call more in all
    assert our_state["func_evals"] == our_calls == their_calls + 1


def test_lbfgs_with_strong_wolfe_decreases_like_torch():
    losses = []
    for cls in (torch.optim.LBFGS, O.LBFGS):
        model = make_model()
        opt = cls(model.parameters(), line_search_fn="strong_wolfe", max_iter=10)
        closure = closure_for(model, opt)
        for _ in range(3):
            opt.step(closure)
        losses.append(float(closure().detach()))
    with torch.no_grad():
        start = float(((make_model()(X) - Y) ** 2).mean())
    assert losses[1] < 0.1 * start
    assert losses[1] < 3 * losses[0]


def test_tolerance_grad_means_no_iteration():
    model = make_model()
    opt = O.LBFGS(model.parameters(), tolerance_grad=1e3)
    before = flat(model)
    loss = opt.step(closure_for(model, opt))
    state = opt.state[next(model.parameters())]
    assert torch.equal(flat(model), before) and state["n_iter"] == 0 and state["func_evals"] == 1
    assert float(loss) == float(((model(X) - Y) ** 2).mean().detach())


def test_tolerance_change_and_max_eval_end_the_step():
    model = make_model()
    opt = O.LBFGS(model.parameters(), max_iter=50, tolerance_change=1.0, line_search_fn="strong_wolfe")
    opt.step(closure_for(model, opt))  # every accepted iteration changes the loss by less than 1
    assert opt.state[next(model.parameters())]["n_iter"] == 1
    model = make_model()
    opt = O.LBFGS(model.parameters(), max_iter=50, max_eval=6, line_search_fn="strong_wolfe")
    calls: list = []
    opt.step(closure_for(model, opt, calls))
    assert len(calls) >= 6 and opt.state[next(model.parameters())]["n_iter"] < 6


def test_closure_returning_a_float_gets_a_float():
    model = make_model()
    opt = O.LBFGS(model.parameters(), max_iter=2)
    closure = closure_for(model, opt)
    result = opt.step(lambda: closure().item())
    assert type(result) is float


def test_options_fixed_at_construction_cannot_change():
    model = make_model()
    opt = O.LBFGS(model.parameters(), history_size=5)
    opt.param_groups[0]["history_size"] = 7
    with pytest.raises(ValueError, match="history_size"):
        opt.step(closure_for(model, opt))


# -- Adam and SGD ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,make_torch,options",
    [
        ("adam", lambda p: torch.optim.Adam(p, lr=0.05, betas=(0.8, 0.99)), {"lr": 0.05, "betas": (0.8, 0.99)}),
        ("sgd", lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), {"lr": 0.1, "momentum": 0.9}),
    ],
)
def test_first_order_wrappers_take_torch_iterates_under_a_scheduler(name, make_torch, options):
    runs = []
    for build in (make_torch, lambda p: O.SolverOptimizer(p, name, **options)):
        model = make_model()
        opt = build(model.parameters())
        scheduler = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.7)
        closure = closure_for(model, opt)
        for _ in range(6):
            opt.step(closure)
            scheduler.step()
        runs.append(flat(model))
    torch.testing.assert_close(runs[1], runs[0], rtol=1e-12, atol=1e-14)


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build,name",
    [
        (lambda p: O.LBFGS(p, lr=-1.0), "lr"),
        (lambda p: O.LBFGS(p, lr=torch.tensor([1.0, 2.0])), "lr"),
        (lambda p: O.LBFGS(p, max_iter=0), "max_iter"),
        (lambda p: O.LBFGS(p, max_eval=0), "max_eval"),
        (lambda p: O.LBFGS(p, tolerance_grad=float("nan")), "tolerance_grad"),
        (lambda p: O.LBFGS(p, tolerance_change="small"), "tolerance_change"),
        (lambda p: O.LBFGS(p, history_size=0), "history_size"),
        (lambda p: O.LBFGS(p, line_search_fn="backtracking"), "line_search_fn"),
        (lambda p: O.LBFGS(p, history_size=5, memory=3), "memory"),
        (lambda p: O.SolverOptimizer(p, "adam", lr=-1.0), "lr"),
        (lambda p: O.SolverOptimizer(p, "adam", bogus=1), "bogus"),
        (lambda p: O.SolverOptimizer(p, "sgd", nesterov=True), "nesterov"),
        (lambda p: O.SolverOptimizer(p, "no_such_solver"), "solver"),
        (lambda p: O.SolverOptimizer(p, "adam", reevaluate="sometimes"), "reevaluate"),
        (lambda p: O.TrustRegion(p, hessian="exact"), "hessian"),
        (lambda p: O.TrustRegion(p, radius=-1.0), "radius"),
        (lambda p: O.ASPQN(p, subdomains=9), "subdomains"),
        (lambda p: O.ASPQN(p, local_iters=0), "local_iters"),
        (lambda p: O.SolverOptimizer(p, "lbfgs", npc={"name": "schwarz", "decomposition": "samples"}), "decomposition"),
    ],
)
def test_invalid_options_are_value_errors_naming_the_option(build, name):
    model = make_model()
    before = flat(model)
    with pytest.raises(ValueError, match=name) as info:
        build(model)
    assert isinstance(info.value, (ConfigError, ValueError))
    assert torch.equal(flat(model), before)


def test_step_needs_a_closure_that_returns_the_loss():
    model = make_model()
    opt = O.SolverOptimizer(model, "adam")
    with pytest.raises(ValueError, match="closure"):
        opt.step(None)
    with pytest.raises(ValueError, match="None"):
        opt.step(lambda: None)
