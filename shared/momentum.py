"""Momentum (EMA) teachers and a FIFO queue of embeddings: the machinery of MoCo-style methods.

* :func:`ema_update` — the momentum update of a teacher (MoCo's key encoder, BYOL's target,
  DINO's teacher) from its student (He et al., "Momentum Contrast for Unsupervised Visual
  Representation Learning", CVPR 2020, arXiv:1911.05722, Eq. 2):

      θ_t ← m · θ_t + (1 − m) · θ_s,      m ∈ [0, 1]

  m = 1 keeps the teacher fixed, m = 0 copies the student.
* :class:`EmbeddingQueue` — MoCo's dictionary: K embeddings, first in first out. Each step
  enqueues the keys of the *global* batch (gathered from every rank, in rank order, without
  gradients) in place of the oldest ones.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from shared.distributed import gather_no_grad


def check_momentum(momentum: float) -> float:
    """Raise ``ValueError`` unless ``momentum`` is a number in [0, 1]."""
    if not (isinstance(momentum, (int, float)) and 0.0 <= momentum <= 1.0):
        raise ValueError(f"momentum must be a number in [0, 1], got {momentum!r}")
    return float(momentum)


def momentum_copy(student: nn.Module) -> nn.Module:
    """A deep copy of ``student`` whose parameters take no gradient: the initial teacher."""
    teacher = copy.deepcopy(student)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """θ_teacher ← m·θ_teacher + (1 − m)·θ_student, parameter by parameter, in place.

    Only parameters are averaged (as MoCo does); buffers such as BatchNorm running
    statistics are the teacher's own (it runs its own forward passes in train mode).
    The two modules must have the same parameter names and shapes.
    """
    m = check_momentum(momentum)
    t_params, s_params = dict(teacher.named_parameters()), dict(student.named_parameters())
    if t_params.keys() != s_params.keys():
        raise ValueError("teacher and student must have the same parameters")
    for name, t in t_params.items():
        s = s_params[name]
        if t.shape != s.shape:
            raise ValueError(f"parameter {name!r}: teacher shape {tuple(t.shape)} != student shape {tuple(s.shape)}")
        if m == 1.0:
            continue
        if m == 0.0:
            t.copy_(s.detach())
        else:
            t.mul_(m).add_(s.detach().to(t.dtype), alpha=1.0 - m)


class EmbeddingQueue(nn.Module):
    """A FIFO queue of K L2-normalised embeddings of dimension ``dim`` (MoCo's dictionary).

    It starts with random unit vectors (as MoCo does) and lives in buffers, so it is saved
    with the model's ``state_dict`` and a resumed run continues with the same queue.
    :meth:`enqueue` gathers the keys of every rank (no gradient), so all ranks hold the same
    queue; it replaces the oldest ``B·W`` entries (B keys per rank, W ranks) and moves the
    pointer forward, wrapping around at K. K must be a multiple of the global batch, so
    that a batch never straddles the end of the queue (MoCo's assertion).

    Example:
        >>> queue = EmbeddingQueue(size=4096, dim=128)
        >>> negatives = queue.snapshot()          # (K, d), safe to use in the graph
        >>> queue.enqueue(F.normalize(torch.randn(256, 128), dim=1))
    """

    queue: torch.Tensor
    ptr: torch.Tensor

    def __init__(self, size: int, dim: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        for name, value in (("size", size), ("dim", dim)):
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"queue {name} must be a positive integer, got {value!r}")
        self.size, self.dim = size, dim
        self.register_buffer("queue", F.normalize(torch.randn(size, dim, generator=generator), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    def snapshot(self) -> torch.Tensor:
        """A detached copy of the queue (K, d): later enqueues do not touch it."""
        return self.queue.detach().clone()

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor, gather: bool = True) -> None:
        """Put the keys of this step (gathered from all ranks in rank order) in place of the oldest."""
        if keys.ndim != 2 or keys.shape[1] != self.dim:
            raise ValueError(f"keys must have shape (batch, {self.dim}), got {tuple(keys.shape)}")
        keys = gather_no_grad(keys.detach()) if gather else keys.detach()
        n = keys.shape[0]
        if n > self.size or self.size % n:
            raise ValueError(
                f"queue size {self.size} must be a multiple of the global batch of keys {n} "
                "(a batch may not straddle the end of the queue)"
            )
        start = int(self.ptr)
        self.queue[start : start + n] = keys.to(self.queue.dtype)
        self.ptr.fill_((start + n) % self.size)

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}"
