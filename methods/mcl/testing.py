"""Test helper: MCL's sampler + cluster-restricted InfoNCE on W gloo processes vs one process.

Each rank takes its share of every single-label group of a sampler step
(:meth:`ClusterBatchSampler.rank_slice`), embeds it with a shared linear "encoder" and computes
its local loss, the embeddings (with gradients) and pseudo-labels of the other ranks gathered.
With DDP's gradient averaging the mean of the rank losses and gradients must equal one process
on the whole step.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from methods.mcl.loss import cluster_info_nce
from methods.mcl.sampler import ClusterBatchSampler
from shared.testing import free_port, gloo_worker


def loss_and_grad(data: dict, index: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    w = data["weight"].clone().requires_grad_(True)
    loss = cluster_info_nce(data["x1"][index] @ w, data["x2"][index] @ w, data["pseudo"][index], temperature)
    loss.backward()
    return loss.detach(), w.grad.detach()


def _worker(rank: int, world: int, port: int, data: dict, cfg: dict, out_dir: str) -> None:
    with gloo_worker(rank, world, port):
        sampler = ClusterBatchSampler(data["pseudo"], cfg["batch_size"], cfg["groups"])
        index = sampler.rank_slice(sampler.epoch_batches(0, 0)[0], rank, world)
        loss, grad = loss_and_grad(data, index, cfg["temperature"])
        dist.all_reduce(loss)
        dist.all_reduce(grad)
        if rank == 0:
            torch.save({"loss": loss / world, "grad": grad / world}, Path(out_dir) / "result.pt")


def sampler_loss_equivalence(
    data: dict, batch_size: int, groups: int, temperature: float = 0.2, world_size: int = 2
) -> dict[str, torch.Tensor]:
    """``data``: x1, x2 (N, in), weight (in, d), pseudo (N,). Returns single_/dist_ loss and grad."""
    cfg = {"batch_size": batch_size, "groups": groups, "temperature": temperature}
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(world_size, free_port(), data, cfg, tmp), nprocs=world_size, join=True)
        dist_result = torch.load(Path(tmp) / "result.pt")
    batch = ClusterBatchSampler(data["pseudo"], batch_size, groups).epoch_batches(0, 0)[0]
    loss, grad = loss_and_grad(data, batch, temperature)
    return {
        "single_loss": loss,
        "single_grad": grad,
        "dist_loss": dist_result["loss"],
        "dist_grad": dist_result["grad"],
    }
