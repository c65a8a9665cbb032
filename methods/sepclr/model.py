"""SepCLR's two-encoder model and two baselines: one SimCLR encoder split in half, and two SimCLR
encoders trained on one group each (background → common space, target → salient space).

SepCLR (official ``cifar_mnist/architectures.py``): two separate encoders, common ``f_C`` and
salient ``f_S``; each is a backbone followed by a linear layer to its representation
(``c_rep`` ∈ R^{d_C}, ``s_rep`` ∈ R^{d_S}; d = 32 officially), then an MLP projector
d → 128 → BN → ReLU → d giving the heads c and s that the loss sees. The probes read the
representations (before the projectors). The common heads are normalised inside the loss; the
salient heads are used as they are, so that background samples can sit on the null vector 0.
"""

from __future__ import annotations

import torch
from torch import nn

from methods.sepclr.loss import SepCLRLoss
from shared.augment import BatchedSimCLRAugment
from shared.heads import mlp_head
from shared.losses import InfoNCELoss


def linear_encoder(backbone: nn.Module, dim: int) -> nn.Sequential:
    """backbone → Linear(out_dim, dim): the official encoder with its ``fc`` replaced by the representation layer."""
    return nn.Sequential(backbone, nn.Linear(backbone.out_dim, dim))


class _Views(nn.Module):
    def __init__(self, augment: BatchedSimCLRAugment | None, channels_last: bool) -> None:
        super().__init__()
        self.augment, self.channels_last = augment, channels_last

    def two_views(self, batch: dict) -> torch.Tensor:
        """Both views of the batch, concatenated: (2B, C, S, S)."""
        if "views" in batch:
            x1, x2 = batch["views"]
        elif self.augment is not None:
            with torch.autocast(batch["images"].device.type, enabled=False):
                x1, x2 = self.augment(batch["images"]), self.augment(batch["images"])
        else:
            raise ValueError("batch has no 'views' and the model has no augmentation for 'images'")
        x = torch.cat([x1, x2])
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


class SepCLR(_Views):
    """Common and salient encoders + projectors trained with :class:`SepCLRLoss`.

    ``forward(batch)`` takes ``{"images": uint8, "labels": 0/1 group}`` (or ``"views"``) and
    returns the loss and its four terms.
    """

    def __init__(
        self,
        common_backbone: nn.Module,
        salient_backbone: nn.Module,
        loss: SepCLRLoss,
        common_dim: int = 32,
        salient_dim: int = 32,
        head_hidden: int = 128,
        augment: BatchedSimCLRAugment | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__(augment, channels_last)
        for name, d in (("common_dim", common_dim), ("salient_dim", salient_dim), ("head_hidden", head_hidden)):
            if not (isinstance(d, int) and d >= 1):
                raise ValueError(f"{name} must be a positive integer, got {d!r}")
        self.common_encoder = linear_encoder(common_backbone, common_dim)
        self.salient_encoder = linear_encoder(salient_backbone, salient_dim)
        self.common_projector = mlp_head(common_dim, head_hidden, common_dim, num_layers=2)
        self.salient_projector = mlp_head(salient_dim, head_hidden, salient_dim, num_layers=2)
        self.loss = loss
        self.common_dim, self.salient_dim = common_dim, salient_dim

    def representations(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(c_rep, s_rep): what the probes read."""
        return self.common_encoder(x), self.salient_encoder(x)

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(c, s): the projector outputs the loss sees (c not yet normalised)."""
        c_rep, s_rep = self.representations(x)
        return self.common_projector(c_rep), self.salient_projector(s_rep)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        if "labels" not in batch:
            raise ValueError("SepCLR needs batch['labels']: 0 for background, 1 for target samples")
        c, s = self.heads(self.two_views(batch))
        c1, c2 = c.chunk(2)
        s1, s2 = s.chunk(2)
        return self.loss(c1, c2, s1, s2, batch["labels"])


class SplitSimCLR(_Views):
    """The baseline: one SimCLR encoder with a (d_C + d_S)-d representation, read as two halves.

    Trained with InfoNCE on all samples (background and target alike); ``representations``
    returns the first ``common_dim`` coordinates as "common" and the rest as "salient".
    """

    def __init__(
        self,
        backbone: nn.Module,
        loss: InfoNCELoss,
        common_dim: int = 32,
        salient_dim: int = 32,
        head_hidden: int = 128,
        augment: BatchedSimCLRAugment | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__(augment, channels_last)
        self.encoder = linear_encoder(backbone, common_dim + salient_dim)
        self.projector = mlp_head(common_dim + salient_dim, head_hidden, common_dim + salient_dim, num_layers=2)
        self.loss = loss
        self.common_dim, self.salient_dim = common_dim, salient_dim

    def representations(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rep = self.encoder(x)
        return rep[:, : self.common_dim], rep[:, self.common_dim :]

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        z = self.projector(self.encoder(self.two_views(batch)))
        z1, z2 = z.chunk(2)
        return {"loss": self.loss(z1, z2)}


class GroupSimCLR(_Views):
    """The contrastive-analysis baseline with a space per encoder: two SimCLR encoders, each trained on one group.

    The common encoder f_C (→ d_C) is trained with InfoNCE on the **background** images only (they carry
    the common factors and nothing else), the salient encoder f_S (→ d_S) with InfoNCE on the **target**
    images only; each has its own projector d → ``head_hidden`` → BN → ReLU → d, as SepCLR's. The two
    never share a parameter, an image or a gradient, so the loss

        L = InfoNCE(g_C(f_C(bg view 1)), g_C(f_C(bg view 2))) + InfoNCE(g_S(f_S(tgt view 1)), g_S(f_S(tgt view 2)))

    is two independent SimCLR runs stepped together. ``representations`` reads (f_C(x), f_S(x)), the
    same probes as SepCLR's. Nothing pushes the salient encoder to ignore the common factors: that is
    what SepCLR adds.
    """

    def __init__(
        self,
        common_backbone: nn.Module,
        salient_backbone: nn.Module,
        loss: InfoNCELoss,
        common_dim: int = 32,
        salient_dim: int = 32,
        head_hidden: int = 128,
        augment: BatchedSimCLRAugment | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__(augment, channels_last)
        self.common_encoder = linear_encoder(common_backbone, common_dim)
        self.salient_encoder = linear_encoder(salient_backbone, salient_dim)
        self.common_projector = mlp_head(common_dim, head_hidden, common_dim, num_layers=2)
        self.salient_projector = mlp_head(salient_dim, head_hidden, salient_dim, num_layers=2)
        self.loss = loss
        self.common_dim, self.salient_dim = common_dim, salient_dim

    def representations(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.common_encoder(x), self.salient_encoder(x)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        if "labels" not in batch:
            raise ValueError("GroupSimCLR needs batch['labels']: 0 for background, 1 for target samples")
        group = batch["labels"]
        x = self.two_views(batch)
        out = {}
        for name, flag, encoder, projector in (
            ("common", 0, self.common_encoder, self.common_projector),
            ("salient", 1, self.salient_encoder, self.salient_projector),
        ):
            rows = group == flag
            if int(rows.sum()) < 2:
                raise ValueError(f"GroupSimCLR needs at least 2 {('background', 'target')[flag]} samples per batch")
            z1, z2 = projector(encoder(x[torch.cat([rows, rows])])).chunk(2)
            out[name] = self.loss(z1, z2)
        return {"loss": out["common"] + out["salient"], **{k: v.detach() for k, v in out.items()}}
