"""MoCHi's model: MoCo v2 (``shared.moco.MoCo``) whose logits gain the synthetic hard negatives.

Everything but the logits is MoCo v2's: encoders, momentum update, shuffled BN, queue (only
real keys are enqueued). After ``warmup_steps`` training steps the logits are
:func:`methods.mochi.loss.mochi_logits` of the queries, the keys and this step's queue
snapshot; before (and with s = s′ = 0) they are MoCo's, bit for bit.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from methods.mochi.loss import mochi_logits
from methods.mochi.mixing import check_mixing
from shared.moco import MoCo


class MoCHi(MoCo):
    """MoCo v2 + MoCHi(N, s, s′).

    Args:
        backbone, projector, **moco_kwargs: as :class:`shared.moco.MoCo` (no ``extra_negatives``).
        n_hard: N, the size of the hard set per query (N ≤ K).
        s: number of type-1 mixtures (pairs of hard negatives).
        s_prime: number of type-2 mixtures (query with a hard negative).
        beta_max: upper end of β's uniform range (paper: 0.5).
        warmup_steps: no mixing before this many training steps (the queue first fills
            with real keys); 0 mixes from the first step.

    Example:
        >>> model = MoCHi(backbone, head, n_hard=1024, s=512, s_prime=256, queue_size=65536)
        >>> loss = model({"views": (x_q, x_k)})["loss"]
    """

    def __init__(
        self,
        backbone: nn.Module,
        projector: nn.Module,
        n_hard: int,
        s: int,
        s_prime: int,
        beta_max: float = 0.5,
        warmup_steps: int = 0,
        **moco_kwargs: Any,
    ) -> None:
        check_mixing(n_hard, s, s_prime, beta_max)
        if not (isinstance(warmup_steps, int) and warmup_steps >= 0):
            raise ValueError(f"warmup_steps must be a non-negative integer, got {warmup_steps!r}")
        if moco_kwargs.get("extra_negatives") is not None:
            raise ValueError("MoCHi computes its own extra negatives; it does not take extra_negatives")
        super().__init__(backbone, projector, **moco_kwargs)
        if n_hard > self.queue.size:
            raise ValueError(f"n_hard (N={n_hard}) cannot exceed the queue size K={self.queue.size}")
        self.n_hard, self.s, self.s_prime, self.beta_max = n_hard, s, s_prime, float(beta_max)
        self.warmup_steps = warmup_steps

    def logits(self, q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor) -> torch.Tensor:
        if int(self.steps) < self.warmup_steps:
            return super().logits(q, k, queue)
        return mochi_logits(q, k, queue, self.n_hard, self.s, self.s_prime, self.temperature, self.beta_max)

    def extra_repr(self) -> str:
        return f"N={self.n_hard}, s={self.s}, s'={self.s_prime}, beta_max={self.beta_max}, warmup={self.warmup_steps}"
