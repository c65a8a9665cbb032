"""The contrastive loss of Wang & Liu (CVPR 2021) and its explicit hard-negative variant.

For an anchor x_i with positive similarity s_{i,i} and negative similarities s_{i,k} (k ≠ i),
cosine similarities of L2-normalised embeddings, the paper's contrastive loss is

    L(x_i) = −log[ exp(s_{i,i}/τ) / ( exp(s_{i,i}/τ) + Σ_{k≠i} exp(s_{i,k}/τ) ) ].

The *hard contrastive loss* keeps only the K most similar negatives of each anchor in the
denominator (explicit hard-negative sampling; the paper keeps 4095 of a 16,384-entry memory bank):

    L_hard(x_i) = −log[ exp(s_{i,i}/τ) / ( exp(s_{i,i}/τ) + Σ_{k ∈ top-K_i} exp(s_{i,k}/τ) ) ].

The selection is an index choice (no gradient through it); the gradient flows through the kept
similarities. With K ≥ the number of negatives the two losses coincide.

In the SimCLR pipeline (:class:`shared.ssl.TwoViewContrastive`) the 2N embeddings of two views of
N images are all anchors: the positive of z_i is the other view of image i, its negatives the
other 2N − 2 embeddings, gathered from all processes with gradients, so the top-K runs over the
global batch.
"""

from __future__ import annotations

import torch
from torch import nn

from shared.losses import check_pair, check_temperature, two_view_logits


def check_k(k: int | None) -> int | None:
    """``None`` (all negatives) or a positive int."""
    if k is None:
        return None
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"hard_negatives (K) must be a positive int or None, got {k!r}")
    return k


def check_similarities(s_pos: torch.Tensor, s_neg: torch.Tensor) -> None:
    """``s_pos`` of shape (B,), ``s_neg`` of shape (B, M) with M ≥ 1, both floating point."""
    for name, s in (("s_pos", s_pos), ("s_neg", s_neg)):
        if not isinstance(s, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(s).__name__}")
        if not s.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {s.dtype}")
    if s_pos.ndim != 1 or s_neg.ndim != 2 or s_neg.shape[0] != s_pos.shape[0] or s_neg.shape[1] < 1:
        raise ValueError(
            f"s_pos must have shape (B,) and s_neg (B, M) with M ≥ 1, got {tuple(s_pos.shape)} and {tuple(s_neg.shape)}"
        )


def select_hard(s_neg: torch.Tensor, k: int | None) -> torch.Tensor:
    """The K largest negative similarities of each row, (B, min(K, M)); all of them when K is None."""
    if k is None or k >= s_neg.shape[1]:
        return s_neg
    return s_neg.topk(k, dim=1, sorted=False).values


def contrastive_loss_from_similarities(
    s_pos: torch.Tensor, s_neg: torch.Tensor, temperature: float, hard_negatives: int | None = None
) -> torch.Tensor:
    """Per-anchor loss L(x_i) (shape (B,)) from the positive (B,) and negative (B, M) similarities.

    ``hard_negatives=K`` keeps the K most similar negatives (the hard contrastive loss).
    """
    check_temperature(temperature)
    check_k(hard_negatives)
    check_similarities(s_pos, s_neg)
    s_neg = select_hard(s_neg, hard_negatives)
    logits = torch.cat([s_pos[:, None], s_neg], dim=1) / temperature
    return torch.logsumexp(logits, dim=1) - logits[:, 0]


def two_view_similarities(
    z1: torch.Tensor, z2: torch.Tensor, gather_distributed: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """(s_pos (2n,), s_neg (2n, 2N − 2)): this rank's 2n anchors against the 2N gathered embeddings.

    Float32 cosine similarities whatever the autocast dtype; row a of ``s_neg`` holds anchor a's
    similarities to every embedding but itself and its positive, in candidate order.
    """
    tv = two_view_logits(z1, z2, 1.0, gather_distributed)
    s_pos = tv.positive_logits()
    excluded = tv.self_mask()
    excluded[torch.arange(len(excluded), device=excluded.device), tv.positive] = True
    rows, cols = tv.logits.shape
    s_neg = tv.logits[~excluded].reshape(rows, cols - 2)
    return s_pos, s_neg


def contrastive_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    temperature: float = 0.2,
    hard_negatives: int | None = None,
    gather_distributed: bool = True,
) -> torch.Tensor:
    """Mean of L(x_i) (or L_hard with ``hard_negatives=K``) over all 2N anchors of two views.

    With ``hard_negatives=None`` this is SimCLR's NT-Xent (:func:`shared.losses.info_nce_loss`).
    """
    check_temperature(temperature)
    check_k(hard_negatives)
    check_pair(z1, z2)
    s_pos, s_neg = two_view_similarities(z1, z2, gather_distributed)
    return contrastive_loss_from_similarities(s_pos, s_neg, temperature, hard_negatives).mean()


class ContrastiveLoss(nn.Module):
    """The paper's contrastive loss on two views; ``hard_negatives=K`` makes it the hard contrastive loss.

    Args:
        temperature: τ > 0; the paper sweeps {0.07, 0.2, 0.3, 0.7, 1.0}.
        hard_negatives: K, the number of most similar negatives kept per anchor (None: all, the
            ordinary loss). K larger than the number of negatives keeps them all.
        gather_distributed: gather other ranks' embeddings with gradients (negatives and the
            top-K span the global batch).

    Inputs ``z1``, ``z2`` of shape (N, d) are L2-normalised inside.

    Example:
        >>> loss = ContrastiveLoss(temperature=1.0, hard_negatives=32)(torch.randn(64, 16), torch.randn(64, 16))
    """

    def __init__(
        self, temperature: float = 0.2, hard_negatives: int | None = None, gather_distributed: bool = True
    ) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)
        self.hard_negatives = check_k(hard_negatives)
        self.gather_distributed = gather_distributed

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return contrastive_loss(z1, z2, self.temperature, self.hard_negatives, self.gather_distributed)

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, hard_negatives={self.hard_negatives}, "
            f"gather_distributed={self.gather_distributed}"
        )


class HardContrastiveLoss(ContrastiveLoss):
    """The hard contrastive loss: only the K most similar negatives of each anchor in the denominator.

    Example:
        >>> loss = HardContrastiveLoss(temperature=1.0, k=32)(torch.randn(64, 16), torch.randn(64, 16))
    """

    def __init__(self, temperature: float = 0.2, k: int = 32, gather_distributed: bool = True) -> None:
        if k is None:
            raise ValueError("the hard contrastive loss needs a positive int K; use ContrastiveLoss for all negatives")
        super().__init__(temperature, k, gather_distributed)
