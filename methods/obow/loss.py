"""OBoW's reconstruction loss: predict the teacher's BoW of the full image from a perturbed crop.

For every student crop x̃ of an image x and every BoW level l (targets y_l(x), predictions
q_l(x̃) = softmax(logits)):

    L(x̃) = 1/L Σ_l KL( y_l(x) ‖ q_l(x̃) ) = 1/L Σ_l [ Σ_k y_lk log y_lk − Σ_k y_lk log q_lk(x̃) ]

averaged over the crops of one type (batchmean over images × crops) and *summed* over crop
types (the official step sums the loss of the 160-px crops and of the 96-px patches). The
targets carry no gradient, so the gradient equals that of the soft-target cross-entropy
CE(y, q) = KL(y‖q) + H(y).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def _check(logits: torch.Tensor, target: torch.Tensor) -> int:
    if logits.ndim != 2 or target.ndim != 2:
        raise ValueError(f"logits and targets must be 2-D, got {tuple(logits.shape)} and {tuple(target.shape)}")
    if logits.shape[1] != target.shape[1]:
        raise ValueError(f"logits have {logits.shape[1]} words, targets {target.shape[1]}")
    if target.shape[0] == 0 or logits.shape[0] % target.shape[0]:
        raise ValueError(
            f"the {logits.shape[0]} prediction rows must be a whole number of crops of the {target.shape[0]} images"
        )
    return logits.shape[0] // target.shape[0]


def bow_kl(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over rows of KL(y ‖ softmax(logits)) for crop-major logits (V·B, K) and targets (B, K).

    Row v·B + b is crop v of image b (the targets are repeated over the V crops).
    """
    crops = _check(logits, target)
    dtype = torch.float64 if torch.float64 in (logits.dtype, target.dtype) else torch.float32
    log_q = F.log_softmax(logits.to(dtype), dim=1).view(crops, target.shape[0], -1)
    y = target.detach().to(dtype).unsqueeze(0)
    return (torch.special.xlogy(y, y) - y * log_q).sum(-1).mean()


def obow_loss(logits: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean over BoW levels of :func:`bow_kl` for one crop type (one logits tensor per level)."""
    if len(logits) != len(targets) or not logits:
        raise ValueError(f"need one logits tensor per BoW level: {len(logits)} logits, {len(targets)} targets")
    return torch.stack([bow_kl(p, y) for p, y in zip(logits, targets, strict=True)]).mean()
