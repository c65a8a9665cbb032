"""The (train, kNN bank, test) splits that the in-memory ``smoke`` / ``cpu`` presets share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.data.arrays import ImageArrays, long_tailed_subset, subset_per_class
from shared.data.fashion_mnist import load_fashion_mnist
from shared.data.scenes import ClassificationView, make_scene_classification
from shared.data.shapes import make_shapes

# The data half of an arm's config, shared by the presets that use these sets; a preset adds its
# sizes (``train_per_class``, ...) and the method's settings: ``dict(FASHION_MNIST_28, train_per_class=2000, ...)``.
FASHION_MNIST_28 = dict(data="fashion_mnist", image_size=28, channels=1, mean=(0.2860,), std=(0.3530,))
SHAPES_RGB = dict(data="shapes", channels=3, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))  # + image_size
# the classification view of the procedural scenes (shared/data/SCENES.md): 8 shape classes, 32 px RGB
SCENES_32 = dict(data="scenes", image_size=32, channels=3, mean=(0.47, 0.44, 0.44), std=(0.27, 0.23, 0.26))


def small_image_splits(
    cfg: Mapping[str, Any], data_dir: str | None = None
) -> tuple[ImageArrays, ImageArrays, ImageArrays]:
    """(train, kNN bank, test) from an arm's config.

    ``cfg["data"]``: ``"shapes"`` (``train_per_class``, ``test_per_class``, ``image_size``; the
    bank is the training set), ``"scenes"`` (the scenes' classification view: ``train_per_class``,
    ``test_per_class``, ``image_size``, optional ``scene_view``, a mapping of
    :class:`~shared.data.scenes.ClassificationView` fields; train seed 0, test seed 1, the bank is
    the training set) or ``"fashion_mnist"`` (optional ``train_per_class`` and
    ``bank_per_class`` class-balanced subsets of the training split; the test split is whole).
    With ``imbalance_ratio`` ρ < 1 the training set is long-tailed instead (class c keeps
    ``train_per_class · ρ^(c/9)`` images, as CIFAR-10-LT); the kNN bank and test stay balanced.
    """
    if cfg["data"] == "shapes":
        train = make_shapes(cfg["train_per_class"], cfg["image_size"], seed=0)
        return train, train, make_shapes(cfg["test_per_class"], cfg["image_size"], seed=1)
    if cfg["data"] == "scenes":
        view = ClassificationView.from_dict(cfg.get("scene_view") or {})
        train = make_scene_classification(cfg["train_per_class"], cfg["image_size"], seed=0, view=view)
        return train, train, make_scene_classification(cfg["test_per_class"], cfg["image_size"], seed=1, view=view)
    if cfg["data"] == "fashion_mnist":
        full = load_fashion_mnist("train", data_dir)
        train = subset_per_class(full, cfg["train_per_class"]) if cfg.get("train_per_class") else full
        if cfg.get("imbalance_ratio", 1.0) < 1.0:
            train = long_tailed_subset(full, cfg.get("train_per_class") or 6000, cfg["imbalance_ratio"])
        bank = subset_per_class(full, cfg["bank_per_class"]) if cfg.get("bank_per_class") else train
        return train, bank, load_fashion_mnist("test", data_dir)
    raise ValueError(f"unknown data {cfg['data']!r}; choose 'shapes', 'scenes' or 'fashion_mnist'")
