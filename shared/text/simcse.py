"""Unsupervised SimCSE (Gao, Yao & Chen, EMNLP 2021, arXiv:2104.08821): the shared text baseline.

Each sentence is encoded twice; the two dropout masks are the only augmentation. With
h_i, h_i^+ the two encodings (the [CLS] vector through an MLP used in training only) and
optional hard negatives h_j^−, the loss of anchor i over a batch of N is

    ℓ_i = −log  e^{sim(h_i, h_i^+)/τ} / Σ_j ( e^{sim(h_i, h_j^+)/τ} + e^{sim(h_i, h_j^−)/τ} ),

sim = cosine, τ = 0.05; without hard negatives the second sum is absent (unsupervised
SimCSE). The MLP is SimCSE's ``MLPLayer`` (Linear(D, D) + tanh); at test time the [CLS]
vector is used without it (``--mlp_only_train``).

Distributed: each rank scores its own anchors against the positives/negatives gathered
from all ranks with gradients (labels shifted by rank·n); the mean of the per-rank losses
is the global loss (the official code instead computes the whole loss on every rank).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from shared.distributed import gather_with_grad, local_offset
from shared.losses import at_least_float32, check_pair, check_temperature
from shared.text.encoders import TextEncoder


def simcse_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    temperature: float = 0.05,
    hard_negatives: torch.Tensor | None = None,
    gather_distributed: bool = True,
) -> torch.Tensor:
    """SimCSE's InfoNCE: anchors ``z1`` (n, d), positives ``z2`` (n, d), optional hard negatives (n, d)."""
    check_temperature(temperature)
    check_pair(z1, z2)
    if hard_negatives is not None:
        check_pair(z1, hard_negatives)
    a = F.normalize(at_least_float32(z1), dim=1)
    candidates = [F.normalize(at_least_float32(z2), dim=1)]
    if hard_negatives is not None:
        candidates.append(F.normalize(at_least_float32(hard_negatives), dim=1))
    if gather_distributed:
        candidates = [gather_with_grad(c) for c in candidates]
    offset = local_offset(len(a)) if gather_distributed else 0
    with torch.autocast(device_type=a.device.type, enabled=False):
        logits = a @ torch.cat(candidates).T / temperature
    labels = torch.arange(len(a), device=a.device) + offset
    return F.cross_entropy(logits, labels)


class SimCSELoss(nn.Module):
    """:func:`simcse_loss` as a module (``loss(z1, z2)``; ``loss(z1, z2, z3)`` with hard negatives)."""

    def __init__(self, temperature: float = 0.05, gather_distributed: bool = True) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)
        self.gather_distributed = gather_distributed

    def forward(self, z1: torch.Tensor, z2: torch.Tensor, hard_negatives: torch.Tensor | None = None) -> torch.Tensor:
        return simcse_loss(z1, z2, self.temperature, hard_negatives, self.gather_distributed)


class MLPHead(nn.Module):
    """SimCSE's training-only head: ``tanh(W · pre(h) + b)``; ``pre`` is WhitenedCSE's hook (identity here)."""

    def __init__(self, dim: int, pre: nn.Module | None = None) -> None:
        super().__init__()
        self.pre = pre if pre is not None else nn.Identity()
        self.dense = nn.Linear(dim, dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(self.pre(h)))


class SentenceContrastive(nn.Module):
    """Encoder + training head; ``forward(batch)`` returns ``{"loss"}``. Evaluate with ``encoder.encode``.

    ``views`` copies of every row of the batch are encoded in one pass (different dropout
    masks); :meth:`project` returns them as a (views, rows, d) tensor.
    """

    def __init__(self, encoder: TextEncoder, head: nn.Module, temperature: float = 0.05) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head
        self.temperature = check_temperature(temperature)

    def project(self, batch: dict, views: int) -> torch.Tensor:
        ids, mask = batch["input_ids"], batch["attention_mask"]
        h = self.encoder(ids.repeat(views, 1), mask.repeat(views, 1))
        return self.head_views(h.view(views, len(ids), -1))

    def head_views(self, h: torch.Tensor) -> torch.Tensor:
        """(views, rows, D) encodings → (views, rows, D) head outputs (row-wise MLP by default)."""
        return self.head(h.flatten(0, 1)).view(h.shape)


class SimCSE(SentenceContrastive):
    """Unsupervised SimCSE: two dropout views of each sentence, in-batch negatives."""

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        z = self.project(batch, views=2)
        return {"loss": simcse_loss(z[0], z[1], self.temperature)}
