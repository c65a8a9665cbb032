"""The BECLR network: student (encoder → projector → predictor), EMA teacher, three DyCE memories.

Official ``model/beclr.py`` + ``train.py``. Two views x_1, x_2 of a batch go through

    student:  f → g (3 × Linear+BN, ReLU between) → z  → h (d → d/4 → d) → p
    teacher:  EMA copy of f and g (no gradient)       → z̄

From ``enhance_from_step`` on (the official ``memory_start_epoch``), each of z̄, p and z is
enhanced by its own DyCE memory (B → B(1 + k) rows per view) before :class:`~methods.beclr.loss.BECLRLoss`.
The memories are updated every step from the start, so they are full and clustered by then.
Teacher momentum follows the official cosine schedule from m_0 to 1 over training:

    m_t = 1 − (1 − m_0) · (cos(π t / T) + 1) / 2.

With ``dyce=None`` the same network and loss run without memory: the contrastive baseline.
A batch with ``"masks"`` (one boolean patch grid per view, the paper preset's masked-image
augmentation) has those patches of the *student's* input zeroed; the teacher sees the whole views.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from methods.beclr.augment import mask_patches
from methods.beclr.dyce import DyCE, DyCEConfig
from methods.beclr.loss import BECLRLoss
from shared.augment import BatchedSimCLRAugment
from shared.momentum import check_momentum, ema_update, momentum_copy


def projector(in_dim: int, out_dim: int) -> nn.Sequential:
    """Official projector: three Linear+BN layers, ReLU after the first two."""
    return nn.Sequential(
        nn.Linear(in_dim, out_dim),
        nn.BatchNorm1d(out_dim),
        nn.ReLU(inplace=True),
        nn.Linear(out_dim, out_dim),
        nn.BatchNorm1d(out_dim),
        nn.ReLU(inplace=True),
        nn.Linear(out_dim, out_dim),
        nn.BatchNorm1d(out_dim),
    )


def predictor(dim: int) -> nn.Sequential:
    """Official predictor: d → d/4 (BN, ReLU) → d."""
    if dim < 4:
        raise ValueError(f"the predictor's bottleneck is dim // 4; dim must be at least 4, got {dim}")
    return nn.Sequential(
        nn.Linear(dim, dim // 4), nn.BatchNorm1d(dim // 4), nn.ReLU(inplace=True), nn.Linear(dim // 4, dim)
    )


def teacher_momentum(step: int, total_steps: int, base: float) -> float:
    """Cosine schedule of the EMA momentum from ``base`` (step 0) to 1 (last step)."""
    if total_steps <= 1:
        return base
    return 1 - (1 - base) * (math.cos(math.pi * min(step, total_steps) / total_steps) + 1) / 2


class BECLR(nn.Module):
    """BECLR pre-training (or its no-memory baseline when ``dyce`` is None).

    Args:
        backbone: encoder f with ``out_dim``.
        out_dim: projection dimension d (official 512 for ResNet-18).
        augment: batched view maker for ``{"images": uint8}`` batches.
        lamb_neg, temperature: λ_neg = 0.1 and T = 2.0 of the loss.
        momentum: m_0 of the teacher (official 0.995), cosine-scheduled to 1 over ``total_steps``.
        dyce: memory configuration, or None for the baseline.
        enhance_from_step: first step whose batch is enhanced.
        channels_last: feed the encoders channels-last inputs.
        seed: k-means seed of the memories.

    ``forward(batch)`` returns ``{"loss", "loss_pos", "loss_neg", "enhanced"}``.
    """

    steps: torch.Tensor

    def __init__(
        self,
        backbone: nn.Module,
        out_dim: int = 512,
        augment: BatchedSimCLRAugment | None = None,
        lamb_neg: float = 0.1,
        temperature: float = 2.0,
        momentum: float = 0.995,
        total_steps: int = 1,
        dyce: DyCEConfig | None = None,
        enhance_from_step: int = 0,
        channels_last: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.projector = projector(backbone.out_dim, out_dim)
        self.predictor = predictor(out_dim)
        self.teacher_backbone = momentum_copy(backbone)
        self.teacher_projector = momentum_copy(self.projector)
        self.loss = BECLRLoss(lamb_neg, temperature)
        self.momentum, self.total_steps = check_momentum(momentum), max(1, int(total_steps))
        self.augment, self.channels_last = augment, channels_last
        self.enhance_from_step = int(enhance_from_step)
        self.memories = (
            None
            if dyce is None
            else nn.ModuleDict({name: DyCE(out_dim, dyce, seed) for name in ("teacher", "prediction", "student")})
        )
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def views(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        if "views" in batch:
            x1, x2 = batch["views"]
        elif self.augment is not None:
            with torch.autocast(batch["images"].device.type, enabled=False):
                x1, x2 = self.augment(batch["images"]), self.augment(batch["images"])
        else:
            raise ValueError("batch has no 'views' and the model has no augmentation for 'images'")
        return x1, x2

    def enhancing(self) -> bool:
        """True when this step's batch is enhanced by DyCE."""
        return (
            self.memories is not None
            and int(self.steps) >= self.enhance_from_step
            and all(m.ready for m in self.memories.values())
        )

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        x1, x2 = self.views(batch)
        x = torch.cat([x1, x2])
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        student_x = x
        if "masks" in batch:
            student_x = mask_patches(x, torch.cat(list(batch["masks"])))
        z = self.projector(self.backbone(student_x))
        p = self.predictor(z)
        with torch.no_grad():
            z_teacher = self.teacher_projector(self.teacher_backbone(x))
        enhanced = False
        if self.memories is not None:
            embeddings = {"teacher": z_teacher, "prediction": p, "student": z}
            for name, memory in self.memories.items():
                memory.update(embeddings[name].detach().float())
            if self.enhancing():
                z_teacher, p, z = (
                    self.memories[n].enhance(embeddings[n]) for n in ("teacher", "prediction", "student")
                )
                enhanced = True
        out = self.loss(z_teacher, p, z)
        out["enhanced"] = torch.tensor(float(enhanced))
        return out

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        """EMA update of the teacher with the scheduled momentum; count the step."""
        m = teacher_momentum(step, self.total_steps, self.momentum)
        ema_update(self.teacher_backbone, self.backbone, m)
        ema_update(self.teacher_projector, self.projector, m)
        self.steps += 1
