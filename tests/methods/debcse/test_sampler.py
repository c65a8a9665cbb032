"""The IPW sampler: weights are probabilities, constant propensity is uniform, the table is what it says."""

import pytest
import torch

from methods.debcse import IPWConfig, build_pair_table, ipw_weights, propensity
from methods.debcse.sampler import bag_of_words, jaccard, length_ratio, quantile_bins, topk_within_shards


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
