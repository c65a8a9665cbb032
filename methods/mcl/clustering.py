"""Stage-wise clustering and the pseudo-labels it makes.

After training stage t, the stage's features of the whole training set are L2-normalised and
clustered with K-means (MiniBatchKMeans, K clusters; official ``cluster.py``), giving c⁽ᵗ⁾ ∈
{0, …, K−1}ᴺ. Stage s+1 trains on the pseudo-label that combines every stage so far,

    y⁽ˢ⁾ = Σ_{t=0}^{s} c⁽ᵗ⁾ · K^{s−t}        (mixed radix: c⁽⁰⁾ is the most significant digit),

which is injective on (c⁽⁰⁾, …, c⁽ˢ⁾): K^{s+1} possible ids, one per cell of the stages'
Cartesian product. The official ``cluster.py`` means to do this but loads the *current*
stage's labels in every iteration of the loop, so its pseudo-label is
c⁽ˢ⁾ · (K^s + … + K + 1): earlier stages' clusters are ignored. :func:`official_pseudo_labels`
reproduces that for comparison (``official_label_bug=True`` in a preset).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def _check_stage_labels(stage_labels: Sequence[torch.Tensor], k: int) -> None:
    if not (isinstance(k, int) and k >= 1):
        raise ValueError(f"num_clusters must be a positive integer, got {k!r}")
    if len(stage_labels) == 0:
        raise ValueError("need the cluster labels of at least one stage")
    n = len(stage_labels[0])
    for t, c in enumerate(stage_labels):
        if not isinstance(c, torch.Tensor) or c.ndim != 1 or c.is_floating_point():
            raise TypeError(f"stage {t}: cluster labels must be a 1-D integer tensor")
        if len(c) != n:
            raise ValueError(f"stage {t} has {len(c)} labels, stage 0 has {n}")
        if len(c) and (int(c.min()) < 0 or int(c.max()) >= k):
            raise ValueError(f"stage {t}: cluster labels must lie in [0, {k}), got [{int(c.min())}, {int(c.max())}]")


def combine_pseudo_labels(stage_labels: Sequence[torch.Tensor], num_clusters: int) -> torch.Tensor:
    """The paper's pseudo-label y = Σ_t c⁽ᵗ⁾ K^{s−t} over all stages given (injective)."""
    _check_stage_labels(stage_labels, num_clusters)
    if num_clusters ** len(stage_labels) >= 2**62:
        raise ValueError("K^(stages) overflows int64; use fewer clusters or stages")
    y = torch.zeros(len(stage_labels[0]), dtype=torch.long)
    for c in stage_labels:
        y = y * num_clusters + c.long()
    return y


def official_pseudo_labels(stage_labels: Sequence[torch.Tensor], num_clusters: int) -> torch.Tensor:
    """The official ``cluster.py`` loop: every iteration reads the *current* stage's labels.

    y = Σ_{t=0}^{s} c⁽ˢ⁾ K^{s−t} = c⁽ˢ⁾ (K^{s+1} − 1)/(K − 1): only the last stage counts.
    """
    _check_stage_labels(stage_labels, num_clusters)
    return combine_pseudo_labels([stage_labels[-1]] * len(stage_labels), num_clusters)


def kmeans_labels(
    features: torch.Tensor,
    num_clusters: int,
    seed: int = 0,
    batch_size: int = 1_000_000,
    max_iter: int = 100,
    tol: float = 1e-5,
) -> torch.Tensor:
    """K-means cluster ids of L2-normalised ``features`` (official: MiniBatchKMeans, batch 10⁶,
    100 iterations, tol 1e-5, sklearn's default n_init: one k-means++ start — with a batch as large
    as the data set it is full-batch K-means)."""
    from sklearn.cluster import MiniBatchKMeans

    if features.ndim != 2:
        raise ValueError(f"features must have shape (N, d), got {tuple(features.shape)}")
    if not (isinstance(num_clusters, int) and 1 <= num_clusters <= len(features)):
        raise ValueError(f"num_clusters must be an integer in [1, {len(features)}], got {num_clusters!r}")
    x = F.normalize(features.float(), dim=1).numpy()
    km = MiniBatchKMeans(
        n_clusters=num_clusters,
        batch_size=min(batch_size, len(x)),
        max_iter=max_iter,
        tol=tol,
        random_state=seed,
    )
    return torch.from_numpy(km.fit_predict(x)).long()
