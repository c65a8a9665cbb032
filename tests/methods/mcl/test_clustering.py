"""Pseudo-label combination (injective, paper) vs the official cluster.py loop (bug), and K-means."""

import itertools

import pytest
import torch

from methods.mcl import StagePlan, combine_pseudo_labels, kmeans_labels, official_pseudo_labels


@pytest.mark.parametrize(("k", "stages"), [(2, 3), (3, 2), (4, 3), (1, 2)])
def test_combination_is_injective_over_all_stage_tuples(k, stages):
    tuples = torch.tensor(list(itertools.product(range(k), repeat=stages)))  # every (c0, ..., cs)
    y = combine_pseudo_labels(list(tuples.T), k)
    assert y.unique().numel() == k**stages  # K^{s+1} distinct ids
    assert int(y.min()) == 0 and int(y.max()) == k**stages - 1
    # decoding the mixed-radix id gives the tuple back (c0 is the most significant digit)
    decoded = torch.stack([(y // k ** (stages - 1 - t)) % k for t in range(stages)], dim=1)
    assert torch.equal(decoded, tuples)


def test_one_stage_leaves_the_labels_unchanged_in_both_rules():
    c = torch.tensor([2, 0, 1, 2])
    assert torch.equal(combine_pseudo_labels([c], 3), c)
    assert torch.equal(official_pseudo_labels([c], 3), c)


def test_official_flag_reproduces_the_cluster_py_bug():
    """cluster.py loads the current stage's labels in every iteration: earlier stages are ignored."""
    k = 3
    g = torch.Generator().manual_seed(0)
    c0, c1, c2 = (torch.randint(k, (50,), generator=g) for _ in range(3))

    # the official loop, restated: cls = cls*K + load(stage) for s in 0..stage
    def cluster_py(labels_by_stage, stage):
        cls = torch.zeros(50, dtype=torch.long)
        for _ in range(stage + 1):
            cls = cls * k + labels_by_stage[stage]  # the bug: `stage`, not `s`
        return cls

    assert torch.equal(official_pseudo_labels([c0, c1, c2], k), cluster_py([c0, c1, c2], 2))
    assert torch.equal(official_pseudo_labels([c0, c1, c2], k), c2 * (k**3 - 1) // (k - 1))
    other_c0 = (c0 + 1) % k
    assert torch.equal(official_pseudo_labels([other_c0, c1, c2], k), official_pseudo_labels([c0, c1, c2], k))
    assert not torch.equal(combine_pseudo_labels([other_c0, c1, c2], k), combine_pseudo_labels([c0, c1, c2], k))
    # as many ids as the last stage alone; the paper's rule refines it
    assert official_pseudo_labels([c0, c1, c2], k).unique().numel() == c2.unique().numel()
    assert combine_pseudo_labels([c0, c1, c2], k).unique().numel() > c2.unique().numel()


def test_stage_plan_picks_the_rule():
    c = [torch.tensor([0, 1, 1, 0]), torch.tensor([1, 1, 0, 0])]
    assert torch.equal(StagePlan(3, 2).pseudo_labels([], 4), torch.zeros(4, dtype=torch.long))
    assert torch.equal(StagePlan(3, 2).pseudo_labels(c, 4), torch.tensor([1, 3, 2, 0]))
    assert torch.equal(StagePlan(3, 2, official_label_bug=True).pseudo_labels(c, 4), torch.tensor([3, 3, 0, 0]))


def test_kmeans_recovers_separated_directions():
    g = torch.Generator().manual_seed(0)
    centres = torch.eye(4) * 5
    truth = torch.arange(4).repeat_interleave(30)
    x = centres[truth] + 0.3 * torch.randn(120, 4, generator=g)
    labels = kmeans_labels(x, 4, seed=0)
    assert labels.shape == (120,) and labels.dtype == torch.long
    # each true group maps to one cluster and vice versa
    pairs = set(zip(truth.tolist(), labels.tolist(), strict=True))
    assert len(pairs) == 4


def test_errors():
    c = torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        combine_pseudo_labels([c], 2)
    with pytest.raises(ValueError, match="at least one stage"):
        combine_pseudo_labels([], 2)
    with pytest.raises(ValueError, match="stage 1 has 2"):
        combine_pseudo_labels([c, c[:2]], 3)
    with pytest.raises(TypeError, match="integer"):
        combine_pseudo_labels([c.float()], 3)
    with pytest.raises(ValueError, match="positive integer"):
        official_pseudo_labels([c], 0)
    with pytest.raises(ValueError, match="overflows"):
        combine_pseudo_labels([c] * 40, 3)
    with pytest.raises(ValueError, match="num_clusters"):
        kmeans_labels(torch.randn(5, 2), 6)
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        kmeans_labels(torch.randn(5), 2)
    for bad in (dict(num_stages=0), dict(num_clusters=0), dict(groups=0)):
        with pytest.raises(ValueError):
            StagePlan(**bad)
