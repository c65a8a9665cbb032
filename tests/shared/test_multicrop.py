"""Multi-crop augmentation: crop counts, sizes and order, independence, BN per resolution, errors."""

import pytest
import torch
from PIL import Image

from shared.augment import AugmentConfig
from shared.multicrop import (
    CropGroup,
    HubMultiCrop,
    MultiCropAugment,
    forward_by_resolution,
    multicrop_transform,
    resolution_runs,
)

BASE = AugmentConfig(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), blur_p=0.5)
GROUPS = [(2, 24, (0.14, 1.0)), (3, 12, (0.05, 0.14))]


def images(n=5, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)


def test_counts_sizes_and_order():
    aug = MultiCropAugment(BASE, GROUPS)
    crops = aug(images())
    assert aug.num_crops == 5 and aug.sizes == [24, 24, 12, 12, 12]
    assert [tuple(c.shape) for c in crops] == [(5, 3, 24, 24)] * 2 + [(5, 3, 12, 12)] * 3
    assert all(c.dtype == torch.float32 and torch.isfinite(c).all() for c in crops)
    # normalised with mean/std 0.5: values in [-1, 1]
    assert all(c.min() >= -1 - 1e-5 and c.max() <= 1 + 1e-5 for c in crops)


def test_any_number_of_groups():
    aug = MultiCropAugment(BASE, [CropGroup(1, 20, (0.5, 1.0)), (2, 16, (0.2, 0.5)), (1, 8, (0.05, 0.2))])
    assert [c.shape[-1] for c in aug(images(3))] == [20, 16, 16, 8]


def test_crops_are_independent_draws_and_seeded():
    aug = MultiCropAugment(BASE, GROUPS)
    x = images()
    crops = aug(x, torch.Generator().manual_seed(1))
    assert not torch.allclose(crops[0], crops[1])
    assert not torch.allclose(crops[2], crops[3])
    again = aug(x, torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(crops, again, strict=True))


def test_full_scale_crop_of_a_constant_image_is_constant():
    base = AugmentConfig(mean=(0.0,), std=(1.0,), jitter_p=0.0, flip_p=0.0)
    x = torch.full((2, 1, 16, 16), 128, dtype=torch.uint8)
    for c in MultiCropAugment(base, [(2, 16, (1.0, 1.0)), (2, 8, (0.1, 0.2))])(x):
        assert torch.allclose(c, torch.full_like(c, 128 / 255), atol=1e-5)


def test_bad_groups_and_inputs():
    with pytest.raises(ValueError, match="count"):
        CropGroup(0, 8, (0.1, 1.0))
    with pytest.raises(ValueError, match="size"):
        CropGroup(1, 0, (0.1, 1.0))
    with pytest.raises(ValueError, match="scale"):
        CropGroup(1, 8, (0.5, 0.2))
    with pytest.raises(ValueError, match="at least one"):
        MultiCropAugment(BASE, [])
    with pytest.raises(ValueError, match="uint8"):
        MultiCropAugment(BASE, GROUPS)(torch.rand(2, 3, 8, 8))


def test_resolution_runs():
    crops = [torch.zeros(2, 1, s, s) for s in (8, 8, 4, 4, 4, 8)]
    assert resolution_runs(crops) == [(0, 2), (2, 5), (5, 6)]
    with pytest.raises(ValueError, match="no crops"):
        resolution_runs([])


def test_forward_by_resolution_runs_batchnorm_per_resolution():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    )
    crops = [torch.randn(3, 1, 10, 10), torch.randn(3, 1, 10, 10), torch.randn(3, 1, 6, 6) + 5]
    out = forward_by_resolution(net, crops)
    assert out.shape == (9, 4)
    expected = torch.cat([net(torch.cat(crops[:2])), net(crops[2])])
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.allclose(forward_by_resolution(net, crops, channels_last=True), expected, atol=1e-5)


def test_per_image_transform_and_hub_dataset():
    transform = multicrop_transform(BASE, GROUPS)
    image = Image.fromarray(images(1, 40)[0].permute(1, 2, 0).numpy())
    crops = transform(image)
    assert [tuple(c.shape) for c in crops] == [(3, 24, 24)] * 2 + [(3, 12, 12)] * 3

    class Fake:
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return {"image": image, "label": i}

    ds = HubMultiCrop(Fake(), transform)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert len(batch["crops"]) == 5 and batch["crops"][0].shape == (2, 3, 24, 24)
    assert batch["labels"].tolist() == [0, 1]
