"""Test helper: one OBoW step on W gloo processes vs one process holding the whole batch.

Fixed (float64) teacher maps per level, fixed per-image vocabulary positions, fixed student
inputs through a shared linear "encoder" W, the same initial vocabularies and predictor. Each
rank computes the BoW targets of its images (the mean minimum distance all-reduced, the
vocabulary candidates all-gathered into the queue), its local loss and its gradients; with
DDP's gradient averaging the W-process step must equal the single-process step: targets,
queues, d̄, loss, and the gradients of W and of the weight generators.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from methods.obow.bow import BoWExtractor
from methods.obow.loss import obow_loss
from methods.obow.predictor import BoWPredictor
from shared.testing import free_port, gloo_worker


def _step(data: dict, part: slice, num_words: int) -> dict[str, torch.Tensor]:
    dims = [m.shape[1] for m in data["maps"]]
    extractors = [BoWExtractor(num_words, d, inv_delta=10.0).double() for d in dims]
    for e, v in zip(extractors, data["vocab"], strict=True):
        e.queue.queue.copy_(v)
    torch.manual_seed(0)
    predictor = BoWPredictor(dims, data["weight"].shape[1], kappa=5.0).double()
    w = data["weight"].clone().requires_grad_(True)
    vocab = [e.vocabulary() for e in extractors]
    v, n = data["x"].shape[0], data["x"][:, part].shape[1]
    logits = predictor((data["x"][:, part] @ w).reshape(v * n, -1), vocab)
    targets = [e(m[part], data["index"][part]) for e, m in zip(extractors, data["maps"], strict=True)]
    loss = obow_loss(logits, targets)
    loss.backward()
    return {
        "loss": loss.detach(),
        "grad": w.grad.detach(),
        "generator_grad": torch.cat([p.grad.flatten() for p in predictor.parameters() if p.grad is not None]),
        "targets": torch.cat(targets, dim=1),
        "queues": torch.cat([e.queue.queue.flatten() for e in extractors]),
        "ptr": torch.stack([e.queue.ptr for e in extractors]),
        "dbar": torch.stack([e.mean_min_distance for e in extractors]),
    }


def _worker(rank: int, world: int, port: int, data: dict, num_words: int, out_dir: str) -> None:
    with gloo_worker(rank, world, port):
        n = data["x"].shape[1] // world
        r = _step(data, slice(rank * n, (rank + 1) * n), num_words)
        targets = [torch.empty_like(r["targets"]) for _ in range(world)]
        dist.all_gather(targets, r["targets"])
        for key in ("loss", "grad", "generator_grad"):
            dist.all_reduce(r[key])
            r[key] /= world
        if rank == 0:
            torch.save({**r, "targets": torch.cat(targets)}, Path(out_dir) / "result.pt")


def distributed_obow_check(
    batch: int = 8,
    crops: int = 2,
    in_dim: int = 6,
    feature_dim: int = 5,
    level_dims: tuple[int, ...] = (3, 4),
    map_size: int = 6,
    num_words: int = 16,
    world_size: int = 2,
    seed: int = 0,
) -> dict[str, dict[str, torch.Tensor]]:
    """``{"single": {...}, "dist": {...}}``: loss, gradients, targets, queues, pointers and d̄ after one step."""
    g = torch.Generator().manual_seed(seed)
    positions = (map_size - 2 - 2) ** 2  # border crop, then the 3×3 local average
    data = {
        "x": torch.randn(crops, batch, in_dim, generator=g, dtype=torch.float64),
        "weight": torch.randn(in_dim, feature_dim, generator=g, dtype=torch.float64),
        "maps": [torch.rand(batch, c, map_size, map_size, generator=g, dtype=torch.float64) for c in level_dims],
        "vocab": [torch.rand(num_words, c, generator=g, dtype=torch.float64) for c in level_dims],
        "index": torch.randint(0, positions, (batch,), generator=g),
    }
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(world_size, free_port(), data, num_words, tmp), nprocs=world_size, join=True)
        dist_result = torch.load(Path(tmp) / "result.pt")
    return {"single": _step(data, slice(None), num_words), "dist": dist_result}
