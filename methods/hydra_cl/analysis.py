"""What the cpu preset measures beyond accuracy: effective rank, class similarity, gate overlap.

* Effective rank (Roy & Vetterli, 2007) of a feature matrix: with σ_k the singular values of the
  centred features and p_k = σ_k / Σ σ, ``erank = exp(−Σ p_k log p_k)`` ∈ [1, d]; the paper's
  "dimensional collapse" claim says L_dis raises it.
* Class similarity: cosine similarity of the class means of L2-normalised features (C × C).
* Gate overlap: soft Jaccard of the class gates g(c, c) (C × C), and the mean activation of the pair
  gates g(a, b). The paper's claim: the learned gates reflect class relationships; here the overlap is
  compared (Spearman over the C(C−1)/2 class pairs) with the class similarity of the label-free
  MoCo v3 baseline of the same seed, an independent, data-driven notion of which classes look alike.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

FASHION_MNIST_CLASSES = (
    "T-shirt",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Boot",
)
# semantic groups of Fashion-MNIST: upper-body garments and footwear (the "3/5/8" of digits)
FASHION_MNIST_GROUPS = ((0, 2, 4, 6), (5, 7, 9))


def effective_rank(features: torch.Tensor) -> float:
    """exp(entropy of the normalised singular values of the centred features (N, d))."""
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"features must have shape (N >= 2, d), got {tuple(features.shape)}")
    x = features.double()
    s = torch.linalg.svdvals(x - x.mean(0))
    p = s / s.sum().clamp_min(1e-300)
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def class_similarity(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Cosine similarity of the class means of the L2-normalised features, (C, C)."""
    z = F.normalize(features.double(), dim=1)
    means = torch.zeros(num_classes, z.shape[1], dtype=z.dtype).index_add_(0, labels, z)
    counts = torch.bincount(labels, minlength=num_classes).clamp_min(1).to(z.dtype)
    means = F.normalize(means / counts[:, None], dim=1)
    return (means @ means.T).float()


def off_diagonal(m: torch.Tensor) -> torch.Tensor:
    """The entries above the diagonal of a square matrix, as a vector."""
    i, j = torch.triu_indices(len(m), len(m), offset=1)
    return m[i, j]


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two vectors (average ranks for ties)."""

    def ranks(x: torch.Tensor) -> torch.Tensor:
        x = x.double()
        order = x.argsort()
        r = torch.empty_like(x)
        r[order] = torch.arange(len(x), dtype=x.dtype)
        for v in x.unique():  # average ranks of ties (few values; not a hot path)
            tie = x == v
            r[tie] = r[tie].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = (ra.norm() * rb.norm()).item()
    return float((ra @ rb).item() / denom) if denom > 0 else 0.0


def group_contrast(m: torch.Tensor, groups: tuple[tuple[int, ...], ...]) -> float:
    """Mean of ``m`` over class pairs inside a group minus its mean over the other off-diagonal pairs."""
    c = len(m)
    inside = torch.zeros(c, c, dtype=torch.bool)
    for g in groups:
        idx = torch.tensor(g)
        inside[idx[:, None], idx[None]] = True
    upper = torch.triu(torch.ones(c, c, dtype=torch.bool), diagonal=1)
    return float(m[inside & upper].mean() - m[~inside & upper].mean())


def _mean(ms: list[list[list[float]]]) -> torch.Tensor:
    return torch.tensor(ms).mean(0)


def hydra_analysis(
    method_arm: str, baseline_arm: str, groups: tuple[tuple[int, ...], ...] = FASHION_MNIST_GROUPS
) -> Any:
    """``Experiment.analysis``: gate overlap vs class similarity per seed, and the overlap figure."""

    def analysis(record: dict, results: dict, out_prefix: Path) -> dict[str, Any]:
        method, base = results[method_arm], results[baseline_arm]
        per_seed = []
        for m, b in zip(method, base, strict=True):
            overlap = torch.tensor(m.extras["gate_overlap"])
            activation = torch.tensor(m.extras["pair_gate_activation"])
            base_sim = torch.tensor(b.extras["class_similarity"])
            own_sim = torch.tensor(m.extras["class_similarity"])
            per_seed.append(
                {
                    "spearman_overlap_vs_baseline_similarity": spearman(off_diagonal(overlap), off_diagonal(base_sim)),
                    "spearman_overlap_vs_own_similarity": spearman(off_diagonal(overlap), off_diagonal(own_sim)),
                    "spearman_pair_activation_vs_baseline_similarity": spearman(
                        off_diagonal(activation), off_diagonal(base_sim)
                    ),
                    "overlap_within_minus_across_groups": group_contrast(overlap, groups),
                    "mean_gate_activation": float(torch.tensor(m.extras["class_gate_activation"]).mean()),
                }
            )
        overlap = _mean([m.extras["gate_overlap"] for m in method])
        activation = _mean([m.extras["pair_gate_activation"] for m in method])
        base_sim = _mean([b.extras["class_similarity"] for b in base])
        summary = {k: [s[k] for s in per_seed] for k in per_seed[0]}
        out = {
            "description": "gate overlap = soft Jaccard of the class gates g(c,c) (eval mode), mean over seeds; "
            "pair activation = mean_j g(a,b)_j; class similarity = cosine of class means of the test-set "
            f"backbone features of the {baseline_arm} arm (label-free); Spearman over the 45 class pairs",
            "classes": list(FASHION_MNIST_CLASSES) if len(overlap) == 10 else list(range(len(overlap))),
            "groups": [list(g) for g in groups],
            "gate_overlap": [[round(float(v), 4) for v in row] for row in overlap],
            "pair_gate_activation": [[round(float(v), 4) for v in row] for row in activation],
            "baseline_class_similarity": [[round(float(v), 4) for v in row] for row in base_sim],
            "per_seed": summary,
        }
        _plot(overlap, activation, base_sim, out["classes"], Path(f"{out_prefix}_gate_overlap.png"))
        return out

    return analysis


def _plot(overlap: torch.Tensor, activation: torch.Tensor, sim: torch.Tensor, names: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    panels = (
        (overlap, "class-gate overlap (soft Jaccard), off-diagonal"),
        (activation, "pair-gate activation mean_j g(a,b)_j, off-diagonal"),
        (sim, "class similarity, MoCo v3 baseline, off-diagonal"),
    )
    for ax, (m, title) in zip(axes, panels, strict=True):
        shown = m.clone().fill_diagonal_(float("nan"))  # the diagonal (1 for overlap and similarity) hides the rest
        im = ax.imshow(shown.numpy(), cmap="viridis")
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(len(names)), [str(n) for n in names], rotation=90, fontsize=7)
        ax.set_yticks(range(len(names)), [str(n) for n in names], fontsize=7)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)
