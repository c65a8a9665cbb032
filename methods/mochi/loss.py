"""MoCHi's loss: MoCo's InfoNCE against the queue, plus the synthetic hard negatives.

    logits = [q·k, q·n_1, …, q·n_K, q·h_1, …, q·h_s, q·h′_1, …, q·h′_s′] / τ
    L_q    = −log( e^{q·k/τ} / Σ_{z ∈ {k} ∪ Q ∪ H ∪ H′} e^{q·z/τ} ),   L = mean over the batch

with H, H′ the type-1 and type-2 mixtures of :mod:`methods.mochi.mixing`. Only q carries a
gradient: the key k (momentum encoder), the queue and the synthetic negatives are constants
(MoCo's stop-gradient; the mixtures are built without gradient, the query inside type 2
included), whatever the caller passes. With s = s′ = 0 this is exactly MoCo's loss.

One similarity matrix q·Q serves both the logits and the choice of the hard set, and the
columns q·h, q·h′ come from it in closed form (:func:`~methods.mochi.mixing.synthetic_similarities`):
the (B, s + s′, d) mixtures are never built. The first 1 + K columns are computed as
:func:`shared.moco.moco_logits` computes them (bit for bit); all logits are float32 under autocast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from methods.mochi.mixing import MixingDraws, check_mixing, sample_draws, synthetic_similarities, top_n
from shared.losses import at_least_float32, check_temperature
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
    """(B, 1 + K + s + s′) float32 logits; the positive is column 0. Gradient flows to ``q`` only.

    ``draws`` (default: fresh ones from the global generator, after the hard set is chosen)
    index the hard set ``topk(q·Q, N)`` in decreasing order of similarity.
    """
    check_temperature(temperature)
    check_embeddings(q, k, queue)
    check_mixing(n_hard, s, s_prime, beta_max)
    k, queue = k.detach(), queue.detach()
    if s + s_prime == 0:
        return moco_logits(q, k, queue, temperature)
    q = F.normalize(at_least_float32(q), dim=1)
    k = F.normalize(at_least_float32(k), dim=1)
    queue = F.normalize(at_least_float32(queue), dim=1)
    with torch.autocast(device_type=q.device.type, enabled=False):
        positive = (q * k).sum(dim=1, keepdim=True)
        sims = q @ queue.T.to(q.dtype)
        hard_index = top_n(sims, n_hard)
        if draws is None:
            draws = sample_draws(q.shape[0], n_hard, s, s_prime, beta_max, q.device)
        extra = synthetic_similarities(q, sims, queue, hard_index, draws)
        return torch.cat([positive, sims, extra], dim=1) / temperature


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
