"""Test helper: MoCo v2 + Hallucinator on W gloo processes vs one process on the whole batch.

A tiny MoCo (linear backbone, ReLU–linear head, no BatchNorm) takes one training step on
each rank's slice of a fixed batch; loss and encoder gradient are averaged over ranks (DDP's
averaging) and returned with rank 0's queue, pointer, and the λ each rank drew from a
different local RNG state (the broadcast must make them agree).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from methods.hallucinator.generator import Hallucinator
from methods.hallucinator.models import HallucinatedMoCo
from shared.testing import free_port, gloo_worker


def tiny_moco(enqueue_duplicates: bool = False, queue_size: int = 16, lam: float = 0.05) -> HallucinatedMoCo:
    """float64 MoCo + Hallucinator on (B, 6) inputs, 4-d keys, fixed λ, built from seed 0."""
    torch.manual_seed(0)
    backbone, head = nn.Linear(6, 8), nn.Sequential(nn.ReLU(), nn.Linear(8, 4))
    model = HallucinatedMoCo(
        backbone,
        head,
        lambda_range=(lam, lam),
        enqueue_duplicates=enqueue_duplicates,
        temperature=0.2,
        queue_size=queue_size,
        momentum=0.99,
    )
    return model.double()


def _one_step(rank: int, world: int, data: dict, enqueue_duplicates: bool) -> dict:
    model = tiny_moco(enqueue_duplicates, queue_size=data["queue_size"])
    n = len(data["x_q"]) // world
    part = slice(rank * n, (rank + 1) * n)
    out = model({"views": (data["x_q"][part], data["x_k"][part])})
    out["loss"].backward()
    loss, grad = out["loss"].detach(), model.backbone.weight.grad.clone()
    dist.all_reduce(loss)
    dist.all_reduce(grad)
    return {"loss": loss / world, "grad": grad / world, "queue": model.queue.queue.clone(), "ptr": int(model.queue.ptr)}


def _worker(rank: int, world: int, port: int, data: dict, out_dir: str) -> None:
    with gloo_worker(rank, world, port):
        results = {dup: _one_step(rank, world, data, dup) for dup in (False, True)}
        torch.manual_seed(rank)  # the local RNGs differ; the λ drawn must not
        lam = torch.tensor([Hallucinator(4).sample_lambda()], dtype=torch.float64)
        lams = [torch.zeros_like(lam) for _ in range(world)]
        dist.all_gather(lams, lam)
        if rank == 0:
            torch.save({**results, "lams": [float(x) for x in lams]}, Path(out_dir) / "moco.pt")


def moco_two_processes(x_q: torch.Tensor, x_k: torch.Tensor, queue_size: int = 32, world_size: int = 2) -> dict:
    """One training step of :func:`tiny_moco` split over ``world_size`` gloo processes (see module docs).

    Returns ``{False: step, True: step, "lams": [λ per rank]}``, one step per value of
    ``enqueue_duplicates``, each ``{"loss", "grad", "queue", "ptr"}``.
    """
    data = {"x_q": x_q, "x_k": x_k, "queue_size": queue_size}
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(world_size, free_port(), data, tmp), nprocs=world_size, join=True)
        return torch.load(Path(tmp) / "moco.pt")
