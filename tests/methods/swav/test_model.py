"""The SwAV step: prototype normalisation and freezing, the FIFO queue, multi-crop forward, errors."""

import pytest
import torch

from methods.swav import EmbeddingQueue, SwAV, SwAVLoss, build_model
from methods.swav.experiments import SMOKE_ARM, SMOKE_MULTICROP
from shared.backbones import SmallConvNet
from shared.heads import mlp_head
from shared.prototypes import Prototypes


def tiny_swav(freeze_iters=0, queue_length=0, queue_start_iter=0, crops=None):
    cfg = {**SMOKE_ARM, "widths": (8, 16), "freeze_prototypes_iters": freeze_iters, "queue_length": queue_length}
    if crops is not None:
        cfg["crops"] = crops
    model = build_model(cfg)
    model.queue_start_iter = queue_start_iter
    return model


def images(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)


def test_queue_is_fifo_by_exactly_the_batch():
    q = EmbeddingQueue(num_queues=2, length=6, dim=3)
    first = torch.arange(2 * 2 * 3, dtype=torch.float32).view(2, 2, 3)
    q.push(first)
    assert int(q.count) == 2 and not q.full
    assert torch.equal(q.embeddings[:, :2], first) and (q.embeddings[:, 2:] == 0).all()
    second = -first - 1
    q.push(second)
    assert torch.equal(q.embeddings[:, :2], second) and torch.equal(q.embeddings[:, 2:4], first)
    q.push(second * 10)
    assert q.full
    before = q.embeddings.clone()
    q.push(first + 100)
    assert torch.equal(q.embeddings[:, 2:], before[:, :4])  # shifted by exactly b = 2
    assert torch.equal(q.embeddings[:, :2], first + 100)
    assert int(q.count) == 6
    q.reset()
    assert int(q.count) == 0 and (q.embeddings == 0).all()


def test_queue_errors():
    with pytest.raises(ValueError, match="length"):
        EmbeddingQueue(1, 0, 3)
    q = EmbeddingQueue(2, 4, 3)
    with pytest.raises(ValueError, match="shape"):
        q.push(torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match="does not fit"):
        q.push(torch.zeros(2, 5, 3))


def test_forward_normalises_prototypes_and_returns_a_finite_loss():
    model = tiny_swav()
    out = model({"images": images()})
    assert torch.isfinite(out["loss"]) and out["loss"].ndim == 0
    assert torch.allclose(model.prototypes.weight.norm(dim=1), torch.ones(30), atol=1e-6)


def test_prototypes_frozen_for_the_first_iterations_then_trained():
    model = tiny_swav(freeze_iters=2)
    for step in range(3):
        model.zero_grad(set_to_none=True)
        model({"images": images(seed=step)})["loss"].backward()
        frozen = step < 2
        assert (model.prototypes.weight.grad is None) == frozen, step
        assert model.projector[0].weight.grad is not None  # the encoder learns meanwhile
        model.after_step(step)
    assert int(model.prototypes.iteration) == 3


def test_queue_starts_late_fills_and_is_used_once_full():
    model = tiny_swav(queue_length=16, queue_start_iter=1)
    calls = []
    original = model.loss.forward

    def spy(scores, queue_scores=None):
        calls.append(queue_scores)
        return original(scores, queue_scores)

    model.loss.forward = spy
    for step in range(4):
        model({"images": images(seed=step)})
        model.after_step(step)
    # step 0: before the start; step 1, 2: filling (8 + 8 = 16); step 3: full, used
    assert calls[0] is None and int(model.queue.count) == 16
    assert calls[1] is None and calls[2] is None
    assert calls[3] is not None and [tuple(s.shape) for s in calls[3]] == [(16, 30), (16, 30)]


def test_multicrop_model_and_precomputed_crops():
    model = tiny_swav(crops=SMOKE_MULTICROP)
    assert model.augment.num_crops == 4
    loss = model({"images": images()})["loss"]
    assert torch.isfinite(loss)
    crops = [torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32), torch.randn(4, 3, 16, 16)]
    assert torch.isfinite(model({"crops": crops})["loss"])


def test_no_augment_and_no_crops_is_an_error():
    model = SwAV(SmallConvNet(3, (8,)), mlp_head(8, 8, 4), Prototypes(4, 5), SwAVLoss())
    with pytest.raises(ValueError, match="no 'crops'"):
        model({"images": images()})
    with pytest.raises(ValueError, match="non-negative"):
        SwAV(SmallConvNet(3, (8,)), mlp_head(8, 8, 4), Prototypes(4, 5), SwAVLoss(), queue_length=-1)


def test_build_model_errors():
    with pytest.raises(ValueError, match="unknown method"):
        build_model({**SMOKE_ARM, "method": "byol"})
    with pytest.raises(ValueError, match="two crops"):
        build_model({**SMOKE_ARM, "method": "simclr", "crops": SMOKE_MULTICROP})
