"""mini-ImageNet with the standard few-shot class split, built from a hub copy of its 100 classes.

The few-shot benchmark (Vinyals et al., 2016) uses the class split of Ravi & Larochelle (2017):
64 train (base) classes for pre-training, 16 validation and 20 test (novel) classes, 600 images
each. The split ships with the package as WordNet ids (``mini_imagenet_split.csv``); the images
come from a hub data set whose ``label`` is a ``ClassLabel`` named by WordNet id, filtered *by
class*. ``timm/mini-imagenet`` holds the same 100 classes split by images instead (500 train, 100
validation and 50 test images of every class), so its own splits would put the novel classes into
pre-training; here its ``train`` and ``validation`` splits are concatenated (600 images a class)
and then split by class.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from pathlib import Path

from shared.data.errors import DataUnavailableError

SPLIT_FILE = Path(__file__).with_name("mini_imagenet_split.csv")
SPLIT_SIZES = {"train": 64, "val": 16, "test": 20}


def mini_imagenet_classes() -> dict[str, tuple[str, ...]]:
    """``{"train": 64 WordNet ids, "val": 16, "test": 20}`` of the Ravi & Larochelle split."""
    out: dict[str, list[str]] = {name: [] for name in SPLIT_SIZES}
    with open(SPLIT_FILE, newline="") as f:
        for row in csv.DictReader(line for line in f if not line.startswith("#")):
            out[row["split"]].append(row["wnid"])
    return {name: tuple(ids) for name, ids in out.items()}


def select_classes(ds, wnids: Iterable[str], what: str, label_key: str = "label"):
    """The rows of a hub data set whose class (a ``ClassLabel`` named by WordNet id) is in ``wnids``.

    Raises :class:`DataUnavailableError` naming the classes the data set lacks, either as label
    names or as images, so that a run never starts on a partial split.
    """
    wnids = tuple(wnids)
    feature = ds.features[label_key]
    names = list(getattr(feature, "names", None) or [])
    if not names:
        raise DataUnavailableError(
            f"{what}: the data set's {label_key!r} column has no class names; the split is defined by WordNet ids, "
            "so it needs a ClassLabel named by WordNet id (as timm/mini-imagenet has)"
        )
    missing = [w for w in wnids if w not in names]
    if missing:
        raise DataUnavailableError(
            f"{what}: {len(missing)} of its {len(wnids)} classes are not in the data set: {', '.join(missing)}"
        )
    wanted = {names.index(w) for w in wnids}
    labels = [int(y) for y in ds[label_key]]
    rows = [i for i, y in enumerate(labels) if y in wanted]
    empty = sorted(wanted - {labels[i] for i in rows})
    if empty:
        raise DataUnavailableError(
            f"{what}: the data set has no images of {len(empty)} of its classes: {', '.join(names[i] for i in empty)}"
        )
    return ds.select(rows)


def load_mini_imagenet(
    name: str, hub_splits: Iterable[str], load: Callable[[str, str], object]
) -> tuple[object, object]:
    """(pre-training set: the 64 train classes, novel set: the 20 test classes) of the hub data set ``name``.

    ``load(name, split)`` returns one hub split; the splits ``hub_splits`` are concatenated first.
    """
    from datasets import concatenate_datasets

    parts = [load(name, split) for split in hub_splits]
    full = parts[0] if len(parts) == 1 else concatenate_datasets(parts)
    classes = mini_imagenet_classes()
    pretrain = select_classes(full, classes["train"], f"{name}: mini-ImageNet train (base) classes")
    novel = select_classes(full, classes["test"], f"{name}: mini-ImageNet test (novel) classes")
    return pretrain, novel
