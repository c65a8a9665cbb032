"""One stage's SimCLR model with feature-aware negatives, and the cross-stage integrated encoder.

Every stage is SimCLR — backbone f_s, projection head g_s, two augmented views — trained with
:func:`methods.mcl.loss.cluster_info_nce` on batches from :class:`methods.mcl.sampler.ClusterBatches`.
The final (unimodal) representation integrates the stages by concatenation,

    h(x) = [ f_0(x) ; f_1(x) ; … ; f_{S−1}(x) ] ∈ R^{S·d},

and ``stage_features(x, s)`` (the slice [s·d, (s+1)·d)) is stage s's own representation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from methods.mcl.loss import ClusterInfoNCELoss
from shared.ssl import TwoViewContrastive


class StageSimCLR(TwoViewContrastive):
    """SimCLR whose loss reads the batch's pseudo-labels (``batch["pseudo"]``; absent: one cluster)."""

    def __init__(self, backbone: nn.Module, projector: nn.Module, loss: ClusterInfoNCELoss, **kwargs) -> None:
        if not isinstance(loss, ClusterInfoNCELoss):
            raise TypeError("StageSimCLR needs a ClusterInfoNCELoss (it passes the pseudo-labels)")
        super().__init__(backbone, projector, loss, **kwargs)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        x1, x2 = self.views(batch)
        x = torch.cat([x1, x2])
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        z1, z2 = self.projector(self.backbone(x)).chunk(2)
        pseudo = batch.get("pseudo")
        if pseudo is None:
            pseudo = torch.zeros(len(z1), dtype=torch.long, device=z1.device)
        return {"loss": self.loss(z1, z2, pseudo)}


class IntegratedEncoder(nn.Module):
    """Cross-stage representation integration: the concatenated features of every stage's backbone."""

    def __init__(self, backbones: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(backbones) == 0:
            raise ValueError("need at least one stage backbone")
        dims = {getattr(b, "out_dim", None) for b in backbones}
        if len(dims) != 1 or None in dims:
            raise ValueError(f"every stage backbone needs the same out_dim, got {dims}")
        self.stages = nn.ModuleList(backbones)
        self.stage_dim = dims.pop()
        self.out_dim = self.stage_dim * len(backbones)

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.stages], dim=1)

    def stage_slice(self, stage: int) -> slice:
        """Columns of stage ``stage`` in the integrated representation."""
        if not -self.num_stages <= stage < self.num_stages:
            raise ValueError(f"stage must be in [0, {self.num_stages}), got {stage}")
        s = stage % self.num_stages
        return slice(s * self.stage_dim, (s + 1) * self.stage_dim)

    def stage_features(self, x: torch.Tensor, stage: int) -> torch.Tensor:
        return self.stages[stage](x)
