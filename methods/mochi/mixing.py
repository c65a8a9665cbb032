"""MoCHi's hard negative mixing: synthetic negatives made from the hardest entries of the queue.

Kalantidis et al., "Hard Negative Mixing for Contrastive Learning", NeurIPS 2020,
arXiv:2010.01028, Sec. 4. For a normalised query q and the queue Q = {n_1, …, n_K}:

    Q̃_N = the N entries of Q with the largest q·n          (the hardest negatives, top-N)
    type 1 (s of them):   h_k  = h̃_k / ‖h̃_k‖,   h̃_k  = α_k n_i + (1 − α_k) n_j,   n_i, n_j ∈ Q̃_N, α_k ~ U(0, 1)
    type 2 (s′ of them):  h′_k = h̃′_k / ‖h̃′_k‖, h̃′_k = β_k q + (1 − β_k) n_j,    n_j ∈ Q̃_N,      β_k ~ U(0, 0.5)

and the logits of MoCo gain the columns q·h_k/τ and q·h′_k/τ (width 1 + K + s + s′).
Type-2 mixtures are harder than their negative before normalisation:
q·h̃′ = β + (1 − β) q·n ≥ q·n because q·n ≤ 1. All synthetic vectors are computed without
gradient (the query inside type 2 included). Indices i, j are drawn independently and
uniformly from Q̃_N (i = j is allowed; the paper does not exclude it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class MixingDraws:
    """The random draws of one step: positions in Q̃_N and mixing coefficients, per query.

    ``i1, j1, alpha``: (B, s) for type 1; ``j2, beta``: (B, s′) for type 2. Positions index
    the hard set in order of decreasing similarity (position 0 = the hardest).
    """

    i1: torch.Tensor
    j1: torch.Tensor
    alpha: torch.Tensor
    j2: torch.Tensor
    beta: torch.Tensor


def check_mixing(n_hard: int, s: int, s_prime: int, beta_max: float = 0.5) -> None:
    """Raise ``ValueError`` for a non-positive N, negative s or s′, or β_max outside [0, 1]."""
    if not (isinstance(n_hard, int) and n_hard >= 1):
        raise ValueError(f"n_hard (N) must be a positive integer, got {n_hard!r}")
    for name, value in (("s", s), ("s_prime", s_prime)):
        if not (isinstance(value, int) and value >= 0):
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if not (isinstance(beta_max, (int, float)) and 0 <= beta_max <= 1):
        raise ValueError(f"beta_max must be in [0, 1], got {beta_max!r}")


def sample_draws(
    batch: int,
    n_hard: int,
    s: int,
    s_prime: int,
    beta_max: float = 0.5,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> MixingDraws:
    """Uniform positions in [0, N) and α ~ U(0, 1), β ~ U(0, β_max), for every query at once."""
    check_mixing(n_hard, s, s_prime, beta_max)

    def positions(m: int) -> torch.Tensor:
        return torch.randint(n_hard, (batch, m), generator=generator).to(device)

    def uniform(m: int) -> torch.Tensor:
        return torch.rand(batch, m, generator=generator).to(device)

    return MixingDraws(positions(s), positions(s), uniform(s), positions(s_prime), beta_max * uniform(s_prime))


@torch.no_grad()
def hardest_negatives(q: torch.Tensor, queue: torch.Tensor, n_hard: int) -> torch.Tensor:
    """Queue indices (B, N) of ``topk(q·Q, N)`` per query, in order of decreasing similarity.

    ``torch.topk`` selects the N largest of each row without sorting the whole queue.
    """
    if q.ndim != 2 or queue.ndim != 2 or q.shape[1] != queue.shape[1]:
        raise ValueError(f"q (B, d) and queue (K, d) must share d, got {tuple(q.shape)} and {tuple(queue.shape)}")
    if n_hard > queue.shape[0]:
        raise ValueError(f"n_hard (N={n_hard}) cannot exceed the queue size K={queue.shape[0]}")
    with torch.autocast(device_type=q.device.type, enabled=False):
        sims = q @ queue.T.to(q.dtype)
    return sims.topk(n_hard, dim=1, sorted=True).indices


def _pick(queue: torch.Tensor, hard_index: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """(B, m, d) with out[b, k] = queue[hard_index[b, positions[b, k]]] (no (B, N, d) copy of the hard set)."""
    flat = hard_index.gather(1, positions).flatten()
    return queue.index_select(0, flat).view(*positions.shape, queue.shape[1])


@torch.no_grad()
def mix_hard_pairs(
    queue: torch.Tensor, hard_index: torch.Tensor, draws: MixingDraws, normalize: bool = True
) -> torch.Tensor:
    """Type 1: ``α n_i + (1 − α) n_j`` for the draws' (i, j, α), (B, s, d), L2-normalised."""
    alpha = draws.alpha.unsqueeze(-1).to(queue.dtype)
    mixed = torch.lerp(_pick(queue, hard_index, draws.j1), _pick(queue, hard_index, draws.i1), alpha)
    return F.normalize(mixed, dim=2) if normalize else mixed


@torch.no_grad()
def mix_with_query(
    q: torch.Tensor, queue: torch.Tensor, hard_index: torch.Tensor, draws: MixingDraws, normalize: bool = True
) -> torch.Tensor:
    """Type 2: ``β q + (1 − β) n_j`` for the draws' (j, β), (B, s′, d), L2-normalised."""
    beta = draws.beta.unsqueeze(-1).to(queue.dtype)
    n_j = _pick(queue, hard_index, draws.j2)
    mixed = torch.lerp(n_j, q.detach().unsqueeze(1).to(queue.dtype).expand_as(n_j), beta)
    return F.normalize(mixed, dim=2) if normalize else mixed


@torch.no_grad()
def synthetic_negatives(
    q: torch.Tensor,
    queue: torch.Tensor,
    n_hard: int,
    s: int,
    s_prime: int,
    beta_max: float = 0.5,
    generator: torch.Generator | None = None,
    draws: MixingDraws | None = None,
) -> torch.Tensor:
    """[type 1 ; type 2] synthetic negatives of every query, (B, s + s′, d), unit norm, detached.

    ``q`` must be L2-normalised (the MoCo hook passes normalised, detached queries).
    """
    check_mixing(n_hard, s, s_prime, beta_max)
    if s + s_prime == 0:
        return q.new_zeros(q.shape[0], 0, q.shape[1])
    hard_index = hardest_negatives(q, queue, n_hard)
    if draws is None:
        draws = sample_draws(q.shape[0], n_hard, s, s_prime, beta_max, q.device, generator)
    return torch.cat([mix_hard_pairs(queue, hard_index, draws), mix_with_query(q, queue, hard_index, draws)], dim=1)


class HardNegativeMixer(nn.Module):
    """MoCHi(N, s, s′) as MoCo's ``extra_negatives`` hook: ``mixer(q, queue, step) -> (B, s+s′, d) | None``.

    Args:
        n_hard: N, the size of the hard set per query (N ≤ K).
        s: number of type-1 mixtures (pairs of hard negatives).
        s_prime: number of type-2 mixtures (query with a hard negative).
        beta_max: upper end of β's uniform range (paper: 0.5).
        warmup_steps: no mixing before this many training steps (the queue first fills
            with real keys); 0 mixes from the first step.

    Example:
        >>> mixer = HardNegativeMixer(n_hard=256, s=64, s_prime=64)
        >>> extra = mixer(F.normalize(torch.randn(8, 128), dim=1), F.normalize(torch.randn(4096, 128), dim=1), 0)
        >>> extra.shape
        torch.Size([8, 128, 128])
    """

    def __init__(self, n_hard: int, s: int, s_prime: int, beta_max: float = 0.5, warmup_steps: int = 0) -> None:
        super().__init__()
        check_mixing(n_hard, s, s_prime, beta_max)
        if not (isinstance(warmup_steps, int) and warmup_steps >= 0):
            raise ValueError(f"warmup_steps must be a non-negative integer, got {warmup_steps!r}")
        self.n_hard, self.s, self.s_prime, self.beta_max = n_hard, s, s_prime, float(beta_max)
        self.warmup_steps = warmup_steps

    def forward(self, q: torch.Tensor, queue: torch.Tensor, step: int) -> torch.Tensor | None:
        if step < self.warmup_steps:
            return None
        return synthetic_negatives(q, queue, self.n_hard, self.s, self.s_prime, self.beta_max)

    def extra_repr(self) -> str:
        return f"N={self.n_hard}, s={self.s}, s'={self.s_prime}, beta_max={self.beta_max}, warmup={self.warmup_steps}"
