"""Unlabelled training sentences and the text batch source for :func:`shared.engine.fit`.

* offline: ~17k English Wikipedia sentences extracted once from the dump excerpt in the
  gensim wheel and committed under ``data/wiki`` (see its SOURCE.md; CC BY-SA 3.0);
* online: SimCSE's ``wiki1m_for_simcse.txt`` (10⁶ Wikipedia sentences) from the hub
  dataset repository ``princeton-nlp/datasets-for-simcse``.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from shared.data.errors import DataUnavailableError
from shared.text.sts import REPO_DATA

WIKI_FILE = "enwiki_sentences.txt.gz"
WIKI1M_REPO = "princeton-nlp/datasets-for-simcse"
WIKI1M_FILE = "wiki1m_for_simcse.txt"


def load_wiki_sentences(data_dir: str | os.PathLike | None = None, limit: int | None = None) -> list[str]:
    """The offline Wikipedia sentences (``data_dir``/``$REPRO_DATA_DIR`` ``/wiki``, else the repository's)."""
    candidates = []
    given = data_dir or os.environ.get("REPRO_DATA_DIR")
    if given:
        candidates += [Path(given) / WIKI_FILE, Path(given) / "wiki" / WIKI_FILE]
    candidates.append(REPO_DATA / "wiki" / WIKI_FILE)
    for path in candidates:
        if path.exists():
            with gzip.open(path, "rt", encoding="utf-8") as f:
                lines = [line.strip() for line in f if line.strip()]
            return lines[:limit] if limit else lines
    raise DataUnavailableError(
        f"Wikipedia sentences not found (looked in {[str(c) for c in candidates]}); the repository ships "
        f"data/wiki/{WIKI_FILE}"
    )


def load_wiki1m(limit: int | None = None) -> list[str]:
    """SimCSE's 1M Wikipedia sentences from the hub (online road of the paper presets)."""
    try:
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(WIKI1M_REPO, WIKI1M_FILE, repo_type="dataset")
    except Exception as exc:
        raise DataUnavailableError(
            f"{WIKI1M_REPO}/{WIKI1M_FILE} is not available.\n"
            f"  online road: downloading it from the Hugging Face hub failed: {type(exc).__name__}: {exc}\n"
            f"  offline road: the Wikipedia sentences under data/wiki (preset cpu)"
        ) from exc
    with open(path, encoding="utf-8") as f:
        lines = [line.strip() for line in f if line.strip()]
    return lines[:limit] if limit else lines


def load_sentences(name: str, data_dir: str | None = None, limit: int | None = None) -> list[str]:
    """``"wiki"`` (offline excerpt) or ``"wiki1m"`` (hub)."""
    if name == "wiki":
        return load_wiki_sentences(data_dir, limit)
    if name == "wiki1m":
        return load_wiki1m(limit)
    raise ValueError(f"unknown sentence set {name!r}; choose 'wiki' or 'wiki1m'")


Tokenize = Callable[[list[str]], dict[str, torch.Tensor]]


class TextBatches:
    """Batches of sentences for :func:`shared.engine.fit` (the engine's ``DataSource`` protocol).

    Each epoch shuffles the sentences with a (seed, epoch) permutation and drops the last
    partial batch; each batch is tokenised on the fly (padded to its longest sentence) and
    yielded as ``{"input_ids", "attention_mask", "index"}``. With W processes rank r takes
    slice r of every global batch, so the union over ranks is the single-process batch.
    Subclasses add rows through :meth:`extra_indices` (DebCSE's sampled pairs).
    """

    def __init__(self, sentences: list[str], tokenize: Tokenize, batch_size: int) -> None:
        if batch_size < 2:
            raise ValueError(f"batch_size must be at least 2, got {batch_size}")
        if batch_size > len(sentences):
            raise ValueError(f"batch_size {batch_size} exceeds the number of sentences {len(sentences)}")
        self.sentences, self.tokenize, self.batch_size = sentences, tokenize, batch_size

    def steps_per_epoch(self, world_size: int) -> int:
        return len(self.sentences) // self.batch_size

    def extra_indices(self, index: torch.Tensor, generator: torch.Generator) -> list[torch.Tensor]:
        """Further sentences to encode with the batch (one index tensor per extra row block)."""
        return []

    def epoch(self, epoch: int, seed: int, rank: int, world_size: int, skip: int = 0) -> Iterator[dict]:
        if self.batch_size % world_size:
            raise ValueError(f"batch_size {self.batch_size} is not divisible by {world_size} processes")
        local = self.batch_size // world_size
        perm = torch.randperm(len(self.sentences), generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        for step in range(skip, self.steps_per_epoch(world_size)):
            global_idx = perm[step * self.batch_size : (step + 1) * self.batch_size]
            g = torch.Generator().manual_seed(seed * 1_000_003 + epoch * 10_007 + step)
            blocks = [global_idx, *self.extra_indices(global_idx, g)]  # drawn on the global batch: rank-invariant
            mine = [b[rank * local : (rank + 1) * local] for b in blocks]
            flat = torch.cat(mine)
            tokens = self.tokenize([self.sentences[i] for i in flat.tolist()])
            yield {**tokens, "index": mine[0], "blocks": len(blocks)}
