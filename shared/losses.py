"""Generic contrastive losses: InfoNCE / NT-Xent (SimCLR), alignment and uniformity.

NT-Xent in SimCLR's 2N-anchor form (Chen et al., 2020, arXiv:2002.05709). For a batch of
N pairs (z_i, z_i') every one of the 2N embeddings is an anchor; its positive is the
other view of the same image and its negatives are the other 2N-2 embeddings:

    l_i = -log( exp(s_ii'/τ) / Σ_{k ≠ i} exp(s_ik/τ) ),    s = cosine similarity,
    L   = 1/(2N) Σ_i l_i.

Distributed design (as open_clip does it): each rank computes the loss of its *own* rows
against the columns gathered from *all* ranks with gradients, labels shifted by
``rank · n``. The mean of the per-rank losses is the global loss, and with DDP's gradient
averaging the gradients equal those of one process on the whole batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from shared.distributed import gather_with_grad, local_offset


def check_pair(z1: torch.Tensor, z2: torch.Tensor) -> None:
    """Raise a clear ``ValueError`` unless z1, z2 are same-shape 2-D float tensors."""
    for name, z in (("z1", z1), ("z2", z2)):
        if not isinstance(z, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(z).__name__}")
        if z.ndim != 2:
            raise ValueError(f"{name} must have shape (batch, dim), got {tuple(z.shape)}")
        if not z.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {z.dtype}")
    if z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must have the same shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if z1.shape[0] < 2:
        raise ValueError(f"a contrastive loss needs a batch of at least 2, got {z1.shape[0]}")


def at_least_float32(z: torch.Tensor) -> torch.Tensor:
    """Upcast half-precision embeddings (bf16/fp16 under autocast) to float32; keep float64."""
    return z if z.dtype in (torch.float32, torch.float64) else z.float()


def check_temperature(temperature: float, name: str = "temperature") -> float:
    """A positive, finite number (not a bool) as a float; a clear ``ValueError`` otherwise."""
    ok = isinstance(temperature, (int, float)) and not isinstance(temperature, bool)
    if not (ok and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"{name} must be a positive finite number, got {temperature!r}")
    return float(temperature)


@dataclass
class TwoViewLogits:
    """Similarities of this rank's 2n anchors against the 2N gathered candidates.

    ``logits[a, c] = s(anchor a, candidate c) / τ`` in float32. Anchors are
    ``[z1_local; z2_local]``, candidates ``[z1_all; z2_all]``. ``positive[a]`` and
    ``self_index[a]`` are candidate columns: the other view of the anchor's image, and the
    anchor itself (to be masked out).
    """

    logits: torch.Tensor
    positive: torch.Tensor
    self_index: torch.Tensor

    def self_mask(self) -> torch.Tensor:
        mask = torch.zeros_like(self.logits, dtype=torch.bool)
        mask[torch.arange(len(mask), device=mask.device), self.self_index] = True
        return mask

    def positive_logits(self) -> torch.Tensor:
        return self.logits.gather(1, self.positive[:, None]).squeeze(1)


def two_view_logits(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float, gather_distributed: bool = True
) -> TwoViewLogits:
    """Normalise two views and build the 2n × 2N logit matrix of SimCLR's NT-Xent.

    Computed in float32 whatever the autocast dtype, so bf16 training keeps exact logits.
    """
    check_pair(z1, z2)
    z1 = F.normalize(at_least_float32(z1), dim=1)
    z2 = F.normalize(at_least_float32(z2), dim=1)
    n = z1.shape[0]
    if gather_distributed:
        all1, all2 = gather_with_grad(z1), gather_with_grad(z2)
        offset = local_offset(n)
    else:
        all1, all2, offset = z1, z2, 0
    big_n = all1.shape[0]
    anchors = torch.cat([z1, z2], dim=0)
    candidates = torch.cat([all1, all2], dim=0)
    with torch.autocast(device_type=anchors.device.type, enabled=False):
        logits = anchors @ candidates.T / temperature
    rows = torch.arange(n, device=z1.device) + offset
    self_index = torch.cat([rows, rows + big_n])
    positive = torch.cat([rows + big_n, rows])
    return TwoViewLogits(logits=logits, positive=positive, self_index=self_index)


def info_nce_loss(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1, gather_distributed: bool = True
) -> torch.Tensor:
    """NT-Xent over all 2N anchors (the positive stays in the denominator)."""
    check_temperature(temperature)
    tv = two_view_logits(z1, z2, temperature, gather_distributed)
    logits = tv.logits.masked_fill(tv.self_mask(), float("-inf"))
    return F.cross_entropy(logits, tv.positive)


class InfoNCELoss(nn.Module):
    """NT-Xent / InfoNCE of SimCLR as a module.

    Args:
        temperature: τ > 0 (SimCLR's CIFAR default 0.5; 0.1 as DCL and lightly use).
        gather_distributed: gather the other ranks' embeddings with gradients.

    Example:
        >>> loss_fn = InfoNCELoss(temperature=0.1)
        >>> z1, z2 = torch.randn(8, 16), torch.randn(8, 16)
        >>> loss = loss_fn(z1, z2)
    """

    def __init__(self, temperature: float = 0.1, gather_distributed: bool = True) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)
        self.gather_distributed = gather_distributed

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return info_nce_loss(z1, z2, self.temperature, self.gather_distributed)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, gather_distributed={self.gather_distributed}"


def alignment(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """Wang & Isola (2020) alignment: E ‖f(x) − f(x⁺)‖^α on normalised embeddings."""
    check_pair(z1, z2)
    z1, z2 = F.normalize(at_least_float32(z1), dim=1), F.normalize(at_least_float32(z2), dim=1)
    return (z1 - z2).norm(dim=1).pow(alpha).mean()


def uniformity(z: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """Wang & Isola (2020) uniformity: log E exp(−t ‖f(x) − f(y)‖²) over distinct pairs."""
    if not torch.is_tensor(z) or z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"uniformity needs a (batch ≥ 2, dim) tensor, got {getattr(z, 'shape', type(z).__name__)}")
    check_temperature(t, "t")
    z = F.normalize(at_least_float32(z), dim=1)
    return torch.pdist(z, p=2).pow(2).mul(-t).exp().mean().log()
