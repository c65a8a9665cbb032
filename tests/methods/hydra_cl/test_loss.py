"""Hydra's losses against float64 loops of the paper's equations, the spec's invariants, 2-process equivalence."""

import math

import pytest
import torch
import torch.nn.functional as F

from methods.hydra_cl import (
    BasicGate,
    DisparateLoss,
    OpenGate,
    disparate_loss,
    gated_logits,
    gated_logits_materialised,
    instance_loss,
    multipos_ce,
)
from methods.hydra_cl.loss import pair_masks
from shared.testing import distributed_equivalence


def naive_disparate(q, k, y1, y2, gate, scale):
    """L_dis by loops in float64, straight from the equations (official multipos_ce normalisation)."""
    total, count = 0.0, 0
    for i in range(len(q)):
        g = gate[i].double()
        qt = F.normalize(q[i].double() * g, dim=0)
        logits = [scale * float(qt @ F.normalize(k[n].double() * g, dim=0)) for n in range(len(k))]
        positives = [n for n in range(len(k)) if y1[n] == y2[i]]
        negatives = [n for n in range(len(k)) if y1[n] != y2[i] and y1[n] != y1[i]]
        for p in positives:
            total += math.log(math.exp(logits[p]) + sum(math.exp(logits[n]) for n in negatives)) - logits[p]
            count += 1
    return total / count


def exact_scale(loss_fn, s):
    """Set s exactly in float64 (the float32 init of log s is off by ~1e-8)."""
    loss_fn.scale_logit.data = torch.tensor(math.log(s), dtype=torch.float64)
    return loss_fn


def random_case(seed, b=10, d=6, classes=4):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, d, generator=g, dtype=torch.float64)
    k = torch.randn(b, d, generator=g, dtype=torch.float64)
    y1 = torch.randint(0, classes, (b,), generator=g)
    y2 = y1[torch.randperm(b, generator=g)]
    gate = torch.rand(b, d, generator=g, dtype=torch.float64) * 0.98 + 0.01
    return q, k, y1, y2, gate


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("materialise", [False, True])
def test_disparate_loss_matches_float64_loop(seed, materialise):
    q, k, y1, y2, gate = random_case(seed)
    expected = naive_disparate(q, k, y1, y2, gate, 3.0)
    got = disparate_loss(q, k, y1, y2, gate, 3.0, materialise=materialise)
    assert got.item() == pytest.approx(expected, abs=1e-10)


def test_fused_logits_equal_the_materialised_b_n_d_form_with_gradients():
    q, k, _, _, gate = random_case(3, b=7, d=5)
    tensors = [t.clone().requires_grad_(True) for t in (q, k, gate)]
    fused = gated_logits(*tensors)
    grads_fused = torch.autograd.grad((fused * torch.arange(49.0).view(7, 7).double()).sum(), tensors)
    tensors2 = [t.clone().requires_grad_(True) for t in (q, k, gate)]
    mat = gated_logits_materialised(*tensors2)
    grads_mat = torch.autograd.grad((mat * torch.arange(49.0).view(7, 7).double()).sum(), tensors2)
    assert torch.allclose(fused, mat, atol=1e-12)
    for a, b in zip(grads_fused, grads_mat, strict=True):
        assert torch.allclose(a, b, atol=1e-10)
    assert fused.abs().max() <= 1 + 1e-12  # cosines


def test_instance_loss_matches_loop():
    q, k, *_ = random_case(4, b=6)
    qn, kn = F.normalize(q, dim=1), F.normalize(k, dim=1)
    expected = 0.0
    for i in range(6):
        logits = [float(qn[i] @ kn[j]) / 0.2 for j in range(6)]
        expected += -logits[i] + math.log(sum(math.exp(x) for x in logits))
    assert instance_loss(q, k, 0.2).item() == pytest.approx(expected / 6, abs=1e-10)


def test_open_gate_and_y2_equal_y1_is_multi_positive_supcon():
    """All-ones gate, y2 = y1: positives = keys of the anchor's class, negatives = the other classes."""
    q, k, y, _, _ = random_case(5, b=9, classes=3)
    s = 4.0
    qn, kn = F.normalize(q, dim=1), F.normalize(k, dim=1)
    total, count = 0.0, 0
    for i in range(9):
        logits = [s * float(qn[i] @ kn[n]) for n in range(9)]
        for p in [n for n in range(9) if y[n] == y[i]]:
            neg = sum(math.exp(logits[n]) for n in range(9) if y[n] != y[i])
            total += math.log(math.exp(logits[p]) + neg) - logits[p]
            count += 1
    loss_fn = exact_scale(DisparateLoss(OpenGate(6, 3)).double(), s)
    assert loss_fn(q, k, y).item() == pytest.approx(total / count, abs=1e-10)
    assert loss_fn(q, k, y, y).item() == pytest.approx(total / count, abs=1e-10)


def test_open_gate_with_distinct_labels_is_infonce_at_temperature_one_over_s():
    q, k, *_ = random_case(6, b=8)
    y = torch.arange(8)
    loss_fn = exact_scale(DisparateLoss(OpenGate(6, 8)).double(), 5.0)
    assert loss_fn(q, k, y).item() == pytest.approx(instance_loss(q, k, 1 / 5.0).item(), abs=1e-10)


def test_multipos_ce_is_invariant_to_adding_a_constant():
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(5, 9, generator=g, dtype=torch.float64) * 4
    pos = torch.rand(5, 9, generator=g) < 0.3
    pos[:, 0] = True
    excl = pos | (torch.rand(5, 9, generator=g) < 0.3)
    base = multipos_ce(logits, pos, excl)
    assert multipos_ce(logits + 123.4, pos, excl).item() == pytest.approx(base.item(), abs=1e-9)
    row_shift = torch.randn(5, 1, generator=g, dtype=torch.float64) * 50
    assert multipos_ce(logits + row_shift, pos, excl).item() == pytest.approx(base.item(), abs=1e-9)
    # large logits stay finite (no overflow), a row without negatives contributes 0 per positive
    assert torch.isfinite(multipos_ce(logits * 1e3, pos, excl))
    only_pos = torch.ones(1, 3, dtype=torch.bool)
    assert multipos_ce(torch.randn(1, 3), only_pos).item() == 0.0


def test_loss_is_invariant_to_scaling_q_and_k():
    q, k, y1, y2, gate = random_case(8)
    base = disparate_loss(q, k, y1, y2, gate, 6.0).item()
    assert disparate_loss(3.7 * q, k, y1, y2, gate, 6.0).item() == pytest.approx(base, abs=1e-10)
    assert disparate_loss(q, 0.01 * k, y1, y2, gate, 6.0).item() == pytest.approx(base, abs=1e-10)


def test_a_key_sharing_y1_but_not_y2_is_neither_positive_nor_negative():
    y1 = torch.tensor([0, 1, 2, 0, 1, 2, 0, 3])
    y2 = torch.tensor([1, 1, 0, 2, 3, 0, 0, 1])
    pos, excl = pair_masks(y1, y2, y1)
    negative = ~excl
    for i in range(8):
        for n in range(8):
            if y1[n] == y1[i] and y1[n] != y2[i]:
                assert not pos[i, n] and not negative[i, n]
            assert bool(pos[i, n]) == bool(y1[n] == y2[i])
    # the loss does not move when such keys' logits move, and they get no gradient
    g = torch.Generator().manual_seed(9)
    logits = torch.randn(8, 8, generator=g, dtype=torch.float64, requires_grad=True)
    loss = multipos_ce(logits, pos, excl)
    (grad,) = torch.autograd.grad(loss, logits)
    same_class_only = (y1[None] == y1[:, None]) & ~pos
    assert same_class_only.any()
    assert torch.all(grad[same_class_only] == 0)
    moved = logits.detach() + 10.0 * same_class_only
    assert multipos_ce(moved, pos, excl).item() == pytest.approx(loss.item(), abs=1e-12)


def test_disparate_loss_trains_gate_and_scale_not_keys():
    q, k, y1, y2, _ = random_case(10)
    loss_fn = DisparateLoss(BasicGate(6, 4, in_dim=4, mlp_dim=8)).double()
    q.requires_grad_(True)
    loss_fn(q, k, y1, y2).backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert loss_fn.scale_logit.grad is not None
    assert all(p.grad is not None for p in loss_fn.gate.parameters())
    assert loss_fn.scale.item() == pytest.approx(20.0)


def test_loss_errors():
    q, k, y1, y2, gate = random_case(11)
    with pytest.raises(ValueError, match="batch size"):
        disparate_loss(q, k[:-1], y1, y2, gate[:], 1.0)
    with pytest.raises(ValueError, match="gate must have"):
        disparate_loss(q, k, y1, y2, gate[:, :3], 1.0)
    with pytest.raises(TypeError, match="integer class ids"):
        disparate_loss(q, k, y1.float(), y2, gate, 1.0)
    with pytest.raises(ValueError, match="1-D"):
        disparate_loss(q, k, y1[:, None], y2, gate, 1.0)
    with pytest.raises(ValueError, match="same dim"):
        gated_logits(q, k[:, :3], gate)
    with pytest.raises(ValueError, match="shape"):
        instance_loss(q, k[:3])
    with pytest.raises(ValueError, match="temperature"):
        instance_loss(q, k, 0.0)
    with pytest.raises(TypeError, match="floating-point"):
        instance_loss(q.long(), k)
    with pytest.raises(ValueError, match="at least one positive"):
        multipos_ce(torch.randn(2, 3), torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="boolean"):
        multipos_ce(torch.randn(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="scale_init"):
        DisparateLoss(OpenGate(4), scale_init=0.0)
    with pytest.raises(TypeError, match="gate must be"):
        DisparateLoss(torch.nn.Identity())


LABELS = [0, 1, 2, 0, 1, 2, 0, 1]
PAIRED = [1, 1, 0, 2, 0, 2, 1, 0]


def test_distributed_equivalence_two_processes():
    """Value and encoder gradient: 2 gloo processes, each its half of the batch, vs one process."""
    factory = "methods.hydra_cl.testing:SlicedHydraLoss"
    cases = [
        (factory, {"kind": "instance", "labels": LABELS, "paired": PAIRED}),
        (factory, {"kind": "instance", "labels": LABELS, "paired": PAIRED, "detach_keys": False}),
        (factory, {"kind": "disparate", "labels": LABELS, "paired": PAIRED}),
        (factory, {"kind": "disparate", "labels": LABELS, "paired": PAIRED, "detach_keys": False}),
        (factory, {"kind": "class", "labels": LABELS, "paired": PAIRED}),
    ]
    for (_, kwargs), r in zip(cases, distributed_equivalence(cases, batch=8), strict=True):
        assert torch.allclose(r["single_loss"], r["dist_loss"], atol=1e-10), kwargs
        assert torch.allclose(r["single_grad"], r["dist_grad"], atol=1e-10), kwargs
