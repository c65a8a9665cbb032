"""Background / target data sets of contrastive analysis: a salient digit blended over images.

The official CIFAR-10-MNIST set (``cifar_mnist/dataset.py``): of 50k CIFAR-10 training images the
first 25k are the **background** (0.5·CIFAR) and the last 25k the **target** (0.5·CIFAR + 0.5·MNIST
digit padded to 32×32); the test set has 500 + 500. Common factor: the CIFAR class; salient factor:
the digit, present in target images only.

Our CPU proxy, **Fashion-MNIST-digits**, follows the same recipe at 28×28 grey: background =
0.5·Fashion-MNIST, target = 0.5·Fashion-MNIST + 0.5·digit, the digits being scikit-learn's 1797
hand-written 8×8 digits (bundled, offline) upsampled to 20×20 and centred on 28×28 like MNIST.
Training targets draw their digits from the first 1300 digit images, test targets from the other
497, so the salient probe is tested on unseen hand-writing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from shared.data.arrays import ImageArrays, subset_per_class
from shared.data.fashion_mnist import load_fashion_mnist

GROUPS = ("background", "target")
DIGIT_TRAIN_POOL = 1300  # sklearn digits [0, 1300) for training targets, [1300, 1797) for test targets


@dataclass
class ContrastiveSet:
    """Images with a group flag (0 background / 1 target), a common label, a salient label (−1 on background)."""

    images: torch.Tensor
    group: torch.Tensor
    common: torch.Tensor
    salient: torch.Tensor

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        for name in ("group", "common", "salient"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must have shape ({n},), got {tuple(getattr(self, name).shape)}")
        if bool(((self.group == 0) & (self.salient != -1)).any()):
            raise ValueError("background images carry no salient label (use -1)")

    def __len__(self) -> int:
        return self.images.shape[0]

    def training_arrays(self) -> ImageArrays:
        """The SSL training set: images labelled by group only (what SepCLR sees)."""
        return ImageArrays(self.images, self.group.long(), GROUPS, "contrastive-analysis")

    def targets(self) -> ContrastiveSet:
        keep = self.group == 1
        return ContrastiveSet(self.images[keep], self.group[keep], self.common[keep], self.salient[keep])

    def backgrounds(self) -> ContrastiveSet:
        keep = self.group == 0
        return ContrastiveSet(self.images[keep], self.group[keep], self.common[keep], self.salient[keep])

    def head(self, n: int) -> ContrastiveSet:
        return ContrastiveSet(self.images[:n], self.group[:n], self.common[:n], self.salient[:n])


class GroupBatches:
    """Batches of half background, half target images (the two-SimCLR baseline's data source).

    A step of global batch B holds B/2 background images, then B/2 target images, each group shuffled
    per epoch by its own (seed, epoch) permutation; an epoch has min(|bg|, |tgt|) // (B/2) steps (at the
    presets' equal group sizes: as many as SepCLR's B-image steps over both groups), every image at most
    once. With W processes each rank takes 1/W of each half, so the union over ranks is the step.
    """

    def __init__(self, data: ContrastiveSet, batch_size: int) -> None:
        if batch_size % 2:
            raise ValueError(f"batch_size must be even (half background, half target), got {batch_size}")
        self.half = batch_size // 2
        self.groups = (data.backgrounds().images, data.targets().images)
        smallest = min(len(g) for g in self.groups)
        if self.half > smallest:
            raise ValueError(f"half the batch ({self.half}) exceeds the smaller group ({smallest} images)")

    def steps_per_epoch(self, world_size: int) -> int:
        return min(len(g) for g in self.groups) // self.half

    def epoch(self, epoch: int, seed: int, rank: int, world_size: int, skip: int = 0) -> Iterator[dict]:
        if self.half % world_size:
            raise ValueError(f"half the batch ({self.half}) is not divisible by {world_size} processes")
        local = self.half // world_size
        perms = [
            torch.randperm(len(g), generator=torch.Generator().manual_seed(seed * 100_003 + epoch * 2 + flag))
            for flag, g in enumerate(self.groups)
        ]
        for step in range(skip, self.steps_per_epoch(world_size)):
            lo = step * self.half + rank * local
            parts = [g[p[lo : lo + local]] for g, p in zip(self.groups, perms, strict=True)]
            labels = torch.cat([torch.zeros(local, dtype=torch.long), torch.ones(local, dtype=torch.long)])
            yield {"images": torch.cat(parts), "labels": labels}


def blend(background: torch.Tensor, digits: torch.Tensor | None) -> torch.Tensor:
    """0.5·background (+ 0.5·digit), uint8 → uint8, as the official set does in [0, 1]."""
    x = 0.5 * background.float()
    if digits is not None:
        if digits.shape[-2:] != background.shape[-2:]:
            raise ValueError(f"digit size {tuple(digits.shape[-2:])} != image size {tuple(background.shape[-2:])}")
        x = x + 0.5 * digits.float().expand_as(background)
    return x.round().clamp(0, 255).to(torch.uint8)


def sklearn_digits(size: int = 28, inner: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1797 digits as uint8 (N, 1, size, size): 8×8 → ``inner``² (bilinear), centred."""
    from sklearn.datasets import load_digits

    if not 8 <= inner <= size:
        raise ValueError(f"need 8 <= inner <= size, got inner={inner}, size={size}")
    d = load_digits()
    x = torch.from_numpy(d.images).float().div(16).unsqueeze(1)  # values 0..16
    x = F.interpolate(x, size=(inner, inner), mode="bilinear", align_corners=False).clamp(0, 1)
    pad = (size - inner) // 2
    x = F.pad(x, (pad, size - inner - pad, pad, size - inner - pad))
    return (x * 255).round().to(torch.uint8), torch.from_numpy(d.target).long()


def make_contrastive_set(
    base: ImageArrays, digits: torch.Tensor, digit_labels: torch.Tensor, target_fraction: float, seed: int
) -> ContrastiveSet:
    """The first (1 − f)·N images of ``base`` become background, the rest targets with a random digit each."""
    if not 0 < target_fraction < 1:
        raise ValueError(f"target_fraction must be in (0, 1), got {target_fraction}")
    n = len(base)
    n_bg = round(n * (1 - target_fraction))
    g = torch.Generator().manual_seed(seed)
    pick = torch.randint(len(digits), (n - n_bg,), generator=g)
    images = torch.cat([blend(base.images[:n_bg], None), blend(base.images[n_bg:], digits[pick])])
    group = torch.cat([torch.zeros(n_bg, dtype=torch.long), torch.ones(n - n_bg, dtype=torch.long)])
    salient = torch.cat([torch.full((n_bg,), -1, dtype=torch.long), digit_labels[pick]])
    return ContrastiveSet(images, group, base.labels.clone(), salient)


def _shuffled(data: ImageArrays, seed: int) -> ImageArrays:
    return data.take(torch.randperm(len(data), generator=torch.Generator().manual_seed(seed)))


def fashion_digits(
    train_per_class: int, test_size: int, data_dir: str | None = None, target_fraction: float = 0.5
) -> tuple[ContrastiveSet, ContrastiveSet]:
    """(train, test) Fashion-MNIST-digits sets; common = clothing class, salient = digit."""
    if test_size < 2:
        raise ValueError(f"test_size must be at least 2, got {test_size}")
    digits, digit_labels = sklearn_digits(28)
    train_base = _shuffled(subset_per_class(load_fashion_mnist("train", data_dir), train_per_class), 0)
    test_base = _shuffled(load_fashion_mnist("test", data_dir), 1).take(torch.arange(test_size))
    pool = DIGIT_TRAIN_POOL
    train = make_contrastive_set(train_base, digits[:pool], digit_labels[:pool], target_fraction, seed=2)
    test = make_contrastive_set(test_base, digits[pool:], digit_labels[pool:], target_fraction, seed=3)
    return train, test


# --- paper scale: CIFAR-10 + MNIST from the hub -------------------------------------------------

CIFAR10_HUB, MNIST_HUB = "uoft-cs/cifar10", "ylecun/mnist"
HUB_HINT = "no offline copy of CIFAR-10 / MNIST ships with the project; the paper preset needs the hub"


def _hub_arrays(name: str, split: str, image_key: str, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    import numpy as np

    from shared.data.hub import load_hub_split

    ds = load_hub_split(name, split, HUB_HINT)
    mode = "RGB" if channels == 3 else "L"
    x = np.stack([np.asarray(im.convert(mode), dtype=np.uint8) for im in ds[image_key]])
    x = torch.from_numpy(x)
    x = x.permute(0, 3, 1, 2) if channels == 3 else x.unsqueeze(1)
    return x.contiguous(), torch.as_tensor(ds["label"], dtype=torch.long)


def cifar_mnist_from_arrays(
    cifar: torch.Tensor, cifar_labels: torch.Tensor, mnist: torch.Tensor, mnist_labels: torch.Tensor
) -> ContrastiveSet:
    """The official construction: first half background 0.5·CIFAR, second half 0.5·CIFAR + 0.5·MNIST[i].

    MNIST digits (28×28) are zero-padded by 2 to 32×32 and paired with the CIFAR image of the same index.
    """
    n = min(len(cifar), len(mnist))
    half = n // 2
    digits = F.pad(mnist[:n], (2, 2, 2, 2))
    images = torch.cat([blend(cifar[:half], None), blend(cifar[half:n], digits[half:n])])
    group = torch.cat([torch.zeros(half, dtype=torch.long), torch.ones(n - half, dtype=torch.long)])
    salient = torch.cat([torch.full((half,), -1, dtype=torch.long), mnist_labels[half:n]])
    return ContrastiveSet(images, group, cifar_labels[:n].clone(), salient)


def cifar_mnist() -> tuple[ContrastiveSet, ContrastiveSet]:
    """CIFAR-10-MNIST as the official code builds it: 50k train (25k + 25k), 1000 test (500 + 500)."""
    cx, cy = _hub_arrays(CIFAR10_HUB, "train", "img", 3)
    mx, my = _hub_arrays(MNIST_HUB, "train", "image", 1)
    tcx, tcy = _hub_arrays(CIFAR10_HUB, "test", "img", 3)
    tmx, tmy = _hub_arrays(MNIST_HUB, "test", "image", 1)
    train = cifar_mnist_from_arrays(cx[:50000], cy[:50000], mx[:50000], my[:50000])
    test = cifar_mnist_from_arrays(tcx[:1000], tcy[:1000], tmx[:1000], tmy[:1000])
    return train, test
