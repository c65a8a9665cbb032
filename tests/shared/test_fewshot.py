"""The few-shot protocol: episode sampling, the CI formula, the classifiers, the adapt hook."""

import math

import pytest
import torch
from sklearn.linear_model import LogisticRegression

from shared.fewshot import (
    classify_episodes,
    confidence_interval,
    evaluate_fewshot,
    fit_logistic,
    normalize_features,
    sample_episodes,
)

LABELS = torch.arange(400) % 8  # 8 classes × 50 images


def test_episodes_distinct_classes_disjoint_support_and_query():
    eps = sample_episodes(LABELS, [3, 4, 5, 6, 7], n_way=5, k_shot=5, n_query=15, episodes=30)
    assert eps.support.shape == (30, 5, 5) and eps.query.shape == (30, 5, 15) and len(eps) == 30
    for e in range(30):
        assert len(set(eps.classes[e].tolist())) == 5
        assert set(eps.classes[e].tolist()) <= {3, 4, 5, 6, 7}
        for n in range(5):
            s, q = eps.support[e, n], eps.query[e, n]
            assert (LABELS[s] == eps.classes[e, n]).all() and (LABELS[q] == eps.classes[e, n]).all()
            assert len(set(s.tolist()) | set(q.tolist())) == 20  # disjoint, no repeats


def test_episodes_deterministic_by_seed_and_independent_of_count():
    a = sample_episodes(LABELS, range(8), 5, 1, 15, episodes=10)
    b = sample_episodes(LABELS, range(8), 5, 1, 15, episodes=20)
    assert torch.equal(a.support, b.support[:10]) and torch.equal(a.query, b.query[:10])  # episode e ← seed e
    c = sample_episodes(LABELS, range(8), 5, 1, 15, episodes=10, first_seed=10)
    assert torch.equal(c.support, b.support[10:])
    assert not torch.equal(a.support[0], a.support[1])


def test_confidence_interval_formula():
    acc = torch.tensor([0.2, 0.4, 0.6, 0.8])
    std = math.sqrt(sum((a - 0.5) ** 2 for a in acc.tolist()) / 4)  # population std
    assert confidence_interval(acc) == pytest.approx(1.96 * std / 2, abs=1e-12)
    assert confidence_interval(torch.ones(10)) == 0.0


def clustered_features(noise: float = 0.0, dim: int = 16):
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(8, dim, generator=g) * 5
    return centres[LABELS] + noise * torch.randn(len(LABELS), dim, generator=g)


@pytest.mark.parametrize("classifier", ["prototype", "logistic"])
@pytest.mark.parametrize("k", [1, 5])
def test_perfect_features_give_100_percent(classifier, k):
    res = evaluate_fewshot(clustered_features(), LABELS, range(8), 5, k, 15, episodes=40, classifier=classifier)
    assert res.accuracy == 1.0 and res.ci95 == 0.0 and res.per_episode.shape == (40,)


def test_random_features_near_chance():
    feats = torch.randn(len(LABELS), 32, generator=torch.Generator().manual_seed(1))
    res = evaluate_fewshot(feats, LABELS, range(8), 5, 1, 15, episodes=200)
    assert abs(res.accuracy - 0.2) < 0.03


def test_logistic_matches_sklearn():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 10, 6, generator=g, dtype=torch.float64)
    y = torch.arange(5).repeat(2).expand(3, 10)
    w, b = fit_logistic(x, y, 5, c=1.0)
    for e in range(3):
        ref = LogisticRegression(C=1.0, tol=1e-10, max_iter=1000).fit(x[e].numpy(), y[e].numpy())
        assert torch.allclose(w[e], torch.from_numpy(ref.coef_.T), atol=1e-5)
        assert torch.allclose(b[e], torch.from_numpy(ref.intercept_), atol=1e-4)


def test_adapt_hook_sees_prototypes_and_queries():
    feats = clustered_features(noise=1.0)
    seen = {}

    def adapt(prototypes, queries):
        seen["shapes"] = (tuple(prototypes.shape), tuple(queries.shape))
        return prototypes[:, torch.tensor([1, 0, 2, 3, 4])]  # swap two prototypes: accuracy drops

    plain = evaluate_fewshot(feats, LABELS, range(8), 5, 1, 15, episodes=20, chunk=20)
    swapped = evaluate_fewshot(feats, LABELS, range(8), 5, 1, 15, episodes=20, adapt=adapt, chunk=20)
    assert seen["shapes"] == ((20, 5, 16), (20, 75, 16))
    assert swapped.accuracy < plain.accuracy - 0.3


def test_normalisations():
    x = torch.randn(4, 7)
    assert torch.allclose(normalize_features(x, "l2").norm(dim=1), torch.ones(4))
    s = normalize_features(x, "standardize")
    assert torch.allclose(s.mean(1), torch.zeros(4), atol=1e-6) and torch.allclose(s.std(1), torch.ones(4))
    assert torch.equal(normalize_features(x, "none"), x)


def test_errors():
    with pytest.raises(ValueError, match="n_way"):
        sample_episodes(LABELS, range(3), n_way=5)
    with pytest.raises(ValueError, match="fewer than"):
        sample_episodes(LABELS, range(8), 5, k_shot=40, n_query=15)
    with pytest.raises(ValueError, match="positive integer"):
        sample_episodes(LABELS, range(8), 5, k_shot=0)
    with pytest.raises(ValueError, match="classifier"):
        classify_episodes(torch.randn(2, 5, 1, 3), torch.randn(2, 10, 3), classifier="svm")
    with pytest.raises(ValueError, match="expected support"):
        classify_episodes(torch.randn(2, 5, 3), torch.randn(2, 10, 3))
    with pytest.raises(ValueError, match="normalisation"):
        normalize_features(torch.randn(2, 3), "zca")
    with pytest.raises(ValueError, match="features must be"):
        evaluate_fewshot(torch.randn(10, 3), LABELS, range(8))
    with pytest.raises(ValueError, match="adapt must return"):
        classify_episodes(torch.randn(2, 5, 1, 3), torch.randn(2, 10, 3), adapt=lambda p, q: p[:, :2])
    with pytest.raises(ValueError, match="positive"):
        fit_logistic(torch.randn(1, 5, 3), torch.arange(5)[None], 5, c=0)
    with pytest.raises(ValueError, match="non-empty"):
        confidence_interval(torch.tensor([]))
