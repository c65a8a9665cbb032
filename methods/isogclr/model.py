"""SimCLR's two-view pipeline whose loss also gets each sample's data-set index (per-sample state)."""

from __future__ import annotations

import torch

from methods.isogclr.loss import ISogCLRLoss, SogCLRLoss
from shared.ssl import TwoViewContrastive


class IndexedTwoViewContrastive(TwoViewContrastive):
    """backbone → head → ``loss(z1, z2, batch["index"])``, the loss a :class:`SogCLRLoss` / :class:`ISogCLRLoss`.

    The batch must carry ``"index"``: the data-set positions of its images (``InMemoryBatches``
    yields them), which address the per-sample states kept in the loss module's buffers and so in
    the model's ``state_dict`` (checkpoints and resume restore them). Logs the batch's mean τ.
    """

    loss: SogCLRLoss

    def __init__(self, backbone, projector, loss: SogCLRLoss, augment=None, channels_last: bool = False) -> None:
        if not isinstance(loss, SogCLRLoss):
            raise TypeError(f"loss must be a SogCLRLoss or ISogCLRLoss, got {type(loss).__name__}")
        super().__init__(backbone, projector, loss, augment, channels_last)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        if "index" not in batch:
            raise ValueError("the batch has no 'index': SogCLR/iSogCLR need each sample's data-set index")
        x1, x2 = self.views(batch)
        x = torch.cat([x1, x2])
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        z1, z2 = self.projector(self.backbone(x)).chunk(2)
        out = {"loss": self.loss(z1, z2, batch["index"])}
        if isinstance(self.loss, ISogCLRLoss):
            out["tau_mean"] = self.loss.tau[batch["index"].to(self.loss.tau.device)].mean()
        return out
