"""Rank/world helpers and an all-gather that keeps gradients.

Cross-sample losses (InfoNCE, DCL, SwAV's Sinkhorn, ...) must see the samples of every
process. ``torch.distributed.all_gather`` and Accelerate's ``gather`` return tensors that
are cut from the autograd graph, so the negatives of other ranks would carry no gradient
back to the rank that produced them. :func:`gather_with_grad` fixes that: its backward
sums the incoming gradients over ranks and hands each rank the slice of its own input.

Every helper works with and without an initialised process group (then it is a no-op
for a single process), so the same loss code runs in a notebook and under
``accelerate launch``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True when a process group is initialised with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """Rank of this process, 0 without a process group."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    """Number of processes, 1 without a process group."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    return get_rank() == 0


class _GatherWithGrad(torch.autograd.Function):
    """All-gather whose backward routes each rank's share of the gradient home.

    Forward: ``[x_0, ..., x_{W-1}]`` concatenated along dim 0 (every rank's input must
    have the same shape). Backward: the gradient w.r.t. the concatenation is summed over
    ranks (each rank's loss used every slice) and rank r keeps slice r.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        world = dist.get_world_size()
        ctx.rank = dist.get_rank()
        ctx.batch = x.shape[0]
        out = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(out, x.contiguous())
        return torch.cat(out, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.batch
        return grad[start : start + ctx.batch]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from all ranks along dim 0, keeping gradients.

    A no-op with one process. With W processes of local batch n the result has W·n rows,
    rank r's rows at ``[r·n, (r+1)·n)``.
    """
    if not is_distributed():
        return x
    return _GatherWithGrad.apply(x)


@torch.no_grad()
def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """All-gather for tensors that need no gradient (queues, labels, kNN banks)."""
    if not is_distributed():
        return x
    out = [torch.empty_like(x) for _ in range(get_world_size())]
    dist.all_gather(out, x.contiguous())
    return torch.cat(out, dim=0)


@torch.no_grad()
def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of ``x`` over ranks, in place and returned; identity with one process."""
    if is_distributed():
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def local_offset(local_batch: int) -> int:
    """Index of this rank's first row in a gathered batch of equal local batches."""
    return get_rank() * local_batch
