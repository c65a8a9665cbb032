"""WhitenedCSE: SimCSE with Shuffled Group Whitening in the training head and m positives.

Each sentence is encoded m times (dropout noise); the head is SGW → Linear → tanh, SGW
whitening each view with its own channel shuffle; the loss sums SimCSE's InfoNCE of the
first view against each other view (official ``cl_forward``: ``loss1 + loss2`` for m = 3):

    L = Σ_{k=2}^{m} (1/N) Σ_i −log e^{sim(z_i^1, z_i^k)/τ} / Σ_j e^{sim(z_i^1, z_j^k)/τ}.

Evaluation uses the [CLS] vector without head or whitening (``mlp_only_train``).
"""

from __future__ import annotations

import torch

from methods.whitenedcse.whitening import ShuffledGroupWhitening
from shared.text.encoders import TextEncoder
from shared.text.simcse import MLPHead, SentenceContrastive, simcse_loss


def multi_positive_loss(z: torch.Tensor, temperature: float = 0.05, gather_distributed: bool = True) -> torch.Tensor:
    """Σ_{k≥2} SimCSE InfoNCE(view 1, view k) for ``z`` of shape (m, N, d), m ≥ 2."""
    if not isinstance(z, torch.Tensor) or z.ndim != 3:
        raise ValueError(f"z must have shape (views, batch, dim), got {getattr(z, 'shape', type(z))}")
    if z.shape[0] < 2:
        raise ValueError(f"need at least 2 views, got {z.shape[0]}")
    return sum(simcse_loss(z[0], z[k], temperature, None, gather_distributed) for k in range(1, len(z)))


class MultiPositiveLoss(torch.nn.Module):
    """Two-input form for tests: views (z1, z2, z3 = f(z1, z2)) with a row-wise third view."""

    def __init__(self, temperature: float = 0.05) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return multi_positive_loss(torch.stack([z1, z2, torch.tanh(z1 - z2)]), self.temperature)


class WhitenedCSE(SentenceContrastive):
    """Encoder → (training) SGW + MLP head on ``num_pos`` dropout views → multi-positive InfoNCE."""

    def __init__(
        self, encoder: TextEncoder, sgw: ShuffledGroupWhitening | None, temperature: float = 0.05, num_pos: int = 3
    ) -> None:
        super().__init__(encoder, MLPHead(encoder.dim), temperature)
        if num_pos < 2:
            raise ValueError(f"num_pos must be at least 2, got {num_pos}")
        self.sgw, self.num_pos = sgw, num_pos

    def head_views(self, h: torch.Tensor) -> torch.Tensor:
        if self.sgw is not None:
            h = self.sgw(h)
        return self.head(h.flatten(0, 1)).view(h.shape)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        z = self.project(batch, self.num_pos)
        return {"loss": multi_positive_loss(z, self.temperature)}
