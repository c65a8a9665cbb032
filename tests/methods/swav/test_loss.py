"""SwAV's swapped-prediction loss: a float64 loop of the equation, ln K collapse, queue, 2 processes.

The codes come from :func:`sinkhorn`, itself checked against a loop in test_sinkhorn.py.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from methods.swav import SwAVLoss, sinkhorn, swapped_prediction, swav_loss
from methods.swav.testing import distributed_swav_check


def naive_swav(scores, codes, assign, tau):
    """L = 1/|A| Σ_a 1/(V−1) Σ_{v≠a} 1/B Σ_b −Σ_k q_{a,b,k} log softmax(s_{v,b}/τ)_k, by loops."""
    v_count, b_count, k_count = len(scores), len(scores[0]), len(scores[0][0])
    total = 0.0
    for i, a in enumerate(assign):
        sub = 0.0
        for v in range(v_count):
            if v == a:
                continue
            for b in range(b_count):
                logits = [float(scores[v][b][k]) / tau for k in range(k_count)]
                log_norm = math.log(sum(math.exp(x) for x in logits))
                sub -= sum(float(codes[i][b][k]) * (logits[k] - log_norm) for k in range(k_count)) / b_count
        total += sub / (v_count - 1)
    return total / len(assign)


@pytest.mark.parametrize(("crops", "assign", "tau"), [(2, (0, 1), 0.1), (6, (0, 1), 0.1), (5, (1,), 0.5)])
def test_matches_float64_loop(crops, assign, tau):
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(crops, 7, 5, generator=g, dtype=torch.float64).tanh()
    codes = [sinkhorn(scores[a], 0.05, 3) for a in assign]
    expected = naive_swav(scores.tolist(), [c.tolist() for c in codes], assign, tau)
    got = swav_loss(scores, temperature=tau, crops_for_assign=assign)
    assert got.item() == pytest.approx(expected, abs=1e-10)
    # a list of per-crop tensors is the same input
    as_list = swav_loss(list(scores), temperature=tau, crops_for_assign=assign)
    assert as_list.item() == pytest.approx(expected, abs=1e-10)


def test_gradient_treats_codes_as_constants():
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(4, 6, 5, generator=g, dtype=torch.float64).tanh().requires_grad_(True)
    swav_loss(scores).backward()
    codes = torch.stack([sinkhorn(scores[a].detach()) for a in (0, 1)])
    reference = scores.detach().clone().requires_grad_(True)
    swapped_prediction(reference, codes, (0, 1), 0.1).backward()
    assert torch.allclose(scores.grad, reference.grad, atol=1e-12)
    # crop 0's prediction of its own code carries no term: its gradient comes only from predicting crop 1
    assert scores.grad.abs().sum() > 0


@pytest.mark.parametrize("k", [30, 3000])
def test_collapse_value_is_log_k(k):
    scores = torch.zeros(6, 16, k)  # uniform predictions and (Sinkhorn of uniform scores) uniform codes
    assert swav_loss(scores).item() == pytest.approx(math.log(k), rel=1e-6)
    if k == 3000:
        assert swav_loss(scores).item() == pytest.approx(8.006, abs=1e-3)


def test_queue_scores_join_sinkhorn_and_only_batch_codes_are_used():
    g = torch.Generator().manual_seed(2)
    scores = torch.randn(3, 8, 6, generator=g, dtype=torch.float64).tanh()
    queued = [torch.randn(16, 6, generator=g, dtype=torch.float64).tanh() for _ in range(2)]
    codes = torch.stack([sinkhorn(torch.cat([queued[i], scores[a]]))[-8:] for i, a in enumerate((0, 1))])
    expected = swapped_prediction(scores, codes, (0, 1), 0.1)
    assert swav_loss(scores, queue_scores=queued).item() == pytest.approx(expected.item(), abs=1e-12)
    assert swav_loss(scores, queue_scores=queued).item() != pytest.approx(swav_loss(scores).item(), abs=1e-6)
    # a None entry means "no queue for this crop"
    mixed = swav_loss(scores, queue_scores=[None, queued[1]])
    codes_mixed = torch.stack([sinkhorn(scores[0]), codes[1]])
    assert mixed.item() == pytest.approx(swapped_prediction(scores, codes_mixed, (0, 1), 0.1).item(), abs=1e-12)


def test_batch_permutation_invariance():
    g = torch.Generator().manual_seed(3)
    scores = torch.randn(4, 10, 6, generator=g).tanh()
    perm = torch.randperm(10, generator=g)
    assert swav_loss(scores[:, perm]).item() == pytest.approx(swav_loss(scores).item(), abs=1e-5)


def test_bf16_scores_give_float32_loss():
    assert SwAVLoss()(torch.randn(2, 8, 5).tanh().bfloat16()).dtype == torch.float32


def test_module_matches_function():
    scores = torch.randn(4, 8, 5).tanh()
    loss = SwAVLoss(temperature=0.2, epsilon=0.1, sinkhorn_iterations=5, crops_for_assign=(0,))
    assert loss(scores).item() == pytest.approx(swav_loss(scores, 0.2, 0.1, 5, (0,)).item(), abs=1e-6)
    assert "epsilon=0.1" in repr(loss)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"temperature": 0.0}, "temperature"),
        ({"epsilon": -0.05}, "epsilon"),
        ({"sinkhorn_iterations": 0}, "sinkhorn_iterations"),
        ({"crops_for_assign": ()}, "crops_for_assign"),
        ({"crops_for_assign": (0, 0)}, "crops_for_assign"),
        ({"crops_for_assign": (-1,)}, "crops_for_assign"),
    ],
)
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SwAVLoss(**kwargs)


def test_bad_inputs():
    loss = SwAVLoss()
    with pytest.raises(ValueError, match="at least 2 crops"):
        loss(torch.randn(1, 4, 3))
    with pytest.raises(ValueError, match=r"\(crops, batch, prototypes\)"):
        loss(torch.randn(4, 3))
    with pytest.raises(ValueError, match="same shape"):
        loss([torch.randn(4, 3), torch.randn(5, 3)])
    with pytest.raises(TypeError, match="floating point"):
        loss(torch.ones(2, 4, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="list of"):
        loss([])
    with pytest.raises(ValueError, match="crops_for_assign"):
        swav_loss(torch.randn(2, 4, 3), crops_for_assign=(0, 2))
    with pytest.raises(ValueError, match="one queue entry"):
        loss(torch.randn(2, 4, 3), queue_scores=[None])


@pytest.mark.distributed
def test_distributed_equivalence():
    """2 gloo processes (half the batch each, Sinkhorn sums all-reduced) == 1 process on all of it."""
    r = distributed_swav_check(crops=4, batch=8)
    single, dist = r["single"], r["dist"]
    assert torch.allclose(dist["codes"], single["codes"], atol=1e-10)
    assert dist["loss"].item() == pytest.approx(single["loss"].item(), abs=1e-10)
    assert torch.allclose(dist["grad"], single["grad"], atol=1e-10)
    assert single["grad"].abs().sum() > 0
    # the check can fail: Sinkhorn on each half alone (no all-reduce) gives other codes
    g = torch.Generator().manual_seed(0)  # the helper's draws, in its order
    x = torch.randn(4, 8, 6, generator=g, dtype=torch.float64)
    w = torch.randn(6, 5, generator=g, dtype=torch.float64)
    protos = F.normalize(torch.randn(7, 5, generator=g, dtype=torch.float64), dim=1)
    s0 = F.normalize(x[0] @ w, dim=1) @ protos.T
    assert torch.allclose(sinkhorn(s0), single["codes"], atol=1e-12)
    assert not torch.allclose(sinkhorn(s0[:4]), single["codes"][:4], atol=1e-3)
