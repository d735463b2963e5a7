"""Collocation samplers: strata, bounds, determinism."""

import pytest
import torch

from ddnn.problems.pinn.sampling import SAMPLING_METHODS, sample_box, sub_seed


def test_latin_hypercube_one_point_per_stratum():
    n = 257
    x = sample_box("latin_hypercube", n, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), seed=5)
    assert x.shape == (n, 3) and x.dtype == torch.float64
    for j in range(3):
        strata = torch.floor(x[:, j] * n).long()
        assert torch.equal(torch.sort(strata).values, torch.arange(n))


def test_latin_hypercube_strata_after_scaling():
    n = 100
    lows, highs = (-1.0, 0.0), (1.0, 12.0)
    x = sample_box("latin_hypercube", n, lows, highs, seed=1)
    for j in range(2):
        unit = (x[:, j] - lows[j]) / (highs[j] - lows[j])
        counts = torch.bincount(torch.floor(unit * n).long().clamp(max=n - 1), minlength=n)
        assert torch.all(counts == 1)


@pytest.mark.parametrize("method", SAMPLING_METHODS)
def test_bounds_and_determinism(method):
    lows, highs = (-1.0, 0.0), (1.0, 12.0)
    a = sample_box(method, 1000, lows, highs, seed=3)
    b = sample_box(method, 1000, lows, highs, seed=3)
    c = sample_box(method, 1000, lows, highs, seed=4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    for j in range(2):
        assert a[:, j].min() >= lows[j] and a[:, j].max() < highs[j]
        # the points fill the box, not a corner of it
        assert a[:, j].max() - a[:, j].min() > 0.9 * (highs[j] - lows[j])


def test_sobol_is_low_discrepancy_and_scrambled():
    x = sample_box("sobol", 1024, (0.0, 0.0), (1.0, 1.0), seed=0)
    # a scrambled Sobol net of 2^10 points has exactly 4 points in each of the 16 x 16 cells
    cells = (torch.floor(x[:, 0] * 16) * 16 + torch.floor(x[:, 1] * 16)).long()
    assert torch.all(torch.bincount(cells, minlength=256) == 4)
    assert not torch.equal(x, sample_box("sobol", 1024, (0.0, 0.0), (1.0, 1.0), seed=1))


def test_empty_and_bad_arguments():
    assert sample_box("uniform", 0, (0.0,), (1.0,), 0).shape == (0, 1)
    with pytest.raises(ValueError):
        sample_box("halton", 5, (0.0,), (1.0,), 0)
    with pytest.raises(ValueError):
        sample_box("uniform", 5, (0.0, 0.0), (1.0,), 0)
    with pytest.raises(ValueError):
        sample_box("uniform", 5, (1.0,), (0.0,), 0)


def test_sub_seeds_differ():
    seeds = {sub_seed(s, k) for s in range(5) for k in range(5)}
    assert len(seeds) == 25
    assert sub_seed(7, 1) == sub_seed(7, 1)
