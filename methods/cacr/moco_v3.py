"""CACR's ImageNet loss in the MoCo v3 framework: the RBF-cost form (official ``cacr_rbfloss``).

Official code: JegZheng/CACR-SSL ``imagenet_pretraining/moco/builder.py``. Queries q_v come from
the base encoder + predictor (one per view: 2 global crops and optionally local crops), keys k
from the momentum encoder (no gradient). For a key k (of one global view) and the queries of
the *other* views Q = {q_v}, all L2-normalised, with T the MoCo v3 temperature:

    p_{v,i} = softmax_v( ‖q_{v,i} − k_i‖² / T )                (no gradient; farther views weigh more)
    ℓ_{v,i} = −log( exp(q_{v,i}·k_i / T) / Σ_j exp(q_{v,i}·k_j / T) )   (keys gathered over the global batch)
    L(Q, k) = Σ_v mean_i( p_{v,i} · ℓ_{v,i} ) · 2T

and the total loss averages L(Q \\ {q_k's view}, k) over the keys: the two global keys ("light
mode", default) or every crop's key (``full_mode``, local crops through the momentum encoder too).

**With two views only** (no local crops) each key has a single query, so p ≡ 1 and

    L = ½ [ ctr(q_1, k_2) + ctr(q_2, k_1) ],     ctr(q, k) = CE(q·kᵀ/T, i) · 2T,

i.e. exactly MoCo v3's per-pair InfoNCE × 2T (MoCo v3 returns the *sum* of the two terms,
so this is MoCo v3's loss / 2). The CA weighting acts only with local crops.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from shared.distributed import gather_no_grad, local_offset
from shared.losses import at_least_float32, check_temperature


def cacr_rbf_loss(queries: Sequence[torch.Tensor], key: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """L(Q, k) = Σ_v mean_i(p_{v,i} ℓ_{v,i}) · 2T for queries (n, d) each and one key batch (n, d)."""
    check_temperature(temperature)
    if not queries:
        raise ValueError("cacr_rbf_loss needs at least one query view")
    for q in queries:
        if q.ndim != 2 or q.shape != key.shape:
            raise ValueError(f"every query must have the key's shape {tuple(key.shape)}, got {tuple(q.shape)}")
    qs = [F.normalize(at_least_float32(q), dim=1) for q in queries]
    k = F.normalize(at_least_float32(key.detach()), dim=1)
    with torch.no_grad():
        p = torch.softmax(torch.stack([((q - k) ** 2).sum(-1) for q in qs]) / temperature, dim=0)
    keys = gather_no_grad(k)
    labels = torch.arange(k.shape[0], device=k.device) + local_offset(k.shape[0])
    loss = k.new_zeros(())
    for q, weight in zip(qs, p, strict=True):
        ce = F.cross_entropy(q @ keys.T / temperature, labels, reduction="none")
        loss = loss + (ce * weight).mean() * (2 * temperature)
    return loss


def cacr_moco_v3_loss(
    queries: Sequence[torch.Tensor],
    keys: Sequence[torch.Tensor],
    temperature: float = 1.0,
    full_mode: bool = False,
) -> torch.Tensor:
    """Mean over keys k_i (the 2 global ones, or all in ``full_mode``) of L(queries without view i, k_i).

    ``queries``: q_1, q_2 (global views) then the local views' queries; ``keys``: the momentum
    encoder's keys, at least the two global ones (all views' keys in ``full_mode``).
    """
    if len(queries) < 2 or len(keys) < 2:
        raise ValueError("need at least two global views (queries and keys)")
    n_keys = len(keys) if full_mode else 2
    if n_keys > len(queries):
        raise ValueError(f"full_mode needs a query per key, got {len(queries)} queries and {len(keys)} keys")
    total = sum(cacr_rbf_loss(list(queries[:i]) + list(queries[i + 1 :]), keys[i], temperature) for i in range(n_keys))
    return total / n_keys
