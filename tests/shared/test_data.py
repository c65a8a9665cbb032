"""Embedded data: Fashion-MNIST's offline road (IDX files) and its error, procedural shapes."""

import gzip

import numpy as np
import pytest
import torch

from shared.data import DataUnavailableError, ImageArrays, load_fashion_mnist, make_shapes, subset_per_class
from shared.data import fashion_mnist as fm


def write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def idx_dir(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 20), ("t10k", 10)):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return tmp_path


def test_fashion_mnist_from_local_idx(idx_dir):
    train = load_fashion_mnist("train", idx_dir)
    assert train.images.shape == (20, 1, 28, 28) and train.images.dtype == torch.uint8
    assert train.labels.tolist() == [i % 10 for i in range(20)]
    assert len(load_fashion_mnist("test", idx_dir)) == 10


def test_fashion_mnist_env_var(idx_dir, monkeypatch):
    monkeypatch.setenv("REPRO_DATA_DIR", str(idx_dir))
    assert len(load_fashion_mnist("train")) == 20


def test_fashion_mnist_missing_names_both_roads(tmp_path, monkeypatch):
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "nowhere")
    monkeypatch.delenv("REPRO_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataUnavailableError) as err:
        load_fashion_mnist("train", tmp_path)
    msg = str(err.value)
    assert "offline road" in msg and "apt-get install dataset-fashion-mnist" in msg
    assert "online road" in msg and "zalando-datasets/fashion_mnist" in msg


def test_bad_split():
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist("val")


def test_not_an_idx_file(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x0d\x03" + b"\x00" * 12)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01" + b"\x00" * 4)
    with pytest.raises(DataUnavailableError, match="train-images-idx3-ubyte is not an unsigned-byte IDX file"):
        load_fashion_mnist("train", tmp_path)


def test_shapes_deterministic_and_balanced():
    a, b = make_shapes(5, 32, seed=3), make_shapes(5, 32, seed=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, make_shapes(5, 32, seed=4).images)
    assert a.images.shape == (60, 3, 32, 32) and a.num_classes == 12
    assert a.labels.bincount().tolist() == [5] * 12


def test_shapes_masks_match_colour():
    data, masks = make_shapes(4, 32, seed=0, return_masks=True)
    assert masks.shape == (48, 32, 32) and masks.any(dim=(1, 2)).all()
    # inside the mask the class colour's channel dominates
    colour = data.labels % 3
    img = data.images.float()
    for i in range(len(data)):
        inside = img[i][:, masks[i]].mean(1)
        assert inside.argmax().item() == colour[i].item()


def test_shapes_errors():
    with pytest.raises(ValueError, match="image_size"):
        make_shapes(2, 8)
    with pytest.raises(ValueError, match="n_per_class"):
        make_shapes(0)


def test_image_arrays_validation_and_subset():
    with pytest.raises(ValueError, match="uint8"):
        ImageArrays(torch.zeros(2, 1, 4, 4), torch.zeros(2), ("a",))
    data = make_shapes(6, 32)
    sub = subset_per_class(data, 2)
    assert sub.labels.bincount().tolist() == [2] * 12
    with pytest.raises(ValueError, match="fewer than"):
        subset_per_class(data, 7)


def test_long_tailed_profile_and_subset():
    from shared.data.arrays import long_tailed_counts, long_tailed_subset

    counts = long_tailed_counts(10, 1000, 0.1)
    assert counts[0] == 1000 and counts[-1] == 100
    assert counts == sorted(counts, reverse=True) and len(set(counts)) == len(counts)
    data = make_shapes(40, 16, seed=0)
    lt = long_tailed_subset(data, 40, 0.25)
    got = torch.bincount(lt.labels, minlength=data.num_classes).tolist()
    assert got == long_tailed_counts(data.num_classes, 40, 0.25)
    assert torch.equal(long_tailed_subset(data, 40, 0.25).labels, lt.labels)  # deterministic
    with pytest.raises(ValueError, match="imbalance_ratio"):
        long_tailed_counts(10, 100, 0.0)
    with pytest.raises(ValueError, match="fewer than"):
        long_tailed_subset(data, 41, 0.5)
