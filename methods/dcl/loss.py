"""Decoupled contrastive loss (DCL) and its weighted variant (DCLW).

Yeh et al., "Decoupled Contrastive Learning", ECCV 2022, arXiv:2110.06848.

For N pairs of views, every one of the 2N normalised embeddings z_i is an anchor with
positive z_i' (the other view of the same image). InfoNCE keeps the positive in its
denominator; DCL removes it:

    L_i^InfoNCE = −s_ii'/τ + log( e^{s_ii'/τ} + Σ_{j≠i, l∈{1,2}} e^{⟨z_i, z_j^{(l)}⟩/τ} )
    L_i^DCL     = −s_ii'/τ + log(                Σ_{j≠i, l∈{1,2}} e^{⟨z_i, z_j^{(l)}⟩/τ} )

so L^InfoNCE − L^DCL = softplus(s_ii'/τ − LSE_neg) > 0 per anchor. The gradient of
InfoNCE carries the negative-positive-coupling factor
q_B = 1 − e^{s_ii'/τ} / (e^{s_ii'/τ} + Σ e^{s_neg/τ}), which shrinks the update when the
batch is small or the positive is easy; DCL drops it.

DCLW weighs the positive term with a von Mises-Fisher weight,

    w_i = 2 − exp(s_ii'/σ) / ( (1/N) Σ_k exp(s_kk'/σ) ) = 2 − N · softmax_k(s_kk'/σ)_i,

whose mean over the batch is exactly 1 (σ = 0.5). The weights are detached (the paper
does not say; lightly's discussion and the sane default): they rescale the positive
term, they are not trained through.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from shared.distributed import gather_with_grad, local_offset
from shared.losses import at_least_float32, check_pair, check_temperature, two_view_logits

WeightFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def von_mises_weight(z1: torch.Tensor, z2: torch.Tensor, sigma: float = 0.5) -> torch.Tensor:
    """DCLW's positive weights w_i = 2 − N·softmax(s_ii'/σ)_i, detached, mean exactly 1.

    ``z1``/``z2`` are the (gathered) views of the whole batch, shape (N, d).
    """
    check_temperature(sigma, "sigma")
    with torch.no_grad():
        s = (F.normalize(at_least_float32(z1), dim=1) * F.normalize(at_least_float32(z2), dim=1)).sum(dim=1)
        return 2.0 - z1.shape[0] * torch.softmax(s / sigma, dim=0)


def dcl_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    temperature: float = 0.1,
    weight_fn: WeightFn | None = None,
    gather_distributed: bool = True,
) -> torch.Tensor:
    """Mean over all 2N anchors of ``−w_i·s_ii'/τ + LSE_{negatives}(s/τ)``.

    ``weight_fn(z1_all, z2_all) -> (N,)`` weighs the positive term (None: w_i = 1, DCL).
    It sees the views of the whole (gathered) batch, so DCLW's softmax runs over the
    global batch and the loss does not depend on how the batch is split over processes.
    """
    check_temperature(temperature)
    check_pair(z1, z2)
    tv = two_view_logits(z1, z2, temperature, gather_distributed)
    positives = tv.positive_logits()
    not_negative = tv.self_mask()
    not_negative[torch.arange(len(not_negative), device=not_negative.device), tv.positive] = True
    negative_lse = torch.logsumexp(tv.logits.masked_fill(not_negative, float("-inf")), dim=1)
    if weight_fn is not None:
        n = z1.shape[0]
        all1 = gather_with_grad(z1) if gather_distributed else z1
        all2 = gather_with_grad(z2) if gather_distributed else z2
        w = weight_fn(all1.detach(), all2.detach())
        start = local_offset(n) if gather_distributed else 0
        w_local = w[start : start + n]
        positives = positives * torch.cat([w_local, w_local]).to(positives.dtype)
    return (negative_lse - positives).mean()


class DCLLoss(nn.Module):
    """Decoupled contrastive loss: InfoNCE without the positive in the denominator.

    Args:
        temperature: τ > 0; 0.1 as lightly and the reference re-implementation use.
        weight_fn: optional ``(z1, z2) -> (N,)`` weight of the positive term (DCLW).
        gather_distributed: gather other ranks' embeddings with gradients, so the
            negatives span the global batch.

    Inputs ``z1``, ``z2`` of shape (N, d) are L2-normalised inside; the loss is symmetric
    in the two views and averaged over all 2N anchors. It can be negative.

    Example:
        >>> loss_fn = DCLLoss(temperature=0.1)
        >>> loss = loss_fn(torch.randn(32, 128), torch.randn(32, 128))
    """

    def __init__(
        self,
        temperature: float = 0.1,
        weight_fn: WeightFn | None = None,
        gather_distributed: bool = True,
    ) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)
        if weight_fn is not None and not callable(weight_fn):
            raise TypeError("weight_fn must be callable (z1, z2) -> weights, or None")
        self.weight_fn = weight_fn
        self.gather_distributed = gather_distributed

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return dcl_loss(z1, z2, self.temperature, self.weight_fn, self.gather_distributed)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, gather_distributed={self.gather_distributed}"


class DCLWLoss(DCLLoss):
    """DCL with the von Mises-Fisher weight on the positive term (σ = 0.5).

    Example:
        >>> loss = DCLWLoss(temperature=0.1, sigma=0.5)(torch.randn(32, 128), torch.randn(32, 128))
    """

    def __init__(self, temperature: float = 0.1, sigma: float = 0.5, gather_distributed: bool = True) -> None:
        self.sigma = check_temperature(sigma, "sigma")
        super().__init__(temperature, lambda a, b: von_mises_weight(a, b, self.sigma), gather_distributed)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, sigma={self.sigma}"
