"""SwAV's swapped-prediction loss over all crops.

Caron et al., NeurIPS 2020, arXiv:2006.09882, eq. (1)–(2) and the official ``main_swav.py``.
Each crop v of an image has an L2-normalised embedding z_v and prototype scores
s_v = Cᵀ z_v ∈ R^K. The crops used for assignment (the two full-resolution ones,
a ∈ {0, 1}) get codes q_a = Sinkhorn(s_a) (no gradient); every *other* crop predicts them:

    ℓ(z_v, q_a) = − Σ_k q_a,k log p_v,k,      p_v = softmax(s_v / τ),
    L = 1/|A| Σ_{a∈A} 1/(V−1) Σ_{v≠a} mean_batch ℓ(z_v, q_a),          τ = 0.1.

With uniform codes and uniform predictions the loss is ln K, the documented collapse value
(8.006 for K = 3000). With several processes each rank averages over its own samples
(the codes already saw the global batch), and DDP's gradient averaging completes the mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from methods.swav.sinkhorn import sinkhorn
from shared.losses import check_temperature


def _as_crops(scores: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """(V, B, K) float32+ scores from a (V, B, K) tensor or a list of V (B, K) tensors."""
    if isinstance(scores, torch.Tensor):
        stacked = scores
    else:
        if len(scores) == 0 or not all(isinstance(s, torch.Tensor) for s in scores):
            raise TypeError("scores must be a (crops, batch, prototypes) tensor or a list of (batch, prototypes)")
        shapes = {tuple(s.shape) for s in scores}
        if len(shapes) != 1:
            raise ValueError(f"every crop needs scores of the same shape (batch, prototypes), got {sorted(shapes)}")
        stacked = torch.stack(list(scores))
    if stacked.ndim != 3:
        raise ValueError(f"scores must have shape (crops, batch, prototypes), got {tuple(stacked.shape)}")
    if not stacked.is_floating_point():
        raise TypeError(f"scores must be floating point, got {stacked.dtype}")
    if stacked.shape[0] < 2:
        raise ValueError(f"swapped prediction needs at least 2 crops, got {stacked.shape[0]}")
    return stacked if stacked.dtype in (torch.float32, torch.float64) else stacked.float()


def swapped_prediction(
    scores: torch.Tensor, codes: torch.Tensor, crops_for_assign: Sequence[int], temperature: float = 0.1
) -> torch.Tensor:
    """L from the scores (V, B, K) of all crops and the codes (|A|, B, K) of the assigned crops."""
    v = scores.shape[0]
    log_p = F.log_softmax(scores / temperature, dim=-1)  # (V, B, K)
    # cross[i, w] = mean over the batch of −Σ_k q_{a_i,k} log p_{w,k}; an elementwise product and a
    # sum over K (not one GEMM over B·K, whose long float32 accumulation drifts by ~1e-4 at K = 3000)
    codes = codes.to(log_p.dtype)
    cross = torch.stack([-(q * log_p).sum(-1).mean(-1) for q in codes])  # (|A|, V)
    keep = torch.ones_like(cross, dtype=torch.bool)
    keep[torch.arange(len(crops_for_assign)), torch.as_tensor(list(crops_for_assign))] = False
    return (cross * keep).sum() / (len(crops_for_assign) * (v - 1))


def swav_loss(
    scores: torch.Tensor | Sequence[torch.Tensor],
    temperature: float = 0.1,
    epsilon: float = 0.05,
    sinkhorn_iterations: int = 3,
    crops_for_assign: Sequence[int] = (0, 1),
    queue_scores: Sequence[torch.Tensor | None] | None = None,
) -> torch.Tensor:
    """SwAV loss of V crops' prototype scores (V, B, K) (or a list of V (B, K) tensors).

    ``queue_scores[i]`` (optional, (Q, K)) are the scores of queued embeddings of the i-th
    assigned crop: they join the Sinkhorn problem (more samples to spread over the
    prototypes) and only the batch's own B codes are kept, as in the official code.
    """
    check_temperature(temperature)
    s = _as_crops(scores)
    assign = list(crops_for_assign)
    if not assign or len(set(assign)) != len(assign) or not all(0 <= a < s.shape[0] for a in assign):
        raise ValueError(f"crops_for_assign must be distinct crop indices in [0, {s.shape[0]}), got {assign}")
    if queue_scores is not None and len(queue_scores) != len(assign):
        raise ValueError(f"need one queue entry per assigned crop ({len(assign)}), got {len(queue_scores)}")
    b = s.shape[1]
    codes = []
    for i, a in enumerate(assign):
        target = s[a]
        extra = None if queue_scores is None else queue_scores[i]
        if extra is not None:
            target = torch.cat([extra.to(target.dtype), target])
        codes.append(sinkhorn(target, epsilon, sinkhorn_iterations)[-b:])
    return swapped_prediction(s, torch.stack(codes), assign, temperature)


class SwAVLoss(nn.Module):
    """Swapped prediction of Sinkhorn codes over all crop pairs (SwAV).

    Args:
        temperature: τ of the prediction softmax (0.1).
        epsilon: ε of the Sinkhorn entropy regularisation (0.05).
        sinkhorn_iterations: 3.
        crops_for_assign: the crops whose codes are predicted (the two global ones, (0, 1)).

    ``forward(scores, queue_scores=None)`` takes the prototype scores of all crops,
    (V, B, K) or a list of V (B, K) tensors, crop-major, and returns the scalar loss.

    Example:
        >>> loss_fn = SwAVLoss(temperature=0.1, epsilon=0.05)
        >>> loss = loss_fn(torch.randn(6, 32, 30))   # 6 crops, batch 32, 30 prototypes
    """

    def __init__(
        self,
        temperature: float = 0.1,
        epsilon: float = 0.05,
        sinkhorn_iterations: int = 3,
        crops_for_assign: Sequence[int] = (0, 1),
    ) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)
        self.epsilon = check_temperature(epsilon, "epsilon")
        if not (isinstance(sinkhorn_iterations, int) and sinkhorn_iterations >= 1):
            raise ValueError(f"sinkhorn_iterations must be a positive integer, got {sinkhorn_iterations!r}")
        self.sinkhorn_iterations = sinkhorn_iterations
        assign = tuple(int(a) for a in crops_for_assign)
        if not assign or len(set(assign)) != len(assign) or min(assign) < 0:
            raise ValueError(f"crops_for_assign must be distinct non-negative crop indices, got {crops_for_assign}")
        self.crops_for_assign = assign

    def forward(
        self,
        scores: torch.Tensor | Sequence[torch.Tensor],
        queue_scores: Sequence[torch.Tensor | None] | None = None,
    ) -> torch.Tensor:
        return swav_loss(
            scores, self.temperature, self.epsilon, self.sinkhorn_iterations, self.crops_for_assign, queue_scores
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, epsilon={self.epsilon}, "
            f"sinkhorn_iterations={self.sinkhorn_iterations}, crops_for_assign={self.crops_for_assign}"
        )
