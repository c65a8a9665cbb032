"""The SwAV training step: multi-crop → backbone → head → L2-normalise → prototypes → loss.

    crops x_1..x_V ─ f (one pass per resolution) ─ g (MLP) ─ z_v = g(f(x_v)) / ‖·‖
    s_v = Cᵀ z_v (unit-norm prototypes, frozen for the first iterations)
    L   = swapped prediction of the Sinkhorn codes of the global crops (see loss.py)

Per step, as in the official ``train``: the prototypes are re-normalised before the
forward pass; with a queue, the queued embeddings of each assigned crop are scored against
the current prototypes and join the Sinkhorn problem, then the batch's embeddings are
pushed. The queue starts at iteration ``queue_start_iter`` (an epoch boundary in the
presets) and is used once full.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from methods.swav.loss import SwAVLoss
from methods.swav.queue import EmbeddingQueue
from shared.multicrop import MultiCropAugment, forward_by_resolution
from shared.prototypes import Prototypes


class SwAV(nn.Module):
    """SwAV as an engine method: ``forward(batch) -> {"loss", ...}``, ``after_step(step)``.

    ``batch`` is ``{"images": uint8 (B, C, H, W)}`` (crops made here by ``augment``) or
    ``{"crops": [x_1, ..., x_V]}`` (crops made by DataLoader workers), crops in group order
    (the assigned global crops first).

    Args:
        backbone, projector: f and g; the embedding is ``normalize(g(f(x)))``.
        prototypes: the K unit-norm prototypes (with their freeze switch).
        loss: :class:`SwAVLoss`.
        augment: the batched multi-crop augmentation (for ``"images"`` batches).
        queue_length: per-process queue length per assigned crop (0: no queue).
        queue_start_iter: the iteration from which the queue is filled.
    """

    def __init__(
        self,
        backbone: nn.Module,
        projector: nn.Module,
        prototypes: Prototypes,
        loss: SwAVLoss,
        augment: MultiCropAugment | None = None,
        queue_length: int = 0,
        queue_start_iter: int = 0,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.backbone, self.projector, self.prototypes, self.loss = backbone, projector, prototypes, loss
        self.augment = augment
        self.channels_last = channels_last
        if queue_length < 0 or queue_start_iter < 0:
            raise ValueError("queue_length and queue_start_iter must be non-negative")
        self.queue_start_iter = queue_start_iter
        self.queue = (
            EmbeddingQueue(len(loss.crops_for_assign), queue_length, prototypes.dim) if queue_length > 0 else None
        )

    def crops(self, batch: dict) -> list[torch.Tensor]:
        if "crops" in batch:
            return list(batch["crops"])
        if self.augment is None:
            raise ValueError("batch has no 'crops' and the model has no augmentation for 'images'")
        with torch.autocast(batch["images"].device.type, enabled=False):
            return self.augment(batch["images"])

    def embed(self, crops: list[torch.Tensor]) -> torch.Tensor:
        """L2-normalised embeddings of all crops, (V·B, d), float32, crop-major."""
        features = forward_by_resolution(self.backbone, crops, self.channels_last)
        return F.normalize(self.projector(features).float(), dim=1)

    def _queue_scores(self, z: torch.Tensor) -> list[torch.Tensor | None] | None:
        """Scores of the queued embeddings (once full), then push this batch's; no gradient."""
        if self.queue is None or int(self.prototypes.iteration) < self.queue_start_iter:
            return None
        with torch.no_grad():
            out: list[torch.Tensor | None] | None = None
            if self.queue.full:
                w = self.prototypes.weight.detach().float()
                out = [self.queue.embeddings[i] @ w.T for i in range(self.queue.embeddings.shape[0])]
            self.queue.push(z[list(self.loss.crops_for_assign)].detach())
        return out

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        if self.training:
            self.prototypes.normalize_()
        crops = self.crops(batch)
        v, b = len(crops), crops[0].shape[0]
        z = self.embed(crops)
        scores = self.prototypes(z).view(v, b, -1)
        queue_scores = self._queue_scores(z.view(v, b, -1)) if self.training else None
        return {"loss": self.loss(scores, queue_scores)}

    def after_step(self, step: int) -> None:
        """Called by the engine after optimiser step ``step`` (0-based)."""
        self.prototypes.set_iteration(step + 1)
