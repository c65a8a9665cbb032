"""Test helper for ``shared.testing.distributed_equivalence``: SupReMix with labels fixed per sample.

``distributed_equivalence`` calls ``loss_fn(z1, z2)`` on each rank's slice of the batch; this wrapper
holds the labels of the whole batch and hands the loss the slice of its own rank.
"""

from __future__ import annotations

import torch
from torch import nn

from methods.supremix.loss import SupReMixConfig, supremix_loss
from shared.distributed import get_rank


class LabelledLoss(nn.Module):
    def __init__(self, labels: list[float], gather_distributed: bool = True, **kwargs) -> None:
        super().__init__()
        self.labels = torch.tensor(labels, dtype=torch.float64)
        self.cfg = SupReMixConfig(**kwargs)
        self.gather_distributed = gather_distributed

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        n = z1.shape[0]
        start = get_rank() * n if self.gather_distributed or n < len(self.labels) else 0
        return supremix_loss(z1, z2, self.labels[start : start + n], self.cfg, self.gather_distributed)
