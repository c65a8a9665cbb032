"""Two-view adapters for ``shared.testing.distributed_equivalence`` (which feeds ``loss(z1, z2)``).

The multi-view losses are checked with 4 views derived per sample from the two the helper
gives (z1, z2, z1 + z2, z1 − ½ z2): still one row per image, so each process holds the same
images in every view, as in training. Importable by spawned test processes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from methods.cacr.baselines import MultiViewAlignUniform, MultiViewInfoNCE
from methods.cacr.loss import CACRLoss
from methods.cacr.moco_v3 import cacr_moco_v3_loss

VIEW_LOSSES = {"cacr": CACRLoss, "simclr": MultiViewInfoNCE, "align_uniform": MultiViewAlignUniform}


class FourViews(nn.Module):
    """``(z1, z2) -> loss(stack(z1, z2, z1 + z2, z1 − z2/2))["loss"]``."""

    def __init__(self, loss: str = "cacr", **kwargs: Any) -> None:
        super().__init__()
        self.loss = VIEW_LOSSES[loss](**kwargs)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return self.loss(torch.stack([z1, z2, z1 + z2, z1 - 0.5 * z2]))["loss"]


class MoCoV3Pair(nn.Module):
    """``(z1, z2) -> cacr_moco_v3_loss([q1, q2, q_local], [k1, k2])``, keys detached as a momentum encoder's."""

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        queries = [z1, z2, z1 + z2]
        return cacr_moco_v3_loss(queries, [(z1 * 1.5).detach(), (z2 - 0.1).detach()], self.temperature)
