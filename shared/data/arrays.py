"""In-memory image sets: uint8 images plus integer labels, sliced into batches by the engine.

Small data sets (Fashion-MNIST, procedural shapes) live in memory as one uint8 tensor;
augmentation then runs batched on the whole mini-batch (``shared.augment``), which is
several times faster on a CPU than per-image transforms in DataLoader workers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ImageArrays:
    """``images``: uint8 (N, C, H, W); ``labels``: int64 (N,); ``classes``: label names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    name: str = "images"

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels must have shape ({self.images.shape[0]},), got {tuple(self.labels.shape)}")
        self.labels = self.labels.long()

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> int:
        return self.images.shape[-1]

    def take(self, index: torch.Tensor) -> ImageArrays:
        return ImageArrays(self.images[index], self.labels[index], self.classes, self.name)


def subset_per_class(data: ImageArrays, per_class: int, seed: int = 0) -> ImageArrays:
    """A class-balanced subset with ``per_class`` images of each class (deterministic)."""
    g = torch.Generator().manual_seed(seed)
    picks = []
    for c in range(data.num_classes):
        idx = (data.labels == c).nonzero().squeeze(1)
        if len(idx) < per_class:
            raise ValueError(f"class {c} has {len(idx)} images, fewer than per_class={per_class}")
        picks.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
    index = torch.cat(picks).sort().values
    return data.take(index)


def long_tailed_counts(num_classes: int, max_per_class: int, imbalance_ratio: float) -> list[int]:
    """Exponential profile of Cao et al. (2019, LDAM), as CIFAR-10-LT: ``n_c = n_max · ρ^(c / (C−1))``.

    ``imbalance_ratio`` ρ = n_min / n_max in (0, 1]; class 0 is the head, class C−1 the tail.
    """
    if not 0 < imbalance_ratio <= 1:
        raise ValueError(f"imbalance_ratio must be in (0, 1], got {imbalance_ratio}")
    if num_classes < 2 or max_per_class < 1:
        raise ValueError(f"need num_classes >= 2 and max_per_class >= 1, got {num_classes}, {max_per_class}")
    return [max(1, int(max_per_class * imbalance_ratio ** (c / (num_classes - 1)))) for c in range(num_classes)]


def long_tailed_subset(data: ImageArrays, max_per_class: int, imbalance_ratio: float, seed: int = 0) -> ImageArrays:
    """A long-tailed subset: class c keeps ``long_tailed_counts(...)[c]`` images (deterministic)."""
    counts = long_tailed_counts(data.num_classes, max_per_class, imbalance_ratio)
    g = torch.Generator().manual_seed(seed)
    picks = []
    for c, n in enumerate(counts):
        idx = (data.labels == c).nonzero().squeeze(1)
        if len(idx) < n:
            raise ValueError(f"class {c} has {len(idx)} images, fewer than the {n} the profile asks for")
        picks.append(idx[torch.randperm(len(idx), generator=g)[:n]])
    return data.take(torch.cat(picks).sort().values)
