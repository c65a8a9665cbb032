"""SwAV's optional feature queue (for small batches).

With few samples per step, spreading B samples evenly over K prototypes is a coarse
constraint. The official code then keeps, per assigned crop, a FIFO of the last
``length`` embeddings (3840 at batch 256, started at epoch 15): their scores against the
*current* prototypes join the Sinkhorn problem, only the batch's codes are used, and the
queue is never back-propagated through. It is consulted only once it is full.

Newest embeddings sit at the front: a push of b rows shifts the queue by exactly b.
"""

from __future__ import annotations

import torch
from torch import nn


class EmbeddingQueue(nn.Module):
    """``num_queues`` FIFO queues of ``length`` embeddings of dimension ``dim`` (buffers).

    Example:
        >>> q = EmbeddingQueue(num_queues=2, length=8, dim=4)
        >>> q.push(torch.randn(2, 4, 4)); q.push(torch.randn(2, 4, 4)); q.full
        True
    """

    def __init__(self, num_queues: int, length: int, dim: int) -> None:
        super().__init__()
        for name, value in (("num_queues", num_queues), ("length", length), ("dim", dim)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.register_buffer("embeddings", torch.zeros(num_queues, length, dim))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    @property
    def length(self) -> int:
        return self.embeddings.shape[1]

    @property
    def full(self) -> bool:
        return int(self.count) >= self.length

    @torch.no_grad()
    def push(self, new: torch.Tensor) -> None:
        """Insert ``new`` (num_queues, b, dim) at the front, dropping the b oldest rows."""
        nq, length, dim = self.embeddings.shape
        if new.ndim != 3 or new.shape[0] != nq or new.shape[2] != dim:
            raise ValueError(f"expected embeddings of shape ({nq}, batch, {dim}), got {tuple(new.shape)}")
        b = new.shape[1]
        if b > length:
            raise ValueError(f"a batch of {b} does not fit a queue of length {length}")
        self.embeddings[:, b:] = self.embeddings[:, : length - b].clone()
        self.embeddings[:, :b] = new.detach().to(self.embeddings.dtype)
        self.count.add_(b).clamp_(max=length)

    def reset(self) -> None:
        self.embeddings.zero_()
        self.count.zero_()
