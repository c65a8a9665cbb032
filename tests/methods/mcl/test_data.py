"""The feature-suppression data set: tint, independence of the two labels, colour-preserving views."""

import pytest
import torch

from methods.mcl import ColourPreservingAugment, coloured_fashion_mnist, tint
from methods.mcl.data import PALETTE
from shared.augment import AugmentConfig
from shared.data.arrays import ImageArrays


def grey(n=16):
    images = torch.full((n, 1, 8, 8), 200, dtype=torch.uint8)
    return ImageArrays(images, torch.arange(n) % 4, ("a", "b", "c", "d"))


def test_tint_multiplies_the_grey_level_by_the_palette_colour():
    colour = torch.arange(16) % 8
    out = tint(grey(), colour, 8)
    assert out.data.images.shape == (16, 3, 8, 8) and out.data.images.dtype == torch.uint8
    for i in range(16):
        rgb = torch.tensor(PALETTE[out.colours[colour[i]]])
        assert torch.equal(out.data.images[i, :, 0, 0], (200 * rgb).round().to(torch.uint8))
    assert torch.equal(out.labels("colour")[0], colour) and out.labels("class")[1] == 4


def test_splits_are_balanced_and_colour_is_independent_of_class():
    train, bank, test = coloured_fashion_mnist({"train_per_class": 200, "bank_per_class": 50, "test_per_class": 20})
    assert len(train) == 2000 and len(bank) == 500 and len(test) == 200
    # colour counts are near-uniform within every class (independent draws)
    counts = torch.zeros(10, 8)
    counts.index_put_((train.data.labels, train.colour), torch.ones(len(train)), accumulate=True)
    assert counts.min() > 5 and counts.sum(1).eq(200).all()
    # the bank shows its images in their training colours (it is a subset of the training split)
    pairs = {(img.sum().item(), c.item()) for img, c in zip(train.data.images, train.colour, strict=True)}
    assert all((img.sum().item(), c.item()) in pairs for img, c in zip(bank.data.images, bank.colour, strict=True))


def test_grey_reference_has_the_same_images_without_colour():
    cfg = {"train_per_class": 20, "bank_per_class": 10, "test_per_class": 10}
    tinted = coloured_fashion_mnist(cfg)
    grey_sets = coloured_fashion_mnist({**cfg, "tinted": False})
    for a, b in zip(tinted, grey_sets, strict=True):
        assert torch.equal(a.data.labels, b.data.labels) and torch.equal(a.colour, b.colour)
        assert b.data.images.shape == a.data.images.shape
        assert torch.equal(b.data.images[:, 0], b.data.images[:, 1]) and torch.equal(
            b.data.images[:, 1], b.data.images[:, 2]
        )
        assert (b.data.images >= a.data.images).all()  # the tint only scales the grey level down


def test_views_keep_the_colour():
    colour = torch.arange(8)
    data = tint(ImageArrays(torch.full((8, 1, 16, 16), 180, dtype=torch.uint8), colour, tuple("abcdefgh")), colour, 8)
    aug = ColourPreservingAugment(
        AugmentConfig(16, (0.3, 1.0), jitter_p=1.0, grayscale_p=1.0, mean=(0,) * 3, std=(1,) * 3)
    )
    palette = torch.nn.functional.normalize(torch.tensor(list(PALETTE.values())), dim=1)
    for seed in range(5):
        v = aug(data.data.images, torch.Generator().manual_seed(seed))
        mean_rgb = torch.nn.functional.normalize(v.mean(dim=(2, 3)), dim=1)
        assert torch.equal((mean_rgb @ palette.T).argmax(1), colour)


def test_errors():
    with pytest.raises(ValueError, match="grey"):
        tint(ImageArrays(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(2), ("a",)), torch.zeros(2), 8)
    with pytest.raises(ValueError, match="num_colours"):
        tint(grey(2), torch.zeros(2, dtype=torch.long), 9)
    with pytest.raises(ValueError, match="ids in"):
        tint(grey(2), torch.tensor([0, 8]), 8)
    with pytest.raises(ValueError, match="unknown feature"):
        tint(grey(2), torch.zeros(2, dtype=torch.long), 2).labels("shape")
