"""Taylor-mode jets against nested autograd: values, derivatives, parameter gradients."""

import pytest
import torch

from ddnn.models.mlp import MLP, MLPOptions
from ddnn.problems.pinn.derivatives import JET_ACTIVATIONS, autograd_jet, mlp_jet, supports_jet


def _model(activation="tanh", width=9, depth=3, d=3, seed=0):
    torch.manual_seed(seed)
    model = MLP(MLPOptions(width=width, depth=depth, activation=activation, init="default"), d, 1).double()
    with torch.no_grad():  # nonzero biases exercise the bias path
        for lin in model.linears:
            lin.bias.normal_(0.0, 0.3)
    return model


def _loss(jet):
    """A loss mixing every derivative nonlinearly, like a PINN residual."""
    r = jet.u * jet.first[0] + jet.first[2] ** 2 - 0.3 * jet.second[1] + jet.second[0] * jet.u
    if jet.combined:
        r = r + jet.combined[0] * jet.first[2]
    return r.square().sum()


def _flat_grad(model, loss):
    grads = torch.autograd.grad(loss, list(model.parameters()))
    return torch.cat([g.reshape(-1) for g in grads])


@pytest.mark.parametrize("activation", sorted(JET_ACTIVATIONS))
def test_jet_matches_autograd(activation):
    model = _model(activation)
    x = torch.randn(37, 3, dtype=torch.float64)
    combo = ({0: 0.5, 2: -2.0},)
    a = mlp_jet(model, x, (0, 2), (1, 0), combo)
    b = autograd_jet(model, x, (0, 2), (1, 0), combo)
    torch.testing.assert_close(a.u, b.u, rtol=0, atol=1e-12)
    for i in (0, 2):
        torch.testing.assert_close(a.first[i], b.first[i], rtol=0, atol=1e-12)
    for i in (1, 0):
        torch.testing.assert_close(a.second[i], b.second[i], rtol=0, atol=1e-12)
    torch.testing.assert_close(a.combined[0], b.combined[0], rtol=0, atol=1e-12)
    ga, gb = _flat_grad(model, _loss(a)), _flat_grad(model, _loss(b))
    scale = float(gb.abs().max())
    assert scale > 1e-6
    torch.testing.assert_close(ga, gb, rtol=1e-9, atol=1e-11 * scale)


def test_jet_second_derivative_values_are_not_trivial():
    # u = tanh network: the second derivative differs from zero and from the first derivative
    model = _model(width=5, depth=2, d=2)
    x = torch.randn(20, 2, dtype=torch.float64)
    jet = mlp_jet(model, x, (0,), (0,))
    eps = 1e-5
    e = torch.tensor([eps, 0.0], dtype=torch.float64)
    with torch.no_grad():
        fd = (model(x + e)[:, 0] - 2 * model(x)[:, 0] + model(x - e)[:, 0]) / eps**2
        fd1 = (model(x + e)[:, 0] - model(x - e)[:, 0]) / (2 * eps)
    torch.testing.assert_close(jet.second[0], fd, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(jet.first[0], fd1, rtol=1e-7, atol=1e-8)


def test_jet_gradient_with_frozen_parameters_and_no_grad():
    model = _model()
    x = torch.randn(11, 3, dtype=torch.float64)
    for p in model.linears[0].parameters():
        p.requires_grad_(False)
    loss = _loss(mlp_jet(model, x, (0, 2), (1, 0)))
    loss.backward()
    assert model.linears[0].weight.grad is None and model.linears[1].weight.grad is not None
    with torch.no_grad():
        jet = mlp_jet(model, x, (0, 2), (1, 0))
        ref = autograd_jet(model, x, (0, 2), (1, 0))
    assert not jet.u.requires_grad
    torch.testing.assert_close(jet.second[1], ref.second[1].detach(), rtol=0, atol=1e-12)


def test_jet_empty_batch_backward():
    model = _model()
    x = torch.empty(0, 3, dtype=torch.float64)
    jet = mlp_jet(model, x, (0, 2), (1, 0))
    loss = _loss(jet)
    loss.backward()
    assert loss.detach().item() == 0.0
    assert torch.all(model.linears[1].weight.grad == 0)


def test_float32_agrees_with_float64():
    model = _model()
    x = torch.randn(50, 3, dtype=torch.float64)
    ref = mlp_jet(model, x, (0,), (1,))
    jet32 = mlp_jet(model.float(), x.float(), (0,), (1,))
    torch.testing.assert_close(jet32.second[1].double(), ref.second[1], rtol=1e-4, atol=1e-5)


def test_supports_jet():
    assert supports_jet(_model("tanh"))
    model = _model("gelu")
    assert supports_jet(model)
    model._act.approximate = "tanh"
    assert not supports_jet(model)
    assert not supports_jet(torch.nn.Sequential(torch.nn.Linear(2, 1)))
    multi = MLP(MLPOptions(width=4, depth=1), 2, 2)
    assert not supports_jet(multi)
    with pytest.raises(ValueError):
        mlp_jet(multi, torch.zeros(3, 2), (0,), ())
