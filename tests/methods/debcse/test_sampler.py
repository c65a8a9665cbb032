"""The IPW sampler: weights are probabilities, constant propensity is uniform, the table is what it says."""

import pytest
import torch

from methods.debcse import IPWConfig, build_pair_table, ipw_weights, propensity
from methods.debcse.sampler import (
    bag_of_words,
    exclude_candidates,
    jaccard,
    length_ratio,
    pair_bins,
    quantile_bins,
    topk_within_shards,
)


def test_weights_are_non_negative_and_sum_to_one():
    prop = torch.rand(5, 7) + 0.01
    w = ipw_weights(prop)
    assert (w >= 0).all() and torch.allclose(w.sum(1), torch.ones(5, dtype=torch.float64))
    # ∝ 1/e: the ratio of two weights is the inverse ratio of their propensities
    assert (w[0, 0] / w[0, 1]).item() == pytest.approx((prop[0, 1] / prop[0, 0]).item(), rel=1e-6)


def test_constant_propensity_gives_uniform_sampling():
    w = ipw_weights(torch.full((3, 4), 0.2))
    assert torch.allclose(w, torch.full((3, 4), 0.25, dtype=torch.float64))


def test_clipping_truncates_at_a_multiple_of_the_median():
    prop = torch.tensor([[1.0, 1.0, 1.0, 1e-4]])
    w = ipw_weights(prop, clip=5.0)
    assert (w[0, 3] / w[0, 0]).item() == pytest.approx(5.0)
    with pytest.raises(ValueError, match="positive"):
        ipw_weights(torch.tensor([[0.5, 0.0]]))


def test_propensity_by_binning_by_hand():
    # bin 0: 3 selected of 4 reference; bin 1: 1 of 9; bin 2: none of 2 (α = 1)
    sel = torch.tensor([0, 0, 0, 1])
    ref = torch.tensor([0] * 4 + [1] * 9 + [2] * 2)
    e = propensity(sel, ref, 3, smoothing=1.0)
    assert e.tolist() == pytest.approx([4 / 5, 2 / 10, 1 / 3])


def test_surface_features():
    s = ["The cat sat on the mat.", "A cat sat on a mat!", "Dogs run fast today."]
    bow = bag_of_words(s, 4096)
    i, j = torch.tensor([0, 0]), torch.tensor([1, 2])
    assert jaccard(bow, i, j).tolist() == pytest.approx([1.0, 0.0])  # stop words dropped
    lengths = torch.tensor([6, 6, 4])
    assert length_ratio(lengths, i, j).tolist() == pytest.approx([1.0, 4 / 6])
    assert quantile_bins(torch.tensor([0.1, 0.6, 0.9]), torch.linspace(0, 1, 101), 4).tolist() == [0, 2, 3]


def test_zero_bin_splits_the_non_zero_mass():
    """82 % zeros (the word Jaccard of random cpu pairs): plain quantile edges are all 0 and leave two bins;
    the zero bin keeps 0 apart and cuts the non-zero values at their own quantiles."""
    reference = torch.cat([torch.zeros(82), torch.linspace(0.01, 0.18, 18)])
    collapsed = quantile_bins(reference, reference, 5)
    assert set(collapsed.tolist()) == {0, 4}
    b = quantile_bins(reference, reference, 5, zero_bin=True)
    assert (b[:82] == 0).all() and torch.bincount(b[82:], minlength=5).tolist() == [0, 5, 4, 4, 5]
    # hand case: non-zero reference 1..8, 3 quantile edges at 2.75, 4.5, 6.25 → bins 1..4
    values = torch.tensor([0.0, 1.0, 3.0, 5.0, 7.0, 100.0])
    assert quantile_bins(values, torch.tensor([0.0] * 20 + list(range(1, 9))), 5, zero_bin=True).tolist() == [
        0,
        1,
        2,
        3,
        4,
        4,
    ]
    with pytest.raises(ValueError, match="at least 2 bins"):
        quantile_bins(values, values, 1, zero_bin=True)


def test_pair_bins_pool_reference_and_candidates():
    """Candidates far above the reference (semantic neighbours share words, random pairs do not) still
    spread over several bins because the edges come from both pooled."""
    g = torch.Generator().manual_seed(0)
    reference = torch.where(torch.rand(4000, generator=g) < 0.82, 0.0, 0.05 * torch.rand(4000, generator=g))
    candidates = 0.05 + 0.3 * torch.rand(800, generator=g)
    sel, ref = pair_bins(candidates, reference, 5, zero_bin=True)
    assert len(set(sel.tolist())) >= 3 and set(ref.tolist()) >= {0, 1}
    assert len(set(quantile_bins(candidates, reference, 5).tolist())) == 1  # reference-only edges: one bin


def test_exclude_candidates_keeps_order_and_skips_banned():
    candidates = torch.tensor([[5, 3, 9, 1, 7], [2, 4, 6, 8, 0]])
    banned = torch.tensor([[3, 1], [9, 9]])
    assert exclude_candidates(candidates, banned, 3).tolist() == [[5, 9, 7], [2, 4, 6]]
    with pytest.raises(ValueError, match="fewer than 4"):
        exclude_candidates(candidates, banned, 4)


def test_topk_excludes_self_and_stays_in_its_shard():
    f = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [1.0, 0.05], [0.05, 1.0]])
    nn_all = topk_within_shards(f, 1, shard=6)
    assert nn_all[:, 0].tolist() == [4, 4, 5, 5, 0, 2]
    nn_shard = topk_within_shards(f, 1, shard=3)  # shards {0,1,2}, {3,4,5}
    assert nn_shard[:, 0].tolist() == [1, 0, 1, 5, 3, 3]
    with pytest.raises(ValueError, match="cannot give"):
        topk_within_shards(f, 3, shard=3)


@pytest.fixture(scope="module")
def table():
    from shared.text.sentences import load_wiki_sentences

    sentences = load_wiki_sentences(limit=300)
    teacher = bag_of_words(sentences, 512).float() + 0.01 * torch.randn(300, 512, generator=torch.Generator())
    return sentences, build_pair_table(sentences, teacher, IPWConfig(k_pos=4, k_neg=5, ref_pairs=8, self_prob=0.3))


def test_pair_table_shapes_and_probabilities(table):
    _, t = table
    assert t.pos_candidates.shape == (300, 5) and t.neg_candidates.shape == (300, 5)
    assert torch.equal(t.pos_candidates[:, 0], torch.arange(300))  # the anchor itself: SimCSE's positive
    assert torch.allclose(t.pos_probs[:, 0], torch.full((300,), 0.3, dtype=torch.float64))
    for p in (t.pos_probs, t.neg_probs):
        assert (p >= 0).all() and torch.allclose(p.sum(1), torch.ones(300, dtype=torch.float64))
    assert not (t.neg_candidates == torch.arange(300)[:, None]).any()


def test_no_sentence_is_both_positive_and_hard_negative_of_one_anchor(table):
    """The fixture's teacher is the bag of words itself, so semantic and surface neighbours mostly coincide:
    the naive surface top-k overlaps the positives, the table's negatives never do (and never the anchor)."""
    sentences, t = table
    cfg = IPWConfig(k_pos=4, k_neg=5, ref_pairs=8, self_prob=0.3)
    naive = topk_within_shards(bag_of_words(sentences, cfg.hash_dim), cfg.k_neg, cfg.shard)
    overlap = lambda neg: (neg[:, :, None] == t.pos_candidates[:, None, :]).any(-1)  # noqa: E731
    assert overlap(naive).any(1).float().mean() > 0.5  # the clash the table must avoid is common here
    assert not overlap(t.neg_candidates).any()
    # the negatives are the nearest surface neighbours once the positives are skipped, in order
    surface = topk_within_shards(bag_of_words(sentences, cfg.hash_dim), cfg.k_neg + cfg.k_pos, cfg.shard)
    assert torch.equal(t.neg_candidates, exclude_candidates(surface, t.pos_candidates[:, 1:], cfg.k_neg))
    g = torch.Generator().manual_seed(3)
    for _ in range(20):
        pos, neg = t.sample(torch.arange(300), g)
        assert not (pos == neg).any()


def test_sampling_draws_from_the_candidates(table):
    _, t = table
    idx = torch.arange(0, 300, 7)
    g = torch.Generator().manual_seed(0)
    pos, neg = t.sample(idx, g)
    assert pos.shape == neg.shape == idx.shape
    assert all(p in t.pos_candidates[i] for i, p in zip(idx.tolist(), pos.tolist(), strict=True))
    assert all(n in t.neg_candidates[i] for i, n in zip(idx.tolist(), neg.tolist(), strict=True))
    g = torch.Generator().manual_seed(1)
    self_share = sum((t.sample(idx, g)[0] == idx).float().mean().item() for _ in range(200)) / 200
    assert self_share == pytest.approx(0.3, abs=0.03)


def test_config_errors():
    with pytest.raises(ValueError, match="self_prob"):
        IPWConfig(self_prob=1.5)
    with pytest.raises(ValueError, match="k_pos"):
        IPWConfig(k_pos=0)
    with pytest.raises(ValueError, match="clip"):
        IPWConfig(clip=0.5)
    with pytest.raises(ValueError, match="teacher embeddings"):
        build_pair_table(["a b c d e."] * 3, torch.randn(2, 4), IPWConfig())
