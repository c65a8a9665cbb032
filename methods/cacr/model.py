"""The training step shared by CACR and its baselines: V views → backbone → head → loss(views).

    x → crops t_1(x) … t_V(x) (e.g. 2 global + 3 local) → f (one pass per resolution) → g → z_v
    loss(z_1, …, z_V) → {"loss", ...}

Every arm of a comparison uses this module with the same crops, backbone and head; only the
loss differs (CACR, multi-view SimCLR, multi-view alignment + uniformity).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from shared.multicrop import MultiCropAugment, forward_by_resolution

ViewLoss = Callable[[torch.Tensor], dict[str, torch.Tensor]]


class MultiViewContrastive(nn.Module):
    """``forward(batch) -> loss dict`` for ``{"images": uint8 (B, C, H, W)}`` or ``{"crops": [x_1, …, x_V]}``.

    The loss sees the (V, B, d) projections in float32 outside autocast.
    """

    def __init__(
        self,
        backbone: nn.Module,
        projector: nn.Module,
        loss: ViewLoss,
        augment: MultiCropAugment | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.backbone, self.projector, self.loss = backbone, projector, loss
        self.augment = augment
        self.channels_last = channels_last

    def crops(self, batch: dict) -> list[torch.Tensor]:
        if "crops" in batch:
            return list(batch["crops"])
        if self.augment is None:
            raise ValueError("batch has no 'crops' and the model has no augmentation for 'images'")
        with torch.autocast(batch["images"].device.type, enabled=False):
            return self.augment(batch["images"])

    def embed(self, crops: list[torch.Tensor]) -> torch.Tensor:
        """Projections of all crops, (V, B, d) in float32 (not normalised: the losses do that)."""
        v, b = len(crops), crops[0].shape[0]
        z = self.projector(forward_by_resolution(self.backbone, crops, self.channels_last))
        return z.float().view(v, b, -1)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        z = self.embed(self.crops(batch))
        with torch.autocast(z.device.type, enabled=False):
            return self.loss(z)
