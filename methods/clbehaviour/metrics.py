"""The paper's two embedding metrics: uniformity and tolerance (labels for analysis only).

Uniformity (Wang & Isola, 2020), on L2-normalised embeddings, over distinct pairs, t = 2:

    L_uniformity = log E_{x,y} exp(−t ‖f(x) − f(y)‖²)        (lower = more uniform; in [−4t, 0])

The paper plots −L_uniformity as "uniformity" (higher = more uniform).

Tolerance, the mean similarity of pairs from the same class (l = the class label):

    T = E_{x,y} [ f(x)ᵀ f(y) · 1(l(x) = l(y)) ],

computed, as the paper describes it, as the mean of f(x)ᵀf(y) over distinct same-class pairs
(the literal expectation over all pairs is this times the share of same-class pairs, a constant
for a fixed data set). High tolerance: semantically similar samples are kept close.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from shared.losses import at_least_float32


def _normalised(z: torch.Tensor) -> torch.Tensor:
    if not isinstance(z, torch.Tensor) or z.ndim != 2 or not z.is_floating_point():
        raise ValueError(f"embeddings must be a floating-point tensor of shape (n, d), got {getattr(z, 'shape', z)}")
    if z.shape[0] < 2:
        raise ValueError(f"need at least 2 embeddings, got {z.shape[0]}")
    return F.normalize(at_least_float32(z), dim=1)


@torch.no_grad()
def uniformity_loss(z: torch.Tensor, t: float = 2.0, chunk: int = 2048) -> float:
    """log mean_{i≠j} exp(−t‖z_i − z_j‖²) over all distinct pairs, exactly, in row chunks (any n)."""
    if not t > 0:
        raise ValueError(f"t must be positive, got {t!r}")
    z = _normalised(z)
    n = z.shape[0]
    parts = []
    for start in range(0, n, chunk):
        # ‖a − b‖² = 2 − 2 aᵀb for unit vectors
        sq = (2 - 2 * z[start : start + chunk] @ z.T).clamp_min(0)
        rows = torch.arange(start, min(start + chunk, n))
        sq[rows - start, rows] = float("inf")  # leave out i = j
        parts.append(torch.logsumexp(-t * sq.flatten(), dim=0))
    return (torch.logsumexp(torch.stack(parts), dim=0) - math.log(n * (n - 1))).item()


def _check_labels(z: torch.Tensor, labels: torch.Tensor) -> None:
    if not isinstance(labels, torch.Tensor) or labels.shape != (z.shape[0],) or labels.is_floating_point():
        got = getattr(labels, "shape", labels)
        raise ValueError(f"labels must be an integer tensor of shape ({z.shape[0]},), got {got}")


@torch.no_grad()
def tolerance(z: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean f(x)ᵀf(y) over distinct same-class pairs, exactly in O(n·d):

    Σ_{x≠y, same class c} f(x)ᵀf(y) = ‖Σ_{x∈c} f(x)‖² − n_c for unit vectors.
    """
    z = _normalised(z).double()
    _check_labels(z, labels)
    classes, inverse, counts = labels.unique(return_inverse=True, return_counts=True)
    sums = torch.zeros(len(classes), z.shape[1], dtype=z.dtype).index_add_(0, inverse, z)
    pairs = (counts * (counts - 1)).sum()
    if pairs == 0:
        raise ValueError("tolerance needs at least one class with two samples")
    return ((sums.pow(2).sum(dim=1) - counts).sum() / pairs).item()


@torch.no_grad()
def similarity_histograms(
    z: torch.Tensor, labels: torch.Tensor, bins: int = 40, max_points: int = 4000, chunk: int = 1024
) -> dict[str, list[float]]:
    """Densities on [−1, 1] of the cosine similarities of distinct same-class and different-class pairs.

    Uses the first ``max_points`` embeddings (the test split is not ordered by class).
    """
    z = _normalised(z)[:max_points]
    labels = labels[:max_points]
    _check_labels(z, labels)
    same = torch.zeros(bins, dtype=torch.float64)
    diff = torch.zeros(bins, dtype=torch.float64)
    n = len(z)
    for start in range(0, n, chunk):
        s = z[start : start + chunk] @ z.T
        b = ((s.clamp(-1, 1) + 1) / 2 * bins).long().clamp_max(bins - 1)
        eq = labels[start : start + chunk, None] == labels[None]
        rows = torch.arange(start, min(start + chunk, n))
        not_self = torch.ones_like(eq)
        not_self[rows - start, rows] = False
        same += torch.bincount(b[eq & not_self], minlength=bins).double()
        diff += torch.bincount(b[~eq], minlength=bins).double()
    width = 2 / bins
    return {
        "edges": [-1 + i * width for i in range(bins + 1)],
        "same_class": (same / same.sum().clamp_min(1) / width).tolist(),
        "different_class": (diff / diff.sum().clamp_min(1) / width).tolist(),
    }
