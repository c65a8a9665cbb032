"""The feature-aware batch sampler: one pseudo-label per group, each sample at most once per epoch."""

import pytest
import torch

from methods.mcl import ClusterBatches, ClusterBatchSampler
from methods.mcl.sampler import LoaderClusterBatches
from shared.data.arrays import ImageArrays
from shared.engine import InMemoryBatches


def labels_with_sizes(sizes, seed=0):
    y = torch.cat([torch.full((n,), k) for k, n in enumerate(sizes)])
    return y[torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))]


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_every_group_has_one_pseudo_label_and_no_sample_twice(groups):
    y = labels_with_sizes([50, 37, 8, 90, 21]) * 7  # sparse ids
    sampler = ClusterBatchSampler(y, batch_size=16, groups=groups)
    for epoch in range(3):
        batches = sampler.epoch_batches(epoch, seed=1)
        assert len(batches) == len(sampler)
        for b in batches:
            assert b.shape == (16,)
            for group in b.view(groups, 16 // groups):
                assert y[group].unique().numel() == 1
        seen = torch.cat(batches)
        assert seen.unique().numel() == seen.numel()  # each sample at most once per epoch
        assert sampler.dropped == len(y) - seen.numel()


def test_groups_follow_the_official_round_robin_and_skip_small_clusters():
    y = labels_with_sizes([40, 8, 24])  # group size 8: label 0 has 5 groups, 1 has 1, 2 has 3
    sampler = ClusterBatchSampler(y, batch_size=8)
    order = [int(y[b[0]]) for b in sampler.epoch_batches(0, seed=0)]
    assert order == [0, 1, 2, 0, 2, 0, 2, 0, 0]
    # a label smaller than one group never appears; remainders are dropped
    y2 = labels_with_sizes([20, 5])
    s2 = ClusterBatchSampler(y2, batch_size=8)
    assert all(int(y2[b[0]]) == 0 for b in s2.epoch_batches(0, 0))
    assert len(s2) == 2 and s2.dropped == 9


def test_epochs_differ_but_are_reproducible():
    y = labels_with_sizes([64, 64])
    s = ClusterBatchSampler(y, batch_size=16)
    assert all(torch.equal(a, b) for a, b in zip(s.epoch_batches(0, 3), s.epoch_batches(0, 3), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(s.epoch_batches(0, 3), s.epoch_batches(1, 3), strict=True))


def test_one_cluster_gives_the_engine_batches_of_standard_simclr():
    """With a single pseudo-label the sampler yields InMemoryBatches' batches exactly (any group count)."""
    n = 100
    images = torch.randint(0, 255, (n, 1, 4, 4), dtype=torch.uint8)
    plain = InMemoryBatches(ImageArrays(images, torch.zeros(n, dtype=torch.long), ("a",)), 16)
    for groups in (1, 4):
        ours = ClusterBatches(images, torch.zeros(n, dtype=torch.long), 16, groups)
        assert ours.steps_per_epoch(1) == plain.steps_per_epoch(1)
        for a, b in zip(ours.epoch(2, 5, 0, 1), plain.epoch(2, 5, 0, 1), strict=True):
            assert torch.equal(a["index"], b["index"])
            assert torch.equal(a["images"], b["images"])


def test_rank_slices_cover_the_step_and_hold_every_group():
    y = labels_with_sizes([64, 64, 64, 64])
    s = ClusterBatchSampler(y, batch_size=32, groups=4)
    batch = s.epoch_batches(0, 0)[0]
    parts = [s.rank_slice(batch, r, 2) for r in range(2)]
    assert torch.equal(torch.cat(parts).sort().values, batch.sort().values)
    for p in parts:
        assert y[p].unique().numel() == 4  # each rank's BatchNorm sees all four clusters
    # the data source adds the pseudo-labels and skips batches on resume
    src = ClusterBatches(torch.zeros(256, 1, 2, 2, dtype=torch.uint8), y, 32, 4)
    first = list(src.epoch(0, 0, 1, 2))
    resumed = list(src.epoch(0, 0, 1, 2, skip=3))
    assert torch.equal(first[3]["index"], resumed[0]["index"])
    assert torch.equal(first[0]["pseudo"], y[first[0]["index"]])


def test_errors():
    y = torch.zeros(10, dtype=torch.long)
    with pytest.raises(ValueError, match="divisible"):
        ClusterBatchSampler(y, batch_size=6, groups=4)
    with pytest.raises(ValueError, match="at least 2"):
        ClusterBatchSampler(y, batch_size=4, groups=4)
    with pytest.raises(ValueError, match="full group"):
        ClusterBatchSampler(labels_with_sizes([3, 3, 3]), batch_size=4)
    with pytest.raises(TypeError, match="integers"):
        ClusterBatchSampler(y.float(), batch_size=4)
    with pytest.raises(ValueError, match="non-negative"):
        ClusterBatchSampler(y - 1, batch_size=4)
    with pytest.raises(ValueError, match="1-D"):
        ClusterBatchSampler(y.view(2, 5), batch_size=4)
    with pytest.raises(ValueError, match="groups"):
        ClusterBatchSampler(y, batch_size=4, groups=0)
    s = ClusterBatchSampler(y, batch_size=6, groups=2)
    with pytest.raises(ValueError, match="processes"):
        s.rank_slice(s.epoch_batches(0, 0)[0], 0, 2)
    with pytest.raises(ValueError, match="pseudo-labels"):
        ClusterBatches(torch.zeros(9, 1, 2, 2, dtype=torch.uint8), y, 4)


def test_loader_source_yields_the_same_batches_as_the_in_memory_one():
    y = labels_with_sizes([24, 16, 8])
    images = torch.arange(48).view(48, 1, 1, 1).to(torch.uint8)

    class Items(torch.utils.data.Dataset):
        def __len__(self):
            return 48

        def __getitem__(self, i):
            return {"images": images[i], "labels": int(y[i])}

    memory = ClusterBatches(images, y, 8, 2)
    loader = LoaderClusterBatches(Items(), y, 8, 2, num_workers=0)
    assert loader.steps_per_epoch(2) == memory.steps_per_epoch(2)
    for a, b in zip(memory.epoch(1, 0, 1, 2, skip=1), loader.epoch(1, 0, 1, 2, skip=1), strict=True):
        assert torch.equal(a["images"], b["images"]) and torch.equal(a["pseudo"], b["pseudo"])
        assert torch.equal(b["labels"], b["pseudo"])
    with pytest.raises(ValueError, match="pseudo-labels"):
        LoaderClusterBatches(Items(), y[:5], 8)
