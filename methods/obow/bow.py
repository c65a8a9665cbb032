"""The teacher side of OBoW: an online vocabulary of visual words and soft bag-of-words targets.

Gidaris et al., "OBoW: Online Bag-of-Visual-Words Generation for Self-Supervised Learning",
CVPR 2021, arXiv:2012.11552, §3.1–3.2. For a teacher feature map t(u) ∈ R^C (positions u,
the one-pixel border dropped) and a vocabulary V = [v_1..v_K] ∈ R^{K×C}:

    D_k(u) = ‖t(u) − v_k‖² = ‖t(u)‖² + ‖v_k‖² − 2 t(u)·v_k                  squared distances
    δ      = d̄ / δ⁻¹_base,   d̄ ← 0.99·d̄ + 0.01·mean_u min_k D_k(u)          adaptive temperature
    c_k(u) = softmax_k(−D_k(u) / δ)                                            soft codes, Σ_k c_k(u) = 1
    y_k    = max_u c_k(u) / Σ_k' max_u c_k'(u)                                  BoW target, ‖y‖₁ = 1

With ``inv_delta=None`` the codes are one-hot nearest-word assignments (hard BoW).

Vocabulary update (``_update_dictionary`` of the official code): the (border-cropped) teacher
map is average-pooled with a 3×3 kernel (stride 1, no padding), **one** random position per
image is taken, the features of the global batch (gathered from every rank, rank order) enter
a FIFO queue of K words in place of the oldest ones. K must be a multiple of the global batch.
The vocabulary used for this step's targets (and by the student's weight generator) is the one
*before* the update.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from shared.distributed import all_reduce_sum, get_world_size
from shared.momentum import EmbeddingQueue

UPDATE_TYPES = ("local_average", "no_averaging", "global_average")
BOW_POOLS = ("max", "avg")


def check_feature_map(features: torch.Tensor, dim: int | None = None) -> None:
    """Raise a clear error unless ``features`` is a floating (B, C, H, W) tensor (with C = dim)."""
    if not isinstance(features, torch.Tensor):
        raise TypeError(f"features must be a torch.Tensor, got {type(features).__name__}")
    if features.ndim != 4 or not features.is_floating_point():
        raise ValueError(f"features must be a floating (B, C, H, W) map, got {features.dtype} {tuple(features.shape)}")
    if dim is not None and features.shape[1] != dim:
        raise ValueError(f"features have {features.shape[1]} channels, the vocabulary {dim}")


def squared_distances(features: torch.Tensor, vocabulary: torch.Tensor) -> torch.Tensor:
    """``D[b, u, k] = ‖t_b(u) − v_k‖²`` for a map (B, C, H, W) and words (K, C): (B, H·W, K), float32+.

    Expanded as ‖t‖² + ‖v‖² − 2 t·v (the official code's convolution with −2V and bias ‖v‖²) and
    clamped at 0 against rounding; computed outside autocast in at least float32.
    """
    check_feature_map(features, vocabulary.shape[1] if vocabulary.ndim == 2 else None)
    if vocabulary.ndim != 2:
        raise ValueError(f"vocabulary must be (K, C), got {tuple(vocabulary.shape)}")
    dtype = torch.float64 if torch.float64 in (features.dtype, vocabulary.dtype) else torch.float32
    b, c = features.shape[:2]
    with torch.autocast(features.device.type, enabled=False):
        t = features.to(dtype).flatten(2).transpose(1, 2).reshape(-1, c)  # (B·P, C)
        v = vocabulary.to(dtype)
        d = torch.addmm(v.pow(2).sum(-1).unsqueeze(0), t, v.T, alpha=-2.0)  # ‖v‖² − 2 t·v, in one pass
        d += t.pow(2).sum(-1, keepdim=True)
    return d.clamp_min_(0).view(b, -1, v.shape[0])


def _shifted_distances(features: torch.Tensor, vocabulary: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(D − ‖t‖², ‖t‖²)``: (B, P, K) and (B, P), in at least float32 outside autocast."""
    b, c = features.shape[:2]
    dtype = torch.float64 if torch.float64 in (features.dtype, vocabulary.dtype) else torch.float32
    with torch.autocast(features.device.type, enabled=False):
        t = features.to(dtype).flatten(2).transpose(1, 2).reshape(-1, c)
        v = vocabulary.to(dtype)
        e = torch.addmm(v.pow(2).sum(-1).unsqueeze(0), t, v.T, alpha=-2.0)
    return e.view(b, -1, v.shape[0]), t.pow(2).sum(-1).view(b, -1)


def soft_codes(
    distances: torch.Tensor, inv_delta: float | None, mean_min_distance: torch.Tensor | float
) -> torch.Tensor:
    """``c_k(u) = softmax_k(−δ⁻¹_base · D_k(u) / d̄)`` over the last dim; one-hot argmin if ``inv_delta`` is None."""
    if inv_delta is None:
        return F.one_hot(distances.argmin(-1), distances.shape[-1]).to(distances.dtype)
    return torch.softmax(distances * (-inv_delta / mean_min_distance), dim=-1)


def bow_from_codes(codes: torch.Tensor, pool: str = "max") -> torch.Tensor:
    """``y = L1norm(pool_u c(u))`` for codes (B, P, K): the BoW vectors (B, K), rows summing to 1."""
    if pool not in BOW_POOLS:
        raise ValueError(f"bow pool must be one of {BOW_POOLS}, got {pool!r}")
    pooled = codes.amax(dim=1) if pool == "max" else codes.mean(dim=1)
    return F.normalize(pooled, p=1, dim=1)


def vocabulary_candidates(
    features: torch.Tensor, update_type: str = "local_average", index: torch.Tensor | None = None
) -> torch.Tensor:
    """One local feature per image, (B, C): the words this batch offers to the vocabulary.

    ``local_average`` (official default): 3×3 average pool (stride 1, no padding), then the
    feature at one uniformly random position per image (``index`` (B,) gives the positions
    instead, for tests); ``no_averaging``: a random position of the map itself;
    ``global_average``: the spatial mean.
    """
    check_feature_map(features)
    if update_type not in UPDATE_TYPES:
        raise ValueError(f"update_type must be one of {UPDATE_TYPES}, got {update_type!r}")
    if update_type == "global_average":
        return features.mean(dim=(2, 3))
    if update_type == "local_average":
        if min(features.shape[-2:]) < 3:
            raise ValueError(f"a 3×3 local average needs a map of at least 3×3, got {tuple(features.shape[-2:])}")
        features = F.avg_pool2d(features, kernel_size=3, stride=1, padding=0)
    flat = features.flatten(2)  # (B, C, P)
    b, _, p = flat.shape
    if index is None:
        index = torch.randint(0, p, (b,), device=features.device)
    elif index.shape != (b,) or int(index.min()) < 0 or int(index.max()) >= p:
        raise ValueError(f"index must hold {b} positions in [0, {p}), got {tuple(index.shape)}")
    return flat[torch.arange(b, device=flat.device), :, index.to(flat.device)]


class BoWExtractor(nn.Module):
    """One BoW level of the teacher: the vocabulary queue, the adaptive δ, the BoW targets.

    Args:
        num_words: K (official 8192); a multiple of the global batch.
        dim: C, the channels of this level's teacher map.
        inv_delta: δ⁻¹_base (15 for ResNet-50, 10 for ResNet-18); None: hard assignment.
        bow_pool: ``max`` (official) or ``avg`` over positions.
        update_type: see :func:`vocabulary_candidates`.
        decay: EMA decay of the mean minimum distance d̄ (0.99; d̄ starts at 0.5).
        crop_border: drop the one-pixel border of the map first (official).

    Buffers (saved with the model, so a resumed run continues with the same words): the queue
    (``queue.queue`` (K, C), started as ``randn(K, C).clamp(min=0)`` as the official code does,
    ``queue.ptr``) and ``mean_min_distance``.

    ``forward(features, index=None)`` returns the BoW targets (B, K) in float32; in training
    mode it also updates d̄ and the vocabulary (after the targets' distances are computed).
    """

    mean_min_distance: torch.Tensor

    def __init__(
        self,
        num_words: int,
        dim: int,
        inv_delta: float | None = 15.0,
        bow_pool: str = "max",
        update_type: str = "local_average",
        decay: float = 0.99,
        crop_border: bool = True,
    ) -> None:
        super().__init__()
        if inv_delta is not None and not (isinstance(inv_delta, (int, float)) and inv_delta > 0):
            raise ValueError(f"inv_delta must be a positive number or None, got {inv_delta!r}")
        if bow_pool not in BOW_POOLS:
            raise ValueError(f"bow_pool must be one of {BOW_POOLS}, got {bow_pool!r}")
        if update_type not in UPDATE_TYPES:
            raise ValueError(f"update_type must be one of {UPDATE_TYPES}, got {update_type!r}")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must lie in [0, 1), got {decay}")
        self.queue = EmbeddingQueue(num_words, dim)
        with torch.no_grad():
            self.queue.queue.copy_(torch.randn(num_words, dim).clamp(min=0))
        self.register_buffer("mean_min_distance", torch.full((), 0.5))
        self.inv_delta = None if inv_delta is None else float(inv_delta)
        self.bow_pool, self.update_type, self.decay, self.crop_border = bow_pool, update_type, decay, crop_border

    @property
    def num_words(self) -> int:
        return self.queue.size

    @property
    def dim(self) -> int:
        return self.queue.dim

    def vocabulary(self) -> torch.Tensor:
        """A detached copy of the words (K, C): this step's vocabulary, untouched by the update."""
        return self.queue.snapshot()

    @torch.no_grad()
    def forward(self, features: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        check_feature_map(features, self.dim)
        if self.crop_border:
            if min(features.shape[-2:]) < 3:
                raise ValueError(f"cropping the border needs a map of at least 3×3, got {tuple(features.shape[-2:])}")
            features = features[:, :, 1:-1, 1:-1]
        # one float32 (float64 stays), contiguous copy: bf16 channels-last maps make every later op slow
        features = features.to(torch.float64 if features.dtype == torch.float64 else torch.float32).contiguous()
        # e_k(u) = D_k(u) − ‖t(u)‖²: the softmax over k ignores the per-position constant ‖t(u)‖², so the
        # codes need one matrix product and one softmax; min_k D_k(u) = ‖t(u)‖² + min_k e_k(u)
        e, t_sq = _shifted_distances(features, self.queue.queue)
        if self.training:
            min_d = (e.amin(dim=-1) + t_sq).clamp_min_(0)
            batch_min = all_reduce_sum(min_d.mean()) / get_world_size()
            self.mean_min_distance.mul_(self.decay).add_(batch_min.to(self.mean_min_distance), alpha=1 - self.decay)
            self.queue.enqueue(vocabulary_candidates(features, self.update_type, index))
        if self.inv_delta is None:
            codes = F.one_hot(e.argmin(-1), e.shape[-1]).to(e.dtype)
        else:
            codes = torch.softmax(e.mul_(-self.inv_delta / self.mean_min_distance.to(e.dtype)), dim=-1)
        return bow_from_codes(codes, self.bow_pool)

    def extra_repr(self) -> str:
        return (
            f"num_words={self.num_words}, dim={self.dim}, inv_delta={self.inv_delta}, pool={self.bow_pool}, "
            f"update_type={self.update_type}, decay={self.decay}"
        )


@torch.no_grad()
def perplexity(bow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(per batch, mean per image) perplexity ``exp(H(y))`` of BoW vectors (B, K); each lies in [1, K].

    The batch perplexity is that of the summed (re-normalised) BoW of the batch: K when the batch
    spreads over all words, 1 when every image maps to one word (collapse).
    """
    p = F.normalize(bow.float(), p=1, dim=1)
    per_image = torch.exp(-torch.special.xlogy(p, p).sum(1)).mean()
    q = F.normalize(p.sum(0), p=1, dim=0)
    return torch.exp(-torch.special.xlogy(q, q).sum()), per_image
