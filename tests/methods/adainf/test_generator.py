"""The PCA + Gaussian-mixture generator: fit, sampling, the cache round trip, the user .npz road."""

import numpy as np
import pytest
import torch

from methods.adainf import GENERATED_LABEL, GeneratorConfig, PCAGMMGenerator, cache_dir, generated_set
from methods.adainf.generator import cache_key, load_generated_npz
from shared.data.shapes import make_shapes

TINY = GeneratorConfig(pca_dim=6, n_components=3, max_iter=10)


@pytest.fixture(scope="module")
def real():
    return make_shapes(8, 16, seed=0)  # 96 RGB images of 16 px


@pytest.fixture(scope="module")
def gen(real):
    return PCAGMMGenerator.fit(real.images, TINY)


def test_samples_are_images_and_seeded(gen, real):
    x = gen.sample(50, seed=1)
    assert x.dtype == torch.uint8 and x.shape == (50, *real.images.shape[1:])
    assert torch.equal(x, gen.sample(50, seed=1))
    assert not torch.equal(x, gen.sample(50, seed=2))
    assert gen.sample(0).shape == (0, *real.images.shape[1:])


def test_samples_follow_the_data(gen, real):
    """The sample mean image is close to the real mean (the mixture's mean is the PCA-space data mean)."""
    fake = gen.sample(4000, seed=0).double().mean(0)
    mean = real.images.double().mean(0)
    assert (fake - mean).abs().mean() < 4.0  # grey levels out of 255
    assert (fake - mean).abs().mean() < 0.2 * mean.std()


def test_diagonal_covariance_fits_and_samples(real):
    g = PCAGMMGenerator.fit(real.images, GeneratorConfig(pca_dim=6, n_components=3, covariance="diag", max_iter=10))
    assert g.chol.shape == (3, 6) and g.sample(5).shape[0] == 5


def test_state_round_trip(gen):
    again = PCAGMMGenerator.from_state(gen.state())
    assert torch.equal(again.sample(30, seed=4), gen.sample(30, seed=4))


def test_cache_round_trip(real, tmp_path):
    first = generated_set(real, TINY, 40, sample_seed=0, directory=tmp_path)
    assert not first.from_cache and first.path.parent == tmp_path and first.path.exists()
    second = generated_set(real, TINY, 40, sample_seed=0, directory=tmp_path)
    assert second.from_cache and second.path == first.path
    assert torch.equal(first.data.images, second.data.images)
    assert (second.data.labels == GENERATED_LABEL).all() and len(second.data) == 40
    assert torch.equal(second.generator.sample(10, 3), first.generator.sample(10, 3))
    assert [p.name for p in tmp_path.iterdir()] == [first.path.name]  # no temporary file left


def test_cache_key_changes_with_config_and_data(real):
    base = cache_key(real.images, TINY, 40, 0)
    assert base == cache_key(real.images.clone(), TINY, 40, 0)
    assert base != cache_key(real.images, GeneratorConfig(pca_dim=6, n_components=4, max_iter=10), 40, 0)
    assert base != cache_key(real.images, TINY, 41, 0)
    assert base != cache_key(real.images, TINY, 40, 1)
    other = real.images.clone()
    other[0, 0, 0, 0] ^= 1
    assert base != cache_key(other, TINY, 40, 0)


def test_cache_location(monkeypatch, tmp_path):
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path))
    assert cache_dir() == tmp_path / "adainf"
    assert cache_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("REPRO_CACHE_DIR")
    assert cache_dir().parts[-3:] == (".cache", "repro", "adainf")


def test_user_npz_road(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, size=(7, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "gen.npz", image=x, label=np.zeros(7, dtype=np.int64))
    data = load_generated_npz(tmp_path / "gen.npz", ("a",))
    assert data.images.shape == (7, 3, 32, 32) and torch.equal(data.images[2].permute(1, 2, 0), torch.from_numpy(x[2]))
    assert (data.labels == GENERATED_LABEL).all()
    with pytest.raises(FileNotFoundError, match=r"missing\.npz.*'image'"):
        load_generated_npz(tmp_path / "missing.npz", ("a",))
    np.savez(tmp_path / "bad.npz", images=x)
    with pytest.raises(ValueError, match="no 'image'"):
        load_generated_npz(tmp_path / "bad.npz", ("a",))
    np.savez(tmp_path / "float.npz", image=x.astype(np.float32))
    with pytest.raises(ValueError, match="uint8"):
        load_generated_npz(tmp_path / "float.npz", ("a",))


def test_errors(real):
    with pytest.raises(ValueError, match="pca_dim"):
        GeneratorConfig(pca_dim=0)
    with pytest.raises(ValueError, match="n_components"):
        GeneratorConfig(n_components=-1)
    with pytest.raises(ValueError, match="covariance"):
        GeneratorConfig(covariance="tied")
    with pytest.raises(ValueError, match="reg_covar"):
        GeneratorConfig(reg_covar=0)
    with pytest.raises(TypeError):
        GeneratorConfig.from_arm({"generator": {"bogus": 1}})
    with pytest.raises(ValueError, match="too few"):
        PCAGMMGenerator.fit(real.images[:5], TINY)
    with pytest.raises(ValueError, match="uint8"):
        PCAGMMGenerator.fit(real.images.float(), TINY)
    with pytest.raises(ValueError, match="non-negative"):
        PCAGMMGenerator.fit(real.images, TINY).sample(-1)
    with pytest.raises(ValueError, match="n_generated"):
        generated_set(real, TINY, 0)


@pytest.mark.parametrize("n", [50, 12])
def test_principal_directions_match_svd(n):
    """Both roads (covariance when n ≥ D, Gram matrix when n < D) give the top right singular vectors."""
    from methods.adainf.generator import principal_directions

    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 20, generator=g, dtype=torch.float64) @ torch.randn(20, 20, generator=g, dtype=torch.float64)
    x = x - x.mean(0)
    _, _, vt = torch.linalg.svd(x, full_matrices=False)
    vt = vt[:5] * torch.sign(vt[:5].gather(1, vt[:5].abs().argmax(1, keepdim=True)))
    assert torch.allclose(principal_directions(x, 5), vt, atol=1e-10)
