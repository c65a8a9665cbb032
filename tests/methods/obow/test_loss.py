"""The student side: weight generator, cosine classifier scale, the KL loss vs a float64 loop, distributed."""

import math

import pytest
import torch
import torch.nn.functional as F

from methods.obow import BoWPredictor, bow_kl, obow_loss, weight_generator
from methods.obow.testing import distributed_obow_check


def g(seed=0):
    return torch.Generator().manual_seed(seed)


def test_weight_generator_layout_and_unit_weights():
    gen = weight_generator(word_dim=6, feature_dim=5)
    layers = [type(m).__name__ for m in gen]
    assert layers == ["L2Normalize", "Linear", "BatchNorm1d", "ReLU", "Linear", "L2Normalize"]
    assert gen[1].weight.shape == (10, 6) and gen[1].bias is None  # C_l → 2C, no bias
    assert gen[4].weight.shape == (5, 10) and gen[4].bias is not None  # 2C → C
    w = gen(torch.rand(12, 6))
    assert w.shape == (12, 5) and torch.allclose(w.norm(dim=1), torch.ones(12), atol=1e-5)
    # the words are L2-normalised first: rescaling them does not change the weights
    words = torch.rand(12, 6, generator=g())
    assert torch.allclose(gen(words), gen(3.0 * words), atol=1e-5)


def test_predictor_logits_are_kappa_times_cosine_on_the_weight_side():
    head = BoWPredictor((6, 4), feature_dim=5, kappa=5.0)
    vocab = [torch.rand(12, 6, generator=g(1)), torch.rand(8, 4, generator=g(2))]
    s = torch.randn(3, 5, generator=g(3)) * 4  # student features are not normalised
    logits = head(s, vocab)
    assert [tuple(lg.shape) for lg in logits] == [(3, 12), (3, 8)]
    w = head.weights(vocab)
    for lg, wl in zip(logits, w, strict=True):
        assert torch.allclose(lg, 5.0 * s @ wl.T, atol=1e-5)
        # |logit| ≤ κ‖s‖ (unit weights)
        assert (lg.abs() <= 5.0 * s.norm(dim=1, keepdim=True) + 1e-4).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert all(lg.dtype == torch.float32 for lg in head(s, vocab))


def naive_kl(logits, target):
    """float64 loop: (1/N) Σ_rows Σ_k y_k (log y_k − log q_k), rows crop-major over the images."""
    n, b = logits.shape[0], target.shape[0]
    total = 0.0
    for r in range(n):
        z = [float(x) for x in logits[r]]
        m = max(z)
        lse = m + math.log(sum(math.exp(x - m) for x in z))
        y = [float(x) for x in target[r % b]]
        total += sum(yk * (math.log(yk) - (zk - lse)) for yk, zk in zip(y, z, strict=True) if yk > 0)
    return total / n


def test_loss_equals_float64_loop():
    target = F.normalize(torch.rand(4, 7, generator=g(), dtype=torch.float64), p=1, dim=1)
    target[0, 2] = 0.0  # zero entries contribute 0 · log 0 = 0
    target = F.normalize(target, p=1, dim=1)
    logits = torch.randn(3 * 4, 7, generator=g(1), dtype=torch.float64) * 3
    assert bow_kl(logits, target).item() == pytest.approx(naive_kl(logits, target), rel=1e-10)
    # two levels: the mean over levels
    t2 = F.normalize(torch.rand(4, 5, generator=g(2), dtype=torch.float64), p=1, dim=1)
    l2 = torch.randn(12, 5, generator=g(3), dtype=torch.float64)
    both = obow_loss([logits, l2], [target, t2]).item()
    assert both == pytest.approx((naive_kl(logits, target) + naive_kl(l2, t2)) / 2, rel=1e-10)


def test_kl_is_cross_entropy_minus_entropy_with_the_same_gradient():
    target = F.normalize(torch.rand(5, 6, generator=g(), dtype=torch.float64), p=1, dim=1)
    logits = torch.randn(5, 6, generator=g(1), dtype=torch.float64, requires_grad=True)
    kl = bow_kl(logits, target)
    ce = -(target * F.log_softmax(logits, dim=1)).sum(1).mean()
    entropy = -(target * target.log()).sum(1).mean()
    assert kl.item() == pytest.approx((ce - entropy).item(), rel=1e-12)
    assert kl.item() >= 0
    (grad_kl,) = torch.autograd.grad(kl, logits)
    (grad_ce,) = torch.autograd.grad(ce, logits)
    assert torch.allclose(grad_kl, grad_ce, atol=1e-12)
    # the loss is zero when the prediction is the target
    assert bow_kl(target.log(), target).item() == pytest.approx(0.0, abs=1e-12)


def test_targets_get_no_gradient():
    target = F.normalize(torch.rand(2, 4), p=1, dim=1).requires_grad_(True)
    bow_kl(torch.randn(2, 4, requires_grad=True), target).backward()
    assert target.grad is None


def test_errors():
    with pytest.raises(ValueError, match="whole number of crops"):
        bow_kl(torch.randn(5, 4), torch.rand(2, 4))
    with pytest.raises(ValueError, match="words"):
        bow_kl(torch.randn(4, 5), torch.rand(2, 4))
    with pytest.raises(ValueError, match="2-D"):
        bow_kl(torch.randn(4), torch.rand(2, 4))
    with pytest.raises(ValueError, match="one logits tensor per BoW level"):
        obow_loss([torch.randn(2, 4)], [])
    with pytest.raises(ValueError, match="kappa"):
        BoWPredictor((4,), 5, kappa=0)
    with pytest.raises(ValueError, match="at least one BoW level"):
        BoWPredictor((), 5)
    with pytest.raises(ValueError, match="feature_dim"):
        weight_generator(4, 0)
    head = BoWPredictor((4,), 5)
    with pytest.raises(ValueError, match=r"\(N, 5\)"):
        head(torch.randn(2, 3), [torch.rand(8, 4)])
    with pytest.raises(ValueError, match="vocabularies"):
        head(torch.randn(2, 5), [torch.rand(8, 4), torch.rand(8, 4)])


def test_distributed_step_equals_single_process():
    """2 gloo processes (half the batch each): same targets, queues, d̄, loss and gradients."""
    out = distributed_obow_check()
    single, dist = out["single"], out["dist"]
    for key in ("targets", "queues", "dbar", "loss", "grad", "generator_grad"):
        assert torch.allclose(single[key].double(), dist[key].double(), atol=1e-10), key
    assert torch.equal(single["ptr"], dist["ptr"])
    assert (single["ptr"] == 8).all()  # the global batch of 8 entered each queue


def test_weights_once_for_all_crop_types_equal_one_generator_pass_per_type():
    """Generating W once and scoring two crop types gives the loss and gradients of one pass per type
    (the generator's BatchNorm sees the same K words either way); float64."""
    torch.manual_seed(0)
    head = BoWPredictor((6, 4), feature_dim=5, kappa=5.0).double()
    vocab = [torch.rand(12, d, generator=g(d), dtype=torch.float64) for d in (6, 4)]
    targets = [F.normalize(torch.rand(3, 12, generator=g(s), dtype=torch.float64), p=1, dim=1) for s in (3, 4)]
    feats = [torch.randn(n * 3, 5, generator=g(5 + n), dtype=torch.float64, requires_grad=True) for n in (2, 5)]
    params = list(head.parameters())

    def step(once):
        weights = head.weights(vocab) if once else None
        losses = [obow_loss(head.logits(f, weights) if once else head(f, vocab), targets) for f in feats]
        loss = torch.stack(losses).sum()
        return loss, torch.autograd.grad(loss, feats + params)

    (loss_once, grads_once), (loss_per_type, grads_per_type) = step(True), step(False)
    assert loss_once.item() == pytest.approx(loss_per_type.item(), abs=1e-12)
    for a, b in zip(grads_once, grads_per_type, strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)
    assert all(gr.abs().sum() > 0 for gr in grads_once)
    with pytest.raises(ValueError, match="weight matrices"):
        head.logits(feats[0], head.weights(vocab)[:1])
