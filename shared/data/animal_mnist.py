"""Animal-MNIST: 10,000 grey 28×28 animal silhouettes, 10 classes × 1,000 (MIT licence).

The PyPI package ``animal-mnist`` (0.4) ships the data as two gzip'd pickles of plain numpy
arrays; its loader imports TensorFlow, so we read the files ourselves. Roads, in order:

1. ``data_dir`` / ``$REPRO_DATA_DIR`` (optionally with an ``animal_mnist/`` sub-folder);
2. the copy committed in the repository, ``data/animal_mnist/`` (see its README.md);
3. an installed ``animal-mnist`` package (``pip install --no-deps animal-mnist``), found
   without importing it.

There is no online copy on the Hugging Face hub; when no road has the files the loader
raises :class:`~shared.data.errors.DataUnavailableError` naming them. The pickles are read
with an unpickler that only accepts numpy's array reconstruction, so a tampered file cannot
run code.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from shared.data.arrays import ImageArrays
from shared.data.errors import DataUnavailableError
from shared.data.sources import note_source

CLASSES = ("Bear", "Bird", "Cat", "Cow", "Dog", "Elephant", "Giraffe", "Horse", "Sheep", "Zebra")
DATA_FILE = "animal_data_version_3.gz"
LABEL_FILE = "animal_label_version_3.gz"
REPO_DIR = Path(__file__).resolve().parents[2] / "data" / "animal_mnist"
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and refuses every other global."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from an Animal-MNIST pickle")
        if module == "numpy.core.multiarray" and importlib.util.find_spec("numpy._core") is not None:
            module = "numpy._core.multiarray"  # numpy 2 moved it; the old path only warns
        return super().find_class(module, name)


def read_array(path: Path) -> np.ndarray:
    """One gzip'd pickle of a numpy array, read safely."""
    with gzip.open(path, "rb") as f:
        array = _NumpyOnlyUnpickler(f).load()
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{path} does not hold a numpy array (got {type(array).__name__})")
    return array


def _package_dir() -> Path | None:
    spec = importlib.util.find_spec("animal_mnist")  # locates the package without running it
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "Animal_MNIST"


def candidate_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for the two files, in order."""
    dirs = []
    for root in (data_dir, os.environ.get("REPRO_DATA_DIR")):
        if root:
            dirs += [Path(root), Path(root) / "animal_mnist"]
    dirs.append(REPO_DIR)
    package = _package_dir()
    if package is not None:
        dirs.append(package)
    return dirs


def load_animal_mnist(data_dir: str | os.PathLike | None = None) -> ImageArrays:
    """All 10,000 images as uint8 (N, 1, 28, 28), int64 labels 0–9, and the class names."""
    dirs = candidate_dirs(data_dir)
    for d in dirs:
        if (d / DATA_FILE).is_file() and (d / LABEL_FILE).is_file():
            x, y = read_array(d / DATA_FILE), read_array(d / LABEL_FILE)
            if x.dtype != np.uint8 or x.ndim != 3 or y.shape != (x.shape[0],):
                raise ValueError(f"unexpected Animal-MNIST arrays in {d}: images {x.dtype} {x.shape}, labels {y.shape}")
            images = torch.from_numpy(np.ascontiguousarray(x)).unsqueeze(1)
            note_source("animal-mnist", str(d))
            return ImageArrays(images, torch.from_numpy(y.astype(np.int64)), CLASSES, "animal-mnist")
    raise DataUnavailableError(
        "Animal-MNIST is not available.\n"
        f"  offline road: no {DATA_FILE} + {LABEL_FILE} in {', '.join(str(d) for d in dirs)};\n"
        "    the repository ships them under data/animal_mnist/, or `pip install --no-deps animal-mnist`\n"
        "    (do not import that package: its loader needs TensorFlow), or pass --data-dir.\n"
        "  online road: none (the data set is not on the Hugging Face hub)."
    )


__all__ = ["CLASSES", "load_animal_mnist", "read_array"]
