"""The teacher side: distances, soft codes, BoW targets, the vocabulary queue and its update rule."""

import math

import pytest
import torch
import torch.nn.functional as F

from methods.obow import BoWExtractor, bow_from_codes, perplexity, soft_codes, squared_distances, vocabulary_candidates


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_squared_distances_equal_brute_force():
    t, v = rand(2, 3, 4, 5), rand(7, 3, seed=1)
    d = squared_distances(t, v)
    assert d.shape == (2, 20, 7) and d.dtype == torch.float64
    brute = torch.empty(2, 20, 7, dtype=torch.float64)
    for b in range(2):
        for i in range(4):
            for j in range(5):
                for k in range(7):
                    brute[b, i * 5 + j, k] = ((t[b, :, i, j] - v[k]) ** 2).sum()
    assert torch.allclose(d, brute, atol=1e-12)
    # float32 / bf16 inputs are computed in float32 outside autocast
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert squared_distances(t.float(), v.float()).dtype == torch.float32


def test_codes_sum_to_one_and_become_one_hot():
    d = squared_distances(rand(2, 3, 3, 3), rand(6, 3, seed=1))
    codes = soft_codes(d, 10.0, 0.5)
    assert torch.allclose(codes.sum(-1), torch.ones(2, 9, dtype=torch.float64)) and (codes >= 0).all()
    hard = soft_codes(d, None, 0.5)
    assert torch.equal(hard, F.one_hot(d.argmin(-1), 6).double())
    assert torch.allclose(soft_codes(d, 1e6, 0.5), hard, atol=1e-6)  # δ⁻¹ → ∞: nearest word
    assert torch.allclose(soft_codes(d, 1e-9, 0.5), torch.full_like(d, 1 / 6), atol=1e-6)  # δ → ∞: uniform


def test_bow_is_a_distribution_invariant_to_spatial_permutation():
    t, v = rand(3, 4, 5, 5), rand(10, 4, seed=1)
    for pool in ("max", "avg"):
        y = bow_from_codes(soft_codes(squared_distances(t, v), 10.0, 0.3), pool)
        assert (y >= 0).all() and torch.allclose(y.sum(1), torch.ones(3, dtype=torch.float64))
        perm = torch.randperm(25, generator=torch.Generator().manual_seed(2))
        shuffled = t.flatten(2)[:, :, perm].view_as(t)
        y2 = bow_from_codes(soft_codes(squared_distances(shuffled, v), 10.0, 0.3), pool)
        assert torch.allclose(y, y2, atol=1e-12), pool


def test_bow_hand_case():
    """Two positions, two words: hard codes (1,0),(0,1) → max-pool (1,1) → y = (½, ½); avg-pool too."""
    t = torch.tensor([[[[0.0, 2.0]]]])  # (1, C=1, 1, 2): features 0 and 2
    v = torch.tensor([[0.0], [2.0], [10.0]])
    d = squared_distances(t, v)
    assert torch.equal(d, torch.tensor([[[0.0, 4.0, 100.0], [4.0, 0.0, 64.0]]]))
    assert torch.allclose(bow_from_codes(soft_codes(d, None, 1.0)), torch.tensor([[0.5, 0.5, 0.0]]))
    # soft, δ⁻¹ = 1, d̄ = 4: c(u=0) = softmax(−(0, 4, 100)/4) = (e^0, e^-1, e^-25)/Z
    c0 = torch.tensor([1.0, math.exp(-1), math.exp(-25)])
    c0 = c0 / c0.sum()
    c1 = torch.tensor([math.exp(-1), 1.0, math.exp(-16)])
    c1 = c1 / c1.sum()
    expected = torch.maximum(c0, c1) / torch.maximum(c0, c1).sum()
    assert torch.allclose(bow_from_codes(soft_codes(d, 1.0, 4.0))[0], expected, atol=1e-6)


def test_perplexity_bounds():
    k = 8
    uniform = torch.full((4, k), 1 / k)
    pb, pi = perplexity(uniform)
    assert pb.item() == pytest.approx(k) and pi.item() == pytest.approx(k)
    one_hot = F.one_hot(torch.tensor([3, 3, 3, 3]), k).float()
    pb, pi = perplexity(one_hot)
    assert pb.item() == pytest.approx(1.0) and pi.item() == pytest.approx(1.0)
    spread = F.one_hot(torch.arange(4), k).float()  # each image one word, 4 different words
    pb, pi = perplexity(spread)
    assert pb.item() == pytest.approx(4.0) and pi.item() == pytest.approx(1.0)
    pb, pi = perplexity(torch.rand(5, k))
    assert 1 <= pi.item() <= pb.item() + 1e-6 <= k + 1e-6


def test_candidates_one_local_average_per_image():
    f = rand(4, 3, 5, 5)
    index = torch.tensor([0, 8, 4, 2])  # positions of the 3×3 map left by a 3×3 average of 5×5
    cand = vocabulary_candidates(f, "local_average", index)
    assert cand.shape == (4, 3)
    for b, p in enumerate(index.tolist()):
        i, j = divmod(p, 3)
        assert torch.allclose(cand[b], f[b, :, i : i + 3, j : j + 3].mean(dim=(1, 2)))
    assert torch.equal(vocabulary_candidates(f, "no_averaging", torch.tensor([24, 0, 5, 6]))[0], f[0, :, 4, 4])
    assert torch.allclose(vocabulary_candidates(f, "global_average"), f.mean(dim=(2, 3)))
    rnd = vocabulary_candidates(f, "local_average")  # random positions: each row is one of the 9 averages
    pooled = F.avg_pool2d(f, 3, 1).flatten(2)
    assert all(((pooled[b].T - rnd[b]).abs().sum(1) < 1e-12).any() for b in range(4))


def test_vocabulary_queue_is_fifo_one_word_per_image():
    torch.manual_seed(0)
    ext = BoWExtractor(num_words=8, dim=2, inv_delta=10.0, crop_border=False, update_type="no_averaging")
    start = ext.vocabulary()
    assert (start >= 0).all()  # randn clamped at 0, as the official initial words
    fmap = torch.arange(4 * 2 * 1 * 1, dtype=torch.float32).view(4, 2, 1, 1)  # one position: the candidate is known
    ext(fmap)
    assert int(ext.queue.ptr) == 4
    assert torch.equal(ext.queue.queue[:4], fmap.flatten(1)) and torch.equal(ext.queue.queue[4:], start[4:])
    ext(fmap + 100)
    assert int(ext.queue.ptr) == 0  # wrapped modulo K after K / B = 2 updates: every word replaced
    assert torch.equal(ext.queue.queue[4:], fmap.flatten(1) + 100) and torch.equal(ext.queue.queue[:4], fmap.flatten(1))
    ext(fmap + 200)  # the oldest words (the first batch) go first
    assert torch.equal(ext.queue.queue[:4], fmap.flatten(1) + 200)
    assert torch.equal(ext.queue.queue[4:], fmap.flatten(1) + 100)


def test_targets_use_the_vocabulary_before_the_update_and_dbar_is_an_ema():
    torch.manual_seed(0)
    ext = BoWExtractor(num_words=6, dim=3, inv_delta=10.0)
    f = rand(3, 3, 6, 6).float()
    before = ext.vocabulary()
    d = squared_distances(f[:, :, 1:-1, 1:-1], before)
    dbar = 0.99 * 0.5 + 0.01 * d.amin(-1).mean()
    expected = bow_from_codes(soft_codes(d, 10.0, dbar))
    y = ext(f)
    assert torch.allclose(y, expected, atol=1e-6)
    assert ext.mean_min_distance.item() == pytest.approx(dbar.item(), rel=1e-6)
    assert not torch.equal(ext.vocabulary(), before)
    # eval mode: neither d̄ nor the words move
    ext.eval()
    state = {k: v.clone() for k, v in ext.state_dict().items()}
    ext(f)
    assert all(torch.equal(state[k], v) for k, v in ext.state_dict().items())


def test_queue_state_is_in_buffers():
    ext = BoWExtractor(num_words=4, dim=2)
    assert {"queue.queue", "queue.ptr", "mean_min_distance"} <= set(ext.state_dict())


def test_errors():
    with pytest.raises(ValueError, match="inv_delta"):
        BoWExtractor(4, 2, inv_delta=0)
    with pytest.raises(ValueError, match="bow_pool"):
        BoWExtractor(4, 2, bow_pool="sum")
    with pytest.raises(ValueError, match="update_type"):
        BoWExtractor(4, 2, update_type="random")
    with pytest.raises(ValueError, match="decay"):
        BoWExtractor(4, 2, decay=1.0)
    ext = BoWExtractor(6, 2)
    with pytest.raises(ValueError, match="multiple of the global batch"):
        ext(torch.rand(4, 2, 6, 6))
    with pytest.raises(ValueError, match="channels"):
        ext(torch.rand(3, 5, 6, 6))
    with pytest.raises(ValueError, match="at least 3×3"):
        ext(torch.rand(3, 2, 2, 2))
    with pytest.raises(ValueError, match="B, C, H, W"):
        squared_distances(torch.rand(3, 2), torch.rand(4, 2))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        squared_distances([1.0], torch.rand(4, 2))
    with pytest.raises(ValueError, match="index"):
        vocabulary_candidates(torch.rand(2, 2, 5, 5), index=torch.tensor([0, 9]))
    with pytest.raises(ValueError, match="bow pool"):
        bow_from_codes(torch.rand(2, 3, 4), "median")


def test_extractor_matches_the_reference_equations_soft_and_hard():
    f = rand(3, 4, 5, 5).float() * 3
    for inv_delta in (15.0, None):
        torch.manual_seed(0)
        ext = BoWExtractor(num_words=6, dim=4, inv_delta=inv_delta).eval()
        d = squared_distances(f[:, :, 1:-1, 1:-1], ext.vocabulary())
        expected = bow_from_codes(soft_codes(d, inv_delta, ext.mean_min_distance))
        assert torch.allclose(ext(f), expected, atol=1e-6), inv_delta
