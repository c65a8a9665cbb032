"""Image data sets from the Hugging Face hub, for the paper-scale presets (online road).

The hub is the online road only: on a machine without network (or with
``HF_DATASETS_OFFLINE=1``) loading fails, and the error names the offline alternative.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from shared.data.arrays import ImageArrays
from shared.data.errors import DataUnavailableError
from shared.data.sources import note_source

IMAGENET = "ILSVRC/imagenet-1k"
IMAGENET_OFFLINE = "no offline copy of ImageNet ships with the project; the paper preset needs the hub"
# the data half of an ImageNet paper preset's arm config (see ``shared.data.splits.FASHION_MNIST_28``)
IMAGENET_224 = dict(
    data="imagenet-1k", image_size=224, channels=3, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
)


def load_hub_split(name: str, split: str, offline_hint: str):
    """``datasets.load_dataset(name, split=split)`` with a clear error when it fails."""
    try:
        from datasets import load_dataset

        ds = load_dataset(name, split=split)
        note_source(f"{name}/{split}", f"hub:{name}")
        return ds
    except Exception as exc:
        raise DataUnavailableError(
            f"{name} ({split}) is not available.\n"
            f"  online road: loading it from the Hugging Face hub failed: {type(exc).__name__}: {exc}\n"
            f"  offline road: {offline_hint}"
        ) from exc


@dataclass(frozen=True)
class HubDataset:
    """A labelled image data set on the hub, as a paper preset trains and tests on it.

    ``short_name`` names the in-memory copies (``"cifar10-train"``); ``image_key`` and ``label_key``
    are the columns of the hub's rows; ``offline_hint`` is what the error says when the hub fails.
    """

    name: str
    short_name: str
    num_classes: int
    offline_hint: str
    train_split: str = "train"
    test_split: str = "test"
    image_key: str = "image"
    label_key: str = "label"

    @property
    def keys(self) -> dict[str, str]:
        """``image_key`` and ``label_key`` as keyword arguments of :class:`HubViews` / :class:`HubImages`."""
        return {"image_key": self.image_key, "label_key": self.label_key}

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(str(i) for i in range(self.num_classes))

    def load(self, split: str) -> Any:
        """One split through :func:`load_hub_split` (a clear error naming both roads when it fails)."""
        return load_hub_split(self.name, split, self.offline_hint)

    def arrays(self, split: str) -> ImageArrays:
        """One split held in memory as uint8 (N, C, H, W) images (small images only: CIFAR, not ImageNet)."""
        ds = self.load(split)
        images = np.stack([np.asarray(im) for im in ds[self.image_key]])
        tensor = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        return ImageArrays(tensor, torch.as_tensor(ds[self.label_key]), self.classes, f"{self.short_name}-{split}")


IMAGENET_1K = HubDataset(IMAGENET, "imagenet-1k", 1000, IMAGENET_OFFLINE, test_split="validation")
CIFAR10 = HubDataset(
    "uoft-cs/cifar10",
    "cifar10",
    10,
    "no offline copy of CIFAR-10 ships with the project; the paper preset needs the hub",
    image_key="img",
)
CIFAR100 = HubDataset(
    "uoft-cs/cifar100",
    "cifar100",
    100,
    "no offline copy of CIFAR-100 ships with the project; the paper preset needs the hub",
    image_key="img",
    label_key="fine_label",
)


class HubViews(torch.utils.data.Dataset):
    """``{"views": (t(x), t'(x)), "labels": y}`` per item of a hub image data set."""

    def __init__(self, hf_dataset, transform: Callable, image_key: str = "image", label_key: str = "label") -> None:
        self.ds, self.transform = hf_dataset, transform
        self.image_key, self.label_key = image_key, label_key

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict:
        item = self.ds[int(i)]
        image = item[self.image_key].convert("RGB")
        return {"views": (self.transform(image), self.transform(image)), "labels": item[self.label_key]}


class HubImages(torch.utils.data.Dataset):
    """``(transform(x), y)`` per item, for feature extraction at paper scale."""

    def __init__(self, hf_dataset, transform: Callable, image_key: str = "image", label_key: str = "label") -> None:
        self.ds, self.transform = hf_dataset, transform
        self.image_key, self.label_key = image_key, label_key

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        item = self.ds[int(i)]
        return self.transform(item[self.image_key].convert("RGB")), item[self.label_key]
