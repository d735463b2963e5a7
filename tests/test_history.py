"""L-BFGS history: two-loop and compact products against dense BFGS matrices."""

from __future__ import annotations

import pytest
import torch

from ddnn.solvers.history import LBFGSHistory

F64 = torch.float64


def random_pairs(n: int, count: int, seed: int = 0):
    """Secant pairs of random SPD matrices (a different one per pair, so yᵀs > 0 but no common Hessian)."""
    gen = torch.Generator().manual_seed(seed)
    pairs = []
    for _ in range(count):
        m = torch.randn(n, n, generator=gen, dtype=F64)
        a = m @ m.T + 0.5 * torch.eye(n, dtype=F64)
        s = torch.randn(n, generator=gen, dtype=F64)
        pairs.append((s, a @ s))
    return pairs


def dense_bfgs(pairs):
    """H and B after BFGS updates (N&W eq. 6.17, 6.19) from H⁰ = γI, B⁰ = I/γ, γ = sᵀy/yᵀy of the newest pair."""
    n = pairs[0][0].numel()
    eye = torch.eye(n, dtype=F64)
    s, y = pairs[-1]
    gamma = (s @ y) / (y @ y)
    h, b = gamma * eye, eye / gamma
    for s, y in pairs:
        rho = 1.0 / (y @ s)
        h = (eye - rho * torch.outer(s, y)) @ h @ (eye - rho * torch.outer(y, s)) + rho * torch.outer(s, s)
        bs = b @ s
        b = b - torch.outer(bs, bs) / (s @ bs) + torch.outer(y, y) / (y @ s)
    return h, b


@pytest.mark.parametrize("pushed", [1, 2, 4, 7, 11])
def test_products_match_dense_bfgs(pushed):
    n, m = 9, 4
    history = LBFGSHistory(m, n, dtype=F64)
    pairs = random_pairs(n, pushed, seed=pushed)
    for s, y in pairs:
        assert history.push(s, y)
    assert history.count == min(pushed, m)
    h, b = dense_bfgs(pairs[-m:])
    v = torch.randn(n, generator=torch.Generator().manual_seed(99), dtype=F64)
    torch.testing.assert_close(history.apply_inverse(v), h @ v, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(history.apply_direct(v), b @ v, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(history.apply_direct(history.apply_inverse(v)), v, rtol=1e-9, atol=1e-10)
    s, y = pairs[-1]
    assert history.scaling() == pytest.approx(float((s @ y) / (y @ y)))


def test_empty_history_is_the_identity():
    history = LBFGSHistory(3, 5, dtype=F64)
    v = torch.arange(5, dtype=F64)
    assert torch.equal(history.apply_inverse(v), v) and torch.equal(history.apply_direct(v), v)
    assert history.apply_inverse(v) is not v
    assert history.scaling() == 1.0


def test_secant_equation_for_the_newest_pair():
    history = LBFGSHistory(3, 6, dtype=F64)
    for s, y in random_pairs(6, 5):
        history.push(s, y)
    torch.testing.assert_close(history.apply_inverse(y), s)
    torch.testing.assert_close(history.apply_direct(s), y)


def test_curvature_rule_skips_pairs():
    history = LBFGSHistory(3, 2, dtype=F64)
    s = torch.tensor([1.0, 0.0], dtype=F64)
    assert not history.push(s, -s)  # negative curvature
    assert not history.push(s, torch.zeros(2, dtype=F64))
    nearly_orthogonal = torch.tensor([1e-9, 1.0], dtype=F64)  # yᵀs = 1e-9 ‖s‖‖y‖ (about)
    assert not history.push(s, nearly_orthogonal, eps=1e-8)
    assert history.push(s, nearly_orthogonal, eps=1e-10)
    assert not history.push(s, torch.tensor([float("nan"), 1.0], dtype=F64))
    assert history.count == 1


def test_ring_keeps_the_newest_pairs_and_resets():
    n, m = 5, 2
    history = LBFGSHistory(m, n, dtype=F64)
    pairs = random_pairs(n, 5)
    for s, y in pairs:
        history.push(s, y)
    kept = {tuple(history.S[i].tolist()) for i in history.order()}
    assert kept == {tuple(p[0].tolist()) for p in pairs[-2:]}
    assert torch.equal(history.S[history.order()[-1]], pairs[-1][0])
    history.reset()
    v = torch.ones(n, dtype=F64)
    assert len(history) == 0 and torch.equal(history.apply_inverse(v), v)


def test_state_dict_restores_bit_for_bit():
    n, m = 7, 3
    pairs = random_pairs(n, 8, seed=5)
    a = LBFGSHistory(m, n, dtype=torch.float32)
    for s, y in pairs[:4]:
        a.push(s.float(), y.float())
    b = LBFGSHistory(m, n, dtype=torch.float32)
    b.load_state_dict(a.state_dict())
    for s, y in pairs[4:]:
        assert a.push(s.float(), y.float()) == b.push(s.float(), y.float())
    v = torch.randn(n)
    assert torch.equal(a.apply_inverse(v), b.apply_inverse(v))
    assert torch.equal(a.apply_direct(v), b.apply_direct(v))
    state = a.state_dict()
    assert set(state) == {"S", "Y", "gram", "rho", "count", "head"}
    assert isinstance(state["count"], int) and state["S"].shape == (m, n)
    with pytest.raises(ValueError):
        LBFGSHistory(m + 1, n).load_state_dict(state)


def test_float32_products_are_accurate():
    n, m = 20, 3
    history = LBFGSHistory(m, n, dtype=torch.float32)
    pairs = random_pairs(n, 4, seed=2)
    for s, y in pairs:
        history.push(s.float(), y.float())
    h, _ = dense_bfgs(pairs[-m:])
    v = torch.randn(n, dtype=F64)
    torch.testing.assert_close(history.apply_inverse(v.float()).double(), h @ v, rtol=1e-4, atol=1e-5)
