"""Cheap layer-wise measurements: a closed-form ridge linear probe and the effective rank.

**Ridge probe.** Features are standardised with the training mean and std; the classifier is
least squares onto one-hot targets with an L2 penalty,

    W_λ = (XᵀX + λ·n·I)^{-1} XᵀY,   ŷ = argmax_c (x W_λ)_c,

λ chosen from a small grid on a held-out 20% of the probe's training set, then refit on all of
it. One eigendecomposition of XᵀX serves the whole grid, so a probe costs milliseconds on CPU
(features are extracted once per layer).

**Effective rank** (Roy & Vetterli, 2007) of the top-k spectrum, our measure of how
"normalised" (how evenly weighted) a layer's features are: with s_1 ≥ … ≥ s_k the largest
singular values of the centred feature matrix and p_i = s_i / Σ_{j≤k} s_j,

    erank_k = exp(−Σ_i p_i log p_i)  ∈ [1, k],

k if the top-k directions carry equal weight, 1 if one direction dominates. The paper's claim
that lower layers are less specialised reads: erank decreases with depth, and the
pre-projection layer (weights ≈ √σ_i) has a higher erank than the output (weights σ_i).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

RIDGE_GRID = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def _check_xy(x: torch.Tensor, y: torch.Tensor, name: str) -> None:
    if x.ndim != 2 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(f"{name}: need features (N, d) and labels (N,), got {tuple(x.shape)} and {tuple(y.shape)}")


class _RidgeSolver:
    """Ridge regression with an intercept for every λ from one eigendecomposition of XᵀX."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.xm, self.ym, self.n = x.mean(0), y.mean(0), len(x)
        xc = x - self.xm
        evals, self.evecs = torch.linalg.eigh(xc.T @ xc)
        self.evals = evals.clamp_min(0)
        self.proj = self.evecs.T @ (xc.T @ (y - self.ym))

    def predict(self, x: torch.Tensor, lam: float) -> torch.Tensor:
        w = self.evecs @ (self.proj / (self.evals + lam * self.n)[:, None])
        return ((x - self.xm) @ w + self.ym).argmax(1)


def ridge_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int | None = None,
    grid: tuple[float, ...] = RIDGE_GRID,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> dict[str, float]:
    """Top-1 test accuracy of a ridge classifier on standardised features, λ picked on validation.

    Returns ``{"accuracy", "lambda"}`` (λ relative to the number of training samples).
    """
    _check_xy(train_x, train_y, "train")
    _check_xy(test_x, test_y, "test")
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"train and test features differ in width: {train_x.shape[1]} vs {test_x.shape[1]}")
    if not 0 < val_fraction < 1 or not grid or min(grid) <= 0:
        raise ValueError("val_fraction must be in (0, 1) and the λ grid positive and non-empty")
    c = int(num_classes or int(max(train_y.max(), test_y.max())) + 1)
    xtr, xte = train_x.double(), test_x.double()
    mean, std = xtr.mean(0), xtr.std(0).clamp_min(1e-8)
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    ytr = F.one_hot(train_y.long(), c).double()

    perm = torch.randperm(len(xtr), generator=torch.Generator().manual_seed(seed))
    n_val = max(1, int(len(xtr) * val_fraction))
    val, tr = perm[:n_val], perm[n_val:]
    solve = _RidgeSolver(xtr[tr], ytr[tr])
    accs = [(solve.predict(xtr[val], lam) == train_y[val]).double().mean().item() for lam in grid]
    lam = grid[max(range(len(grid)), key=lambda i: (accs[i], i))]  # ties → the stronger penalty
    acc = (_RidgeSolver(xtr, ytr).predict(xte, lam) == test_y).double().mean().item()
    return {"accuracy": acc, "lambda": lam}


def effective_rank(features: torch.Tensor, k: int | None = None) -> float:
    """``exp(entropy(p))`` of the top-``k`` singular values of the centred features (all if None)."""
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"need features (N >= 2, d), got {tuple(features.shape)}")
    if k is not None and k < 1:
        raise ValueError(f"k must be positive, got {k}")
    x = features.double() - features.double().mean(0)
    s = torch.linalg.svdvals(x)
    if k is not None:
        s = s[:k]
    if s.sum() <= 0:
        return 1.0
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))
