"""Multi-crop augmentation: a few large (global) crops and several small (local) ones.

Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster
Assignments" (SwAV), NeurIPS 2020, arXiv:2006.09882, §3.2: besides the usual two
full-resolution views, take V small crops of low resolution; they cover small parts of the
image, cost little compute, and add views to compare. SwAV's ImageNet setting is
2×224 px crops with scale (0.14, 1) and 6×96 px crops with scale (0.05, 0.14), every crop
with SimCLR's colour distortion, flip and blur.

Here a crop *group* is ``(count, size, scale)``; any number of groups, in order. Two forms:

* :class:`MultiCropAugment` — the whole uint8 batch at once with tensor ops (built on
  :class:`shared.augment.BatchedSimCLRAugment`): one call per group on the batch repeated
  ``count`` times, no per-image loop.
* :func:`multicrop_transform` / :class:`HubMultiCrop` — the per-image torchvision form for
  DataLoader workers (paper scale).

Backbones with BatchNorm see each resolution separately, as the official code does:
:func:`forward_by_resolution` runs the backbone once per run of equal-size crops and
concatenates the features.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from shared.augment import AugmentConfig, BatchedSimCLRAugment, simclr_transform


@dataclass(frozen=True)
class CropGroup:
    """``count`` crops of ``size`` px whose area is a ``scale`` fraction of the image."""

    count: int
    size: int
    scale: tuple[float, float]

    def __post_init__(self) -> None:
        if not isinstance(self.count, int) or self.count < 1:
            raise ValueError(f"a crop group needs count >= 1, got {self.count!r}")
        if not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"crop size must be a positive integer, got {self.size!r}")
        lo, hi = self.scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop scale must satisfy 0 < low <= high <= 1, got {self.scale}")


def crop_groups(spec: Sequence[CropGroup | Sequence]) -> tuple[CropGroup, ...]:
    """Normalise ``[(count, size, (lo, hi)), ...]`` (or CropGroups) to a tuple of CropGroups."""
    groups = tuple(g if isinstance(g, CropGroup) else CropGroup(int(g[0]), int(g[1]), tuple(g[2])) for g in spec)
    if not groups:
        raise ValueError("multi-crop needs at least one crop group")
    return groups


def group_configs(base: AugmentConfig, groups: Sequence[CropGroup]) -> list[AugmentConfig]:
    """The base augmentation with each group's output size and crop scale."""
    return [replace(base, image_size=g.size, crop_scale=tuple(g.scale)) for g in groups]


class MultiCropAugment(nn.Module):
    """All crops of every image of a uint8 (B, C, H, W) batch: a list of float tensors.

    The list has ``sum(count)`` entries in group order, entry ``v`` of shape
    (B, C, size_v, size_v), normalised by ``base.mean``/``base.std``. Crops are independent
    draws (each its own box, flip, jitter, blur). ``num_crops`` and ``sizes`` describe the list.

    Example:
        >>> aug = MultiCropAugment(AugmentConfig(mean=(0.5,), std=(0.5,)),
        ...                        [(2, 28, (0.14, 1.0)), (4, 14, (0.05, 0.14))])
        >>> crops = aug(torch.zeros(8, 1, 28, 28, dtype=torch.uint8))  # 6 tensors
    """

    def __init__(self, base: AugmentConfig, groups: Sequence[CropGroup | Sequence]) -> None:
        super().__init__()
        self.groups = crop_groups(groups)
        self.augments = nn.ModuleList(BatchedSimCLRAugment(c) for c in group_configs(base, self.groups))

    @property
    def num_crops(self) -> int:
        return sum(g.count for g in self.groups)

    @property
    def sizes(self) -> list[int]:
        return [g.size for g in self.groups for _ in range(g.count)]

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"expected a uint8 (B, C, H, W) batch, got {images.dtype} {tuple(images.shape)}")
        crops: list[torch.Tensor] = []
        for group, augment in zip(self.groups, self.augments, strict=True):
            repeated = images.repeat(group.count, 1, 1, 1) if group.count > 1 else images
            crops.extend(augment(repeated, generator).chunk(group.count))
        return crops


def multicrop_transform(base: AugmentConfig, groups: Sequence[CropGroup | Sequence]) -> Callable:
    """Per-image form: ``image -> [crop_0, ..., crop_{V-1}]`` with torchvision v2 transforms."""
    groups = crop_groups(groups)
    transforms = [simclr_transform(c) for c in group_configs(base, groups)]
    plan = [t for g, t in zip(groups, transforms, strict=True) for _ in range(g.count)]

    def apply(image) -> list[torch.Tensor]:
        return [t(image) for t in plan]

    return apply


class HubMultiCrop(torch.utils.data.Dataset):
    """``{"crops": [t_0(x), ..., t_{V-1}(x)], "labels": y}`` per item of a hub image data set.

    The default collate turns the list into a list of batched crops.
    """

    def __init__(self, hf_dataset, transform: Callable, image_key: str = "image", label_key: str = "label") -> None:
        self.ds, self.transform = hf_dataset, transform
        self.image_key, self.label_key = image_key, label_key

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict:
        item = self.ds[int(i)]
        return {"crops": self.transform(item[self.image_key].convert("RGB")), "labels": item[self.label_key]}


def resolution_runs(crops: Sequence[torch.Tensor]) -> list[tuple[int, int]]:
    """``[(start, end), ...]``: maximal runs of consecutive crops with the same spatial size."""
    if not crops:
        raise ValueError("no crops given")
    runs, start = [], 0
    for i in range(1, len(crops) + 1):
        if i == len(crops) or crops[i].shape[-2:] != crops[start].shape[-2:]:
            runs.append((start, i))
            start = i
    return runs


def forward_by_resolution(
    backbone: nn.Module, crops: Sequence[torch.Tensor], channels_last: bool = False
) -> torch.Tensor:
    """Backbone features of all crops, (V·B, D) in crop order, one pass per resolution run.

    Crops of one size go through the backbone together (BatchNorm sees their joint
    statistics), as in SwAV's official ``forward``.
    """
    feats = []
    for start, end in resolution_runs(crops):
        x = torch.cat(list(crops[start:end]))
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        feats.append(backbone(x))
    return torch.cat(feats)


__all__ = [
    "CropGroup",
    "HubMultiCrop",
    "MultiCropAugment",
    "crop_groups",
    "forward_by_resolution",
    "multicrop_transform",
    "resolution_runs",
]
