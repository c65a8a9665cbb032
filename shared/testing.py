"""Test helpers every paper uses: distributed equivalence of a cross-sample loss, and a stand-in
for a hub image split with a tiny network to check a paper preset's evaluation wiring offline.

:func:`distributed_equivalence` runs a two-view loss on W gloo processes (each holding
its slice of the batch, the loss gathering the rest) and on one process holding the whole
batch, with a shared linear "encoder" in front so that parameter gradients are checked
too. With DDP's gradient averaging the two must agree: value (mean of the per-rank
losses) and gradients (mean over ranks of the local gradients).
"""

from __future__ import annotations

import importlib
import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _build(factory: str, kwargs: dict[str, Any]):
    module, _, attr = factory.partition(":")
    return getattr(importlib.import_module(module), attr)(**kwargs)


def _loss_and_grad(factory, kwargs, x1, x2, weight):
    loss_fn = _build(factory, kwargs)
    w = weight.clone().requires_grad_(True)
    loss = loss_fn(x1 @ w, x2 @ w)
    loss.backward()
    return loss.detach(), w.grad.detach()


@contextmanager
def gloo_worker(rank: int, world: int, port: int) -> Iterator[None]:
    """Run the body as rank ``rank`` of a CPU (gloo) process group, then end the process cleanly.

    For the worker function of ``torch.multiprocessing.spawn``. After the body succeeds, all ranks
    meet at a barrier, the group is destroyed, and the process exits with ``os._exit(0)``:
    the interpreter's own teardown aborts now and then once gloo's threads have run ("terminate
    called without an active exception", SIGABRT), which would fail a test whose work was done.
    An exception in the body tears the group down and propagates (``spawn`` reports it).
    """
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        yield
    except BaseException:
        dist.destroy_process_group()
        raise
    dist.barrier()
    dist.destroy_process_group()
    os._exit(0)


def _worker(rank: int, world: int, port: int, cases: list, data: dict, out_dir: str) -> None:
    with gloo_worker(rank, world, port):
        n = data["x1"].shape[0] // world
        part = slice(rank * n, (rank + 1) * n)
        results = []
        for factory, kwargs in cases:
            loss, grad = _loss_and_grad(factory, kwargs, data["x1"][part], data["x2"][part], data["weight"])
            dist.all_reduce(loss)
            dist.all_reduce(grad)
            results.append({"loss": loss / world, "grad": grad / world})
        if rank == 0:
            torch.save(results, Path(out_dir) / "result.pt")


def distributed_equivalence(
    cases: list[tuple[str, dict[str, Any]]],
    batch: int = 8,
    in_dim: int = 6,
    dim: int = 5,
    world_size: int = 2,
    seed: int = 0,
) -> list[dict[str, torch.Tensor]]:
    """Loss value and encoder gradient, single process vs ``world_size`` gloo processes.

    Each case is ``("module:callable", kwargs)``, the callable returning the loss module
    (picklable across ``spawn``); all cases share one spawn. Returns, per case,
    ``{"single_loss", "single_grad", "dist_loss", "dist_grad"}``.
    """
    g = torch.Generator().manual_seed(seed)
    data = {
        "x1": torch.randn(batch, in_dim, generator=g, dtype=torch.float64),
        "x2": torch.randn(batch, in_dim, generator=g, dtype=torch.float64),
        "weight": torch.randn(in_dim, dim, generator=g, dtype=torch.float64),
    }
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(world_size, free_port(), cases, data, tmp), nprocs=world_size, join=True)
        results = torch.load(Path(tmp) / "result.pt")
    out = []
    for (factory, kwargs), r in zip(cases, results, strict=True):
        single_loss, single_grad = _loss_and_grad(factory, kwargs, data["x1"], data["x2"], data["weight"])
        out.append(
            {"single_loss": single_loss, "single_grad": single_grad, "dist_loss": r["loss"], "dist_grad": r["grad"]}
        )
    return out


def fake_hub_images(labels: list[int], image_key: str = "image", size: int = 8, seed: int = 0) -> list[dict]:
    """A stand-in for a hub image split (``ds[i]`` → ``{image_key: PIL image, "label": y}``): RGB images
    whose brightness is set by the label (plus a little noise), so that the classes are linearly separable."""
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    out = []
    for y in labels:
        pixels = (40 + 150 * (y % 2) + 20 * (y // 2) + 5 * torch.rand(size, size, 3, generator=g)).clamp(0, 255)
        out.append({image_key: Image.fromarray(pixels.to(torch.uint8).numpy()), "label": int(y)})
    return out


def tiny_backbone_model(seed: int = 0) -> torch.nn.Module:
    """A module whose ``backbone`` is a 3→8 convolution and a global average pool (any input size)."""
    torch.manual_seed(seed)
    model = torch.nn.Module()
    model.backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    return model


def assert_floor_trained_nothing(record: dict, runs: Path, baseline: str, floor: str = "untrained") -> None:
    """A smoke record's floor arm: the baseline's metric keys, no training curve, zero optimiser steps
    (while the baseline took some), read from each run's ``run_stats.json`` under ``runs`` (seed 0)."""
    import json

    assert set(record["arms"][floor]) == set(record["arms"][baseline])
    assert record["curves"][floor] == []
    assert json.loads((runs / floor / "seed0" / "run_stats.json").read_text())["steps"] == 0
    assert json.loads((runs / baseline / "seed0" / "run_stats.json").read_text())["steps"] > 0
