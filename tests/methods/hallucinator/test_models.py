"""SimCLR + Hallucinator and MoCo v2 + Hallucinator against float64 loops, the spec's invariants, 2 processes."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from methods.hallucinator import HallucinatedInfoNCE, HallucinatedMoCo, check_queue, hallucinated_info_nce
from methods.hallucinator.generator import Hallucinator
from methods.hallucinator.testing import moco_two_processes, tiny_moco
from shared.testing import distributed_equivalence

LAM = 0.05


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def naive_hallucinated(q, k, gen, lam):
    """q'_i = MLP([q_i ; (1+λ) q_i − λ k_i]), one row at a time."""
    rows = []
    for i in range(len(q)):
        u = [(1 + lam) * float(q[i, j]) - lam * float(k[i, j]) for j in range(q.shape[1])]
        x = torch.tensor([*q[i].tolist(), *u], dtype=torch.float64)
        rows.append(gen.mlp(x[None])[0])
    return torch.stack(rows)


def _cos(a, b):
    a, b = a.detach(), b.detach()
    return float(a @ b) / (math.sqrt(float(a @ a)) * math.sqrt(float(b @ b)))


def naive_simclr(q, q_h, k, tau, same_image_negatives):
    """NT-Xent over the 4B anchors [q, q', k, k]: anchor a's positive is a ± 2B.

    Official: every other row is a negative. Default: rows of the same image (a mod B) other
    than the positive are left out of the denominator.
    """
    b = len(q)
    rows = [*q, *q_h, *k, *k]
    losses = []
    for a in range(4 * b):
        pos = a + 2 * b if a < 2 * b else a - 2 * b
        keep = [c for c in range(4 * b) if c != a and (same_image_negatives or c % b != a % b or c == pos)]
        denom = sum(math.exp(_cos(rows[a], rows[c]) / tau) for c in keep)
        losses.append(-_cos(rows[a], rows[pos]) / tau + math.log(denom))
    return sum(losses) / len(losses)


def naive_moco(q, q_h, k, queue, tau):
    """Mean over the 2B queries [q ; q'] of −log softmax([r·k, r·Q_1..K]/τ)_0 (k of the same image)."""
    b = len(q)
    losses = []
    for r, row in enumerate([*q, *q_h]):
        pos = math.exp(_cos(row, k[r % b]) / tau)
        neg = sum(math.exp(_cos(row, e) / tau) for e in queue)
        losses.append(-math.log(pos / (pos + neg)))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("same_image_negatives", [False, True])
@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_simclr_loss_matches_float64_loop(tau, same_image_negatives):
    q, k = _randn(5, 4, seed=1), _randn(5, 4, seed=2)
    gen = Hallucinator(4, seed=0, dtype=torch.float64)
    expected = naive_simclr(q, naive_hallucinated(q, k, gen, LAM), k, tau, same_image_negatives)
    got = hallucinated_info_nce(q, k, gen, tau, lam=LAM, same_image_negatives=same_image_negatives)
    assert got.item() == pytest.approx(expected, abs=1e-10)
    module = HallucinatedInfoNCE(
        4, tau, lambda_range=(LAM, LAM), seed=0, dtype=torch.float64, same_image_negatives=same_image_negatives
    )
    assert module(q, k).item() == pytest.approx(expected, abs=1e-10)


def test_official_simclr_loss_counts_the_duplicates_as_negatives():
    """Official: the anchor k_i meets its own copy (logit 1/τ) and q_i the copy of its positive; never below log 2."""
    q, k = _randn(6, 4, seed=1), _randn(6, 4, seed=2)
    gen = Hallucinator(4, seed=0, dtype=torch.float64)
    official = hallucinated_info_nce(q, k, gen, 0.2, lam=LAM, same_image_negatives=True)
    masked = hallucinated_info_nce(q, k, gen, 0.2, lam=LAM)
    assert official.item() > masked.item()
    assert official.item() > math.log(2)  # the positive's twin is in every denominator
    # perfectly aligned views: the default loss goes to ~0 as negatives fall away, the official one cannot
    z = torch.eye(4, dtype=torch.float64)
    stub = Hallucinator(4, dtype=torch.float64)
    stub.mlp = nn.Sequential(nn.Identity())  # q' = [q ; u], cut to d below
    stub.mlp.append(_FirstHalf())
    low = hallucinated_info_nce(z, z, stub, 0.05, lam=0.0).item()
    assert low < 1e-6 < math.log(2) < hallucinated_info_nce(z, z, stub, 0.05, lam=0.0, same_image_negatives=True)


def test_detach_key_only_changes_the_gradient():
    q, k = _randn(5, 4, seed=1), _randn(5, 4, seed=2)
    gen = Hallucinator(4, seed=0, dtype=torch.float64)
    grads, values = [], []
    for detach in (False, True):
        kk = k.clone().requires_grad_(True)
        loss = hallucinated_info_nce(q, kk, gen, 0.2, lam=LAM, detach_key=detach)
        loss.backward()
        grads.append(kk.grad)
        values.append(loss.item())
    assert values[0] == pytest.approx(values[1], abs=1e-12)
    assert not torch.allclose(grads[0], grads[1])
    assert HallucinatedInfoNCE(4, detach_key=True).detach_key


class _FirstHalf(nn.Module):
    def forward(self, x):
        return x[:, : x.shape[1] // 2]


def test_moco_loss_matches_float64_loop_and_keys_enqueued_once():
    model = tiny_moco()
    x_q, x_k = _randn(4, 6, seed=3), _randn(4, 6, seed=4)
    queue = model.queue.queue.clone()
    with torch.no_grad():
        q = model.projector(model.backbone(x_q))  # first step: the key encoder equals the query encoder
        k = F.normalize(model.projector(model.backbone(x_k)), dim=1)
        q_h = naive_hallucinated(q, k, model.generator, LAM)
    expected = naive_moco(q, q_h, k, queue, 0.2)
    out = model({"views": (x_q, x_k)})
    assert out["loss"].item() == pytest.approx(expected, abs=1e-10)
    assert out["lambda"].item() == pytest.approx(LAM)
    # default: each key enqueued once, the pointer moves by B
    assert int(model.queue.ptr) == 4
    assert torch.allclose(model.queue.queue[:4], k, atol=1e-12)
    assert torch.equal(model.queue.queue[4:], queue[4:])


def test_official_double_enqueue_moves_the_pointer_by_2b():
    model = tiny_moco(enqueue_duplicates=True)
    x_q, x_k = _randn(4, 6, seed=3), _randn(4, 6, seed=4)
    model({"views": (x_q, x_k)})
    assert int(model.queue.ptr) == 8
    assert torch.equal(model.queue.queue[:4], model.queue.queue[4:8])  # half the new entries are duplicates
    model({"views": (x_q, x_k)})
    assert int(model.queue.ptr) == 0  # K = 16 = 2 steps of 2B


def test_queue_divisibility_is_checked():
    # K = 12 is a multiple of B = 4 but not of 2B = 8: fine once, an error with the official duplicates
    x = (_randn(4, 6, seed=3), _randn(4, 6, seed=4))
    tiny_moco(queue_size=12)({"views": x})
    with pytest.raises(ValueError, match="multiple of the global batch"):
        tiny_moco(enqueue_duplicates=True, queue_size=12)({"views": x})
    check_queue({"queue_size": 4096, "batch_size": 256, "enqueue_duplicates": True}, world_size=8)
    with pytest.raises(ValueError, match=r"multiple of the keys enqueued per step \(1024"):
        check_queue({"queue_size": 65536 + 512, "batch_size": 256, "enqueue_duplicates": True}, world_size=2)
    # the official IN-1K config: batch 259 with K = 65536 cannot work
    with pytest.raises(ValueError, match="multiple"):
        check_queue({"queue_size": 65536, "batch_size": 259})


def test_gradients_reach_generator_and_encoder_through_q_and_q_prime_but_not_keys():
    model = tiny_moco()
    x_q, x_k = _randn(4, 6, seed=3), _randn(4, 6, seed=4)
    model({"views": (x_q, x_k)})["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.generator.parameters())
    assert model.backbone.weight.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in model.key_backbone.parameters())
    assert all(p.grad is None for p in model.key_projector.parameters())
    # each half alone: the real queries reach the encoder only; the hallucinated ones reach both
    q = model.projector(model.backbone(x_q))
    with torch.no_grad():
        k = F.normalize(model.key_projector(model.key_backbone(x_k)), dim=1)
    q_h = model.generator(q, k, lam=LAM)
    assert not k.requires_grad
    for rows, gen_grad in ((q, False), (q_h, True)):
        model.zero_grad(set_to_none=True)
        F.cross_entropy((F.normalize(rows, dim=1) @ k.T) / 0.2, torch.arange(4)).backward(retain_graph=True)
        assert model.backbone.weight.grad.abs().sum() > 0
        got = [p.grad is not None and p.grad.abs().sum() > 0 for p in model.generator.parameters()]
        assert all(got) if gen_grad else not any(got)


def test_hallucinated_rows_are_scored_and_eval_mode_leaves_the_queue():
    model = tiny_moco()
    x = (_randn(4, 6, seed=3), _randn(4, 6, seed=4))
    model.eval()
    queue = model.queue.queue.clone()
    out = model({"views": x})
    assert torch.equal(model.queue.queue, queue) and int(model.queue.ptr) == 0
    assert set(out) == {"loss", "proxy_acc", "pos_rank", "hallucinated_acc", "lambda"}
    assert 0 <= out["hallucinated_acc"].item() <= 1


def test_moco_model_errors():
    with pytest.raises(ValueError, match="extra_negatives"):
        HallucinatedMoCo(nn.Linear(6, 8), nn.Linear(8, 4), queue_size=16, extra_negatives=lambda q, Q, s: None)
    with pytest.raises(ValueError, match="lambda_range"):
        HallucinatedMoCo(nn.Linear(6, 8), nn.Linear(8, 4), queue_size=16, lambda_range=(0.2, 0.1))
    with pytest.raises(ValueError, match="temperature"):
        HallucinatedInfoNCE(4, temperature=0.0)
    with pytest.raises(ValueError, match="same shape"):
        HallucinatedInfoNCE(4)(torch.randn(4, 4), torch.randn(5, 4))
    with pytest.raises(ValueError, match="at least 2"):
        HallucinatedInfoNCE(4)(torch.randn(1, 4), torch.randn(1, 4))


def test_bf16_autocast_gives_float32_loss():
    loss_fn = HallucinatedInfoNCE(8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = loss_fn(torch.randn(6, 8).bfloat16(), torch.randn(6, 8).bfloat16())
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


@pytest.mark.distributed
def test_simclr_distributed_equivalence():
    """2 gloo processes (each its half, gathering [q ; q'] and [k ; k] of the other) == 1 process on all."""
    kw = {"dim": 5, "temperature": 0.2, "lambda_range": (LAM, LAM), "seed": 0, "dtype": torch.float64}
    cases = [
        ("methods.hallucinator.models:HallucinatedInfoNCE", kw),
        ("methods.hallucinator.models:HallucinatedInfoNCE", {**kw, "same_image_negatives": True}),
        ("methods.hallucinator.models:HallucinatedInfoNCE", {**kw, "gather_distributed": False}),
    ]
    *gathered, local_only = distributed_equivalence(cases, batch=8)
    for r in gathered:
        assert r["dist_loss"].item() == pytest.approx(r["single_loss"].item(), abs=1e-10)
        assert torch.allclose(r["dist_grad"], r["single_grad"], atol=1e-10)
        assert r["single_grad"].abs().sum() > 0
    assert abs(gathered[0]["single_loss"].item() - gathered[1]["single_loss"].item()) > 1e-3
    assert abs(local_only["dist_loss"].item() - local_only["single_loss"].item()) > 1e-3


@pytest.mark.distributed
def test_moco_two_processes_match_one():
    """Loss, encoder gradient and queue of 2 gloo processes == one process on the whole batch; λ agrees."""
    x_q, x_k = _randn(8, 6, seed=5), _randn(8, 6, seed=6)
    dist_runs = moco_two_processes(x_q, x_k, queue_size=32)
    assert dist_runs["lams"][0] == dist_runs["lams"][1]
    for enqueue_duplicates in (False, True):
        dist_out = dist_runs[enqueue_duplicates]
        model = tiny_moco(enqueue_duplicates, queue_size=32)
        out = model({"views": (x_q, x_k)})
        out["loss"].backward()
        assert dist_out["loss"].item() == pytest.approx(out["loss"].item(), abs=1e-10)
        assert torch.allclose(dist_out["grad"], model.backbone.weight.grad, atol=1e-10)
        per_step = 16 if enqueue_duplicates else 8  # (2)B·W keys per step
        assert dist_out["ptr"] == int(model.queue.ptr) == per_step
        new_dist, new_single = dist_out["queue"][:per_step], model.queue.queue[:per_step]
        if enqueue_duplicates:  # rank order [k0; k0; k1; k1] vs [k; k]: the same rows
            new_dist, new_single = (torch.sort(x.sum(1)).values for x in (new_dist, new_single))
        assert torch.allclose(new_dist, new_single, atol=1e-10)
