"""OpTA: Sinkhorn marginals, convex combinations, the ε → 0 identity limit, and it fixes biased prototypes."""

import pytest
import torch

from methods.beclr import OpTA, opta_for_shots, sinkhorn_plan, transport_prototypes
from shared.fewshot import evaluate_fewshot


def test_plan_has_uniform_marginals():
    g = torch.Generator().manual_seed(0)
    x, y = (
        torch.randn(3, 5, 4, generator=g, dtype=torch.float64),
        torch.randn(3, 20, 4, generator=g, dtype=torch.float64),
    )
    plan, iterations = sinkhorn_plan(x, y, epsilon=0.05, threshold=1e-9)
    assert iterations < 1000
    assert torch.allclose(plan.sum(2), torch.full((3, 5), 1 / 5, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(plan.sum(1), torch.full((3, 20), 1 / 20, dtype=torch.float64), atol=1e-6)


def test_transported_prototypes_are_convex_combinations_of_queries():
    g = torch.Generator().manual_seed(1)
    mu, q = torch.randn(2, 5, 3, generator=g), torch.randn(2, 30, 3, generator=g)
    plan, _ = sinkhorn_plan(mu, q)
    weights = plan / plan.sum(-1, keepdim=True)
    assert (weights >= 0).all() and torch.allclose(weights.sum(-1), torch.ones(2, 5), atol=1e-5)
    moved = transport_prototypes(mu, q)
    assert torch.allclose(moved, weights @ q, atol=1e-5)
    lo, hi = q.amin(1, keepdim=True), q.amax(1, keepdim=True)
    assert ((moved >= lo - 1e-5) & (moved <= hi + 1e-5)).all()  # inside the queries' bounding box


def test_identity_limit_when_support_equals_queries():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6, 4, generator=g, dtype=torch.float64) * 3
    plan, _ = sinkhorn_plan(x, x, epsilon=1e-3, max_iter=5000, threshold=1e-12)
    assert torch.allclose(plan, torch.eye(6, dtype=torch.float64) / 6, atol=1e-6)
    assert torch.allclose(transport_prototypes(x[None], x[None], epsilon=1e-3, threshold=1e-12)[0], x, atol=1e-4)


def test_opta_settings():
    one, five = opta_for_shots(1), opta_for_shots(5)
    assert one.passes == 5 and one.ratio is None
    assert five.passes == 1 and five.ratio == 0.7
    mu, q = torch.randn(1, 5, 3), torch.randn(1, 20, 3)
    assert torch.allclose(five(mu, q), 0.7 * transport_prototypes(mu, q) + 0.3 * mu, atol=1e-6)


def test_opta_corrects_biased_one_shot_prototypes():
    """Noisy clusters: a 1-shot support point is a poor prototype; transporting it onto the queries helps."""
    g = torch.Generator().manual_seed(3)
    centres = torch.randn(5, 16, generator=g) * 3
    labels = torch.arange(5).repeat_interleave(60)
    feats = centres[labels] + 3.5 * torch.randn(300, 16, generator=g)  # plain 1-shot ≈ 0.68
    args = dict(n_way=5, k_shot=1, n_query=15, episodes=30, classifier="prototype", normalize="none")
    plain = evaluate_fewshot(feats, labels, range(5), **args)
    with_opta = evaluate_fewshot(feats, labels, range(5), adapt=opta_for_shots(1), **args)
    assert with_opta.accuracy > plain.accuracy + 0.1


def test_errors():
    with pytest.raises(ValueError, match="passes"):
        OpTA(passes=0)
    with pytest.raises(ValueError, match="ratio"):
        OpTA(ratio=2.0)
    with pytest.raises(ValueError, match="epsilon"):
        OpTA(epsilon=0)
    with pytest.raises(ValueError, match="expected x"):
        sinkhorn_plan(torch.randn(2, 5, 3), torch.randn(2, 5, 4))
    with pytest.raises(ValueError, match="max_iter"):
        sinkhorn_plan(torch.randn(5, 3), torch.randn(5, 3), max_iter=0)
