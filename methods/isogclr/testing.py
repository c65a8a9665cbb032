"""Test helper for ``shared.testing.distributed_equivalence``: two steps of a stateful loss.

``distributed_equivalence`` calls ``loss_fn(z1, z2)`` on each rank's slice of the batch. The
wrapper supplies the indices and takes two steps: the first fills the per-sample states (from
the gathered negatives), the second reads them with the samples swapped between ranks (index
``N − 1 − i``), so it passes only if every process stored every sample's update. Its value and
gradient are those of the second step.
"""

from __future__ import annotations

import torch
from torch import nn

from methods.isogclr.loss import ISogCLRLoss, SogCLRLoss
from shared.distributed import get_rank, get_world_size


class TwoStepLoss(nn.Module):
    def __init__(self, kind: str = "isogclr", **kwargs) -> None:
        super().__init__()
        self.kind = kind
        self.kwargs = kwargs

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        n = z1.shape[0]
        big_n = n * get_world_size()
        local = torch.arange(n) + get_rank() * n
        cls = ISogCLRLoss if self.kind == "isogclr" else SogCLRLoss
        loss_fn = cls(big_n, **self.kwargs).double()
        loss_fn(z2.detach(), z1.detach().flip(1), local)  # step 1: other embeddings, fills the states
        return loss_fn(z1, z2, big_n - 1 - local)  # step 2: the other rank's samples
