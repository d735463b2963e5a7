"""Layer decompositions: restriction, extension, partition of unity, coverage."""

import pytest
import torch

from ddnn.decomposition import LayerDecomposition, split_layers
from ddnn.flat import FlatParams
from ddnn.models.mlp import MLP, MLPOptions


def _bounds():
    model = MLP(MLPOptions(width=4, depth=4), 2, 1)
    return FlatParams(model).layer_bounds()


def test_layer_bounds_cover_the_flat_vector():
    bounds = _bounds()
    assert len(bounds) == 5  # 4 hidden layers + output
    assert bounds[0][0] == 0
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    assert bounds[-1][1] == 2 * 4 + 4 + 3 * (4 * 4 + 4) + 4 + 1


@pytest.mark.parametrize("n_blocks", [1, 2, 3, 5])
def test_split_is_consecutive_and_complete(n_blocks):
    groups = split_layers(5, n_blocks)
    assert [layer for g in groups for layer in g] == list(range(5))
    assert max(map(len, groups)) - min(map(len, groups)) <= 1


def test_split_rejects_more_blocks_than_layers():
    with pytest.raises(ValueError):
        split_layers(3, 4)


@pytest.mark.parametrize("overlap", [0, 1, 2])
def test_partition_of_unity_reconstructs_identity(overlap):
    bounds = _bounds()
    dec = LayerDecomposition.even(bounds, 3, overlap)
    theta = torch.randn(dec.n, dtype=torch.float64)
    # sum_s D_s E_s R_s theta = theta
    out = torch.zeros_like(theta)
    for s in range(len(dec)):
        dec.extend_weighted(dec.restrict(theta, s), s, out)
    torch.testing.assert_close(out, theta, rtol=0, atol=1e-15)
    # the weights of every entry sum to one
    total = torch.zeros_like(theta)
    for s in range(len(dec)):
        dec.extend(dec.weights(s, theta), s, total)
    torch.testing.assert_close(total, torch.ones_like(theta))
    assert dec.overlapping == (overlap > 0)


def test_disjoint_corrections_sum_to_gathered_blocks():
    dec = LayerDecomposition.even(_bounds(), 3)
    parts = [torch.randn(b.size, dtype=torch.float64) for b in dec.blocks]
    summed = torch.zeros(dec.n, dtype=torch.float64)
    for s, y in enumerate(parts):
        dec.extend_weighted(y, s, summed)
    torch.testing.assert_close(summed, torch.cat(parts), rtol=0, atol=0)


def test_restrict_is_a_view_and_extend_its_adjoint():
    dec = LayerDecomposition.even(_bounds(), 2, overlap=1)
    x = torch.randn(dec.n, dtype=torch.float64)
    for s, b in enumerate(dec.blocks):
        r = dec.restrict(x, s)
        assert r.data_ptr() == x[b.start :].data_ptr()
        y = torch.randn(b.size, dtype=torch.float64)
        # <R_s x, y> = <x, E_s y>
        torch.testing.assert_close(torch.dot(r, y), torch.dot(x, dec.extend(y, s)))


def test_gaps_and_bad_groups_are_rejected():
    bounds = _bounds()
    with pytest.raises(ValueError, match="belong to no block"):
        LayerDecomposition(bounds, [[0, 1], [3, 4]])
    with pytest.raises(ValueError, match="not consecutive"):
        LayerDecomposition(bounds, [[0, 2], [1, 3, 4]])
    with pytest.raises(ValueError, match="no layers"):
        LayerDecomposition(bounds, [[0, 1, 2, 3, 4], []])


def test_round_robin_ownership():
    dec = LayerDecomposition.even(_bounds(), 5)
    assert dec.blocks_of(0, 2) == [0, 2, 4]
    assert dec.blocks_of(1, 2) == [1, 3]
    assert sorted(s for r in range(3) for s in dec.blocks_of(r, 3)) == list(range(5))
