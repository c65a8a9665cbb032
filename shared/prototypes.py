"""A prototype layer: K trainable unit vectors scored against normalised embeddings.

Online-clustering methods (SwAV, DeepCluster-v2, SeLa-v2, ...) keep a matrix of K
prototypes C = [c_1, ..., c_K] ∈ R^{K×d} and score an L2-normalised embedding z by
``s_k = z · c_k`` (a linear layer without bias). Two details of SwAV's official training
loop are generic and live here:

* **Row re-normalisation.** Before every iteration each prototype is projected back to
  the unit sphere, c_k ← c_k / ‖c_k‖, so scores are cosine similarities in [−1, 1]
  (:meth:`Prototypes.normalize_`).
* **Freezing for the first N iterations.** The prototypes receive no gradient while
  ``iteration < freeze_iters`` (SwAV: 313 iterations at batch 4096, 5005 at batch 256),
  which keeps them from collapsing while the encoder is still random. The official code
  sets the gradients to None after ``backward``; here the weight is detached inside
  ``forward`` while frozen, which gives the same parameter update (``grad`` stays None)
  and the same gradient for the embeddings. Under DDP a frozen step leaves the
  prototypes unused: build DDP with ``find_unused_parameters=True``, as the official
  code does.

The iteration counter is a buffer (saved in checkpoints): call :meth:`Prototypes.set_iteration`
(or :meth:`step`) after each optimiser step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Prototypes(nn.Module):
    """K prototypes of dimension ``dim``; ``forward(z)`` → scores (B, K) = z · Cᵀ, at least float32.

    Args:
        dim: embedding dimension d.
        num_prototypes: K.
        freeze_iters: the prototypes get no gradient while ``iteration < freeze_iters``.

    Example:
        >>> protos = Prototypes(128, 3000, freeze_iters=313)
        >>> protos.normalize_()
        >>> scores = protos(F.normalize(torch.randn(8, 128), dim=1))   # (8, 3000)
    """

    def __init__(self, dim: int, num_prototypes: int, freeze_iters: int = 0) -> None:
        super().__init__()
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        if not isinstance(num_prototypes, int) or num_prototypes < 1:
            raise ValueError(f"num_prototypes must be a positive integer, got {num_prototypes!r}")
        if not isinstance(freeze_iters, int) or freeze_iters < 0:
            raise ValueError(f"freeze_iters must be a non-negative integer, got {freeze_iters!r}")
        self.dim, self.num_prototypes, self.freeze_iters = dim, num_prototypes, freeze_iters
        self.weight = nn.Parameter(torch.empty(num_prototypes, dim))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)  # nn.Linear's default initialisation
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))

    @property
    def frozen(self) -> bool:
        """True while the prototypes are held fixed (``iteration < freeze_iters``)."""
        return int(self.iteration) < self.freeze_iters

    @torch.no_grad()
    def normalize_(self) -> None:
        """Project every prototype row onto the unit sphere, in place."""
        self.weight.copy_(F.normalize(self.weight, dim=1))

    def set_iteration(self, iteration: int) -> None:
        """The number of optimiser steps done so far (decides :attr:`frozen`)."""
        self.iteration.fill_(int(iteration))

    def step(self) -> None:
        self.iteration.add_(1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise ValueError(f"expected embeddings of shape (batch, {self.dim}), got {tuple(z.shape)}")
        weight = self.weight.detach() if self.frozen else self.weight
        if z.dtype not in (torch.float32, torch.float64):
            z = z.float()  # scores in float32 under bf16/fp16 autocast
        with torch.autocast(z.device.type, enabled=False):
            return z @ weight.to(z.dtype).T

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_prototypes={self.num_prototypes}, freeze_iters={self.freeze_iters}"


__all__ = ["Prototypes"]
