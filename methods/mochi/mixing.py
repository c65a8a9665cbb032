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

The loss needs only the similarities q·h, not the vectors: for h̃ = a u + (1 − a) v,

    q·h = (a q·u + (1 − a) q·v) / ‖h̃‖,   ‖h̃‖² = a²‖u‖² + (1 − a)²‖v‖² + 2a(1 − a) u·v

where q·n is an entry of the logits' q·Q, so :func:`synthetic_similarities` reads them from
there and only computes the dots n_i·n_j of type 1 (type 2 needs no d-dimensional work:
q·q and q·n_j are known). :func:`synthetic_negatives` builds the vectors themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


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


def top_n(sims: torch.Tensor, n_hard: int) -> torch.Tensor:
    """Indices (B, N) of the N largest entries of each row of ``sims`` = q·Q, in decreasing order.

    ``torch.topk`` selects the N largest of each row without sorting the whole queue.
    """
    if n_hard > sims.shape[1]:
        raise ValueError(f"n_hard (N={n_hard}) cannot exceed the queue size K={sims.shape[1]}")
    return sims.detach().topk(n_hard, dim=1, sorted=True).indices


@torch.no_grad()
def hardest_negatives(q: torch.Tensor, queue: torch.Tensor, n_hard: int) -> torch.Tensor:
    """Queue indices (B, N) of ``topk(q·Q, N)`` per query, in order of decreasing similarity."""
    if q.ndim != 2 or queue.ndim != 2 or q.shape[1] != queue.shape[1]:
        raise ValueError(f"q (B, d) and queue (K, d) must share d, got {tuple(q.shape)} and {tuple(queue.shape)}")
    if n_hard > queue.shape[0]:
        raise ValueError(f"n_hard (N={n_hard}) cannot exceed the queue size K={queue.shape[0]}")
    with torch.autocast(device_type=q.device.type, enabled=False):
        sims = q @ queue.T.to(q.dtype)
    return top_n(sims, n_hard)


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


def synthetic_similarities(
    q: torch.Tensor, sims: torch.Tensor, queue: torch.Tensor, hard_index: torch.Tensor, draws: MixingDraws
) -> torch.Tensor:
    """[q·h_1 … q·h_s, q·h′_1 … q·h′_s′], (B, s + s′), without building the mixtures (module docs).

    Args:
        q: (B, d) normalised queries, with or without gradient.
        sims: (B, K) ``q @ queue.T`` of the same q (the logits' similarities), with or without gradient.
        queue: (K, d) normalised queue, a constant.
        hard_index: (B, N) queue indices of the hard set (:func:`top_n` of ``sims``).
        draws: this step's positions and coefficients.

    The values are those of :func:`synthetic_negatives`' unit vectors dotted with q (equal in exact
    arithmetic; float rounding differs). The norms ‖h̃‖ and the type-2 query are constants, so the
    gradient w.r.t. q is h (through ``sims`` and q·q̂), as for a detached vector h; ‖h̃‖ is clamped at
    1e-12 as ``F.normalize`` does.
    """
    s, s_prime = draws.i1.shape[1], draws.j2.shape[1]
    rows = hard_index.gather(1, torch.cat([draws.i1, draws.j1, draws.j2], dim=1))  # (B, 2s + s′) queue indices
    near = sims.gather(1, rows)  # q·n of every drawn negative
    q_ni, q_nj, q_n2 = near.split([s, s, s_prime], dim=1)
    alpha, beta = draws.alpha.to(sims.dtype), draws.beta.to(sims.dtype)
    with torch.no_grad():
        queue = queue.to(sims.dtype)
        sq = (queue * queue).sum(dim=1)[rows]  # ‖n‖² of every drawn negative
        sq_i, sq_j, sq_2 = sq.split([s, s, s_prime], dim=1)
        flat = rows[:, : 2 * s].flatten()
        n_i, n_j = queue.index_select(0, flat).view(len(q), 2 * s, queue.shape[1]).split([s, s], dim=1)
        dot_ij = torch.linalg.vecdot(n_i, n_j)  # (B, s)
        q_const = q.detach().to(sims.dtype)
        sq_q = (q_const * q_const).sum(dim=1, keepdim=True)
        norm_1 = _mixture_norm(alpha, sq_i, sq_j, dot_ij)
        norm_2 = _mixture_norm(beta, sq_q, sq_2, q_n2.detach())
    q_self = (q.to(sims.dtype) * q_const).sum(dim=1, keepdim=True)  # q·q̂ (gradient q̂)
    type_1 = (alpha * q_ni + (1 - alpha) * q_nj) / norm_1
    type_2 = (beta * q_self + (1 - beta) * q_n2) / norm_2
    return torch.cat([type_1, type_2], dim=1)


def _mixture_norm(a: torch.Tensor, sq_u: torch.Tensor, sq_v: torch.Tensor, dot_uv: torch.Tensor) -> torch.Tensor:
    """‖a u + (1 − a) v‖ from ‖u‖², ‖v‖², u·v, clamped at 1e-12 like ``F.normalize``."""
    b = 1 - a
    sq = a * a * sq_u + b * b * sq_v + 2 * a * b * dot_uv
    return sq.clamp_min(0).sqrt().clamp_min(1e-12)
