"""The hardness-aware property of the contrastive loss, in closed form (Wang & Liu, §3).

With P_{i,j} = exp(s_{i,j}/τ) / Σ_k exp(s_{i,k}/τ) (the sum runs over the positive and all
negatives), the gradients of L(x_i) with respect to the similarities are

    ∂L/∂s_{i,i} = −(1/τ) Σ_{k≠i} P_{i,k},        ∂L/∂s_{i,j} = (1/τ) P_{i,j}   (j ≠ i),

so the gradient on the negatives sums to −∂L/∂s_{i,i}. The *relative penalty* on negative j,

    r_i(s_{i,j}) = |∂L/∂s_{i,j}| / |∂L/∂s_{i,i}| = exp(s_{i,j}/τ) / Σ_{k≠i} exp(s_{i,k}/τ),

is a Boltzmann distribution over the negatives: the smaller τ, the more of the penalty goes to
the hardest (most similar) negatives, and its entropy falls with τ. The two limits:

    τ → 0⁺:  τ·L → max(0, max_{k≠i} s_{i,k} − s_{i,i})            (a triplet loss on the hardest negative)
    τ → ∞:   L ≈ log N + (1/(Nτ)) Σ_{k≠i} (s_{i,k} − s_{i,i})      (every negative weighted alike)

where N counts the positive and the negatives. For the hard contrastive loss with K kept negatives
the same formulas hold over the kept set, and the gradient on every other negative is zero.
"""

from __future__ import annotations

import math

import torch

from methods.clbehaviour.loss import check_k, check_similarities
from shared.losses import check_temperature


def _kept(s_neg: torch.Tensor, k: int | None) -> torch.Tensor:
    """Boolean mask (B, M) of the negatives the (hard) loss keeps: the K largest per row, or all."""
    if k is None or k >= s_neg.shape[1]:
        return torch.ones_like(s_neg, dtype=torch.bool)
    idx = s_neg.topk(k, dim=1).indices
    return torch.zeros_like(s_neg, dtype=torch.bool).scatter_(1, idx, True)


def similarity_gradients(
    s_pos: torch.Tensor, s_neg: torch.Tensor, temperature: float, hard_negatives: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form (∂L/∂s_{i,i} (B,), ∂L/∂s_{i,j} (B, M)) of the per-anchor (hard) contrastive loss."""
    check_temperature(temperature)
    check_k(hard_negatives)
    check_similarities(s_pos, s_neg)
    kept = _kept(s_neg, hard_negatives)
    logits = torch.cat([s_pos[:, None], s_neg.masked_fill(~kept, float("-inf"))], dim=1) / temperature
    p = torch.softmax(logits, dim=1)
    return -p[:, 1:].sum(dim=1) / temperature, p[:, 1:] / temperature


def relative_penalty(s_neg: torch.Tensor, temperature: float, hard_negatives: int | None = None) -> torch.Tensor:
    """r_i(s_{i,j}) = softmax_j(s_{i,j}/τ) over the (kept) negatives, shape like ``s_neg``; rows sum to 1.

    Accepts one anchor's negatives (M,) or a batch (B, M). Independent of the positive.
    """
    check_temperature(temperature)
    check_k(hard_negatives)
    squeeze = s_neg.ndim == 1
    s = s_neg[None] if squeeze else s_neg
    check_similarities(s[:, 0], s)
    r = torch.softmax(s.masked_fill(~_kept(s, hard_negatives), float("-inf")) / temperature, dim=1)
    return r[0] if squeeze else r


def penalty_entropy(s_neg: torch.Tensor, temperature: float) -> torch.Tensor:
    """Entropy (nats) of the relative-penalty distribution r_i; log M for uniform weights, 0 for one negative."""
    r = relative_penalty(s_neg, temperature)
    return -(r * torch.log(r.clamp_min(torch.finfo(r.dtype).tiny))).sum(dim=-1)


def small_temperature_limit(s_pos: torch.Tensor, s_neg: torch.Tensor) -> torch.Tensor:
    """lim_{τ→0⁺} τ·L(x_i) = max(0, max_k s_{i,k} − s_{i,i}), shape (B,)."""
    check_similarities(s_pos, s_neg)
    return (s_neg.max(dim=1).values - s_pos).clamp_min(0)


def large_temperature_limit(s_pos: torch.Tensor, s_neg: torch.Tensor, temperature: float) -> torch.Tensor:
    """First-order expansion for large τ: log N + (1/(Nτ)) Σ_k (s_{i,k} − s_{i,i}), N = M + 1, shape (B,)."""
    check_temperature(temperature)
    check_similarities(s_pos, s_neg)
    n = s_neg.shape[1] + 1
    return math.log(n) + (s_neg - s_pos[:, None]).sum(dim=1) / (n * temperature)
