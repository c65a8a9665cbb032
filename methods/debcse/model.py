"""DebCSE's objective: SimCSE's InfoNCE with a sampled positive and a sampled hard negative.

For anchor i with sampled positive i⁺ and hard negative i⁻ (see :mod:`methods.debcse.sampler`):

    ℓ_i = −log e^{sim(h_i, h_{i⁺})/τ} / Σ_j ( e^{sim(h_i, h_{j⁺})/τ} + e^{sim(h_i, h_{j⁻})/τ} ),   τ = 0.05.

When the sampled positive is the anchor itself, h_{i⁺} is a second dropout encoding
(SimCSE's positive). Without hard negatives and with positive = self the loss is exactly
unsupervised SimCSE's.
"""

from __future__ import annotations

import torch

from methods.debcse.sampler import PairTable
from shared.text.sentences import TextBatches, Tokenize
from shared.text.simcse import SentenceContrastive, simcse_loss


class DebCSELoss(torch.nn.Module):
    """``loss(anchor, positive, hard_negative=None)``: the equation above (hard negatives optional)."""

    def __init__(self, temperature: float = 0.05, gather_distributed: bool = True) -> None:
        super().__init__()
        self.temperature, self.gather_distributed = temperature, gather_distributed

    def forward(
        self, anchor: torch.Tensor, positive: torch.Tensor, hard_negative: torch.Tensor | None = None
    ) -> torch.Tensor:
        return simcse_loss(anchor, positive, self.temperature, hard_negative, self.gather_distributed)


class DebCSELossPair(DebCSELoss):
    """Two-input form for the distributed test: the hard negative is a row-wise function of the pair."""

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(z1, z2, torch.tanh(z1 - z2))


class DebCSE(SentenceContrastive):
    """Batches hold blocks [anchors; positives; (hard negatives)], each encoded once with dropout."""

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        blocks = int(batch.get("blocks", 1))
        if blocks not in (2, 3):
            raise ValueError(f"a DebCSE batch holds 2 or 3 blocks (anchor, positive, negative), got {blocks}")
        z = self.project(batch, views=1)[0].chunk(blocks)
        negative = z[2] if blocks == 3 else None
        return {"loss": simcse_loss(z[0], z[1], self.temperature, negative)}


class IPWPairBatches(TextBatches):
    """Anchors as :class:`TextBatches`; per anchor one IPW-sampled positive and (optionally) hard negative."""

    def __init__(
        self, sentences: list[str], tokenize: Tokenize, batch_size: int, table: PairTable, hard_negatives: bool = True
    ) -> None:
        super().__init__(sentences, tokenize, batch_size)
        self.table, self.hard_negatives = table, hard_negatives

    def extra_indices(self, index: torch.Tensor, generator: torch.Generator) -> list[torch.Tensor]:
        pos, neg = self.table.sample(index, generator)
        return [pos, neg] if self.hard_negatives else [pos]
