"""A small generative model of the training images: PCA + Gaussian mixture, trained once and cached.

AdaInf inflates the training set with images of a generative model trained on the *same* real
data (the paper: STF/EDM diffusion models trained on CIFAR-10, 1M samples). At small scale the
generator is the spec's CPU proxy:

    x ∈ R^D (flattened pixels)  →  u = W (x − μ) ∈ R^k         (PCA, k components)
    p(u) = Σ_m π_m 𝒩(u; m_m, Σ_m)                              (Gaussian mixture, M components)
    sample:  m ~ Cat(π),  u = m_m + L_m ε  (L_m L_mᵀ = Σ_m, ε ~ 𝒩(0, I)),  x̂ = clip(Wᵀ u + μ, 0, 255)

It is a *poor* generator (blurred, noisy garments): the paper's "do generated data always help?"
is about exactly such a gap between real and generated data. Its quality is set by ``pca_dim``,
``n_components`` and ``covariance`` ("full" better, "diag" worse).

Cache: the fitted parameters and the generated set are written under the cache directory
(``$REPRO_CACHE_DIR/adainf``, else ``~/.cache/repro/adainf``) as ``<key>.npz``, the key being a
hash of the generator config and of the real images' bytes. A second run loads them (~0.1 s);
delete the file (or the folder) to rebuild. Nothing of it is committed.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shared.data.arrays import ImageArrays

GENERATED_LABEL = -1
GENERATOR_VERSION = 1  # part of the cache key: bump when the fitting or sampling code changes
COVARIANCES = ("full", "diag")


@dataclass(frozen=True)
class GeneratorConfig:
    """PCA dimension k, mixture size M, covariance type, EM iterations, fit seed."""

    pca_dim: int = 40
    n_components: int = 30
    covariance: str = "full"
    max_iter: int = 100
    reg_covar: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        if not (isinstance(self.pca_dim, int) and self.pca_dim >= 1):
            raise ValueError(f"pca_dim must be a positive integer, got {self.pca_dim!r}")
        if not (isinstance(self.n_components, int) and self.n_components >= 1):
            raise ValueError(f"n_components must be a positive integer, got {self.n_components!r}")
        if self.covariance not in COVARIANCES:
            raise ValueError(f"covariance must be one of {COVARIANCES}, got {self.covariance!r}")
        if self.max_iter < 1 or self.reg_covar <= 0:
            raise ValueError(f"need max_iter >= 1 and reg_covar > 0, got {self.max_iter}, {self.reg_covar}")

    @classmethod
    def from_arm(cls, cfg: Mapping[str, Any]) -> GeneratorConfig:
        """The ``generator`` sub-dict of an arm's config (missing keys take the defaults)."""
        return cls(**dict(cfg.get("generator", {})))


def principal_directions(centred: torch.Tensor, k: int) -> torch.Tensor:
    """The top-``k`` principal directions (k, D) of centred data (n, D), sign-fixed (largest entry > 0).

    Eigen-decomposes the smaller of the covariance XᵀX (D × D) and the Gram matrix XXᵀ (n × n);
    for the Gram road the directions are Xᵀu / ‖Xᵀu‖.
    """
    n, d = centred.shape
    if n >= d:
        _, vecs = torch.linalg.eigh(centred.T @ centred)
        comps = vecs[:, -k:].flip(1).T
    else:
        _, vecs = torch.linalg.eigh(centred @ centred.T)
        comps = (centred.T @ vecs[:, -k:].flip(1)).T
        comps = comps / comps.norm(dim=1, keepdim=True).clamp_min(1e-12)
    signs = torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True)))
    return comps * signs


class PCAGMMGenerator:
    """Fitted PCA + Gaussian-mixture image model; :meth:`sample` draws uint8 images.

    Example:
        >>> gen = PCAGMMGenerator.fit(real.images, GeneratorConfig(pca_dim=20, n_components=10))
        >>> fake = gen.sample(1000, seed=0)          # uint8 (1000, C, H, W)
    """

    def __init__(
        self,
        mean: np.ndarray,
        components: np.ndarray,
        weights: np.ndarray,
        means: np.ndarray,
        chol: np.ndarray,
        shape: tuple[int, int, int],
    ) -> None:
        self.mean, self.components = mean.astype(np.float64), components.astype(np.float64)
        self.weights, self.means, self.chol = weights.astype(np.float64), means.astype(np.float64), chol
        self.shape = tuple(int(s) for s in shape)
        if self.components.shape != (len(self.means[0]), int(np.prod(self.shape))):
            raise ValueError("components must have shape (pca_dim, C·H·W)")
        if not np.isclose(self.weights.sum(), 1.0) or (self.weights < 0).any():
            raise ValueError("mixture weights must be a probability vector")

    @classmethod
    def fit(cls, images: torch.Tensor, cfg: GeneratorConfig) -> PCAGMMGenerator:
        """Fit PCA (k = ``pca_dim``) and a Gaussian mixture in the PCA space on uint8 (N, C, H, W)."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.mixture import GaussianMixture

        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"expected uint8 (N, C, H, W) images, got {images.dtype} {tuple(images.shape)}")
        n = images.shape[0]
        if n <= max(cfg.pca_dim, cfg.n_components):
            raise ValueError(f"{n} images are too few for pca_dim={cfg.pca_dim}, n_components={cfg.n_components}")
        x = images.reshape(n, -1).double()
        mean = x.mean(0)
        components = principal_directions(x - mean, cfg.pca_dim)
        u = ((x - mean) @ components.T).numpy()
        mean, components = mean.numpy(), components.numpy()
        gmm = GaussianMixture(
            cfg.n_components,
            covariance_type=cfg.covariance,
            max_iter=cfg.max_iter,
            reg_covar=cfg.reg_covar * u.var(0).mean(),
            init_params="k-means++",
            random_state=cfg.seed,
        )
        with warnings.catch_warnings():  # EM stopping at max_iter is the budget we chose, not an error
            warnings.simplefilter("ignore", ConvergenceWarning)
            gmm.fit(u)
        # full: Cholesky factors L_m (M, k, k); diagonal: per-dimension standard deviations (M, k)
        chol = np.linalg.cholesky(gmm.covariances_) if cfg.covariance == "full" else np.sqrt(gmm.covariances_)
        return cls(mean, components, gmm.weights_, gmm.means_, chol, tuple(images.shape[1:]))

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` uint8 images (n, C, H, W), a deterministic function of ``seed``."""
        if n < 0:
            raise ValueError(f"n must be non-negative, got {n}")
        rng = np.random.default_rng(seed)
        comp = rng.choice(len(self.weights), size=n, p=self.weights / self.weights.sum())
        eps = rng.standard_normal((n, self.means.shape[1]))
        u = np.empty_like(eps)
        for m in range(len(self.weights)):  # one matmul per mixture component
            rows = comp == m
            noise = eps[rows] @ self.chol[m].T if self.chol.ndim == 3 else eps[rows] * self.chol[m]
            u[rows] = self.means[m] + noise
        x = u @ self.components + self.mean
        return torch.from_numpy(np.clip(np.rint(x), 0, 255).astype(np.uint8).reshape(n, *self.shape))

    def state(self) -> dict[str, np.ndarray]:
        return {
            "mean": self.mean,
            "components": self.components,
            "weights": self.weights,
            "means": self.means,
            "chol": self.chol,
            "shape": np.asarray(self.shape),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, np.ndarray]) -> PCAGMMGenerator:
        return cls(
            state["mean"], state["components"], state["weights"], state["means"], state["chol"], tuple(state["shape"])
        )


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """Where fitted generators and generated sets live: ``override``, ``$REPRO_CACHE_DIR/adainf``
    or ``~/.cache/repro/adainf``."""
    if override:
        return Path(override)
    root = os.environ.get("REPRO_CACHE_DIR")
    return Path(root) / "adainf" if root else Path.home() / ".cache" / "repro" / "adainf"


def cache_key(real: torch.Tensor, cfg: GeneratorConfig, n_generated: int, sample_seed: int) -> str:
    """Hash of the generator config and code version, the sample count/seed and the real images' bytes."""
    meta = {**asdict(cfg), "n": n_generated, "sample_seed": sample_seed, "version": GENERATOR_VERSION}
    h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    h.update(str(tuple(real.shape)).encode())
    h.update(real.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass
class GeneratedSet:
    """The generated images (labels −1), the generator, and how they were obtained."""

    data: ImageArrays
    generator: PCAGMMGenerator
    path: Path
    from_cache: bool
    fit_seconds: float


def generated_set(
    real: ImageArrays,
    cfg: GeneratorConfig,
    n_generated: int,
    sample_seed: int = 0,
    directory: str | os.PathLike | None = None,
) -> GeneratedSet:
    """Fit the generator on ``real`` and draw ``n_generated`` images, or load both from the cache.

    The file ``<cache_dir>/<key>.npz`` holds the generator's parameters and the uint8 samples;
    it is written atomically, so an interrupted run leaves no half file.
    """
    if n_generated < 1:
        raise ValueError(f"n_generated must be positive, got {n_generated}")
    path = cache_dir(directory) / f"{cache_key(real.images, cfg, n_generated, sample_seed)}.npz"
    start = time.perf_counter()
    if path.exists():
        with np.load(path) as f:
            state = {k: f[k] for k in f.files}
        images = torch.from_numpy(state.pop("images"))
        gen, cached = PCAGMMGenerator.from_state(state), True
    else:
        gen = PCAGMMGenerator.fit(real.images, cfg)
        images = gen.sample(n_generated, sample_seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + f".{os.getpid()}.tmp.npz")
        np.savez(tmp, images=images.numpy(), **gen.state())
        os.replace(tmp, path)
        cached = False
    labels = torch.full((len(images),), GENERATED_LABEL, dtype=torch.long)
    data = ImageArrays(images, labels, real.classes, f"generated({real.name})")
    return GeneratedSet(data, gen, path, cached, time.perf_counter() - start)


def _missing_npz(p: Path) -> FileNotFoundError:
    return FileNotFoundError(
        f"generated data {p} not found. The paper preset needs the 1M generated CIFAR-10 images of the "
        "paper (an .npz with an 'image' array of uint8 (N, 32, 32, 3), e.g. the STF samples linked from "
        "PKU-ML/adainf's README); download it and pass its path as the arm's 'generated_npz' "
        "(or set $ADAINF_GENERATED_NPZ)."
    )


def _check_image_array(p: Path, dtype: np.dtype, shape: tuple[int, ...]) -> None:
    if dtype != np.uint8 or len(shape) != 4 or shape[-1] not in (1, 3):
        raise ValueError(f"{p}: 'image' must be uint8 (N, H, W, C), got {dtype} {shape}")


def check_generated_npz(path: str | os.PathLike) -> tuple[int, ...]:
    """The shape of a generated .npz's ``image`` array, read from its header only (seconds for a GB file).

    Raises what :func:`load_generated_npz` would (missing file, no ``image`` array, wrong dtype or
    shape), and ``ValueError`` for a file that is not a readable .npz, without loading the images.
    """
    p = Path(path)
    if not p.is_file():
        raise _missing_npz(p)
    try:
        with zipfile.ZipFile(p) as z:
            names = z.namelist()
            if "image.npy" not in names:
                raise ValueError(f"{p} has no 'image' array (found {[n.removesuffix('.npy') for n in names]})")
            with z.open("image.npy") as f:
                version = np.lib.format.read_magic(f)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(f)
    except (OSError, zipfile.BadZipFile) as exc:
        raise ValueError(f"generated data {p} is not a readable .npz: {type(exc).__name__}: {exc}") from exc
    _check_image_array(p, dtype, shape)
    return tuple(shape)


def load_generated_npz(path: str | os.PathLike, classes: tuple[str, ...]) -> ImageArrays:
    """A user-supplied generated set as the official code reads it: ``np.load(path)["image"]``,
    uint8 (N, H, W, C); the labels are set to −1 (generated images carry no class)."""
    p = Path(path)
    if not p.is_file():
        raise _missing_npz(p)
    with np.load(p) as f:
        if "image" not in f.files:
            raise ValueError(f"{p} has no 'image' array (found {f.files})")
        images = f["image"]
    _check_image_array(p, images.dtype, images.shape)
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    return ImageArrays(x, torch.full((len(x),), GENERATED_LABEL, dtype=torch.long), classes, f"generated({p.name})")
