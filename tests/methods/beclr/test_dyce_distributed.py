"""DyCE on 2 gloo processes against one process holding the whole batch.

Each step, every rank embeds its half of both views with a shared linear "encoder" (z = x·W,
rows ``[view 1; view 2]``), updates one DyCE memory (gathering all ranks' rows), enhances its own
rows from the memory and computes the BECLR loss (z̄ = sg(z), p = z = enhanced z) with DDP's
gradient averaging done by hand. Seven steps of 2·8 rows into a memory of 48: three fill it, the
fourth runs k-means and then the Sinkhorn assignment, the later ones overwrite the oldest entries.
After every step the memory (entries, labels, prototypes, pointer, count) must equal the
single-process one and be bit-identical on both ranks; once it is clustered, the enhanced batch
(rank blocks reassembled into the global layout), the loss and the gradient of W must agree too.

The memory must hold the global batch in the single-process layout ``[v_1 of all; v_2 of all]``:
k-means's initialisation depends on the order of the rows, so the same entries in rank order
``[rank 0's v_1; v_2; rank 1's v_1; v_2]`` give another partition (the bug this test found).
"""

from __future__ import annotations

import importlib
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from shared.testing import free_port

WORLD, BATCH, IN_DIM, DIM, STEPS, TOPK = 2, 8, 6, 8, 7, 2

WORKER = '''
from pathlib import Path

import torch
import torch.distributed as dist

from methods.beclr.dyce import DyCE, DyCEConfig
from methods.beclr.loss import beclr_loss
from shared.testing import gloo_worker

STATE = ("bank", "labels", "prototypes", "ptr", "count", "clustered")


def run(data: dict, world: int, rank: int, topk: int) -> list[dict]:
    """Per step: the memory state, and once clustered the local enhanced rows, loss and W gradient."""
    memory = DyCE(data["weight"].shape[1], DyCEConfig(size=48, num_clusters=4, topk=topk, kmeans_init=3), seed=0)
    steps = []
    for x1, x2 in data["batches"]:
        n = len(x1) // world
        part = slice(rank * n, (rank + 1) * n)
        w = data["weight"].clone().requires_grad_(True)
        z = torch.cat([x1[part] @ w, x2[part] @ w])
        memory.update(z.detach())
        step = {name: getattr(memory, name).clone() for name in STATE}
        if memory.ready:
            enhanced = memory.enhance(z)
            loss = beclr_loss(enhanced.detach(), enhanced, enhanced, temperature=0.5)["loss"]
            loss.backward()
            loss, grad = loss.detach(), w.grad
            if world > 1:  # DDP: the mean over ranks of the losses and of the gradients
                dist.all_reduce(loss)
                dist.all_reduce(grad)
            step.update(enhanced=enhanced.detach(), loss=loss / world, grad=grad / world)
        steps.append(step)
    return steps


def worker(rank: int, world: int, port: int, data: dict, topk: int, out_dir: str) -> None:
    with gloo_worker(rank, world, port):
        torch.save(run(data, world, rank, topk), Path(out_dir) / f"rank{rank}.pt")
'''


def make_data() -> dict:
    g = torch.Generator().manual_seed(0)
    batches = [
        (
            torch.randn(BATCH, IN_DIM, generator=g, dtype=torch.float64),
            torch.randn(BATCH, IN_DIM, generator=g, dtype=torch.float64),
        )
        for _ in range(STEPS)
    ]
    return {"batches": batches, "weight": torch.randn(IN_DIM, DIM, generator=g, dtype=torch.float64)}


def global_layout(per_rank: list[torch.Tensor], views: int = 2) -> torch.Tensor:
    """Rank-local ``[v_1; v_1's neighbours; v_2; …]`` blocks → the single-process layout of the whole batch."""
    blocks = []
    for v in range(views):
        own = [t.chunk(views)[v] for t in per_rank]
        n = own[0].shape[0] // (1 + TOPK)
        blocks += [torch.cat([o[:n] for o in own]), torch.cat([o[n:] for o in own])]
    return torch.cat(blocks)


@pytest.fixture(scope="module")
def runs():
    data = make_data()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "dyce_dist_worker.py").write_text(WORKER)
        sys.path.insert(0, tmp)
        try:
            module = importlib.import_module("dyce_dist_worker")
            mp.spawn(module.worker, args=(WORLD, free_port(), data, TOPK, tmp), nprocs=WORLD, join=True)
            per_rank = [torch.load(Path(tmp) / f"rank{r}.pt") for r in range(WORLD)]
            single = module.run(data, 1, 0, TOPK)
        finally:
            sys.path.remove(tmp)
            sys.modules.pop("dyce_dist_worker", None)
    return per_rank, single


@pytest.mark.distributed
def test_every_rank_holds_the_same_memory(runs):
    per_rank, _ = runs
    for step0, step1 in zip(*per_rank, strict=True):
        for name in ("bank", "labels", "prototypes", "ptr", "count", "clustered"):
            assert torch.equal(step0[name], step1[name]), name


@pytest.mark.distributed
def test_memory_matches_one_process_on_the_whole_batch(runs):
    per_rank, single = runs
    assert [bool(s["clustered"]) for s in single] == [False] * 3 + [True] * 4  # k-means ran at step 4
    assert int(single[-1]["ptr"]) == 16  # 7 × 16 rows into 48: wrapped around
    for dist_step, single_step in zip(per_rank[0], single, strict=True):
        for name in ("labels", "ptr", "count", "clustered"):
            assert torch.equal(dist_step[name], single_step[name]), name
        for name in ("bank", "prototypes"):
            assert torch.allclose(dist_step[name], single_step[name], atol=1e-6), name


@pytest.mark.distributed
def test_enhanced_batch_loss_and_gradient_match_one_process(runs):
    per_rank, single = runs
    enhanced_steps = 0
    for step, single_step in enumerate(single):
        if "loss" not in single_step:
            assert all("loss" not in r[step] for r in per_rank)
            continue
        enhanced_steps += 1
        dist_enhanced = global_layout([r[step]["enhanced"] for r in per_rank])
        assert dist_enhanced.shape == single_step["enhanced"].shape == (2 * BATCH * (1 + TOPK), DIM)
        assert torch.allclose(dist_enhanced, single_step["enhanced"], atol=1e-6)
        for r in per_rank:
            assert r[step]["loss"].item() == pytest.approx(single_step["loss"].item(), abs=1e-8)
            assert torch.allclose(r[step]["grad"], single_step["grad"], atol=1e-8)
        assert single_step["grad"].abs().sum() > 0
    assert enhanced_steps == 4
