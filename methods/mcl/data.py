"""A feature-suppression data set: Fashion-MNIST garments tinted with one of K colours.

Two features of different ease, independent by construction:

* **colour** (easy): each image is tinted with a colour drawn uniformly from a K-colour palette,
  independently of its class — ``rgb = grey · palette[k]``. The views' augmentation keeps it
  (:class:`ColourPreservingAugment`: crop, flip, brightness and contrast; no hue, saturation or
  greyscale), so colour is shared by the two views and alone separates most negatives;
* **class** (harder): the Fashion-MNIST garment class (10 classes), the feature that SimCLR on
  this data learns less well while colour does the contrastive work (feature suppression).

The colour of image i of a split is a seeded function of (split, i), so the probe-training
bank (a subset of the training split) shows each image in the colour it was trained with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from shared.augment import BatchedSimCLRAugment, _grey
from shared.data.arrays import ImageArrays
from shared.data.fashion_mnist import load_fashion_mnist

PALETTE = {
    "red": (1.0, 0.15, 0.15),
    "green": (0.15, 1.0, 0.15),
    "blue": (0.25, 0.35, 1.0),
    "yellow": (1.0, 1.0, 0.15),
    "magenta": (1.0, 0.15, 1.0),
    "cyan": (0.15, 1.0, 1.0),
    "orange": (1.0, 0.55, 0.1),
    "white": (1.0, 1.0, 1.0),
}


@dataclass
class TwoFeatureSet:
    """Tinted images with both labels: ``data.labels`` is the class, ``colour`` the colour id."""

    data: ImageArrays
    colour: torch.Tensor
    colours: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.colour.shape != (len(self.data),):
            raise ValueError(f"colour must have shape ({len(self.data)},), got {tuple(self.colour.shape)}")

    def __len__(self) -> int:
        return len(self.data)

    def labels(self, feature: str) -> tuple[torch.Tensor, int]:
        """(labels, number of values) of ``feature``: ``"class"`` or ``"colour"``."""
        if feature == "class":
            return self.data.labels, self.data.num_classes
        if feature == "colour":
            return self.colour, len(self.colours)
        raise ValueError(f"unknown feature {feature!r}; choose 'class' or 'colour'")

    def take(self, index: torch.Tensor) -> TwoFeatureSet:
        return TwoFeatureSet(self.data.take(index), self.colour[index], self.colours)


def tint(grey: ImageArrays, colour: torch.Tensor, num_colours: int) -> TwoFeatureSet:
    """Tint every grey image with its colour: uint8 (N, 3, H, W) ``round(grey · palette[colour])``."""
    if grey.channels != 1:
        raise ValueError(f"tint expects grey (1-channel) images, got {grey.channels} channels")
    if not 2 <= num_colours <= len(PALETTE):
        raise ValueError(f"num_colours must be in [2, {len(PALETTE)}], got {num_colours}")
    if colour.shape != (len(grey),) or int(colour.min()) < 0 or int(colour.max()) >= num_colours:
        raise ValueError(f"colour must be ({len(grey)},) ids in [0, {num_colours})")
    names = tuple(PALETTE)[:num_colours]
    rgb = torch.tensor([PALETTE[n] for n in names])[colour]  # (N, 3)
    images = (grey.images.float() * rgb[:, :, None, None]).round().clamp(0, 255).to(torch.uint8)
    return TwoFeatureSet(ImageArrays(images, grey.labels, grey.classes, f"{grey.name}+colour"), colour.long(), names)


def random_colours(n: int, num_colours: int, seed: int) -> torch.Tensor:
    return torch.randint(num_colours, (n,), generator=torch.Generator().manual_seed(seed))


def coloured_fashion_mnist(
    cfg: Mapping[str, Any], data_dir: str | None = None
) -> tuple[TwoFeatureSet, TwoFeatureSet, TwoFeatureSet]:
    """(train, probe bank, test) of tinted Fashion-MNIST from an arm's config.

    ``train_per_class`` / ``bank_per_class`` / ``test_per_class`` (optional) take class-balanced
    subsets; ``num_colours`` K (default 8). Colours: seed 1 for the training split, 2 for test.
    ``tinted=False`` gives the grey reference: the same images in grey (3 equal channels), the
    colour labels kept (a probe then finds no colour: chance).
    """
    k = cfg.get("num_colours", 8)
    full = load_fashion_mnist("train", data_dir)
    test = load_fashion_mnist("test", data_dir)
    full_colour, test_colour = random_colours(len(full), k, seed=1), random_colours(len(test), k, seed=2)

    def tinted(data: ImageArrays, colour: torch.Tensor, per_class: int | None) -> TwoFeatureSet:
        index = _subset_index(data, per_class, 0)  # tint only the images kept
        out = tint(data.take(index), colour[index], k)
        if not cfg.get("tinted", True):  # the grey reference: same images and labels, no colour in the pixels
            out.data.images = data.images[index].expand(-1, 3, -1, -1).contiguous()
        return out

    train = tinted(full, full_colour, cfg.get("train_per_class"))
    bank = tinted(full, full_colour, cfg.get("bank_per_class"))
    return train, bank, tinted(test, test_colour, cfg.get("test_per_class"))


def _subset_index(data: ImageArrays, per_class: int | None, seed: int) -> torch.Tensor:
    """The indices ``shared.data.arrays.subset_per_class`` picks (all indices when ``per_class`` is falsy)."""
    if not per_class:
        return torch.arange(len(data))
    g = torch.Generator().manual_seed(seed)
    picks = []
    for c in range(data.num_classes):
        idx = (data.labels == c).nonzero().squeeze(1)
        if len(idx) < per_class:
            raise ValueError(f"class {c} has {len(idx)} images, fewer than per_class={per_class}")
        picks.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
    return torch.cat(picks).sort().values


class ColourPreservingAugment(BatchedSimCLRAugment):
    """SimCLR views that keep the tint: crop + flip, then brightness and contrast only.

    Brightness scales all channels by one factor and contrast blends each pixel with the image's
    mean grey level, so the hue of the garment survives; no saturation, hue or greyscale ops.
    """

    def color_jitter(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        cfg, n, dev = self.cfg, x.shape[0], x.device
        b, c, _, _ = cfg.jitter
        apply = (self._rand(n, dev, generator) < cfg.jitter_p).view(n, 1, 1, 1)

        def factor(strength: float) -> torch.Tensor:
            return (1 + strength * (2 * self._rand(n, dev, generator) - 1)).view(n, 1, 1, 1)

        y = (x * factor(b)).clamp(0, 1)
        mean = _grey(y).mean(dim=(1, 2, 3), keepdim=True)
        y = ((y - mean) * factor(c) + mean).clamp(0, 1)
        return torch.where(apply, y, x)

    def grayscale(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return x
