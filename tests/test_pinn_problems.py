"""The seed's PINN problems: samples, loss terms by hand, sharding, derivative paths, metrics."""

import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from ddnn.models.mlp import MLP, MLPOptions
from ddnn.problems.base import Samples
from ddnn.problems.pinn import Burgers, DiffusionTransport, KleinGordon
from ddnn.problems.pinn.references import BURGERS_NU
from ddnn.registry import lookup

NAMES = ("burgers", "klein_gordon", "diffusion_transport")
SMALL = {"n_interior": 60, "n_boundary": 14, "n_initial": 10}


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("DDNN_CACHE", str(tmp_path_factory.getbasetemp() / "ddnn_cache"))


def make(name, model=None, dtype=torch.float64, seed=0, **overrides):
    entry = lookup("problem", name)
    fields = entry.options.__dataclass_fields__
    options = replace(entry.options(), **{k: v for k, v in {**SMALL, **overrides}.items() if k in fields})
    if model is None:
        torch.manual_seed(seed)
        model = MLP(MLPOptions(width=8, depth=2), entry.cls.input_dim, entry.cls.output_dim)
    return entry.cls(options, model, device="cpu", dtype=dtype, seed=seed)


def loss_and_grad(problem, samples):
    problem.params.zero_grad()
    terms = problem.loss_terms(samples)
    sum(terms.values()).backward()
    return {k: v.detach() for k, v in terms.items()}, problem.params.grad.clone()


class Analytic(nn.Module):
    """u = scale · f(x, t) for a closed-form f (not an MLP: the autograd path)."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return (self.scale * self.fn(x[:, 0], x[:, 1]))[:, None]


def test_registered_with_seed_networks():
    assert lookup("problem", "burgers").cls is Burgers
    assert Burgers.default_model == {"name": "mlp", "width": 20, "depth": 8, "activation": "tanh"}
    assert KleinGordon.default_model["width"] == 50 and KleinGordon.default_model["depth"] == 6
    assert DiffusionTransport.default_model["width"] == 50 and DiffusionTransport.default_model["depth"] == 10
    assert lookup("problem", "burgers").options().n_interior == 10000
    assert not hasattr(lookup("problem", "diffusion_transport").options(), "n_initial")


def test_burgers_samples():
    s = make("burgers").training_samples()
    assert s.counts == {"interior": 60, "boundary": 14, "initial": 10}
    x, t = s.terms["interior"].T
    assert x.min() >= -1 and x.max() <= 1 and t.min() >= 0 and t.max() <= 1
    b = s.terms["boundary"]
    assert set(b[:, 0].tolist()) == {-1.0, 1.0} and torch.all(b[:, 2] == 0)
    i = s.terms["initial"]
    assert torch.all(i[:, 1] == 0)
    torch.testing.assert_close(i[:, 2], -torch.sin(math.pi * i[:, 0]))
    assert all(v.dtype == torch.float64 for v in s.terms.values())


def test_klein_gordon_samples():
    s = make("klein_gordon").training_samples()
    assert s.terms["interior"][:, 1].max() > 6 and s.terms["interior"][:, 1].max() <= 12
    b = s.terms["boundary"]
    torch.testing.assert_close(b[:, 2], b[:, 0] * torch.cos(b[:, 1]))
    i = s.terms["initial"]
    assert i.shape[1] == 4 and torch.all(i[:, 1] == 0) and torch.all(i[:, 2] == i[:, 0]) and torch.all(i[:, 3] == 0)


def test_diffusion_transport_samples_on_the_boundary():
    s = make("diffusion_transport", n_boundary=400).training_samples()
    b = s.terms["boundary"]
    on_side = (b[:, 0] == 0) | (b[:, 0] == 1) | (b[:, 1] == 0) | (b[:, 1] == 1)
    assert torch.all(on_side) and torch.all((b[:, :2] >= 0) & (b[:, :2] <= 1))
    for side in (b[:, 0] == 0, b[:, 0] == 1, b[:, 1] == 0, b[:, 1] == 1):
        assert 80 <= int(side.sum()) <= 120
    assert set(s.terms) == {"interior", "boundary"}


def test_klein_gordon_exact_solution_has_zero_loss_and_error():
    problem = make("klein_gordon", model=Analytic(lambda x, t: x * torch.cos(t)))
    assert not problem.use_jet
    terms = problem.loss_terms(problem.training_samples())
    for value in terms.values():
        assert abs(value.item()) < 1e-25
    assert problem.metrics()["rel_l2_error"] < 1e-14
    # a perturbed solution has a positive residual: u = 1.1 x cos t gives r = −0.1 x cos t + 0.21 x² cos² t
    with torch.no_grad():
        problem.model.scale.fill_(1.1)
    s = problem.training_samples()
    x, t = s.terms["interior"].T
    c = x * torch.cos(t)
    expected = ((-0.1 * c + 0.21 * c**2) ** 2).sum() / 60
    torch.testing.assert_close(problem.loss_terms(s)["interior"].detach(), expected, rtol=1e-12, atol=0)
    assert problem.metrics()["rel_l2_error"] == pytest.approx(0.1, rel=1e-12)


def test_burgers_loss_by_hand():
    fn = lambda x, t: -torch.sin(math.pi * x) * torch.exp(-t)  # noqa: E731
    problem = make("burgers", model=Analytic(fn), weight_interior=2.0, weight_boundary=3.0, weight_initial=5.0)
    s = problem.training_samples()
    terms = problem.loss_terms(s)
    x, t = s.terms["interior"].T
    e, sn, cs = torch.exp(-t), torch.sin(math.pi * x), torch.cos(math.pi * x)
    u, ut, ux, uxx = -sn * e, sn * e, -math.pi * cs * e, math.pi**2 * sn * e
    r = ut + u * ux - BURGERS_NU * uxx
    torch.testing.assert_close(terms["interior"].detach(), 2.0 * r.square().sum() / 60, rtol=1e-12, atol=0)
    assert terms["initial"].item() < 1e-28 and terms["boundary"].item() < 1e-28


def test_diffusion_transport_loss_by_hand():
    fn = lambda x, y: x * (1 - x) * y * (1 - y)  # noqa: E731
    problem = make("diffusion_transport", model=Analytic(fn), weight_interior=0.5)
    s = problem.training_samples()
    x, y = s.terms["interior"].T
    lap = -2 * y * (1 - y) - 2 * x * (1 - x)
    r = -0.01 * lap + (1 - 2 * x) * y * (1 - y) + x * (1 - x) * (1 - 2 * y) - 1
    terms = problem.loss_terms(s)
    torch.testing.assert_close(terms["interior"].detach(), 0.5 * r.square().sum() / 60, rtol=1e-12, atol=0)
    assert terms["boundary"].item() < 1e-30


@pytest.mark.parametrize("name", NAMES)
def test_taylor_and_autograd_agree(name):
    fast, ref = make(name), make(name, derivatives="autograd")
    assert fast.use_jet and not ref.use_jet
    ref.params.flat.copy_(fast.params.flat)
    s = fast.training_samples()
    terms_fast, grad_fast = loss_and_grad(fast, s)
    terms_ref, grad_ref = loss_and_grad(ref, s)
    for k in terms_ref:
        torch.testing.assert_close(terms_fast[k], terms_ref[k], rtol=1e-11, atol=1e-14)
    assert grad_ref.abs().max() > 1e-4
    torch.testing.assert_close(grad_fast, grad_ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("derivatives", ["taylor", "autograd"])
def test_shard_losses_add_up(name, derivatives):
    problem = make(name, derivatives=derivatives, n_initial=2)
    s = problem.training_samples()
    whole, grad = loss_and_grad(problem, s)
    parts = [loss_and_grad(problem, s.shard(r, 3)) for r in range(3)]
    for k in whole:
        torch.testing.assert_close(sum(p[0][k] for p in parts), whole[k], rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(sum(p[1] for p in parts), grad, rtol=1e-10, atol=1e-14)
    if name != "diffusion_transport":  # shard 0 has no initial rows: a zero term, still differentiable
        assert s.shard(0, 3).terms["initial"].shape[0] == 0 and parts[0][0]["initial"].item() == 0.0


def test_value_only_evaluation_without_grad():
    for derivatives in ("taylor", "autograd"):
        problem = make("burgers", derivatives=derivatives)
        s = problem.training_samples()
        with torch.no_grad():
            terms = problem.loss_terms(s)
        assert all(v.dim() == 0 and torch.isfinite(v) for v in terms.values())


@pytest.mark.parametrize("name", NAMES)
def test_metrics_and_training_reduce_the_loss(name):
    problem = make(name)
    error = problem.metrics()["rel_l2_error"]
    assert math.isfinite(error) and error > 0.05
    s = problem.training_samples()
    opt = torch.optim.Adam(problem.params.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = sum(problem.loss_terms(s).values())
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    assert math.isfinite(problem.metrics()["rel_l2_error"])


def test_float32():
    p32, p64 = make("klein_gordon", dtype=torch.float32), make("klein_gordon")
    assert p32.params.flat.dtype == torch.float32
    s32 = p32.training_samples()
    assert s32.terms["interior"].dtype == torch.float32
    p64.params.flat.copy_(p32.params.flat.double())
    t32, t64 = p32.loss_terms(s32), p64.loss_terms(p64.training_samples())
    for k in t64:
        assert t32[k].dtype == torch.float32
        assert t32[k].item() == pytest.approx(t64[k].item(), rel=1e-4)


def test_resampling_and_determinism():
    problem = make("burgers")
    s = problem.training_samples()
    again = make("burgers").training_samples()
    assert all(torch.equal(s.terms[k], again.terms[k]) for k in s.terms)
    assert problem.training_samples(0) is s  # drawn once
    new = problem.training_samples(5)
    assert isinstance(new, Samples) and new.counts == s.counts
    assert not torch.equal(new.terms["interior"], s.terms["interior"])
    assert torch.equal(new.terms["interior"], problem.training_samples(5).terms["interior"])
    sobol = make("burgers", sampling="sobol").training_samples()
    assert not torch.equal(sobol.terms["interior"], s.terms["interior"])


def test_unsupported_model_falls_back_to_autograd():
    model = MLP(MLPOptions(width=6, depth=2), 2, 1)

    class Shifted(MLP):
        def forward(self, x):
            return super().forward(x) + 1.0

    shifted = Shifted(MLPOptions(width=6, depth=2), 2, 1)
    assert make("burgers", model=model).use_jet
    problem = make("burgers", model=shifted)
    assert not problem.use_jet
    assert torch.isfinite(sum(problem.loss_terms(problem.training_samples()).values()))
    with pytest.raises(KeyError):
        problem.loss_terms(Samples.whole({"nonsense": torch.zeros(2, 2, dtype=torch.float64)}))
