"""Semantic textual similarity (STS) evaluation, SentEval-compatible.

Every STS set is a list of sentence pairs with a gold similarity. A sentence encoder is
scored by the Spearman rank correlation (×100) between the cosine similarity of the two
embeddings and the gold score, as SimCSE (Gao et al., 2021) and every paper after it report:

* STS12–STS16: SentEval's **"all"** aggregation — the sub-sets of a year (MSRpar, MSRvid,
  …) are pooled and *one* correlation is computed over all pairs of the year
  (``results[task]["all"]["spearman"]["all"]`` in SentEval);
* STS-B: the test split; SICK-R: the test split (hub road only, see below);
* ``sts_avg``: the mean of the sets scored. Offline it is the 6-set average (STS12–16,
  STS-B) — SICK-R ships nowhere offline — and the result says so (``sts_sets``).

Two roads to the data:

1. a SentEval-layout directory ``STS/STS1X-en-test/STS.input.<sub>.txt`` + ``STS.gs.<sub>.txt``
   and ``STS/STSBenchmark/sts-test.csv``. The repository vendors it under ``data/senteval``
   (found by default), ``--data-dir`` / ``$REPRO_DATA_DIR`` name another;
2. the Hugging Face hub: ``mteb/sts12-sts`` … ``mteb/sts16-sts``, ``mteb/stsbenchmark-sts``,
   ``mteb/sickr-sts`` (test splits), which adds SICK-R.

As SentEval does, sentences are whitespace-tokenised and re-joined, and pairs whose gold
score is empty are dropped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from shared.data.errors import DataUnavailableError

REPO_DATA = Path(__file__).resolve().parents[2] / "data"

# SentEval's sub-sets per year (STS13 leaves out SMT, as SentEval does).
SENTEVAL_SUBSETS: dict[str, tuple[str, ...]] = {
    "sts12": ("MSRpar", "MSRvid", "SMTeuroparl", "surprise.OnWN", "surprise.SMTnews"),
    "sts13": ("FNWN", "headlines", "OnWN"),
    "sts14": ("deft-forum", "deft-news", "headlines", "images", "OnWN", "tweet-news"),
    "sts15": ("answers-forums", "answers-students", "belief", "headlines", "images"),
    "sts16": ("answer-answer", "headlines", "plagiarism", "postediting", "question-question"),
}
HUB_SETS = {
    "sts12": "mteb/sts12-sts",
    "sts13": "mteb/sts13-sts",
    "sts14": "mteb/sts14-sts",
    "sts15": "mteb/sts15-sts",
    "sts16": "mteb/sts16-sts",
    "stsb": "mteb/stsbenchmark-sts",
    "sickr": "mteb/sickr-sts",
}
OFFLINE_SETS = ("sts12", "sts13", "sts14", "sts15", "sts16", "stsb")


@dataclass
class STSSet:
    """Pairs of one STS task (all sub-sets of a year pooled, SentEval "all")."""

    name: str
    sentences1: list[str]
    sentences2: list[str]
    gold: np.ndarray

    def __post_init__(self) -> None:
        if not (len(self.sentences1) == len(self.sentences2) == len(self.gold)):
            raise ValueError(f"{self.name}: sentences and gold scores differ in length")

    def __len__(self) -> int:
        return len(self.gold)

    def head(self, n: int) -> STSSet:
        """The first ``n`` pairs (a documented subset, for quick checks)."""
        return STSSet(self.name, self.sentences1[:n], self.sentences2[:n], self.gold[:n])


def _senteval_tokens(s: str) -> str:
    return " ".join(s.split())


def sts_root(data_dir: str | os.PathLike | None = None) -> Path:
    """The SentEval ``STS`` folder: ``data_dir`` (or ``$REPRO_DATA_DIR``), else the repository's copy.

    ``data_dir`` may be the ``STS`` folder itself, its parent (``…/senteval``) or a data root
    holding ``senteval/STS``.
    """
    candidates = []
    given = data_dir or os.environ.get("REPRO_DATA_DIR")
    if given:
        g = Path(given)
        candidates += [g, g / "STS", g / "senteval" / "STS"]
    candidates.append(REPO_DATA / "senteval" / "STS")
    for c in candidates:
        if (c / "STSBenchmark" / "sts-test.csv").exists():
            return c
    raise DataUnavailableError(
        "SentEval STS data not found.\n"
        f"  offline road: a SentEval-layout STS folder (looked in {[str(c) for c in candidates]}); the repository "
        "ships one under data/senteval/STS\n"
        "  online road: source='hub' (mteb/sts12-sts … mteb/stsbenchmark-sts, mteb/sickr-sts)"
    )


def _read_senteval_year(root: Path, year: str) -> STSSet:
    folder = root / f"STS{year[3:]}-en-test"
    s1, s2, gold = [], [], []
    for sub in SENTEVAL_SUBSETS[year]:
        lines = (folder / f"STS.input.{sub}.txt").read_text(encoding="utf8").splitlines()
        scores = (folder / f"STS.gs.{sub}.txt").read_text(encoding="utf8").splitlines()
        if len(lines) != len(scores):
            raise ValueError(f"{folder}/{sub}: {len(lines)} pairs but {len(scores)} gold lines")
        for line, score in zip(lines, scores, strict=True):
            if not score.strip():
                continue  # SentEval drops pairs without a gold score
            a, b = line.split("\t")[:2]
            s1.append(_senteval_tokens(a))
            s2.append(_senteval_tokens(b))
            gold.append(float(score))
    return STSSet(year, s1, s2, np.asarray(gold, dtype=np.float64))


def _read_stsb(root: Path, split: str = "test") -> STSSet:
    s1, s2, gold = [], [], []
    for line in (root / "STSBenchmark" / f"sts-{split}.csv").read_text(encoding="utf8").splitlines():
        cols = line.split("\t")
        gold.append(float(cols[4]))
        s1.append(_senteval_tokens(cols[5]))
        s2.append(_senteval_tokens(cols[6]))
    return STSSet("stsb", s1, s2, np.asarray(gold, dtype=np.float64))


def _read_hub(name: str) -> STSSet:
    from shared.data.hub import load_hub_split

    ds = load_hub_split(HUB_SETS[name], "test", "the SentEval STS folder the repository ships (data/senteval)")
    return STSSet(
        name,
        [_senteval_tokens(s) for s in ds["sentence1"]],
        [_senteval_tokens(s) for s in ds["sentence2"]],
        np.asarray(ds["score"], dtype=np.float64),
    )


def load_sts(
    data_dir: str | os.PathLike | None = None, source: str = "senteval", sets: Sequence[str] | None = None
) -> dict[str, STSSet]:
    """STS test sets by name (``sts12`` … ``sts16``, ``stsb``, and ``sickr`` on the hub road).

    ``source="senteval"`` reads the SentEval layout (offline), ``"hub"`` the mteb copies.
    """
    if source == "senteval":
        names = tuple(sets) if sets else OFFLINE_SETS
        bad = [n for n in names if n not in OFFLINE_SETS]
        if bad:
            raise ValueError(f"{bad} not in the SentEval folder; offline sets are {OFFLINE_SETS} (SICK-R: hub only)")
        root = sts_root(data_dir)
        return {n: _read_stsb(root) if n == "stsb" else _read_senteval_year(root, n) for n in names}
    if source == "hub":
        names = tuple(sets) if sets else tuple(HUB_SETS)
        bad = [n for n in names if n not in HUB_SETS]
        if bad:
            raise ValueError(f"unknown STS set(s) {bad}; choose from {tuple(HUB_SETS)}")
        return {n: _read_hub(n) for n in names}
    raise ValueError(f"unknown STS source {source!r}; choose 'senteval' or 'hub'")


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (scipy.stats.rankdata 'average')."""
    _, inverse, counts = np.unique(np.asarray(x, dtype=np.float64), return_inverse=True, return_counts=True)
    last = np.cumsum(counts)  # rank of the last member of each tie group
    return (last - (counts - 1) / 2)[inverse].astype(np.float64)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's ρ: Pearson correlation of the (tie-averaged) ranks."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"spearman needs two 1-D arrays of equal length ≥ 2, got {a.shape} and {b.shape}")
    ra, rb = rankdata(a) - (len(a) + 1) / 2, rankdata(b) - (len(b) + 1) / 2
    denom = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


Encode = Callable[[list[str]], torch.Tensor]


def evaluate_sts(encode: Encode, sets: dict[str, STSSet]) -> dict[str, float]:
    """Spearman ×100 per set and ``sts_avg`` over the sets given.

    ``encode(list_of_sentences) -> (n, d)`` tensor. All sets are encoded in one call.
    """
    if not sets:
        raise ValueError("no STS sets to evaluate")
    sentences = sorted({t for s in sets.values() for t in (*s.sentences1, *s.sentences2)})
    emb = encode(sentences)
    if emb.shape[0] != len(sentences):
        raise ValueError(f"encode returned {emb.shape[0]} embeddings for {len(sentences)} sentences")
    table = dict(zip(sentences, range(len(sentences)), strict=True))
    emb = torch.nn.functional.normalize(emb.double(), dim=1)
    out: dict[str, float] = {}
    for name, s in sets.items():
        i1 = torch.tensor([table[t] for t in s.sentences1])
        i2 = torch.tensor([table[t] for t in s.sentences2])
        cos = (emb[i1] * emb[i2]).sum(1).numpy()
        out[name] = 100 * spearman(cos, s.gold)
    out["sts_avg"] = float(np.mean([out[n] for n in sets]))
    return out


def length_bias(embeddings: torch.Tensor, lengths: Sequence[int], pairs: int = 4096, seed: int = 0) -> float:
    """Spearman ρ between the cosine of two embeddings and the difference of their lengths, |len_a − len_b|,
    over ``pairs`` random pairs of distinct sentences (unrelated pairs: any structure is the length's).

    An encoder whose similarity falls as lengths differ has ρ < 0; an unbiased one has ρ ≈ 0. The pairs
    are drawn from a fixed ``seed``, so every model scored on the same sentences sees the same pairs.
    """
    n = len(lengths)
    if embeddings.shape[0] != n or n < 2:
        raise ValueError(f"need ≥ 2 sentences with one embedding each, got {embeddings.shape[0]} and {n} lengths")
    g = torch.Generator().manual_seed(seed)
    i = torch.randint(0, n, (pairs,), generator=g)
    j = (i + torch.randint(1, n, (pairs,), generator=g)) % n  # never i itself
    emb = torch.nn.functional.normalize(embeddings.double(), dim=1)
    cos = (emb[i] * emb[j]).sum(1).numpy()
    length = torch.as_tensor(list(lengths), dtype=torch.float64)
    return spearman(cos, (length[i] - length[j]).abs().numpy())
