"""Sinkhorn-Knopp codes: the official algorithm re-stated as loops, the spec's invariants, errors."""

import math

import pytest
import torch

from methods.swav import sinkhorn


def naive_sinkhorn(scores, epsilon, iterations):
    """The official ``distributed_sinkhorn`` on one process, element by element in float64."""
    b, k = len(scores), len(scores[0])
    q = [[math.exp(float(scores[j][i]) / epsilon) for j in range(b)] for i in range(k)]  # K × B
    total = sum(sum(row) for row in q)
    q = [[v / total for v in row] for row in q]
    for _ in range(iterations):
        for i in range(k):
            r = sum(q[i])
            q[i] = [v / r / k for v in q[i]]
        for j in range(b):
            c = sum(q[i][j] for i in range(k))
            for i in range(k):
                q[i][j] = q[i][j] / c / b
    return torch.tensor([[q[i][j] * b for i in range(k)] for j in range(b)], dtype=torch.float64)


@pytest.mark.parametrize(("epsilon", "iterations"), [(0.05, 3), (0.5, 1), (1.0, 10)])
def test_matches_float64_loop(epsilon, iterations):
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(9, 5, generator=g, dtype=torch.float64).tanh()
    expected = naive_sinkhorn(scores.tolist(), epsilon, iterations)
    assert torch.allclose(sinkhorn(scores, epsilon, iterations), expected, atol=1e-10, rtol=1e-8)


def test_rows_sum_to_one_exactly():
    g = torch.Generator().manual_seed(1)
    codes = sinkhorn(torch.randn(64, 30, generator=g, dtype=torch.float64).tanh())
    assert codes.shape == (64, 30)
    assert torch.allclose(codes.sum(1), torch.ones(64, dtype=torch.float64), atol=1e-12)
    assert (codes >= 0).all()
    codes32 = sinkhorn(torch.randn(64, 30, generator=g).tanh())
    assert torch.allclose(codes32.sum(1), torch.ones(64), atol=1e-5)


def test_prototype_totals_approach_b_over_k():
    g = torch.Generator().manual_seed(2)
    b, k = 120, 12
    scores = torch.randn(b, k, generator=g, dtype=torch.float64).tanh()
    errors = [(sinkhorn(scores, 0.05, n).sum(0) - b / k).abs().max().item() for n in (1, 3, 10, 100)]
    assert errors == sorted(errors, reverse=True)  # shrinks with the iterations
    assert errors[1] < 0.5 * b / k  # after 3 iterations already near the equipartition
    assert errors[-1] < 1e-6  # exactly in the limit


def test_uniform_scores_give_one_over_k():
    codes = sinkhorn(torch.full((16, 10), 0.3), 0.05, 3)
    assert torch.allclose(codes, torch.full((16, 10), 0.1), atol=1e-7)


def test_batch_permutation_equivariance():
    g = torch.Generator().manual_seed(3)
    scores = torch.randn(20, 8, generator=g, dtype=torch.float64).tanh()
    perm = torch.randperm(20, generator=g)
    assert torch.allclose(sinkhorn(scores[perm]), sinkhorn(scores)[perm], atol=1e-12)


def test_no_gradient_and_float32_from_bf16():
    scores = torch.randn(8, 4, requires_grad=True)
    assert not sinkhorn(scores).requires_grad
    out = sinkhorn(torch.randn(8, 4).tanh().bfloat16())
    assert out.dtype == torch.float32 and torch.allclose(out.sum(1), torch.ones(8), atol=1e-5)


def test_large_scores_stay_finite_and_shift_invariant():
    g = torch.Generator().manual_seed(4)
    scores = 4.5 + 0.5 * torch.rand(10, 6, generator=g)  # exp(5 / 0.05) overflows float32 without the shift
    assert torch.isinf(torch.exp(scores / 0.05)).any()
    codes = sinkhorn(scores, 0.05, 3)
    assert torch.isfinite(codes).all() and torch.allclose(codes.sum(1), torch.ones(10), atol=1e-5)
    s64 = torch.randn(10, 6, generator=g, dtype=torch.float64)
    assert torch.allclose(sinkhorn(s64 + 7.0), sinkhorn(s64), atol=1e-12)


def test_lower_epsilon_gives_sharper_codes():
    g = torch.Generator().manual_seed(5)
    scores = torch.randn(32, 8, generator=g, dtype=torch.float64).tanh()

    def entropy(q):
        return -(q * q.clamp_min(1e-300).log()).sum(1).mean().item()

    assert entropy(sinkhorn(scores, 0.03)) < entropy(sinkhorn(scores, 0.05)) < entropy(sinkhorn(scores, 1.0))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"epsilon": 0.0}, ValueError, "epsilon"),
        ({"epsilon": -1.0}, ValueError, "epsilon"),
        ({"iterations": 0}, ValueError, "iterations"),
        ({"iterations": 2.5}, ValueError, "iterations"),
    ],
)
def test_bad_hyperparameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        sinkhorn(torch.randn(4, 3), **kwargs)


def test_bad_scores():
    with pytest.raises(ValueError, match="batch, prototypes"):
        sinkhorn(torch.randn(4, 3, 2))
    with pytest.raises(TypeError, match="floating point"):
        sinkhorn(torch.ones(4, 3, dtype=torch.long))
