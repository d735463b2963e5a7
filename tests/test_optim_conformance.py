"""Conformance of every ddnn.optim optimiser with what torch.optim code expects of an optimiser.

Written in the spirit of torch's own optimiser tests (``test/test_optim.py``):
every case runs for ``LBFGS``, each ``SolverOptimizer`` solver (lbfgs, adam,
sgd, trust_region), ``ASPQN`` and ``MSPQN`` on a small tanh network fitted
to a smooth function, and compares iterates exactly where the optimisers
promise it (resume, copies, param groups, contiguity) or checks the
behaviour torch code relies on (hooks, schedulers, dtypes, casts).
"""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

import ddnn.optim as O


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny problems: one thread is the fastest, and other tests on a loaded machine are not slowed down."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- the optimisers under test -------------------------------------------------------------------

FACTORIES = {
    "LBFGS": lambda p, **kw: O.LBFGS(p, **{"max_iter": 3, "history_size": 5, "line_search_fn": "strong_wolfe", **kw}),
    "lbfgs": lambda p, **kw: O.SolverOptimizer(p, "lbfgs", **{"max_iter": 2, **kw}),
    "adam": lambda p, **kw: O.SolverOptimizer(p, "adam", **{"lr": 1e-2, **kw}),
    "sgd": lambda p, **kw: O.SolverOptimizer(p, "sgd", **{"lr": 0.1, "momentum": 0.5, **kw}),
    "trust_region": lambda p, **kw: O.TrustRegion(p, **{"max_iter": 2, **kw}),
    "ASPQN": lambda p, **kw: O.ASPQN(p, **{"local_iters": 2, **kw}),
    "MSPQN": lambda p, **kw: O.MSPQN(p, **{"local_iters": 2, **kw}),
}
ALL = list(FACTORIES)
WITH_LR = [name for name in ALL if name != "trust_region"]
SCHWARZ = ("ASPQN", "MSPQN")

X = torch.rand(24, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 2 - 1
Y = torch.sin(2 * X[:, :1]) * torch.cos(X[:, 1:])


def make_model(dtype: torch.dtype = torch.float64, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 5), nn.Tanh(), nn.Linear(5, 5), nn.Tanh(), nn.Linear(5, 1)).to(dtype)


def make_closure(model: nn.Module, opt: torch.optim.Optimizer, calls: list | None = None):
    """The usual torch closure (inputs cast to the model's dtype, so that it survives ``model.double()``)."""

    def closure():
        if calls is not None:
            calls.append(1)
        opt.zero_grad()
        dtype = next(model.parameters()).dtype
        loss = ((model(X.to(dtype)) - Y.to(dtype)) ** 2).mean()
        loss.backward()
        return loss

    return closure


def flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def run(model, opt, steps):
    closure = make_closure(model, opt)
    return [opt.step(closure) for _ in range(steps)]


# -- state -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_state_dict_round_trip_continues_identically(name):
    model, twin = make_model(), make_model()
    opt, opt_twin = FACTORIES[name](model.parameters()), FACTORIES[name](twin.parameters())
    run(model, opt, 2)
    run(twin, opt_twin, 2)
    opt.load_state_dict(opt.state_dict())  # in place, mid-run
    run(model, opt, 2)
    run(twin, opt_twin, 2)
    assert torch.equal(flat(model), flat(twin))


@pytest.mark.parametrize("name", ALL)
def test_fresh_optimiser_resumes_from_a_saved_state(name):
    model = make_model()
    opt = FACTORIES[name](model.parameters())
    run(model, opt, 2)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    run(model, opt, 2)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)  # plain tensors, numbers and strings only
    fresh = make_model(seed=7)  # other weights: load_state_dict restores the iterate
    opt_fresh = FACTORIES[name](fresh.parameters())
    opt_fresh.load_state_dict(state)
    run(fresh, opt_fresh, 2)
    assert torch.equal(flat(fresh), flat(model))


# -- parameters ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_param_groups(name):
    model, twin = make_model(), make_model()
    groups = [{"params": list(twin[0].parameters()) + list(twin[2].parameters())}, {"params": twin[4].parameters()}]
    if name in SCHWARZ:  # groups are blocks: the same as the layers grouped [0, 1], [2]
        opt = FACTORIES[name](model, blocks="layers", subdomains=2)
    else:
        opt = FACTORIES[name](model.parameters())
    opt_groups = FACTORIES[name](groups)
    run(model, opt, 3)
    run(twin, opt_groups, 3)
    assert torch.equal(flat(model), flat(twin)) and len(opt_groups.param_groups) == 2
    key = "lr" if name in WITH_LR else "max_iter"
    bad = [{"params": groups[0]["params"]}, {"params": groups[1]["params"], key: 3}]
    with pytest.raises(ValueError, match=key):
        FACTORIES[name](bad)


@pytest.mark.parametrize("name", ALL)
def test_parameters_without_grad_stay_and_the_rest_trains_as_alone(name):
    model, twin = make_model(), make_model()
    for m in (model, twin):
        m[2].weight.requires_grad_(False)
    frozen = model[2].weight.detach().clone()
    opt = FACTORIES[name](model.parameters())
    opt_alone = FACTORIES[name]([p for p in twin.parameters() if p.requires_grad])
    run(model, opt, 3)
    run(twin, opt_alone, 3)
    assert torch.equal(model[2].weight, frozen) and model[2].weight.grad is None
    assert torch.equal(flat(model), flat(twin)) and not torch.equal(model[0].weight, make_model()[0].weight)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ALL)
def test_dtypes(name, dtype):
    model = make_model(dtype)
    opt = FACTORIES[name](model.parameters())
    losses = run(model, opt, 4)
    assert all(isinstance(v, torch.Tensor) and v.dtype == dtype and not v.requires_grad for v in losses)
    assert all(p.dtype == dtype for p in model.parameters()) and opt.solver.theta.dtype == dtype
    assert float(losses[-1]) < float(losses[0])


@pytest.mark.parametrize("name", ALL)
def test_non_contiguous_parameters(name):
    model, twin = make_model(), make_model()
    with torch.no_grad():  # the same values, stored transposed
        twin[2].weight = nn.Parameter(twin[2].weight.detach().t().contiguous().t())
    assert not twin[2].weight.is_contiguous()
    opt, opt_twin = FACTORIES[name](model.parameters()), FACTORIES[name](twin.parameters())
    run(model, opt, 3)
    run(twin, opt_twin, 3)
    assert torch.equal(flat(model), flat(twin))


@pytest.mark.parametrize("name", ALL)
def test_complex_parameters_raise_naming_them(name):
    model = make_model()
    model.register_parameter("phase", nn.Parameter(torch.zeros(3, dtype=torch.complex128)))
    with pytest.raises(ValueError, match="complex.*phase"):
        FACTORIES[name](model)


@pytest.mark.parametrize("name", ALL)
def test_added_param_group_is_optimised(name):
    model = make_model()
    opt = FACTORIES[name]([p for m in (model[0], model[2]) for p in m.parameters()])
    run(model, opt, 1)
    last = flat(model[4])
    opt.add_param_group({"params": model[4].parameters()})
    run(model, opt, 2)
    assert not torch.equal(flat(model[4]), last) and len(opt.param_groups) == 2
    assert opt.solver.theta.numel() == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ALL)
def test_zero_grad_leaves_zeros_in_the_buffer(name):
    model = make_model()
    opt = FACTORIES[name](model.parameters())
    run(model, opt, 1)
    opt.zero_grad(set_to_none=True)
    for p, (a, _) in zip(model.parameters(), opt._flat.bounds):
        assert p.grad is not None and not p.grad.any() and p.grad.data_ptr() == opt._flat.grad[a:].data_ptr()


# -- the step ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_step_returns_the_loss_at_the_start_and_counts_closure_calls(name):
    model = make_model(torch.float32)
    opt = FACTORIES[name](model.parameters())
    calls: list = []
    closure = make_closure(model, opt, calls)
    for _ in range(3):
        with torch.no_grad():
            expected = ((model(X.float()) - Y.float()) ** 2).mean()
        returned = opt.step(closure)
        assert returned.dtype == torch.float32 and float(returned) == float(expected)
    assert opt.state["closure_calls"] == len(calls) > 0


@pytest.mark.parametrize("name", ALL)
def test_parameters_changed_between_steps_are_the_next_start(name):
    model = make_model()
    opt = FACTORIES[name](model.parameters())
    closure = make_closure(model, opt)
    opt.step(closure)
    with torch.no_grad():
        model[4].bias.add_(0.5)
        expected = float(((model(X) - Y) ** 2).mean())
    assert float(opt.step(closure)) == expected


@pytest.mark.parametrize("name", WITH_LR)
def test_tensor_lr(name):
    model, twin = make_model(), make_model()
    lr = 0.0625 if name in ("adam", "sgd") else 0.5  # exact in float32, as the tensor holds it
    opt = FACTORIES[name](model.parameters(), lr=lr)
    opt_tensor = FACTORIES[name](twin.parameters(), lr=torch.tensor(lr))
    run(model, opt, 3)
    run(twin, opt_tensor, 3)
    assert torch.equal(flat(model), flat(twin)) and isinstance(opt_tensor.param_groups[0]["lr"], torch.Tensor)


@pytest.mark.parametrize("name", ALL)
def test_hooks_fire_once_per_step(name):
    model = make_model()
    opt = FACTORIES[name](model.parameters())
    seen = {"pre": 0, "post": 0, "global_pre": 0, "global_post": 0, "state_dict": 0}
    opt.register_step_pre_hook(lambda *a: seen.__setitem__("pre", seen["pre"] + 1))
    opt.register_step_post_hook(lambda *a: seen.__setitem__("post", seen["post"] + 1))
    opt.register_state_dict_pre_hook(lambda *a: seen.__setitem__("state_dict", seen["state_dict"] + 1))
    handles = [
        register_optimizer_step_pre_hook(lambda *a: seen.__setitem__("global_pre", seen["global_pre"] + 1)),
        register_optimizer_step_post_hook(lambda *a: seen.__setitem__("global_post", seen["global_post"] + 1)),
    ]
    try:
        run(model, opt, 3)
        opt.state_dict()
    finally:
        for h in handles:
            h.remove()
    assert seen == {"pre": 3, "post": 3, "global_pre": 3, "global_post": 3, "state_dict": 1}


@pytest.mark.parametrize("name", ALL)
def test_lr_scheduler_drives_the_step(name):
    model = make_model()
    opt = FACTORIES[name](model.parameters())
    if name not in WITH_LR:  # a trust region has a radius, no learning rate: the scheduler says so
        with pytest.raises(KeyError, match="lr"):
            torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
        return
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    lr0 = opt.param_groups[0]["lr"]
    closure = make_closure(model, opt)
    for _ in range(3):
        opt.step(closure)
        scheduler.step()
    opt.step(closure)
    assert opt.solver.options.lr == pytest.approx(lr0 / 8, rel=1e-15)
    inner = getattr(opt.solver, "optimizer", None)  # Adam and SGD step with torch.optim inside
    if inner is not None:
        assert inner.param_groups[0]["lr"] == pytest.approx(lr0 / 8, rel=1e-15)


@pytest.mark.parametrize("name", ALL)
def test_compiled_model_takes_the_eager_iterates(name):
    torch._dynamo.reset()
    model, twin = make_model(), make_model()
    compiled = torch.compile(twin, backend="aot_eager")
    opt = FACTORIES[name](model.parameters(), module=model)  # blocks: the layers of both
    opt_compiled = FACTORIES[name](compiled.parameters(), module=compiled)
    run(model, opt, 2)
    run(compiled, opt_compiled, 2)
    torch.testing.assert_close(flat(twin), flat(model), rtol=1e-12, atol=1e-13)
    assert not torch.equal(flat(twin), flat(make_model()))


# -- casts and copies -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_cast_after_construction_is_followed(name):
    model = make_model(torch.float32)
    opt = FACTORIES[name](model.parameters())
    run(model, opt, 2)
    saved = opt.state_dict()
    twin = copy.deepcopy(model).double()
    model.double()  # after the optimiser was built: the optimiser follows
    run(model, opt, 2)
    assert opt._flat.flat.dtype == torch.float64 and opt.solver.theta.dtype == torch.float64
    assert all(p.dtype == torch.float64 for p in model.parameters())
    opt_twin = FACTORIES[name](twin.parameters())  # the same as a float64 optimiser loading the state
    opt_twin.load_state_dict(saved)
    run(twin, opt_twin, 2)
    assert torch.equal(flat(model), flat(twin)) and not torch.equal(flat(model), flat(make_model()))


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
@pytest.mark.parametrize("name", ALL)
def test_copies_are_working_optimisers(name, how):
    model = make_model()
    opt = FACTORIES[name](model.parameters())
    run(model, opt, 2)
    pair = copy.deepcopy((model, opt)) if how == "deepcopy" else pickle.loads(pickle.dumps((model, opt)))
    model2, opt2 = pair
    assert isinstance(opt2, type(opt)) and opt2.param_groups[0]["params"][0] is next(model2.parameters())
    run(model, opt, 2)
    run(model2, opt2, 2)
    assert torch.equal(flat(model2), flat(model))
    assert model2[0].weight.data_ptr() != model[0].weight.data_ptr()
