"""Reference solutions: Burgers (Cole–Hopf), Klein–Gordon (exact), diffusion–transport (Chebyshev)."""

import math

import numpy as np
import pytest

from ddnn.problems.pinn import references
from ddnn.problems.pinn.references import (
    DiffusionTransportReference,
    barycentric_matrix,
    burgers_reference,
    chebyshev_matrix,
    diffusion_transport_reference,
    klein_gordon_forcing,
    klein_gordon_reference,
)


def test_burgers_shock_gradient():
    # Basdevant et al. (1986): u_x(x = 0, t = 1.6037/π) ≈ −152.005
    t, h = 1.6037 / math.pi, 1e-6
    ux = (burgers_reference(h, t) - burgers_reference(-h, t)) / (2 * h)
    assert ux == pytest.approx(-152.00516, rel=1e-6)
    # and 80 nodes (the minimum) agree
    ux80 = (burgers_reference(h, t, nodes=80) - burgers_reference(-h, t, nodes=80)) / (2 * h)
    assert ux80 == pytest.approx(-152.005, rel=1e-5)


def test_burgers_initial_boundary_and_symmetry():
    x = np.linspace(-1, 1, 41)
    np.testing.assert_array_equal(burgers_reference(x, 0.0), -np.sin(np.pi * x))
    t = np.linspace(0.05, 1.0, 7)
    np.testing.assert_allclose(burgers_reference(1.0, t), 0.0, atol=1e-12)
    np.testing.assert_allclose(burgers_reference(-1.0, t), 0.0, atol=1e-12)
    # odd in x
    np.testing.assert_allclose(burgers_reference(-x, 0.5), -burgers_reference(x, 0.5), atol=1e-12)
    with pytest.raises(ValueError):
        burgers_reference(0.1, 0.5, nodes=40)


def test_burgers_satisfies_pde():
    nu, h = 0.01 / np.pi, 1e-4
    x, t = np.array([-0.7, -0.3, 0.4, 0.8]), 0.3
    u = burgers_reference(x, t)
    ut = (burgers_reference(x, t + h) - burgers_reference(x, t - h)) / (2 * h)
    ux = (burgers_reference(x + h, t) - burgers_reference(x - h, t)) / (2 * h)
    uxx = (burgers_reference(x + h, t) - 2 * u + burgers_reference(x - h, t)) / h**2
    np.testing.assert_allclose(ut + u * ux - nu * uxx, 0.0, atol=1e-5)


def test_klein_gordon_exact_solution():
    x, t = np.meshgrid(np.linspace(-1, 1, 9), np.linspace(0, 12, 9))
    u = klein_gordon_reference(x, t)
    np.testing.assert_allclose(u, x * np.cos(t))
    # u_tt − u_xx + u² = f with u_tt = −x cos t, u_xx = 0
    np.testing.assert_allclose(-x * np.cos(t) + u**2, klein_gordon_forcing(x, t), atol=1e-14)


def test_chebyshev_tools():
    nodes, d = chebyshev_matrix(16)
    f = np.exp(2 * nodes)
    np.testing.assert_allclose(d @ f, 2 * f, rtol=1e-10)
    x = np.linspace(0, 1, 33)
    np.testing.assert_allclose(barycentric_matrix(nodes, x) @ f, np.exp(2 * x), rtol=1e-12)
    np.testing.assert_array_equal(barycentric_matrix(nodes, nodes[[0, 5, 16]]) @ f, f[[0, 5, 16]])


@pytest.fixture(scope="module")
def dt_reference(tmp_path_factory):
    cache = tmp_path_factory.getbasetemp() / "ddnn_cache"  # shared with the problem tests: one solve
    mp = pytest.MonkeyPatch()
    mp.setenv("DDNN_CACHE", str(cache))
    yield diffusion_transport_reference(), cache
    mp.undo()


def test_diffusion_transport_check_value(dt_reference):
    ref, _ = dt_reference
    assert float(ref(0.5, 0.5)) == pytest.approx(0.44426463, rel=1e-6)
    # zero on the boundary, positive inside, layer of width ~μ at x = 1
    s = np.linspace(0, 1, 11)
    np.testing.assert_allclose(ref(s, 0.0), 0.0, atol=1e-14)
    np.testing.assert_allclose(ref(1.0, s), 0.0, atol=1e-14)
    assert float(ref(0.97, 0.5)) > 0.4 and float(ref(0.999, 0.5)) < 0.1


def test_diffusion_transport_grid_convergence(dt_reference):
    ref, _ = dt_reference
    coarse, medium = DiffusionTransportReference(24), DiffusionTransportReference(40)
    err_coarse, err_medium = coarse.max_change(ref), medium.max_change(ref)
    assert err_medium < 1e-5
    assert err_medium < 0.1 * err_coarse


def test_diffusion_transport_cache(dt_reference, monkeypatch):
    ref, cache = dt_reference
    files = list(cache.glob("diffusion_transport_*.npz"))
    assert len(files) == 1 and not list(cache.glob("*.tmp"))

    def fail(*args, **kwargs):
        raise AssertionError("solved again instead of loading the cache")

    monkeypatch.setattr(references.DiffusionTransportReference, "_solve", fail)
    again = diffusion_transport_reference()
    np.testing.assert_array_equal(again.values, ref.values)
