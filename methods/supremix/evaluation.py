"""Evaluation of a frozen regression representation: linear probe MAE and ordinality.

* **Linear probe**: ridge regression ŷ = w·x̃ + b on standardised features x̃ of the training set
  (closed form, λ = ``ridge``), MAE on the held-out test set, in data units (degrees, progression).
* **Ordinality** (the paper's claim that SupReMix embeddings keep the label order): Spearman's
  rank correlation between the pairwise feature distances 1 − cos(f_a, f_b) and the pairwise label
  distances |y_a − y_b| over the pairs of (a subset of) the test set.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def ridge_probe_mae(
    train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, ridge: float = 1.0
) -> float:
    """Test MAE of a ridge regression fitted on standardised training features (float64, closed form)."""
    if ridge < 0:
        raise ValueError(f"ridge must be non-negative, got {ridge}")
    xtr, xte = train_x.double(), test_x.double()
    mean, std = xtr.mean(0), xtr.std(0).clamp_min(1e-6)
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    ytr = train_y.double()
    y_mean = ytr.mean()
    gram = xtr.T @ xtr + ridge * torch.eye(xtr.shape[1], dtype=torch.float64)
    w = torch.linalg.solve(gram, xtr.T @ (ytr - y_mean))
    pred = xte @ w + y_mean
    return (pred - test_y.double()).abs().mean().item()


def mean_predictor_mae(train_y: torch.Tensor, test_y: torch.Tensor) -> float:
    """The MAE of predicting the training mean: what a representation must beat."""
    return (test_y.double() - train_y.double().mean()).abs().mean().item()


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """Average ranks (ties share the mean of their positions), as Spearman's ρ needs."""
    order = x.argsort()
    sorted_x = x[order]
    ranks = torch.empty_like(x, dtype=torch.float64)
    ranks[order] = torch.arange(len(x), dtype=torch.float64)
    _, inverse, counts = torch.unique_consecutive(sorted_x, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    mean_rank = ends - (counts.double() + 1) / 2
    ranks[order] = mean_rank[inverse]
    return ranks


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation of two 1-D tensors (ties averaged)."""
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"need two 1-D tensors of the same length >= 2, got {tuple(a.shape)} and {tuple(b.shape)}")
    ra, rb = _ranks(a.double()), _ranks(b.double())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = (ra.norm() * rb.norm()).item()
    return 0.0 if denom == 0 else (ra @ rb).item() / denom


def ordinality(features: torch.Tensor, labels: torch.Tensor, max_points: int = 1000) -> float:
    """Spearman(1 − cos(f_a, f_b), |y_a − y_b|) over the pairs a < b of the first ``max_points`` points."""
    f = F.normalize(features[:max_points].double(), dim=1)
    y = labels[:max_points].double()
    iu = torch.triu_indices(len(f), len(f), offset=1)
    feat_dist = (1 - f @ f.T)[iu[0], iu[1]]
    label_dist = (y[:, None] - y[None, :]).abs()[iu[0], iu[1]]
    return spearman(feat_dist, label_dist)


@torch.no_grad()
def encode(encoder: nn.Module, inputs: torch.Tensor, preprocess: Callable, batch_size: int = 1024) -> torch.Tensor:
    """Encoder features (eval mode, float32 on the CPU) of raw inputs."""
    was_training = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device
    out = [
        encoder(preprocess(inputs[i : i + batch_size].to(device))).float().cpu()
        for i in range(0, len(inputs), batch_size)
    ]
    encoder.train(was_training)
    return torch.cat(out)
