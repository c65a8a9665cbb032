"""Test helper for ``shared.testing.distributed_equivalence``: Hydra's losses as ``loss_fn(z1, z2)``.

``distributed_equivalence`` gives each rank its slice of the batch and calls ``loss_fn(z1, z2)``. The
wrapper holds the labels of the *whole* batch (and the paired labels y2) and takes its rank's slice, and
a gate built from a fixed seed (eval mode: BatchNorm uses its running statistics, so the gate of a pair
does not depend on how the batch is split), so every process computes the same function.
"""

from __future__ import annotations

import torch
from torch import nn

from methods.hydra_cl.gate import BasicGate, OpenGate
from methods.hydra_cl.loss import DisparateLoss, instance_loss
from shared.distributed import get_rank


class SlicedHydraLoss(nn.Module):
    """``kind``: ``instance`` (MoCo v3 ctr), ``disparate`` (BasicGate, y2 = paired labels) or ``class``
    (OpenGate, y2 = y1).

    ``detach_keys`` treats z2 as momentum keys (no gradient), as in training.
    """

    def __init__(self, kind: str, labels: list[int], paired: list[int], detach_keys: bool = True) -> None:
        super().__init__()
        self.kind, self.detach_keys = kind, detach_keys
        self.labels, self.paired = torch.tensor(labels), torch.tensor(paired)
        self.num_classes = int(max(labels)) + 1
        self.loss: DisparateLoss | None = None

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        n, dim = z1.shape
        part = slice(get_rank() * n, (get_rank() + 1) * n)
        y1, y2 = self.labels[part], self.paired[part]
        k = z2.detach() if self.detach_keys else z2
        if self.kind == "instance":
            return instance_loss(z1, k, temperature=0.5)
        torch.manual_seed(0)
        if self.kind == "disparate":
            gate: OpenGate = BasicGate(dim, self.num_classes, in_dim=4, mlp_dim=6).double().eval()
            return DisparateLoss(gate, scale_init=5.0).double()(z1, k, y1, y2)
        if self.kind == "class":
            return DisparateLoss(OpenGate(dim, self.num_classes), scale_init=5.0).double()(z1, k, y1)
        raise ValueError(f"unknown kind {self.kind!r}")
