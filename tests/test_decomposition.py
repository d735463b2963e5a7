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


# -- chunks of samples (data space) ---------------------------------------------------------------


def _batch(n_points=23, n_images=11):
    from ddnn.samples import Samples

    images = torch.arange(n_images, dtype=torch.float64)[:, None, None].expand(n_images, 2, 2).clone()
    return Samples.whole(
        {"points": torch.arange(n_points, dtype=torch.float64)[:, None], "images": (images, torch.arange(n_images))}
    )


@pytest.mark.parametrize("chunks", [1, 2, 3, 4])
def test_chunks_partition_the_batch_like_the_shards(chunks):
    from ddnn.decomposition import SampleDecomposition

    batch = _batch()
    dec = SampleDecomposition(chunks)
    seen = []
    for s in range(chunks):
        chunk = dec.chunk(batch, s)
        shard = batch.shard(s, chunks)
        assert torch.equal(chunk.terms["points"], shard.terms["points"])  # chunk p = the shard of rank p
        assert chunk.counts == {"points": shard.terms["points"].shape[0], "images": shard.terms["images"][0].shape[0]}
        assert chunk.fraction == pytest.approx(chunk.rows / batch.rows)
        seen += chunk.terms["points"][:, 0].tolist()
    assert sorted(seen) == list(range(23))


def test_chunk_overlap_repeats_rows_of_the_next_chunk():
    from ddnn.decomposition import SampleDecomposition

    batch = _batch()
    plain, over = SampleDecomposition(3), SampleDecomposition(3, overlap=20.0)
    for s in range(3):
        own = plain.chunk(batch, s).terms["points"][:, 0].tolist()
        mine = over.chunk(batch, s).terms["points"][:, 0].tolist()
        nxt = plain.chunk(batch, (s + 1) % 3).terms["points"][:, 0].tolist()
        extra = mine[len(own) :]
        assert mine[: len(own)] == own and len(extra) == -(-len(own) // 5) and extra == nxt[: len(extra)]
        labels = over.chunk(batch, s).terms["images"][1]
        assert labels.dtype == torch.int64


def test_sample_subdomains_share_all_parameters_and_add_their_corrections():
    from ddnn.decomposition import SampleDecomposition

    dec = SampleDecomposition(3)
    theta = torch.arange(5.0)
    assert dec.restrict(theta, 1) is theta
    out = torch.zeros(5)
    for s in range(3):
        dec.extend_weighted(torch.ones(5) * (s + 1), s, out)
    assert torch.equal(out, torch.full((5,), 6.0))
    assert dec.blocks_of(1, 2) == [1] and dec.blocks_of(0, 2) == [0, 2]
    with pytest.raises(ValueError):
        SampleDecomposition(0)


def test_blocks_balanced_by_parameters():
    sizes = [100, 10, 10, 10, 100]
    groups = split_layers(5, 2, sizes)
    assert [layer for g in groups for layer in g] == list(range(5))
    assert max(sum(sizes[i] for i in g) for g in groups) == 120  # the best contiguous split
    assert split_layers(5, 3, [1, 1, 1, 1, 100]) == [[0, 1, 2], [3], [4]]
    assert split_layers(4, 4, [5, 5, 5, 5]) == [[0], [1], [2], [3]]
