"""shared.distributed.gather_with_grad on 2 gloo processes against one process on the whole batch.

Each rank holds its slice of a leaf tensor, gathers all slices with gradients and computes a
rank-dependent, non-linear loss of every gathered row plus a term of its own rows only. The
backward of the gather sums the incoming gradients over ranks, so each rank's leaf gradient must
equal the slice of the gradient of Σ_r loss_r computed by one process holding the whole batch.
The same loss through a plain ``torch.distributed.all_gather`` (own slice re-inserted, the usual
mistake) loses the other rank's contribution, which the test checks is a visible difference.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from shared import distributed as sd
from shared.losses import info_nce_loss
from shared.testing import free_port

WORLD, N, DIM = 2, 3, 4


def make_data() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "x": torch.randn(WORLD * N, DIM, generator=g, dtype=torch.float64),
        "weights": torch.randn(WORLD, WORLD * N, DIM, generator=g, dtype=torch.float64),
        "z1": torch.randn(WORLD * N, DIM, generator=g, dtype=torch.float64),
        "z2": torch.randn(WORLD * N, DIM, generator=g, dtype=torch.float64),
    }


WORKER = '''
from pathlib import Path

import torch
import torch.distributed as dist

from shared import distributed as sd
from shared.losses import info_nce_loss
from shared.testing import gloo_worker


def rank_loss(gathered: torch.Tensor, own: torch.Tensor, weights: torch.Tensor, rank: int) -> torch.Tensor:
    """Rank ``rank``'s loss: a rank-weighted non-linear function of all gathered rows + its own rows."""
    cross = (weights[rank] * torch.tanh(gathered) * gathered.roll(1, dims=0)).sum()
    return cross + (rank + 1) * (own**3).sum() + torch.logsumexp(gathered @ gathered.T, dim=(0, 1))


def single_process(data: dict[str, torch.Tensor], world: int) -> dict[str, torch.Tensor]:
    """Σ_r loss_r on the whole batch in one process: what the gradients on the ranks must add up to."""
    x = data["x"].clone().requires_grad_(True)
    n = len(x) // world
    total = sum(rank_loss(x, x[r * n : (r + 1) * n], data["weights"], r) for r in range(world))
    total.backward()
    z1, z2 = data["z1"].clone().requires_grad_(True), data["z2"].clone().requires_grad_(True)
    info_nce_loss(z1, z2, 0.2, gather_distributed=False).backward()
    return {"total": total.detach(), "grad": x.grad, "nce_grad1": z1.grad, "nce_grad2": z2.grad}


def worker(rank: int, world: int, port: int, data: dict[str, torch.Tensor], out_dir: str) -> None:
    with gloo_worker(rank, world, port):
        n = len(data["x"]) // world
        part = slice(rank * n, (rank + 1) * n)
        assert sd.is_distributed() and sd.get_rank() == rank and sd.get_world_size() == world
        assert sd.local_offset(n) == rank * n

        # gather with gradient
        x = data["x"][part].clone().requires_grad_(True)
        gathered = sd.gather_with_grad(x)
        loss = rank_loss(gathered, x, data["weights"], rank)
        loss.backward()
        total = loss.detach().clone()
        dist.all_reduce(total)  # Σ_r loss_r, what the gradients are of

        # the same through a plain all_gather: no graph to the other rank's rows
        y = data["x"][part].clone().requires_grad_(True)
        parts = [torch.empty_like(y) for _ in range(world)]
        dist.all_gather(parts, y.detach())
        assert not any(p.requires_grad for p in parts)
        parts[rank] = y  # the usual patch: keeps only this rank's own path
        rank_loss(torch.cat(parts), y, data["weights"], rank).backward()

        # the local-loss form of NT-Xent: this rank's anchors against the gathered candidates
        z1 = data["z1"][part].clone().requires_grad_(True)
        z2 = data["z2"][part].clone().requires_grad_(True)
        nce = info_nce_loss(z1, z2, 0.2, gather_distributed=True)
        (nce / world).backward()  # DDP averages: the mean of per-rank losses is the global loss
        nce = nce.detach().clone()
        dist.all_reduce(nce)

        result = {
            "gathered": gathered.detach(),
            "grad": x.grad,
            "plain_grad": y.grad,
            "total": total,
            "nce": nce / world,
            "nce_grad1": z1.grad,
            "nce_grad2": z2.grad,
            "no_grad_gather": sd.gather_no_grad(x.detach()),
            "reduced": sd.all_reduce_sum(torch.full((2,), float(rank + 1), dtype=torch.float64)),
        }
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
'''


@pytest.fixture(scope="module")
def results():
    """One spawn for all distributed checks; the worker module is written to a temporary directory
    (as in test_moco.py) so that the spawned processes import it whatever the working directory."""
    data = make_data()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "gather_grad_worker.py").write_text(WORKER)
        sys.path.insert(0, tmp)
        try:
            module = importlib.import_module("gather_grad_worker")
            mp.spawn(module.worker, args=(WORLD, free_port(), data, tmp), nprocs=WORLD, join=True)
            per_rank = [torch.load(Path(tmp) / f"rank{r}.pt") for r in range(WORLD)]
            single = module.single_process(data, WORLD)
        finally:
            sys.path.remove(tmp)
            sys.modules.pop("gather_grad_worker", None)
    return data, per_rank, single


@pytest.mark.distributed
def test_gathered_value_is_the_whole_batch_in_rank_order(results):
    data, per_rank, _ = results
    for r in per_rank:
        torch.testing.assert_close(r["gathered"], data["x"], rtol=0, atol=0)
        torch.testing.assert_close(r["no_grad_gather"], data["x"], rtol=0, atol=0)
        torch.testing.assert_close(r["reduced"], torch.full((2,), 3.0, dtype=torch.float64), rtol=0, atol=0)


@pytest.mark.distributed
def test_each_rank_gets_its_slice_of_the_single_process_gradient(results):
    _, per_rank, single = results
    for rank, r in enumerate(per_rank):
        torch.testing.assert_close(r["total"], single["total"], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(r["grad"], single["grad"][rank * N : (rank + 1) * N], rtol=1e-6, atol=1e-6)


@pytest.mark.distributed
def test_plain_all_gather_misses_the_other_ranks_gradient(results):
    _, per_rank, single = results
    for rank, r in enumerate(per_rank):
        want = single["grad"][rank * N : (rank + 1) * N]
        assert (r["plain_grad"] - want).abs().max() > 1e-2  # the test above would fail with it


@pytest.mark.distributed
def test_info_nce_local_loss_form_equals_single_process(results):
    data, per_rank, single = results
    want = info_nce_loss(data["z1"], data["z2"], 0.2, gather_distributed=False)
    for rank, r in enumerate(per_rank):
        part = slice(rank * N, (rank + 1) * N)
        torch.testing.assert_close(r["nce"], want, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(r["nce_grad1"], single["nce_grad1"][part], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(r["nce_grad2"], single["nce_grad2"][part], rtol=1e-6, atol=1e-6)


def test_single_process_helpers_are_identities():
    assert not dist.is_initialized()
    x = torch.randn(3, 2, requires_grad=True)
    assert sd.gather_with_grad(x) is x
    assert sd.gather_no_grad(x) is x
    y = torch.ones(2)
    assert sd.all_reduce_sum(y) is y and torch.equal(y, torch.ones(2))
    assert (sd.is_distributed(), sd.get_rank(), sd.get_world_size(), sd.is_main_process()) == (False, 0, 1, True)
    assert sd.local_offset(5) == 0
