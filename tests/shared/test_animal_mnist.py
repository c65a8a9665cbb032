"""The vendored Animal-MNIST: shape, balance, the safe unpickler, the error naming the roads."""

import gzip
import pickle

import pytest
import torch

import shared.data.animal_mnist as am
from shared.data import DataUnavailableError


def test_loads_the_vendored_copy():
    data = am.load_animal_mnist()
    assert data.images.shape == (10000, 1, 28, 28) and data.images.dtype == torch.uint8
    assert torch.equal(torch.bincount(data.labels), torch.full((10,), 1000))
    assert data.classes[0] == "Bear" and len(data.classes) == 10
    assert 0 < data.images.float().mean() < 255


def test_refuses_non_numpy_pickles(tmp_path):
    path = tmp_path / "evil.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump(print, f)  # a global outside numpy's array reconstruction
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        am.read_array(path)


def test_missing_files_name_the_roads(tmp_path, monkeypatch):
    monkeypatch.setattr(am, "REPO_DIR", tmp_path / "nowhere")
    monkeypatch.setattr(am, "_package_dir", lambda: None)
    monkeypatch.delenv("REPRO_DATA_DIR", raising=False)
    with pytest.raises(DataUnavailableError, match="pip install --no-deps animal-mnist"):
        am.load_animal_mnist(tmp_path)
