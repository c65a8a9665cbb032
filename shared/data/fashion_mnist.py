"""Fashion-MNIST (Xiao et al., 2017): 60k + 10k 28×28 grey images, 10 classes, MIT licence.

Two roads:

1. **Local IDX files** (offline): ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``
   in ``data_dir``, ``data_dir/fashion-mnist``, ``$REPRO_DATA_DIR[/fashion-mnist]`` or
   Debian's ``/usr/share/datasets/fashion-mnist`` (``apt-get install dataset-fashion-mnist``).
2. **Hugging Face hub** (online): ``zalando-datasets/fashion_mnist`` through ``datasets``.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

from shared.data.arrays import ImageArrays
from shared.data.errors import DataUnavailableError
from shared.data.sources import note_source

CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
HUB_NAME = "zalando-datasets/fashion_mnist"
_PREFIX = {"train": "train", "test": "t10k"}


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (``.gz`` or raw) as a uint8 array; a damaged file is an error naming it."""
    opener = gzip.open if path.suffix == ".gz" else open
    fix = "delete it (or reinstall dataset-fashion-mnist) so that another copy or the hub is used"
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (gzip.BadGzipFile, EOFError, OSError) as exc:
        raise DataUnavailableError(f"{path} cannot be read ({type(exc).__name__}: {exc}); {fix}") from exc
    if len(raw) < 4:
        raise DataUnavailableError(f"{path} is not an IDX file (only {len(raw)} bytes); {fix}")
    magic = int.from_bytes(raw[:4], "big")
    if magic >> 8 != 0x08:  # 0x08 = unsigned byte data
        raise DataUnavailableError(f"{path} is not an unsigned-byte IDX file (magic {magic:#x}); {fix}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise DataUnavailableError(
            f"{path} is truncated or padded: {len(raw)} bytes, its header says {expected}; {fix}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _candidate_dirs(data_dir: str | os.PathLike | None) -> list[Path]:
    if data_dir is not None and not Path(data_dir).is_dir():
        raise DataUnavailableError(f"data folder {data_dir} does not exist (given as --data-dir / data_dir)")
    dirs = []
    for root in (data_dir, os.environ.get("REPRO_DATA_DIR")):
        if root:
            dirs += [Path(root), Path(root) / "fashion-mnist", Path(root) / "fashion_mnist"]
    dirs.append(DEBIAN_DIR)
    return dirs


def _find(directory: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def _from_local(split: str, data_dir: str | os.PathLike | None) -> ImageArrays | None:
    prefix = _PREFIX[split]
    for d in _candidate_dirs(data_dir):
        images = _find(d, f"{prefix}-images-idx3-ubyte")
        labels = _find(d, f"{prefix}-labels-idx1-ubyte")
        if images and labels:
            x = torch.from_numpy(_read_idx(images).copy()).unsqueeze(1)
            y = torch.from_numpy(_read_idx(labels).astype(np.int64))
            if len(x) != len(y):
                raise DataUnavailableError(f"{images} has {len(x)} images but {labels} has {len(y)} labels")
            note_source(f"fashion-mnist/{split}", str(images.parent))
            return ImageArrays(x, y, CLASSES, f"fashion-mnist/{split}")
    return None


def _from_hub(split: str) -> ImageArrays:
    from datasets import load_dataset

    ds = load_dataset(HUB_NAME, split=split)
    note_source(f"fashion-mnist/{split}", f"hub:{HUB_NAME}")
    x = np.stack([np.asarray(im, dtype=np.uint8) for im in ds["image"]])
    y = np.asarray(ds["label"], dtype=np.int64)
    return ImageArrays(torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y), CLASSES, f"fashion-mnist/{split}")


def load_fashion_mnist(split: str = "train", data_dir: str | os.PathLike | None = None) -> ImageArrays:
    """Load a Fashion-MNIST split as uint8 (N, 1, 28, 28) images and int64 labels."""
    if split not in _PREFIX:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    local = _from_local(split, data_dir)
    if local is not None:
        return local
    try:
        return _from_hub(split)
    except DataUnavailableError:
        raise
    except Exception as exc:  # any failure of the online road ends in the same message
        searched = ", ".join(str(d) for d in _candidate_dirs(data_dir))
        raise DataUnavailableError(
            f"Fashion-MNIST ({split}) is not available.\n"
            f"  offline road: no IDX files ({_PREFIX[split]}-images-idx3-ubyte[.gz], ...) in {searched};\n"
            f"    install them with `apt-get install dataset-fashion-mnist` or pass --data-dir.\n"
            f"  online road: loading {HUB_NAME!r} from the Hugging Face hub failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
