"""InfoNCE whose negatives come only from the anchor's own pseudo-label (feature-aware negatives).

For N pairs of views with pseudo-labels y (the stage's combined cluster ids), every one of
the 2N L2-normalised embeddings z_a is an anchor with positive z_a' (the other view of its
image); its negatives are the other embeddings of the *same* pseudo-label:

    N(a) = { c ≠ a, c ≠ a' : y_c = y_a },
    l_a  = −s(z_a, z_a')/τ + log( e^{s(z_a, z_a')/τ} + Σ_{c ∈ N(a)} e^{s(z_a, z_c)/τ} ),
    L    = 1/(2N) Σ_a l_a.

When every sample of the batch has one label — MCL's sampler with one group per step, and
stage 0 (one cluster) — this is SimCLR's NT-Xent exactly (``shared.losses.info_nce_loss``);
the mask matters when a step holds several single-label groups (``groups > 1``), which keeps
the paper's negatives while BatchNorm sees several clusters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from shared.distributed import gather_no_grad
from shared.losses import check_pair, check_temperature, two_view_logits


def cluster_info_nce(
    z1: torch.Tensor,
    z2: torch.Tensor,
    pseudo: torch.Tensor,
    temperature: float = 0.1,
    gather_distributed: bool = True,
) -> torch.Tensor:
    """Mean over the 2N anchors of NT-Xent with negatives restricted to the anchor's pseudo-label.

    ``pseudo`` is the (N,) integer pseudo-label of the local samples; under several processes the
    labels are gathered (no gradient) with the embeddings (with gradient).
    """
    check_temperature(temperature)
    check_pair(z1, z2)
    if not isinstance(pseudo, torch.Tensor) or pseudo.shape != (z1.shape[0],):
        raise ValueError(f"pseudo must be a tensor of shape ({z1.shape[0]},), got {getattr(pseudo, 'shape', pseudo)}")
    if pseudo.is_floating_point():
        raise TypeError(f"pseudo must hold integer labels, got {pseudo.dtype}")
    tv = two_view_logits(z1, z2, temperature, gather_distributed)
    labels = pseudo.long().to(z1.device)
    all_labels = gather_no_grad(labels) if gather_distributed else labels
    anchor_labels = torch.cat([labels, labels])
    candidate_labels = torch.cat([all_labels, all_labels])
    other_cluster = anchor_labels[:, None] != candidate_labels[None, :]
    excluded = other_cluster | tv.self_mask()
    excluded[torch.arange(len(excluded), device=excluded.device), tv.positive] = False  # the positive stays
    logits = tv.logits.masked_fill(excluded, float("-inf"))
    return F.cross_entropy(logits, tv.positive)


class ClusterInfoNCELoss(nn.Module):
    """NT-Xent with feature-aware negatives: ``loss(z1, z2, pseudo)``.

    Args:
        temperature: τ > 0.
        gather_distributed: gather the other ranks' embeddings (with gradients) and pseudo-labels.

    Example:
        >>> loss = ClusterInfoNCELoss(0.1)(torch.randn(8, 16), torch.randn(8, 16), torch.zeros(8, dtype=torch.long))
    """

    def __init__(self, temperature: float = 0.1, gather_distributed: bool = True) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)
        self.gather_distributed = gather_distributed

    def forward(self, z1: torch.Tensor, z2: torch.Tensor, pseudo: torch.Tensor) -> torch.Tensor:
        return cluster_info_nce(z1, z2, pseudo, self.temperature, self.gather_distributed)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, gather_distributed={self.gather_distributed}"
