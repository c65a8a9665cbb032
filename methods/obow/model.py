"""The OBoW training step (official ``OBoW.forward`` in ``obow/builder_obow.py``).

    vocabularies V_l (snapshot, before this step's update)
    student:  s(x̃) = avgpool(f_S(x̃)) for every crop x̃ (one backbone pass per crop type)
              logits_l(x̃) = κ · s(x̃)ᵀ W_l,   W_l = generator_l(V_l) (generated once per step)
    teacher:  maps t_l = f_T(x)_l of the full image x at the BoW levels (no gradient)
              y_l = BoW(t_l; V_l), then V_l ← FIFO(V_l, one local feature per image)
    loss:     Σ_crop types mean_l KL(y_l ‖ softmax(logits_l))

The teacher f_T is an EMA of the student backbone only (parameters; the teacher keeps its own
BatchNorm statistics, computed in train mode), with a cosine schedule of the momentum over
all T iterations:

    α_t = 1 − (1 − α_0) · (1 + cos(π t / T)) / 2,     α_0 = 0.99 → α_T = 1.

The official code updates the teacher at the start of step t with the student of that step
(θ_t, after t optimiser steps) and α_t; here ``after_step(t − 1)`` does the same update right
after optimiser step t − 1, which is the same sequence of teachers (step 0's update is a no-op,
as teacher = student at initialisation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from methods.obow.augment import ImagePatches, teacher_view
from methods.obow.bow import BoWExtractor, perplexity
from methods.obow.loss import obow_loss
from methods.obow.predictor import BoWPredictor
from shared.momentum import check_momentum, ema_update, momentum_copy
from shared.multicrop import MultiCropAugment


def cosine_momentum(step: int, total_steps: int, base: float = 0.99) -> float:
    """α_t = 1 − (1 − α_0)(1 + cos(π t/T))/2: α_0 at t = 0, 1 at t ≥ T."""
    check_momentum(base)
    if total_steps < 1:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    t = min(max(step, 0), total_steps)
    return 1.0 - (1.0 - base) * (1.0 + math.cos(math.pi * t / total_steps)) / 2.0


def level_dims(backbone: nn.Module, levels: Sequence[int]) -> list[int]:
    """Channels of the backbone's stage maps at ``levels`` (SmallConvNet stages or ResNet layer1..4)."""
    if hasattr(backbone, "feature_maps"):
        dims = list(backbone.stage_dims)
    elif hasattr(backbone, "layer4"):
        dims = [_last_channels(getattr(backbone, f"layer{i}")) for i in range(1, 5)]
    else:
        raise TypeError(f"{type(backbone).__name__} exposes no feature maps (need feature_maps() or ResNet layers)")
    n = len(dims)
    if not levels or any(not -n <= lv < n for lv in levels):
        raise ValueError(f"levels must be stage indices in [-{n}, {n - 1}], got {tuple(levels)}")
    return [dims[lv] for lv in levels]


def level_maps(backbone: nn.Module, x: torch.Tensor, levels: Sequence[int]) -> list[torch.Tensor]:
    """The backbone's stage maps at ``levels`` (in the order given)."""
    if hasattr(backbone, "feature_maps"):
        n = len(backbone.stage_dims)
        wanted = sorted({lv % n for lv in levels})
        maps = dict(zip(wanted, backbone.feature_maps(x, tuple(wanted)), strict=True))
        return [maps[lv % n] for lv in levels]
    x = backbone.maxpool(backbone.relu(backbone.bn1(backbone.conv1(x))))
    out = []
    for i in range(1, 5):
        x = getattr(backbone, f"layer{i}")(x)
        out.append(x)
    return [out[lv] for lv in levels]


def _last_channels(layer: nn.Module) -> int:
    convs = [m for m in layer.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in layer.modules() if isinstance(m, nn.BatchNorm2d)]
    return bns[-1].num_features if bns else convs[-1].out_channels


class OBoW(nn.Module):
    """OBoW as an engine method: ``forward(batch) -> {"loss", "perp_b_l*", "perp_i_l*"}``, ``after_step``.

    ``batch`` is ``{"images": uint8 (B, C, H, W)}`` (views made here) or
    ``{"teacher": x, "crops": [x̃_1..], "patches": [p_1..]}`` (views made by DataLoader workers).

    Args:
        backbone: the student f_S (global-pooled ``forward`` of size ``out_dim``; stage maps
            through ``feature_maps`` or ResNet layers). The teacher is its momentum copy.
        levels: the stages whose maps make BoW targets (official: the last two, conv4 and conv5).
        num_words: K per level; a multiple of the global batch.
        inv_delta: δ⁻¹_base (None: hard assignment); kappa: κ.
        base_momentum, total_steps: α_0 and T of the teacher's cosine schedule.
        crops, patches: the batched student views (None: the batch brings them).
        mean, std: normalisation of the teacher's view.
        bow_pool, update_type: see :class:`methods.obow.bow.BoWExtractor`.
    """

    def __init__(
        self,
        backbone: nn.Module,
        levels: Sequence[int] = (-2, -1),
        num_words: int = 8192,
        inv_delta: float | None = 15.0,
        kappa: float = 8.0,
        base_momentum: float = 0.99,
        total_steps: int = 1,
        crops: MultiCropAugment | None = None,
        patches: ImagePatches | None = None,
        mean: Sequence[float] = (0.5,),
        std: Sequence[float] = (0.5,),
        channels_last: bool = False,
        bow_pool: str = "max",
        update_type: str = "local_average",
    ) -> None:
        super().__init__()
        dims = level_dims(backbone, levels)
        self.base_momentum = check_momentum(base_momentum)
        cosine_momentum(0, total_steps, base_momentum)  # validates total_steps
        self.levels, self.total_steps = tuple(levels), total_steps
        self.backbone = backbone
        self.teacher = momentum_copy(backbone)
        self.extractors = nn.ModuleList(
            BoWExtractor(num_words, d, inv_delta, bow_pool=bow_pool, update_type=update_type) for d in dims
        )
        self.predictor = BoWPredictor(dims, backbone.out_dim, kappa)
        self.crop_augment, self.patch_augment = crops, patches
        self.mean, self.std, self.channels_last = tuple(mean), tuple(std), channels_last

    def views(self, batch: dict) -> tuple[torch.Tensor, list[list[torch.Tensor]]]:
        """The teacher's view and the student's crop types (each a list of same-size crops)."""
        if "teacher" in batch:
            types = [list(batch[k]) for k in ("crops", "patches") if k in batch and len(batch[k])]
            return batch["teacher"], types
        if "images" not in batch or self.crop_augment is None:
            raise ValueError("batch has no 'teacher'/'crops' views and the model has no augmentation for 'images'")
        images = batch["images"]
        with torch.autocast(images.device.type, enabled=False):
            x = teacher_view(images, self.mean, self.std)
            types = [self.crop_augment(images)]
            if self.patch_augment is not None:
                types.append(self.patch_augment(images))
        return x, types

    def _cl(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        x, types = self.views(batch)
        if not types:
            raise ValueError("the student needs at least one crop type")
        vocabularies = [e.vocabulary() for e in self.extractors]  # before this step's update
        weights = self.predictor.weights(vocabularies)  # once per step, for every crop type (official)
        # rows crop-major: row v·B + b of a crop type is its crop v of image b (what bow_kl pairs with target b)
        logits = [self.predictor.logits(self.backbone(self._cl(torch.cat(crops))), weights) for crops in types]
        with torch.no_grad():
            maps = level_maps(self.teacher, self._cl(x), self.levels)
            targets = [e(m) for e, m in zip(self.extractors, maps, strict=True)]
        loss = torch.stack([obow_loss(lg, targets) for lg in logits]).sum()
        out = {"loss": loss}
        for i, y in enumerate(targets):
            out[f"perp_b_l{i}"], out[f"perp_i_l{i}"] = perplexity(y)
        return out

    def momentum(self, step: int) -> float:
        """α at training step ``step`` (0-based)."""
        return cosine_momentum(step, self.total_steps, self.base_momentum)

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        """After optimiser step ``step``: teacher ← α_{step+1} teacher + (1 − α_{step+1}) student."""
        ema_update(self.teacher, self.backbone, self.momentum(step + 1))
