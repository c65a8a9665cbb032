"""The paper preset's data: the Ravi–Larochelle class split, filtered by class, and the official views."""

import random

import pytest
import torch
from datasets import ClassLabel, Dataset, Features, Value
from PIL import Image

from methods.beclr.augment import MaskedHubViews, block_mask, mask_patches, view_transform
from methods.beclr.experiments import PAPER_ARM, paper_data, paper_views
from methods.beclr.mini_imagenet import SPLIT_SIZES, mini_imagenet_classes, select_classes
from methods.beclr.model import BECLR
from shared.backbones import SmallConvNet
from shared.data.errors import DataUnavailableError

SPLIT = mini_imagenet_classes()
ALL = [w for name in ("train", "val", "test") for w in SPLIT[name]]


def fake_hub(names: list[str], per_class: dict[str, int]) -> Dataset:
    """A hub-like split: a ClassLabel named by WordNet id, ``per_class[w]`` rows of class ``w`` (no images)."""
    labels = [names.index(w) for w, n in per_class.items() for _ in range(n)]
    features = Features({"label": ClassLabel(names=names), "row": Value("int64")})
    return Dataset.from_dict({"label": labels, "row": list(range(len(labels)))}, features=features)


def class_names(ds) -> set[str]:
    names = ds.features["label"].names
    return {names[y] for y in ds["label"]}


def test_split_lists_are_64_16_20_disjoint_wordnet_ids():
    assert {k: len(v) for k, v in SPLIT.items()} == SPLIT_SIZES == {"train": 64, "val": 16, "test": 20}
    assert len(set(ALL)) == 100  # disjoint
    assert all(w.startswith("n") and len(w) == 9 and w[1:].isdigit() for w in ALL)
    # two classes of each split, as published (Ravi & Larochelle 2017)
    assert {"n01532829", "n13133613"} <= set(SPLIT["train"])
    assert {"n01855672", "n09256479"} <= set(SPLIT["val"])
    assert {"n01930112", "n07613480"} <= set(SPLIT["test"])


def test_paper_preset_novel_classes_never_appear_in_pre_training():
    """A hub copy split by images (every class in every split, as timm/mini-imagenet) is re-split by class."""
    names = random.Random(0).sample(ALL, 100)  # the hub's own label order
    loaded = []

    def load(name, split):
        loaded.append((name, split))
        return fake_hub(names, {w: 3 if split == "train" else 1 for w in names})

    pretrain, novel = paper_data(PAPER_ARM, load)
    assert loaded == [(PAPER_ARM["data"], s) for s in PAPER_ARM["hub_splits"]]
    assert class_names(pretrain) == set(SPLIT["train"]) and class_names(novel) == set(SPLIT["test"])
    assert not class_names(pretrain) & class_names(novel)
    assert not class_names(pretrain) & set(SPLIT["val"])
    assert len(pretrain) == 64 * 4 and len(novel) == 20 * 4  # every image of those classes, from both splits


def test_missing_classes_or_images_are_an_error_before_training():
    absent = SPLIT["test"][3]
    names = [w for w in ALL if w != absent]
    with pytest.raises(DataUnavailableError, match=f"1 of its 20 classes are not in the data set: {absent}"):
        paper_data(PAPER_ARM, lambda name, split: fake_hub(names, {w: 1 for w in names}))
    empty = SPLIT["train"][5]
    with pytest.raises(DataUnavailableError, match=f"no images of 1 of its classes: {empty}"):
        paper_data(PAPER_ARM, lambda name, split: fake_hub(ALL, {w: 1 for w in ALL if w != empty}))
    unnamed = Dataset.from_dict({"label": [0, 1]})
    with pytest.raises(DataUnavailableError, match="no class names"):
        select_classes(unnamed, SPLIT["test"], "fake")


def test_official_views_and_masks():
    cfg = PAPER_ARM
    assert cfg["crop_scale"] == (0.2, 1.0) and cfg["jitter"] == (0.4, 0.4, 0.2, 0.1) and cfg["vflip_p"] == 0.5
    assert (cfg["randaug_ops"], cfg["randaug_magnitude"]) == (2, 10)
    assert (cfg["mask_patch"], cfg["mask_ratio"], cfg["mask_ratio_var"]) == (16, 0.15, 0.1)
    ops = {type(t).__name__: t for t in view_transform(cfg).transforms}
    randaug = ops["RandAugment"]  # magnitude 10 of timm's 0-10 scale: the strongest setting
    assert (randaug.num_ops, randaug.magnitude, randaug.num_magnitude_bins) == (2, 10, 11)
    assert ops["RandomVerticalFlip"].p == 0.5 and ops["RandomResizedCrop"].scale == (0.2, 1.0)
    image = Image.fromarray(torch.randint(0, 256, (40, 50, 3), dtype=torch.uint8).numpy())
    ds = [{"image": image, "label": 7}] * 2
    views = paper_views(cfg, ds)
    assert isinstance(views, MaskedHubViews) and views.grid == (14, 14)
    item = views[0]
    assert [tuple(v.shape) for v in item["views"]] == [(3, 224, 224)] * 2 and item["labels"] == 7
    assert [tuple(m.shape) for m in item["masks"]] == [(14, 14)] * 2
    rng = random.Random(0)
    for ratio in (0.05, 0.15, 0.25):
        covered = [int(block_mask((14, 14), ratio, rng).sum()) for _ in range(50)]
        assert max(covered) <= ratio * 196  # never over the budget
        if ratio * 196 >= (14 // 3) ** 2:  # a budget below the smallest block (16 patches) is often left unused
            assert sum(covered) / 50 > 0.8 * ratio * 196  # otherwise nearly all of it is used


def test_mask_patches_zeroes_exactly_the_masked_patches():
    x = torch.randn(2, 3, 8, 12)
    masks = torch.zeros(2, 2, 3, dtype=torch.bool)
    masks[0, 1, 2] = masks[1, 0, 0] = True
    out = mask_patches(x, masks)
    assert (out[0, :, 4:8, 8:12] == 0).all() and (out[1, :, 0:4, 0:4] == 0).all()
    keep = torch.ones_like(x, dtype=torch.bool)
    keep[0, :, 4:8, 8:12] = keep[1, :, 0:4, 0:4] = False
    assert torch.equal(out[keep], x[keep])
    with pytest.raises(ValueError, match="whole patches"):
        mask_patches(x, torch.zeros(2, 3, 3, dtype=torch.bool))


def test_model_masks_the_student_input_only():
    torch.manual_seed(0)
    model = BECLR(SmallConvNet(1, (8, 8)), out_dim=8)
    seen = {}
    model.backbone.register_forward_pre_hook(lambda m, a: seen.__setitem__("student", a[0].clone()))
    model.teacher_backbone.register_forward_pre_hook(lambda m, a: seen.__setitem__("teacher", a[0].clone()))
    x1, x2 = torch.randn(3, 1, 8, 8), torch.randn(3, 1, 8, 8)
    masks = (torch.rand(3, 2, 2) < 0.5, torch.rand(3, 2, 2) < 0.5)
    model({"views": (x1, x2), "masks": masks})
    x = torch.cat([x1, x2])
    assert torch.equal(seen["teacher"], x)
    assert torch.equal(seen["student"], mask_patches(x, torch.cat(masks)))
    assert not torch.equal(seen["student"], x)
