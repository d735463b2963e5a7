"""Samples with an owner: rows of any shape, shards, batches per epoch, overlap, resampling, resume."""

from __future__ import annotations

import math

import pytest
import torch

from ddnn.sampler import Sampler
from ddnn.samples import Samples, num_rows


class Source:
    """A problem's training set: a term of images with integer labels and a term of plain rows."""

    can_resample = True

    def __init__(self, n_images: int = 30, n_rows: int = 17):
        self.n_images, self.n_rows = n_images, n_rows

    def training_samples(self, draw: int = 0) -> Samples:
        images = torch.arange(self.n_images * 12, dtype=torch.float64).reshape(self.n_images, 3, 2, 2) + 1000 * draw
        labels = torch.arange(self.n_images) % 4
        rows = torch.arange(self.n_rows * 2, dtype=torch.float64).reshape(self.n_rows, 2) + 1000 * draw
        return Samples.whole({"images": (images, labels), "points": rows})


def ids(samples: Samples) -> dict[str, list[int]]:
    """Row identities: the first entry of each row (unique in :class:`Source`)."""
    images, _ = samples.terms["images"]
    return {
        "images": [int(v) // 12 % 1000 for v in images[:, 0, 0, 0].tolist()],
        "points": [int(v) // 2 % 1000 for v in samples.terms["points"][:, 0].tolist()],
    }


def test_rows_of_any_shape_keep_integer_labels():
    s = Source().training_samples()
    assert s.counts == {"images": 30, "points": 17} and s.rows == 47 and s.fraction == 1.0
    moved = s.to(dtype=torch.float32)
    images, labels = moved.terms["images"]
    assert images.dtype == torch.float32 and images.shape == (30, 3, 2, 2)
    assert labels.dtype == torch.int64 and torch.equal(labels, s.terms["images"][1])
    shard = s.shard(1, 3)
    assert num_rows(shard.terms["images"]) == 10 and num_rows(shard.terms["points"]) == 6
    assert shard.counts == s.counts  # a shard is averaged over the whole batch
    batch = s.select({"images": torch.tensor([3, 1]), "points": torch.tensor([0])})
    assert batch.counts == {"images": 2, "points": 1} and batch.fraction == pytest.approx(3 / 47)
    assert ids(batch) == {"images": [3, 1], "points": [0]}


def test_full_batch_is_the_training_set_itself():
    sampler = Sampler(Source())
    assert sampler.batches_per_epoch == 1 and sampler.batch is sampler.full
    for epoch in range(3):
        assert sampler.ends_epoch and sampler.completed_epochs == epoch + 1
        sampler.advance()
    assert sampler.key == 0 and sampler.batch is sampler.full and sampler.epoch == 3


@pytest.mark.parametrize("batch_size", [10, 16, 47])
def test_every_row_once_per_epoch(batch_size):
    sampler = Sampler(Source(), batch_size=batch_size, seed=3)
    parts = math.ceil(47 / batch_size)
    assert sampler.batches_per_epoch == parts
    for epoch in range(2):
        seen = {"images": [], "points": []}
        sizes = []
        for b in range(parts):
            assert (sampler.epoch, sampler.position) == (epoch, b)
            batch = sampler.batch
            sizes.append(batch.rows)
            assert batch.counts == {k: num_rows(v) for k, v in batch.terms.items()}
            assert batch.fraction == pytest.approx(batch.rows / 47)
            for k, v in ids(batch).items():
                seen[k] += v
            assert sampler.ends_epoch == (b == parts - 1)
            sampler.advance()
        assert sorted(seen["images"]) == list(range(30)) and sorted(seen["points"]) == list(range(17))
        assert max(sizes) - min(sizes) <= 2  # near-equal, every term in proportion


def test_epochs_are_shuffled_differently_and_deterministically():
    a, b = Sampler(Source(), batch_size=10, seed=1), Sampler(Source(), batch_size=10, seed=1)
    firsts = []
    for _ in range(3):
        firsts.append(ids(a.batch))
        assert ids(a.batch) == ids(b.batch)
        for _ in range(a.batches_per_epoch):
            a.advance()
            b.advance()
    assert firsts[0] != firsts[1] != firsts[2]
    assert ids(Sampler(Source(), batch_size=10, seed=2).batch) != firsts[0]
    ordered = Sampler(Source(), batch_size=10, shuffle=False)
    assert ids(ordered.batch)["images"] == list(range(6))  # 5 batches of 30 images


def test_overlap_repeats_the_start_of_the_next_batch():
    plain = Sampler(Source(), batch_size=10, seed=4)
    over = Sampler(Source(), batch_size=10, seed=4, overlap=50.0)
    for _ in range(plain.batches_per_epoch):
        own, nxt = ids(plain.batch)["images"], None
        plain.advance()
        nxt = ids(plain.batch)["images"] if not plain.position == 0 else None
        mine = ids(over.batch)["images"]
        assert mine[: len(own)] == own
        extra = mine[len(own) :]
        assert len(extra) == math.ceil(0.5 * len(own))
        if nxt is not None:
            assert extra == nxt[: len(extra)]
        over.advance()


def test_resampling_draws_new_sets_seeded_by_the_iteration():
    sampler = Sampler(Source(), resample_every=3)
    keys = []
    for _ in range(7):
        keys.append(sampler.key)
        sampler.advance()
    assert keys == [0, 0, 0, 1, 1, 1, 2] and sampler.draw == 6
    assert float(sampler.full.terms["points"][0, 0]) == 6000.0


@pytest.mark.parametrize("options", [{"batch_size": 10, "overlap": 20.0}, {"batch_size": 7, "resample_every": 4}])
def test_state_restores_the_same_batches_mid_epoch(options):
    straight = Sampler(Source(), seed=5, **options)
    for _ in range(9):
        straight.advance()
    state = straight.state_dict()
    resumed = Sampler(Source(), seed=5, **options)
    resumed.load_state_dict(state)
    for _ in range(12):
        assert resumed.key == straight.key and ids(resumed.batch) == ids(straight.batch)
        assert (resumed.epoch, resumed.position) == (straight.epoch, straight.position)
        straight.advance()
        resumed.advance()


def test_batches_grow_every_epoch_until_the_whole_set():
    sampler = Sampler(Source(), batch_size=10, growth=2.0, seed=0)
    sizes = []
    for _ in range(12):
        sizes.append((sampler.epoch, sampler.epoch_batch_size, sampler.batches_per_epoch))
        sampler.advance()
    assert sizes[0] == (0, 10, 5) and (1, 20, 3) in sizes and (2, 40, 2) in sizes
    assert sizes[-1][1:] == (47, 1) and sampler.batch is sampler.full  # it ends as a full-batch method
