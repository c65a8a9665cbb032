"""SwAV's codes: an equipartitioned soft assignment of the batch to the prototypes.

Caron et al., NeurIPS 2020, arXiv:2006.09882, §3.1. Given the scores S = Zᵀ C of B samples
against K prototypes, SwAV solves (on the batch) the entropy-regularised transport problem

    max_{Q ∈ 𝒬}  Tr(Qᵀ Cᵀ Z) + ε H(Q),   𝒬 = { Q ∈ R₊^{K×B} : Q 1_B = 1_K / K,  Qᵀ 1_K = 1_B / B },

i.e. every prototype receives the same share B/K of the batch. The solution is
Q* = Diag(u) exp(Cᵀ Z / ε) Diag(v), with u, v found by a few Sinkhorn-Knopp iterations
(3 in the paper). As in the official ``distributed_sinkhorn``:

    Q ← exp(Sᵀ/ε);  Q ← Q / ΣQ
    repeat n times:  Q ← Q / (row sums · K)   (each prototype carries mass 1/K)
                     Q ← Q / (column sums · B) (each sample carries mass 1/B)
    codes = (B·Q)ᵀ                            (B, K): each sample's row sums to exactly 1.

With several processes the sums over samples (ΣQ and the row sums) run over the whole global
batch (``all_reduce_sum``), and B is the global batch; column sums are per sample and
stay local. Everything runs without gradient: codes are targets.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from shared.distributed import all_reduce_sum, get_world_size, is_distributed


def _global_max(x: torch.Tensor) -> torch.Tensor:
    m = x.max()
    if is_distributed():
        dist.all_reduce(m, op=dist.ReduceOp.MAX)
    return m


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """Codes (B, K) of this process's B samples, rows summing to 1 (no gradient, float32+).

    ``scores`` (B, K) are the prototype scores z·c_k of the local batch (with several
    processes every rank must hold the same B). Subtracting the global maximum before
    ``exp`` changes nothing after the first normalisation but keeps ``exp`` finite for
    scores far from [−1, 1].
    """
    if not isinstance(scores, torch.Tensor) or scores.ndim != 2:
        raise ValueError(f"scores must be a (batch, prototypes) tensor, got {getattr(scores, 'shape', scores)!r}")
    if not scores.is_floating_point():
        raise TypeError(f"scores must be floating point, got {scores.dtype}")
    if not (isinstance(epsilon, (int, float)) and epsilon > 0):
        raise ValueError(f"epsilon must be a positive number, got {epsilon!r}")
    if not (isinstance(iterations, int) and iterations >= 1):
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    s = scores.detach()
    s = s if s.dtype in (torch.float32, torch.float64) else s.float()
    with torch.autocast(s.device.type, enabled=False):
        q = torch.exp((s - _global_max(s)) / epsilon).T  # (K, B), the paper's orientation
        k, b = q.shape[0], q.shape[1] * get_world_size()
        q /= all_reduce_sum(q.sum())
        for _ in range(iterations):
            q /= all_reduce_sum(q.sum(dim=1, keepdim=True)) * k
            q /= q.sum(dim=0, keepdim=True) * b
        q *= b
    return q.T
