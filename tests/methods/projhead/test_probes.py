"""The ridge probe (separable data, closed form) and the effective rank (hand cases)."""

import math

import pytest
import torch
import torch.nn.functional as F

from methods.projhead import effective_rank, ridge_probe


def _clusters(n_per_class, classes=3, dim=20, spread=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g) * 3
    y = torch.arange(classes).repeat_interleave(n_per_class)
    return centres[y] + spread * torch.randn(len(y), dim, generator=g), y


def test_separable_data_reaches_100_percent():
    xtr, ytr = _clusters(100)
    xte, yte = _clusters(50, seed=1)
    xte = xte - _clusters(50, seed=1)[0] + _clusters(50, seed=0)[0][:150]  # same centres as the training set
    assert ridge_probe(xtr, ytr, xte, yte)["accuracy"] == pytest.approx(1.0)


def test_random_labels_stay_near_chance():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(2000, 10, generator=g), torch.randint(0, 4, (2000,), generator=g)
    assert abs(ridge_probe(x[:1000], y[:1000], x[1000:], y[1000:])["accuracy"] - 0.25) < 0.06


def test_matches_a_direct_ridge_solve():
    """One λ in the grid: the eigen-solver equals (XᵀX + λnI)⁻¹XᵀY on centred, standardised data."""
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(300, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (300,), generator=g)
    xte = torch.randn(200, 6, generator=g, dtype=torch.float64)
    lam = 0.1
    mean, std = x.mean(0), x.std(0)
    xs, xts = (x - mean) / std, (xte - mean) / std
    yo = F.one_hot(y, 3).double()
    xm, ym = xs.mean(0), yo.mean(0)
    w = torch.linalg.solve(
        (xs - xm).T @ (xs - xm) + lam * 300 * torch.eye(6, dtype=torch.float64), (xs - xm).T @ (yo - ym)
    )
    direct = ((xts - xm) @ w + ym).argmax(1)
    res = ridge_probe(x, y, xte, direct, 3, grid=(lam,))
    assert res["accuracy"] == 1.0 and res["lambda"] == lam


def test_effective_rank_hand_cases():
    # rows ±s_i e_i: centred, singular values √2·s_i, so p = s / Σs
    def data(s):
        rows = []
        for i, si in enumerate(s):
            e = torch.zeros(len(s))
            e[i] = si
            rows += [e, -e]
        return torch.stack(rows)

    assert effective_rank(data([1.0, 1.0, 1.0, 1.0])) == pytest.approx(4.0)
    assert effective_rank(data([5.0, 0.0, 0.0])) == pytest.approx(1.0)
    p = torch.tensor([0.8, 0.2], dtype=torch.float64)
    assert effective_rank(data([4.0, 1.0])) == pytest.approx(math.exp(-(p * p.log()).sum().item()))
    assert effective_rank(data([4.0, 1.0])) == pytest.approx(1.6494, abs=1e-4)
    # top-k: only the largest k singular values count
    assert effective_rank(data([3.0, 3.0, 1.0]), k=2) == pytest.approx(2.0)
    # the paper's progressive weighting: weights √σ (pre-projection) are more even than σ (output)
    sigma = [4.0, 2.0, 1.0, 0.5]
    assert effective_rank(data([s**0.5 for s in sigma])) > effective_rank(data(sigma))
    # invariant to a global scale and to a shift
    x = torch.randn(50, 8)
    assert effective_rank(3 * x + 1) == pytest.approx(effective_rank(x), rel=1e-6)


@pytest.mark.parametrize(
    "call, err",
    [
        (
            lambda: ridge_probe(torch.randn(5, 3), torch.zeros(4, dtype=torch.long), torch.randn(2, 3), torch.zeros(2)),
            "train",
        ),
        (lambda: ridge_probe(torch.randn(5, 3), torch.zeros(5), torch.randn(2, 4), torch.zeros(2)), "differ in width"),
        (lambda: ridge_probe(torch.randn(5, 3), torch.zeros(5), torch.randn(2, 3), torch.zeros(2), grid=()), "grid"),
        (lambda: effective_rank(torch.randn(1, 3)), "N >= 2"),
        (lambda: effective_rank(torch.randn(4, 3), k=0), "k must be positive"),
    ],
)
def test_errors(call, err):
    with pytest.raises(ValueError, match=err):
        call()
