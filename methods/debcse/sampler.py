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
  random reference pairs. Bin edges are quantiles of all pairs scored (reference and
  candidate pairs pooled); the word Jaccard has its own bin for 0 and quantile bins of its
  non-zero mass (most random pairs share no content word: 82 % on the cpu sentences, which
  put every quantile edge at 0 and left two bins). Anchor i draws candidate j with
  probability ∝ 1/e⁺(b_ij): semantically close pairs that differ on the surface are favoured.
  The anchor itself (a second dropout view, SimCSE's positive) keeps probability
  ``self_prob``; the neighbours share the rest.
* **Hard negatives.** The naive rule is surface top-k (cosine of the content-word sets); its propensity
  e⁻(x) = P(selected | semantic bin), x = teacher cosine; draws ∝ 1/e⁻ favour pairs that
  overlap on the surface but differ in meaning, and demote likely false negatives. A surface
  neighbour that is also a positive candidate of the same anchor (one of its semantic top-k) is
  skipped for the next surface neighbour: no sentence is both positive and hard negative of
  one anchor.

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


def quantile_bins(values: torch.Tensor, reference: torch.Tensor, bins: int, zero_bin: bool = False) -> torch.Tensor:
    """Bin index 0..bins-1 of ``values`` at the quantiles of ``reference``.

    ``zero_bin``: exact zeros form bin 0 and the other values fall in bins 1..bins-1 at the quantiles
    of the *non-zero* reference: for a feature with most of its mass at 0 (word Jaccard of random
    pairs) plain quantile edges would all be 0 and leave two bins (0 and everything above).
    """
    values, reference = values.float(), reference.float().flatten()
    if zero_bin:
        if bins < 2:
            raise ValueError(f"a zero bin needs at least 2 bins, got {bins}")
        nonzero = reference[reference != 0]
        rest = quantile_bins(values, nonzero if len(nonzero) else torch.ones(1), bins - 1) + 1
        return torch.where(values == 0, torch.zeros_like(rest), rest)
    if len(reference) > 1_000_000:  # torch.quantile's size limit; a strided subset is enough for edges
        reference = reference[:: len(reference) // 1_000_000 + 1]
    edges = torch.quantile(reference, torch.linspace(0, 1, bins + 1)[1:-1])
    return torch.bucketize(values.contiguous(), edges.contiguous())


def pair_bins(
    selected: torch.Tensor, reference: torch.Tensor, bins: int, zero_bin: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bins of the selected (candidate) and the reference pairs of one feature, with edges at the quantiles
    of both pooled, so that the bins split the range where the candidates are as well as the reference."""
    pooled = torch.cat([reference.float().flatten(), selected.float().flatten()])
    return quantile_bins(selected, pooled, bins, zero_bin), quantile_bins(reference, pooled, bins, zero_bin)


def exclude_candidates(candidates: torch.Tensor, banned: torch.Tensor, k: int) -> torch.Tensor:
    """Per row, the first ``k`` of ``candidates`` (N, K) that are not in the same row of ``banned`` (N, B),
    in their order."""
    clash = (candidates[:, :, None] == banned[:, None, :]).any(-1)
    if ((~clash).sum(1) < k).any():
        raise ValueError(f"fewer than {k} candidates left after excluding the banned ones")
    order = torch.argsort(clash.to(torch.int8), dim=1, stable=True)  # allowed first, order kept
    return candidates.gather(1, order[:, :k])


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

    # positives: semantic top-k, propensity over surface bins (Jaccard with a zero bin × length ratio)
    pos = topk_within_shards(sem, cfg.k_pos, cfg.shard)
    pi = anchors[:, None].expand_as(pos)
    sel_jac, ref_jac = pair_bins(jaccard(bow, pi, pos), jaccard(bow, ref_i, ref_j), cfg.bins, zero_bin=True)
    sel_len, ref_len = pair_bins(length_ratio(lengths, pi, pos), length_ratio(lengths, ref_i, ref_j), cfg.bins)
    sel_bins, ref_bins = sel_jac * cfg.bins + sel_len, ref_jac * cfg.bins + ref_len
    e_pos = propensity(sel_bins, ref_bins, cfg.bins**2, cfg.smoothing)[sel_bins]
    pos_probs = torch.cat([torch.full((n, 1), cfg.self_prob), (1 - cfg.self_prob) * ipw_weights(e_pos, cfg.clip)], 1)

    # hard negatives: surface top-k without the anchor's positive candidates, propensity over semantic bins
    surface = topk_within_shards(bow, cfg.k_neg + cfg.k_pos, cfg.shard)  # word-set cosine (Ochiai)
    neg = exclude_candidates(surface, pos, cfg.k_neg)
    sel_cos = (sem[anchors[:, None]] * sem[neg]).sum(-1)
    neg_bins, ref_cos_bins = pair_bins(sel_cos, (sem[ref_i] * sem[ref_j]).sum(1), cfg.bins)
    e_neg = propensity(neg_bins, ref_cos_bins, cfg.bins, cfg.smoothing)[neg_bins]
    return PairTable(
        pos_candidates=torch.cat([anchors[:, None], pos], 1),
        pos_probs=pos_probs,
        neg_candidates=neg,
        neg_probs=ipw_weights(e_neg, cfg.clip),
    )
