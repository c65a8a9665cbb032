"""SimCLR's two-view pipeline with a pluggable loss: the baseline many papers build on.

    x → two random views t(x), t'(x) → backbone f → projection head g → loss(z, z')

Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations",
ICML 2020, arXiv:2002.05709. Both views go through the backbone in one concatenated
batch, so BatchNorm sees the statistics of both (as SimCLR's global BN does per device).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from shared.augment import BatchedSimCLRAugment

PairLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class TwoViewContrastive(nn.Module):
    """Backbone + projection head trained with ``loss(z1, z2)`` on two views per image.

    ``forward(batch)`` takes ``{"images": uint8 (B, C, H, W)}`` (views made here by the
    batched augmentation) or ``{"views": (x1, x2)}`` (views made by DataLoader workers) and
    returns ``{"loss": scalar}``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        projector: nn.Module,
        loss: PairLoss,
        augment: BatchedSimCLRAugment | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.backbone, self.projector, self.loss = backbone, projector, loss
        self.augment = augment
        self.channels_last = channels_last

    def views(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        if "views" in batch:
            x1, x2 = batch["views"]
        elif self.augment is not None:
            with torch.autocast(batch["images"].device.type, enabled=False):
                x1, x2 = self.augment(batch["images"]), self.augment(batch["images"])
        else:
            raise ValueError("batch has no 'views' and the model has no augmentation for 'images'")
        return x1, x2

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        x1, x2 = self.views(batch)
        x = torch.cat([x1, x2])
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        z = self.projector(self.backbone(x))
        z1, z2 = z.chunk(2)
        return {"loss": self.loss(z1, z2)}
