"""Compact quasi-Newton matrices: L-SR1 history against the dense SR1 recursion, L-BFGS compact form."""

from __future__ import annotations

import math

import pytest
import torch

from ddnn.solvers.history import LBFGSHistory
from ddnn.solvers.quadratic_model import CompactForm, lbfgs_compact
from ddnn.solvers.sr1 import LSR1History, denominator_rule

F64 = torch.float64


def random_pairs(n: int, count: int, seed: int = 0, symmetric: torch.Tensor | None = None):
    """Random secant pairs: y = A s for a common symmetric A when given, else unrelated random y."""
    gen = torch.Generator().manual_seed(seed)
    pairs = []
    for _ in range(count):
        s = torch.randn(n, generator=gen, dtype=F64)
        y = symmetric @ s if symmetric is not None else torch.randn(n, generator=gen, dtype=F64)
        pairs.append((s, y))
    return pairs


def random_symmetric(n: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=gen, dtype=F64)
    return 0.5 * (a + a.T) + shift * torch.eye(n, dtype=F64)


def dense_sr1(pairs, gamma: float) -> torch.Tensor:
    """B after the SR1 updates B ← B + rrᵀ/(rᵀs), r = y − Bs (N&W eq. 6.24), from B⁰ = γI."""
    n = pairs[0][0].numel()
    b = gamma * torch.eye(n, dtype=F64)
    for s, y in pairs:
        r = y - b @ s
        b = b + torch.outer(r, r) / (r @ s)
    return b


@pytest.mark.parametrize("pushed", [1, 2, 4, 7])
@pytest.mark.parametrize("rule", ["fixed", "ratio"])
def test_compact_matches_dense_sr1_recursion(pushed, rule):
    n, m = 9, 4
    history = LSR1History(m, n, dtype=F64, gamma_rule=rule, gamma0=0.7)
    pairs = [(s, y * torch.sign(s @ y)) for s, y in random_pairs(n, pushed, seed=pushed)]  # sᵀy > 0
    for s, y in pairs:
        assert history.push(s, y)
    assert history.count == min(pushed, m)
    s, y = pairs[-1]
    gamma = 0.7 if rule == "fixed" else float((y @ y) / (s @ y))
    assert history.gamma == pytest.approx(gamma, rel=1e-14)
    b = dense_sr1(pairs[-m:], history.gamma)
    v = torch.randn(n, generator=torch.Generator().manual_seed(99), dtype=F64)
    torch.testing.assert_close(history.matvec(v), b @ v, rtol=1e-10, atol=1e-10)
    compact = history.compact()
    torch.testing.assert_close(compact.dense(), b, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(compact.matvec(v), b @ v, rtol=1e-10, atol=1e-10)
    # secant condition of the newest pair
    torch.testing.assert_close(history.matvec(s), y, rtol=1e-10, atol=1e-10)


def test_ratio_rule_keeps_gamma_for_negative_curvature_pairs():
    n = 6
    history = LSR1History(3, n, dtype=F64, gamma0=0.5)
    s, y = random_pairs(n, 1, seed=13)[0]
    y = y * torch.sign(s @ y)
    assert history.push(s, y)
    gamma = history.gamma
    assert gamma == pytest.approx(float((y @ y) / (s @ y)))
    s2, y2 = random_pairs(n, 1, seed=14)[0]
    y2 = -y2 * torch.sign(s2 @ y2)  # s2ᵀy2 < 0: SR1 stores it, γ stays
    assert history.push(s2, y2)
    assert history.gamma == gamma
    torch.testing.assert_close(history.compact().dense(), dense_sr1([(s, y), (s2, y2)], gamma), rtol=1e-10, atol=1e-10)


def test_secant_conditions_of_all_pairs_from_one_quadratic():
    """Pairs y = A s of one symmetric A: SᵀY is symmetric and B sᵢ = yᵢ for every stored pair (hereditary)."""
    n, m = 10, 5
    a = random_symmetric(n, seed=3)
    history = LSR1History(m, n, dtype=F64, gamma_rule="fixed", gamma0=1.3)
    pairs = random_pairs(n, m, seed=4, symmetric=a)
    for s, y in pairs:
        assert history.push(s, y)
    for s, y in pairs:
        torch.testing.assert_close(history.matvec(s), y, rtol=1e-9, atol=1e-9)


def test_unrelated_pairs_satisfy_only_the_newest_secant_condition():
    n = 8
    history = LSR1History(3, n, dtype=F64, gamma_rule="fixed")
    pairs = random_pairs(n, 3, seed=5)
    for s, y in pairs:
        assert history.push(s, y)
    s, y = pairs[0]
    assert (history.matvec(s) - y).norm() > 1e-3  # SᵀY is not symmetric: no hereditary property


def test_indefinite_b_is_possible():
    n = 6
    a = torch.diag(torch.tensor([-2.0, -1.0, 0.5, 1.0, 2.0, 3.0], dtype=F64))
    history = LSR1History(6, n, dtype=F64, gamma_rule="fixed", gamma0=1.0)
    for s, y in random_pairs(n, 6, seed=6, symmetric=a):
        history.push(s, y)
    eigenvalues = torch.linalg.eigvalsh(history.compact().dense())
    assert eigenvalues.min() < -1.0  # recovers the negative curvature of A
    torch.testing.assert_close(eigenvalues, torch.linalg.eigvalsh(a), rtol=1e-8, atol=1e-8)


def test_skip_rule_triggers_on_a_pair_orthogonal_to_its_residual():
    """y = γs + w with w ⟂ s: r = y − γs = w, sᵀr = 0 < eps ‖s‖ ‖r‖ (N&W eq. 6.26)."""
    n = 5
    history = LSR1History(3, n, dtype=F64, gamma_rule="fixed", gamma0=2.0)
    s = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0], dtype=F64)
    w = torch.tensor([0.0, 1.0, 0.5, 0.0, 0.0], dtype=F64)
    assert not history.push(s, 2.0 * s + w)
    assert history.count == 0
    # slightly inside the threshold: skipped; well outside: stored
    assert not history.push(s, 2.0 * s + w + 1e-10 * s)
    assert history.push(s, 2.0 * s + w + 1e-3 * s)
    assert history.count == 1


def test_skip_rule_uses_the_residual_of_the_stored_pairs():
    """With a stored pair, y = Bs + w + δs, w ⟂ s: skipped for small δ (rule eps = 1e-3), stored for large δ."""
    n = 6
    history = LSR1History(3, n, dtype=F64, gamma_rule="fixed", eps=1e-3)
    (s1, y1), (s, w) = random_pairs(n, 2, seed=15)
    assert history.push(s1, y1)
    w = w - (w @ s) / (s @ s) * s
    bs = history.matvec(s)
    assert not history.push(s, bs + w + 1e-5 * s)  # sᵀr = 1e-5 ‖s‖² < 1e-3 ‖s‖ ‖r‖
    assert history.count == 1
    assert history.push(s, bs + w + 0.5 * s)
    torch.testing.assert_close(history.matvec(s), bs + w + 0.5 * s, rtol=1e-10, atol=1e-10)


def test_pluggable_rule_and_non_finite_and_repeated_pairs():
    n = 4
    calls = []

    def refuse_all(sr, s_norm, r_norm):
        calls.append((sr, s_norm, r_norm))
        return False

    history = LSR1History(2, n, dtype=F64, rule=refuse_all)
    s, y = random_pairs(n, 1, seed=7)[0]
    assert not history.push(s, y) and len(calls) == 1
    history = LSR1History(2, n, dtype=F64)
    assert not history.push(s, torch.full((n,), float("nan"), dtype=F64))
    assert not history.push(torch.zeros(n, dtype=F64), y)
    assert history.count == 0 and not calls[1:]
    assert history.push(s, y)
    # the same pair again has r = y − Bs = 0: no update, and the middle matrix would be singular
    assert not history.push(s, y)
    assert history.count == 1
    assert denominator_rule(0.1)(0.5, 1.0, 1.0) and not denominator_rule(0.1)(0.05, 1.0, 1.0)


def test_ill_conditioned_middle_matrix_is_refused():
    """A second pair almost equal to the first makes N nearly singular: refused by the conditioning test."""
    n = 6
    history = LSR1History(3, n, dtype=F64, gamma_rule="fixed")
    (s, y), (s2, y2) = random_pairs(n, 2, seed=8)
    assert history.push(s, y)
    assert not history.push(s + 1e-9 * s2, y + 1e-9 * y2)
    assert history.push(s2, y2)


def test_pairs_that_break_down_under_a_new_gamma_are_dropped():
    """A new γ = s₁ᵀy₁/s₁ᵀs₁ makes the stored pair's N = s₁ᵀy₁ − γ s₁ᵀs₁ zero: it is dropped, the new pair kept."""
    n = 5
    eye = torch.eye(n, dtype=F64)
    history = LSR1History(2, n, dtype=F64)
    s1, y1 = eye[0], 2.0 * eye[0] + eye[1]  # s₁ᵀy₁/s₁ᵀs₁ = 2, own γ = y₁ᵀy₁/s₁ᵀy₁ = 2.5
    assert history.push(s1, y1) and history.gamma == 2.5
    a = 1.0 + math.sqrt(0.5)  # y₂ = a s₂ + w, ‖w‖² = ½: y₂ᵀy₂/s₂ᵀy₂ = a + ½/a = 2
    s2, y2 = eye[2], a * eye[2] + math.sqrt(0.5) * eye[3]
    assert history.push(s2, y2)
    assert history.count == 1 and history.gamma == pytest.approx(2.0)
    torch.testing.assert_close(history.compact().dense(), dense_sr1([(s2, y2)], 2.0), rtol=1e-12, atol=1e-12)


def test_ring_buffer_and_reset():
    n, m = 7, 3
    history = LSR1History(m, n, dtype=F64, gamma_rule="fixed")
    pairs = random_pairs(n, 5, seed=9)
    for s, y in pairs:
        assert history.push(s, y)
    assert history.count == m and history.head == 5 % m
    assert history.order() == [2, 0, 1]
    torch.testing.assert_close(history.S[history.order()], torch.stack([p[0] for p in pairs[-m:]]))
    history.reset()
    v = torch.arange(n, dtype=F64)
    assert history.count == 0 and torch.equal(history.matvec(v), history.gamma0 * v)
    compact = history.compact()
    assert compact.Psi.shape == (n, 0) and compact.gamma == history.gamma0
    torch.testing.assert_close(compact.matvec(v), v)


def test_state_dict_round_trip_is_bit_for_bit():
    n, m = 11, 4
    history = LSR1History(m, n, dtype=torch.float32)
    for s, y in random_pairs(n, 6, seed=10):
        history.push(s.float(), y.float())
    state = history.state_dict()
    assert all(isinstance(v, (torch.Tensor, int)) for v in state.values())
    fresh = LSR1History(m, n, dtype=torch.float32)
    fresh.load_state_dict(state)
    v = torch.randn(n, generator=torch.Generator().manual_seed(1))
    assert torch.equal(fresh.matvec(v), history.matvec(v))
    assert torch.equal(fresh.compact().matvec(v), history.compact().matvec(v))
    s, y = random_pairs(n, 1, seed=11)[0]
    assert fresh.push(s.float(), y.float()) == history.push(s.float(), y.float())
    assert torch.equal(fresh.matvec(v), history.matvec(v))
    with pytest.raises(ValueError):
        LSR1History(m + 1, n).load_state_dict(state)


def test_float32_history_matches_float64():
    n, m = 12, 3
    h32 = LSR1History(m, n, dtype=torch.float32, gamma_rule="fixed")
    h64 = LSR1History(m, n, dtype=F64, gamma_rule="fixed")
    for s, y in random_pairs(n, 4, seed=12):
        assert h64.push(s, y) and h32.push(s.float(), y.float())
    v = torch.randn(n, generator=torch.Generator().manual_seed(2), dtype=F64)
    out = h32.matvec(v.float())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), h64.matvec(v), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------
# L-BFGS compact form


def spd_pairs(n: int, count: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    pairs = []
    for _ in range(count):
        a = torch.randn(n, n, generator=gen, dtype=F64)
        s = torch.randn(n, generator=gen, dtype=F64)
        pairs.append((s, (a @ a.T + 0.5 * torch.eye(n, dtype=F64)) @ s))
    return pairs


@pytest.mark.parametrize("pushed", [1, 3, 6])
def test_lbfgs_compact_matches_apply_direct_and_inverts_apply_inverse(pushed):
    n, m = 9, 4
    history = LBFGSHistory(m, n, dtype=F64)
    for s, y in spd_pairs(n, pushed, seed=pushed):
        assert history.push(s, y)
    compact = lbfgs_compact(history)
    assert isinstance(compact, CompactForm) and compact.Psi.shape == (n, 2 * min(pushed, m))
    gen = torch.Generator().manual_seed(5)
    for _ in range(3):
        v = torch.randn(n, generator=gen, dtype=F64)
        torch.testing.assert_close(compact.matvec(v), history.apply_direct(v), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(compact.matvec(history.apply_inverse(v)), v, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(compact.solve(v), history.apply_inverse(v), rtol=1e-9, atol=1e-10)
    assert torch.linalg.eigvalsh(compact.dense()).min() > 0  # L-BFGS B is positive definite


def test_lbfgs_compact_of_an_empty_history_is_none():
    assert lbfgs_compact(LBFGSHistory(3, 5, dtype=F64)) is None
