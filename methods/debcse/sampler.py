"""DebCSE's inverse-propensity-weighted (IPW) sampling of positives and hard negatives (reconstruction).

No code of DebCSE is public; the abstract says pairs are chosen "according to both the
surface and semantic similarity between sentences" by "inverse propensity weighting
sampling" to remove length and false-negative bias. This module is our reading of that,
every choice configurable (README lists them):

* **Positives.** A naive rule selects, for anchor i, its k most similar sentences by a
  teacher's cosine (semantic top-k). Such a rule favours pairs that also look alike on
  the surface (word overlap, similar length) — the bias to remove. The propensity of a
  pair is e⁺(x) = P(selected | surface bin of x), x = (word Jaccard, length ratio),
  estimated by binning: e⁺(b) ∝ (n_sel(b) + α) / (n_ref(b) + α), with n_ref counted on
  random reference pairs and quantile bins of those. Anchor i draws candidate j with
  probability ∝ 1/e⁺(b_ij): semantically close pairs that differ on the surface are favoured.
  The anchor itself (a second dropout view, SimCSE's positive) keeps probability
  ``self_prob``; the neighbours share the rest.
* **Hard negatives.** The naive rule is surface top-k (cosine of the content-word sets); its propensity
  e⁻(x) = P(selected | semantic bin), x = teacher cosine; draws ∝ 1/e⁻ favour pairs that
  overlap on the surface but differ in meaning, and demote likely false negatives.

The weights of each anchor are non-negative and sum to 1 over its candidates; a constant
propensity gives uniform sampling among the candidates.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

import torch

_STOP = "a an the of in on at to for from by with and or but is are was were be been being it its this that these those"
STOPWORDS = frozenset(
    f"{_STOP} as he she they his her their which who whom whose what when where also has have had".split()
)


@dataclass(frozen=True)
class IPWConfig:
    """Sampling hyperparameters (all guesses: DebCSE publishes none)."""

    k_pos: int = 8
    k_neg: int = 8
    self_prob: float = 0.5
    bins: int = 5
    smoothing: float = 1.0
    ref_pairs: int = 32
    hash_dim: int = 2048
    shard: int = 32768
    clip: float = 5.0

    def __post_init__(self) -> None:
        for name in ("k_pos", "k_neg", "bins", "ref_pairs", "hash_dim", "shard"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0.0 <= self.self_prob <= 1.0:
            raise ValueError(f"self_prob must lie in [0, 1], got {self.self_prob}")
        if self.smoothing <= 0:
            raise ValueError(f"smoothing must be positive, got {self.smoothing}")
        if self.clip < 1:
            raise ValueError(f"clip must be at least 1, got {self.clip}")


def words(sentence: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", sentence.lower())


def bag_of_words(sentences: list[str], dim: int) -> torch.Tensor:
    """Binary hashed bag of content words (stop words dropped), (N, dim) bool."""
    rows, cols = [], []
    for i, s in enumerate(sentences):
        for w in {w for w in words(s) if w not in STOPWORDS}:
            rows.append(i)
            cols.append(zlib.crc32(w.encode()) % dim)
    x = torch.zeros(len(sentences), dim, dtype=torch.bool)
    x[torch.tensor(rows, dtype=torch.long), torch.tensor(cols, dtype=torch.long)] = True
    return x


def jaccard(bow: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """Word Jaccard of the pairs (i[p], j[p]) from binary bags of words."""
    a, b = bow[i].float(), bow[j].float()
    inter = (a * b).sum(-1)
    union = a.sum(-1) + b.sum(-1) - inter
    return inter / union.clamp_min(1)


def length_ratio(lengths: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """min/max of the two word counts (1 = equal length)."""
    a, b = lengths[i].float(), lengths[j].float()
    return torch.minimum(a, b) / torch.maximum(a, b).clamp_min(1)


def topk_within_shards(features: torch.Tensor, k: int, shard: int, chunk: int = 2048) -> torch.Tensor:
    """(N, k) indices of the k most cosine-similar other rows, searched within shards of ``shard`` rows.

    Shards keep the search O(N·shard) at wiki1m scale (the cpu preset's 17k sentences fit one shard).
    """
    n = len(features)
    out = torch.empty(n, k, dtype=torch.long)
    for s0 in range(0, n, shard):
        block = torch.nn.functional.normalize(features[s0 : s0 + shard].float(), dim=1)
        if len(block) <= k:
            raise ValueError(f"a shard of {len(block)} sentences cannot give {k} neighbours")
        for c0 in range(0, len(block), chunk):
            sims = block[c0 : c0 + chunk] @ block.T
            rows = torch.arange(c0, c0 + len(sims))
            sims[torch.arange(len(sims)), rows] = float("-inf")  # not itself
            out[s0 + c0 : s0 + c0 + len(sims)] = sims.topk(k, dim=1).indices + s0
    return out


def quantile_bins(values: torch.Tensor, reference: torch.Tensor, bins: int) -> torch.Tensor:
    """Bin index 0..bins-1 of ``values`` at the quantiles of ``reference``."""
    reference = reference.float().flatten()
    if len(reference) > 1_000_000:  # torch.quantile's size limit; a strided subset is enough for edges
        reference = reference[:: len(reference) // 1_000_000 + 1]
    edges = torch.quantile(reference, torch.linspace(0, 1, bins + 1)[1:-1])
    return torch.bucketize(values.float().contiguous(), edges.contiguous())


def propensity(
    selected_bins: torch.Tensor, reference_bins: torch.Tensor, n_bins: int, smoothing: float
) -> torch.Tensor:
    """e(b) ∝ P(selected | b) = (n_sel(b) + α) / (n_ref(b) + α), up to a constant; shape (n_bins,)."""
    n_sel = torch.bincount(selected_bins.flatten(), minlength=n_bins).double()
    n_ref = torch.bincount(reference_bins.flatten(), minlength=n_bins).double()
    return (n_sel + smoothing) / (n_ref + smoothing)


def ipw_weights(prop: torch.Tensor, clip: float | None = None) -> torch.Tensor:
    """Per-anchor sampling probabilities ∝ 1/e over the last axis (non-negative, rows sum to 1).

    ``clip``: truncate 1/e at ``clip`` × its median over all pairs (weight truncation, the
    usual remedy for IPW's variance when a bin holds very few selected pairs).
    """
    if (prop <= 0).any():
        raise ValueError("propensities must be positive")
    w = 1.0 / prop.double()
    if clip is not None:
        w = w.clamp(max=clip * w.median())
    return w / w.sum(-1, keepdim=True)


@dataclass
class PairTable:
    """Candidates and sampling probabilities per anchor.

    ``pos_candidates[i, 0] = i`` (the anchor itself) then its k_pos neighbours, with
    probabilities ``pos_probs`` (rows sum to 1); ``neg_candidates`` / ``neg_probs`` likewise.
    """

    pos_candidates: torch.Tensor
    pos_probs: torch.Tensor
    neg_candidates: torch.Tensor
    neg_probs: torch.Tensor

    def sample(self, index: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One positive and one hard negative per anchor of ``index``."""
        p = torch.multinomial(self.pos_probs[index].float(), 1, generator=generator).squeeze(1)
        q = torch.multinomial(self.neg_probs[index].float(), 1, generator=generator).squeeze(1)
        rows = torch.arange(len(index))
        return self.pos_candidates[index][rows, p], self.neg_candidates[index][rows, q]


def build_pair_table(sentences: list[str], teacher: torch.Tensor, cfg: IPWConfig, seed: int = 0) -> PairTable:
    """The IPW candidate table from the sentences and the teacher's (N, d) embeddings."""
    n = len(sentences)
    if teacher.shape[0] != n:
        raise ValueError(f"{teacher.shape[0]} teacher embeddings for {n} sentences")
    sem = torch.nn.functional.normalize(teacher.float(), dim=1)
    bow = bag_of_words(sentences, cfg.hash_dim)
    lengths = torch.tensor([len(words(s)) for s in sentences])
    g = torch.Generator().manual_seed(seed)
    anchors = torch.arange(n)
    ref_i = anchors.repeat_interleave(cfg.ref_pairs)
    ref_j = torch.randint(0, n, (n * cfg.ref_pairs,), generator=g)

    # positives: semantic top-k, propensity over surface bins (Jaccard × length ratio)
    pos = topk_within_shards(sem, cfg.k_pos, cfg.shard)
    ref_jac, ref_len = jaccard(bow, ref_i, ref_j), length_ratio(lengths, ref_i, ref_j)
    pi = anchors[:, None].expand_as(pos)
    sel_bins = quantile_bins(jaccard(bow, pi, pos), ref_jac, cfg.bins) * cfg.bins + quantile_bins(
        length_ratio(lengths, pi, pos), ref_len, cfg.bins
    )
    ref_bins = quantile_bins(ref_jac, ref_jac, cfg.bins) * cfg.bins + quantile_bins(ref_len, ref_len, cfg.bins)
    e_pos = propensity(sel_bins, ref_bins, cfg.bins**2, cfg.smoothing)[sel_bins]
    pos_probs = torch.cat([torch.full((n, 1), cfg.self_prob), (1 - cfg.self_prob) * ipw_weights(e_pos, cfg.clip)], 1)

    # hard negatives: surface top-k, propensity over semantic bins (teacher cosine)
    neg = topk_within_shards(bow, cfg.k_neg, cfg.shard)  # word-set cosine (Ochiai), a Jaccard-like overlap
    ref_cos = (sem[ref_i] * sem[ref_j]).sum(1)
    sel_cos = (sem[anchors[:, None]] * sem[neg]).sum(-1)
    neg_bins = quantile_bins(sel_cos, ref_cos, cfg.bins)
    e_neg = propensity(neg_bins, quantile_bins(ref_cos, ref_cos, cfg.bins), cfg.bins, cfg.smoothing)[neg_bins]
    return PairTable(
        pos_candidates=torch.cat([anchors[:, None], pos], 1),
        pos_probs=pos_probs,
        neg_candidates=neg,
        neg_probs=ipw_weights(e_neg, cfg.clip),
    )
