"""Test helper: SwAV's Sinkhorn codes and loss on W gloo processes vs one process.

Each rank holds its slice of the batch (every crop), computes the codes of its samples
(the Sinkhorn sums all-reduced over ranks) and its local loss; a shared linear "encoder"
in front of fixed unit prototypes lets the parameter gradients be compared too. With DDP's
gradient averaging the W-process run must equal the single-process run on the whole batch.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from methods.swav.loss import swav_loss
from methods.swav.sinkhorn import sinkhorn
from shared.testing import free_port, gloo_worker


def _codes_loss_grad(data: dict, part: slice, kwargs: dict) -> dict[str, torch.Tensor]:
    w = data["weight"].clone().requires_grad_(True)
    z = F.normalize(data["x"][:, part] @ w, dim=-1)  # (V, n, d)
    scores = z @ data["prototypes"].T  # (V, n, K)
    codes = sinkhorn(scores[0], kwargs["epsilon"], kwargs["sinkhorn_iterations"])
    loss = swav_loss(scores, **kwargs)
    loss.backward()
    return {"codes": codes, "loss": loss.detach(), "grad": w.grad.detach()}


def _worker(rank: int, world: int, port: int, data: dict, kwargs: dict, out_dir: str) -> None:
    with gloo_worker(rank, world, port):
        n = data["x"].shape[1] // world
        r = _codes_loss_grad(data, slice(rank * n, (rank + 1) * n), kwargs)
        codes = [torch.empty_like(r["codes"]) for _ in range(world)]
        dist.all_gather(codes, r["codes"])
        dist.all_reduce(r["loss"])
        dist.all_reduce(r["grad"])
        if rank == 0:
            out = {"codes": torch.cat(codes), "loss": r["loss"] / world, "grad": r["grad"] / world}
            torch.save(out, Path(out_dir) / "result.pt")


def distributed_swav_check(
    crops: int = 4,
    batch: int = 8,
    in_dim: int = 6,
    dim: int = 5,
    num_prototypes: int = 7,
    world_size: int = 2,
    seed: int = 0,
    **loss_kwargs,
) -> dict[str, dict[str, torch.Tensor]]:
    """``{"single": {...}, "dist": {...}}`` with the codes of crop 0 (B, K), the loss and the encoder grad."""
    g = torch.Generator().manual_seed(seed)
    data = {
        "x": torch.randn(crops, batch, in_dim, generator=g, dtype=torch.float64),
        "weight": torch.randn(in_dim, dim, generator=g, dtype=torch.float64),
        "prototypes": F.normalize(torch.randn(num_prototypes, dim, generator=g, dtype=torch.float64), dim=1),
    }
    kwargs = {"temperature": 0.1, "epsilon": 0.05, "sinkhorn_iterations": 3, **loss_kwargs}
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(world_size, free_port(), data, kwargs, tmp), nprocs=world_size, join=True)
        dist_result = torch.load(Path(tmp) / "result.pt")
    return {"single": _codes_loss_grad(data, slice(None), kwargs), "dist": dist_result}
