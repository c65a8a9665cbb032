"""MoCHi's loss: MoCo's InfoNCE against the queue, plus the synthetic hard negatives.

    logits = [q·k, q·n_1, …, q·n_K, q·h_1, …, q·h_s, q·h′_1, …, q·h′_s′] / τ
    L_q    = −log( e^{q·k/τ} / Σ_{z ∈ {k} ∪ Q ∪ H ∪ H′} e^{q·z/τ} ),   L = mean over the batch

with H, H′ the type-1 and type-2 mixtures of :mod:`methods.mochi.mixing`. Only q carries a
gradient: the key k (momentum encoder), the queue and the synthetic negatives are constants
(MoCo's stop-gradient; the mixtures are built without gradient, the query inside type 2
included), whatever the caller passes. With s = s′ = 0 this is exactly MoCo's loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from methods.mochi.mixing import MixingDraws, synthetic_negatives
from shared.losses import at_least_float32
from shared.moco import check_embeddings, moco_logits


def mochi_logits(
    q: torch.Tensor,
    k: torch.Tensor,
    queue: torch.Tensor,
    n_hard: int,
    s: int,
    s_prime: int,
    temperature: float = 0.2,
    beta_max: float = 0.5,
    draws: MixingDraws | None = None,
) -> torch.Tensor:
    """(B, 1 + K + s + s′) float32 logits; the positive is column 0. Gradient flows to ``q`` only."""
    check_embeddings(q, k, queue)
    k, queue = k.detach(), queue.detach()
    q_unit = F.normalize(at_least_float32(q.detach()), dim=1)
    queue_unit = F.normalize(at_least_float32(queue), dim=1)
    extra = synthetic_negatives(q_unit, queue_unit, n_hard, s, s_prime, beta_max, draws=draws)
    return moco_logits(q, k, queue, temperature, extra)


def mochi_loss(
    q: torch.Tensor,
    k: torch.Tensor,
    queue: torch.Tensor,
    n_hard: int,
    s: int,
    s_prime: int,
    temperature: float = 0.2,
    beta_max: float = 0.5,
    draws: MixingDraws | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of :func:`mochi_logits` with label 0 (MoCo's loss when s = s′ = 0).

    Example:
        >>> q, k = torch.randn(8, 16), torch.randn(8, 16)
        >>> loss = mochi_loss(q, k, torch.randn(64, 16), n_hard=16, s=8, s_prime=4)
    """
    logits = mochi_logits(q, k, queue, n_hard, s, s_prime, temperature, beta_max, draws)
    return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))
