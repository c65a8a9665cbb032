"""MoCo v2 (shared/moco.py): the loss against a float64 loop, the model's mechanics, 2-process equivalence."""

import importlib
import math
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from shared.moco import MoCo, moco_logits, moco_loss, moco_v2_augment_config
from shared.testing import free_port


def naive_moco_loss(q, k, queue, tau, extra=None):
    """−log softmax of the positive, per query, by loops in float64."""
    q, k, queue = (F.normalize(t.double(), dim=-1) for t in (q, k, queue))
    extra = None if extra is None else F.normalize(extra.double(), dim=-1)
    losses = []
    for b in range(len(q)):
        pos = float(q[b] @ k[b]) / tau
        negs = [float(q[b] @ n) / tau for n in queue]
        if extra is not None:
            negs += [float(q[b] @ e) / tau for e in extra[b]]
        losses.append(-pos + math.log(math.exp(pos) + sum(math.exp(s) for s in negs)))
    return sum(losses) / len(losses)


def data(b=6, d=5, k=12, m=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(*shape, generator=g, dtype=torch.float64) for shape in ((b, d), (b, d), (k, d), (b, m, d)))


@pytest.mark.parametrize("tau", [0.07, 0.2, 1.0])
def test_loss_matches_float64_loop(tau):
    q, k, queue, extra = data()
    assert moco_loss(q, k, queue, tau).item() == pytest.approx(naive_moco_loss(q, k, queue, tau), abs=1e-10)
    with_extra = moco_loss(q, k, queue, tau, extra).item()
    assert with_extra == pytest.approx(naive_moco_loss(q, k, queue, tau, extra), abs=1e-10)


def test_logits_layout_and_empty_extra_is_exactly_moco():
    q, k, queue, extra = data()
    logits = moco_logits(q, k, queue, 0.2, extra)
    assert logits.shape == (6, 1 + 12 + 3)
    qn, kn = F.normalize(q, dim=1), F.normalize(k, dim=1)
    assert torch.allclose(logits[:, 0], (qn * kn).sum(1) / 0.2)
    empty = moco_logits(q, k, queue, 0.2, extra[:, :0])
    assert torch.equal(empty, moco_logits(q, k, queue, 0.2))
    assert torch.equal(moco_loss(q, k, queue, 0.2, extra[:, :0]), moco_loss(q, k, queue, 0.2))


def test_bf16_inputs_give_float32_logits():
    q, k, queue, _ = (t.bfloat16() for t in data())
    assert moco_logits(q, k, queue).dtype == torch.float32


@pytest.mark.parametrize("tau", [0, -0.2, float("nan")])
def test_bad_temperature(tau):
    q, k, queue, _ = data()
    with pytest.raises(ValueError, match="temperature"):
        moco_loss(q, k, queue, tau)
    with pytest.raises(ValueError, match="temperature"):
        MoCo(nn.Linear(3, 3), nn.Linear(3, 2), temperature=tau, queue_size=8)


def test_shape_errors():
    q, k, queue, extra = data()
    with pytest.raises(ValueError, match="same shape"):
        moco_loss(q, k[:3], queue)
    with pytest.raises(ValueError, match="queue dim"):
        moco_loss(q, k, queue[:, :3])
    with pytest.raises(ValueError, match="2-D"):
        moco_loss(q[0], k[0], queue)
    with pytest.raises(TypeError, match="floating-point"):
        moco_loss(q.long(), k.long(), queue)
    with pytest.raises(ValueError, match="extra negatives"):
        moco_loss(q, k, queue, 0.2, extra[:3])


def test_model_argument_errors():
    with pytest.raises(ValueError, match="bn_splits"):
        MoCo(nn.Linear(3, 3), nn.Linear(3, 2), queue_size=8, bn_splits=0)
    with pytest.raises(TypeError, match="callable"):
        MoCo(nn.Linear(3, 3), nn.Linear(3, 2), queue_size=8, extra_negatives=3)
    with pytest.raises(ValueError, match="momentum"):
        MoCo(nn.Linear(3, 3), nn.Linear(3, 2), queue_size=8, momentum=2)
    model = MoCo(nn.Linear(3, 3), nn.Linear(3, 2), queue_size=8, bn_splits=3)
    with pytest.raises(ValueError, match="bn_splits"):
        model({"views": (torch.randn(4, 3), torch.randn(4, 3))})
    with pytest.raises(ValueError, match="views"):
        model({"images": torch.zeros(4, 1, 8, 8, dtype=torch.uint8)})


def test_moco_v2_augmentations():
    cfg = moco_v2_augment_config(32, (0.5,), (0.5,))
    assert cfg.crop_scale == (0.2, 1.0) and cfg.jitter == pytest.approx((0.4, 0.4, 0.4, 0.1))
    assert cfg.jitter_p == 0.8 and cfg.grayscale_p == 0.2 and cfg.blur_p == 0.5 and cfg.flip_p == 0.5


def linear_moco(momentum=0.999, **kw):
    torch.manual_seed(0)
    return MoCo(nn.Linear(6, 5), nn.Linear(5, 4), temperature=0.2, queue_size=16, momentum=momentum, **kw)


def step(model, batch, lr=0.5):
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)
    out = model(batch)
    opt.zero_grad()
    out["loss"].backward()
    opt.step()
    return out


def views(seed, b=4):
    g = torch.Generator().manual_seed(seed)
    return {"views": (torch.randn(b, 6, generator=g), torch.randn(b, 6, generator=g))}


def test_momentum_one_freezes_the_key_encoder_and_queue_takes_the_keys():
    model = linear_moco(momentum=1.0)
    key_before = model.key_backbone.weight.clone()
    batch = views(1)
    out = step(model, batch)
    step(model, views(2))
    assert torch.equal(model.key_backbone.weight, key_before)
    assert not torch.equal(model.backbone.weight, key_before)
    assert set(out) == {"loss", "proxy_acc", "pos_rank"}
    keys = F.normalize(model.key_projector(model.key_backbone(batch["views"][1])), dim=1)
    assert torch.allclose(model.queue.queue[:4], keys, atol=1e-6)
    assert int(model.queue.ptr) == 8 and int(model.steps) == 2


def test_momentum_zero_makes_the_key_encoder_the_query_encoder():
    model = linear_moco(momentum=0.0)
    step(model, views(1))
    model(views(2))  # the momentum update comes first in forward
    assert torch.equal(model.key_backbone.weight, model.backbone.weight)


def test_key_encoder_gets_no_gradient_and_eval_forward_leaves_the_queue():
    model = linear_moco()
    model(views(1))["loss"].backward()
    assert all(p.grad is None for p in model.key_backbone.parameters())
    model.eval()
    before = model.queue.queue.clone()
    model(views(2))
    assert torch.equal(before, model.queue.queue) and int(model.steps) == 1


def test_simulated_shuffle_bn_returns_keys_in_input_order():
    """With BN in eval mode every key depends on its image only, so the shuffle must be undone exactly."""
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5))
    model = MoCo(backbone, nn.Linear(5, 4), queue_size=16, bn_splits=4)
    model.eval()
    x = torch.randn(8, 6)
    plain = model.key_projector(model.key_backbone(x))
    assert torch.allclose(model.encode_key(x), plain, atol=1e-6)
    model.train()  # per-split BN statistics: differs from one BN over the batch
    assert not torch.allclose(model.encode_query(x), model.projector(model.backbone(x)), atol=1e-4)


def test_extra_negative_hook_widens_the_logits():
    calls = []

    def hook(q, queue, step):
        calls.append((q.requires_grad, queue.shape, step))
        return torch.stack([-q, -q], dim=1)

    model = linear_moco(extra_negatives=hook)
    model(views(1))
    model(views(2))
    assert calls == [(False, (16, 4), 0), (False, (16, 4), 1)]


WORKER = '''
import os

import torch
import torch.distributed as dist
from torch import nn

from shared.moco import MoCo
from shared.testing import gloo_worker


def build():
    torch.manual_seed(0)
    return MoCo(nn.Linear(6, 5), nn.Linear(5, 4), temperature=0.2, queue_size=16, momentum=0.9)


def train(model, batches, world, rank):
    """Three steps of SGD; DDP's gradient averaging done by hand. Returns losses, grads, state."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.5)
    losses, grads = [], []
    for step, (x1, x2) in enumerate(batches):
        n = len(x1) // world
        part = slice(rank * n, (rank + 1) * n)
        torch.manual_seed(1000 * step + rank)  # ranks draw different shuffles: rank 0's is broadcast
        loss = model({"views": (x1[part], x2[part])})["loss"]
        opt.zero_grad()
        loss.backward()
        loss = loss.detach()
        if world > 1:
            dist.all_reduce(loss)
            for p in params:
                dist.all_reduce(p.grad)
                p.grad /= world
        losses.append(loss / world)
        grads.append([p.grad.clone() for p in params])
        opt.step()
    return {"losses": losses, "grads": grads, "state": model.state_dict()}


def worker(rank, world, port, batches, out_dir):
    with gloo_worker(rank, world, port):
        result = train(build(), batches, world, rank)
        if rank == 0:
            torch.save(result, os.path.join(out_dir, "result.pt"))
'''


@pytest.mark.distributed
def test_distributed_equivalence_with_the_queue():
    """2 gloo processes == 1 process on the whole batch: losses, gradients, both encoders and the queue.

    Each step enqueues the keys of both ranks in rank order (global batch 8, K = 16: the third
    step wraps around); the key encoder runs with MoCo's cross-process batch shuffle.
    """
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(8, 6, generator=g), torch.randn(8, 6, generator=g)) for _ in range(3)]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "moco_dist_worker.py").write_text(textwrap.dedent(WORKER))
        sys.path.insert(0, tmp)
        try:
            module = importlib.import_module("moco_dist_worker")
            mp.spawn(module.worker, args=(2, free_port(), batches, tmp), nprocs=2, join=True)
            dist_result = torch.load(Path(tmp) / "result.pt")
            single = module.train(module.build(), batches, 1, 0)
        finally:
            sys.path.remove(tmp)
            sys.modules.pop("moco_dist_worker", None)
    for a, b in zip(dist_result["losses"], single["losses"], strict=True):
        assert a.item() == pytest.approx(b.item(), abs=1e-5)
    for step_a, step_b in zip(dist_result["grads"], single["grads"], strict=True):
        for a, b in zip(step_a, step_b, strict=True):
            assert torch.allclose(a, b, atol=1e-5)
    for name, value in single["state"].items():
        assert torch.allclose(dist_result["state"][name].float(), value.float(), atol=1e-5), name
    assert int(single["state"]["queue.ptr"]) == 8  # 3 × 8 keys in a queue of 16: wrapped around
