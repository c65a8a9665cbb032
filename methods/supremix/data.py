"""Regression data sets: rotated Fashion-MNIST (angle target), sklearn diabetes, AgeDB-DIR (paper).

* **Rotated Fashion-MNIST**: each image is turned by an integer angle drawn uniformly from
  [−max_angle, max_angle] degrees (fixed per image, data seed 0); the target is the angle. The
  upright orientation of every Fashion-MNIST class makes the angle recoverable from the image.
  Integer degrees make "exact-label" positives exist, as integer ages do in AgeDB.
* **Diabetes** (``sklearn.datasets.load_diabetes``): 442 patients, 10 standardised features,
  target = disease progression after one year (25–346); a fixed 342/100 train/test split.
* **AgeDB-DIR** (paper preset): ``agedb.csv`` (columns ``path``, ``age``, ``split``) and the
  images it names, in the layout of YyzHarry/imbalanced-regression; no offline copy ships.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision.transforms.v2.functional as TF

from shared.data.errors import DataUnavailableError
from shared.data.fashion_mnist import load_fashion_mnist
from shared.engine import InMemoryBatches


@dataclass
class RegressionSet:
    """``inputs``: uint8 images (N, C, H, W) or float features (N, F); ``targets``: float (N,) in data units."""

    inputs: torch.Tensor
    targets: torch.Tensor
    name: str

    def __post_init__(self) -> None:
        if self.targets.shape != (self.inputs.shape[0],):
            raise ValueError(f"targets must have shape ({self.inputs.shape[0]},), got {tuple(self.targets.shape)}")
        self.targets = self.targets.float()

    def __len__(self) -> int:
        return self.inputs.shape[0]


class TensorBatches(InMemoryBatches):
    """The engine's data source for a :class:`RegressionSet`: ``shared.engine.InMemoryBatches``' (seed, epoch)
    shuffle and rank slicing (last partial batch dropped), with ``inputs`` / ``targets`` batches."""

    def batch(self, idx: torch.Tensor) -> dict:
        return {"inputs": self.data.inputs[idx], "targets": self.data.targets[idx], "index": idx}


def rotate_images(images: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Each uint8 image turned counter-clockwise by its angle in degrees (bilinear, black corners)."""
    out = torch.empty_like(images)
    for a in angles.unique().tolist():  # one call per distinct angle, not per image
        sel = angles == a
        out[sel] = TF.rotate(images[sel], float(a), interpolation=TF.InterpolationMode.BILINEAR)
    return out


@functools.lru_cache(maxsize=4)  # arms of one process share the data; nothing mutates it
def rotated_fashion_mnist(
    train_size: int, test_size: int, max_angle: int = 45, data_dir: str | None = None, seed: int = 0
) -> tuple[RegressionSet, RegressionSet]:
    """(train, test): the first images of a seeded permutation of each split, turned by integer angles."""
    if not (isinstance(max_angle, int) and 1 <= max_angle <= 180):
        raise ValueError(f"max_angle must be an integer in [1, 180], got {max_angle!r}")
    g = torch.Generator().manual_seed(seed)
    out = []
    for split, size in (("train", train_size), ("test", test_size)):
        full = load_fashion_mnist(split, data_dir)
        if not 2 <= size <= len(full):
            raise ValueError(f"{split} size must be in [2, {len(full)}], got {size}")
        idx = torch.randperm(len(full), generator=g)[:size]
        angles = torch.randint(-max_angle, max_angle + 1, (size,), generator=g)
        images = rotate_images(full.images[idx], angles)
        out.append(RegressionSet(images, angles.float(), f"rotated-fashion-mnist/{split}"))
    return out[0], out[1]


@functools.lru_cache(maxsize=4)
def diabetes(test_size: int = 100, seed: int = 0) -> tuple[RegressionSet, RegressionSet]:
    """sklearn's diabetes regression set, features standardised with the training split's statistics."""
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    if not 1 <= test_size < len(x) - 1:
        raise ValueError(f"test_size must be in [1, {len(x) - 2}], got {test_size}")
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    te, tr = perm[:test_size], perm[test_size:]
    mean, std = x[tr].mean(0), x[tr].std(0).clamp_min(1e-6)
    x = (x - mean) / std
    return RegressionSet(x[tr], y[tr], "diabetes/train"), RegressionSet(x[te], y[te], "diabetes/test")


AGEDB_HINT = (
    "AgeDB-DIR needs `agedb.csv` (columns path, age, split) and the AgeDB images it names, in the layout of "
    "YyzHarry/imbalanced-regression (agedb-dir/data/); pass their folder with --data-dir or REPRO_DATA_DIR. "
    "No offline copy ships with the project and it is not on the Hugging Face hub."
)


def agedb_csv(data_dir: str | os.PathLike | None) -> Path:
    """The path of AgeDB-DIR's ``agedb.csv``, or :class:`DataUnavailableError` naming what is missing."""
    roots = [r for r in (data_dir, os.environ.get("REPRO_DATA_DIR")) if r]
    tried = []
    for root in roots:
        for d in (Path(root), Path(root) / "agedb-dir", Path(root) / "agedb"):
            tried.append(str(d / "agedb.csv"))
            if (d / "agedb.csv").is_file():
                return d / "agedb.csv"
    where = ", ".join(tried) if tried else "no --data-dir or REPRO_DATA_DIR given"
    raise DataUnavailableError(f"AgeDB-DIR is not available (looked for {where}).\n  {AGEDB_HINT}")
