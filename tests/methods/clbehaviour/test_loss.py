"""The contrastive and hard contrastive loss against float64 loops, the closed-form hardness-aware
gradient against autograd, the spec's hand case, limits and invariants, and 2-process equivalence."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from methods.clbehaviour import (
    ContrastiveLoss,
    HardContrastiveLoss,
    contrastive_loss,
    contrastive_loss_from_similarities,
    large_temperature_limit,
    penalty_entropy,
    relative_penalty,
    similarity_gradients,
    small_temperature_limit,
    two_view_similarities,
)
from shared.losses import info_nce_loss
from shared.testing import distributed_equivalence


def naive_loss(z1, z2, tau, k=None):
    """Mean over the 2N anchors of −log(e^{s_ii/τ} / (e^{s_ii/τ} + Σ_{K hardest k} e^{s_ik/τ})), float64 loops."""
    z1, z2 = F.normalize(z1.double(), dim=1), F.normalize(z2.double(), dim=1)
    n = len(z1)
    views = [z1, z2]
    losses = []
    for v in range(2):
        for i in range(n):
            anchor = views[v][i]
            s_pos = float(anchor @ views[1 - v][i])
            negs = [float(anchor @ views[u][j]) for u in range(2) for j in range(n) if j != i]
            negs = sorted(negs, reverse=True)[: (len(negs) if k is None else k)]
            denom = math.exp(s_pos / tau) + sum(math.exp(s / tau) for s in negs)
            losses.append(-math.log(math.exp(s_pos / tau) / denom))
    return sum(losses) / len(losses)


def _pair(seed, n=7, d=5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("tau", [0.05, 0.2, 1.0])
@pytest.mark.parametrize("k", [None, 1, 3, 12])
def test_loss_matches_float64_loop(tau, k):
    z1, z2 = _pair(0)
    assert contrastive_loss(z1, z2, tau, k).item() == pytest.approx(naive_loss(z1, z2, tau, k), abs=1e-10)


def test_plain_loss_is_simclr_nt_xent():
    z1, z2 = _pair(1)
    assert contrastive_loss(z1, z2, 0.3).item() == pytest.approx(info_nce_loss(z1, z2, 0.3).item(), abs=1e-12)


def test_top_k_with_all_negatives_is_the_ordinary_loss():
    z1, z2 = _pair(2, n=6)
    plain = contrastive_loss(z1, z2, 0.5).item()
    for k in (10, 11, 1000):  # 2N − 2 = 10 negatives per anchor; larger K keeps them all
        assert HardContrastiveLoss(0.5, k)(z1, z2).item() == pytest.approx(plain, abs=1e-12)
    assert HardContrastiveLoss(0.5, 9)(z1, z2).item() < plain  # fewer terms in the denominator


def test_two_view_similarities_layout():
    z1, z2 = _pair(3, n=4)
    s_pos, s_neg = two_view_similarities(z1, z2)
    a, b = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    assert s_pos.shape == (8,) and s_neg.shape == (8, 6)
    assert torch.allclose(s_pos, torch.cat([(a * b).sum(1), (a * b).sum(1)]))
    # anchor 0 (view 1, image 0): candidates z1_1..3 then z2_1..3
    assert torch.allclose(s_neg[0], torch.cat([a[1:] @ a[0], b[1:] @ a[0]]))


def test_hand_case_from_spec():
    s_pos, s_neg = torch.tensor([1.0], dtype=torch.float64), torch.tensor([[0.5, 0.0]], dtype=torch.float64)
    e = math.e
    p = torch.tensor([e, e**0.5, 1.0], dtype=torch.float64) / (e + e**0.5 + 1)
    assert p.tolist() == pytest.approx([0.5065, 0.3072, 0.1863], abs=1e-4)
    d_pos, d_neg = similarity_gradients(s_pos, s_neg, 1.0)
    assert d_pos.item() == pytest.approx(-0.4935, abs=1e-4)
    assert d_neg[0].tolist() == pytest.approx(p[1:].tolist(), abs=1e-12)
    assert relative_penalty(s_neg[0], 1.0).tolist() == pytest.approx([0.6225, 0.3775], abs=1e-4)
    loss = contrastive_loss_from_similarities(s_pos, s_neg, 1.0)
    assert loss.item() == pytest.approx(-math.log(p[0].item()), abs=1e-12)


@pytest.mark.parametrize("tau", [0.07, 0.3, 1.0, 5.0])
@pytest.mark.parametrize("k", [None, 1, 4])
def test_closed_form_gradients_equal_autograd(tau, k):
    g = torch.Generator().manual_seed(4)
    s_pos = (torch.rand(6, generator=g, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    s_neg = (torch.rand(6, 9, generator=g, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    loss = contrastive_loss_from_similarities(s_pos, s_neg, tau, k).sum()
    auto_pos, auto_neg = torch.autograd.grad(loss, (s_pos, s_neg))
    d_pos, d_neg = similarity_gradients(s_pos.detach(), s_neg.detach(), tau, k)
    assert torch.allclose(d_pos, auto_pos, rtol=0, atol=1e-12)
    assert torch.allclose(d_neg, auto_neg, rtol=0, atol=1e-12)
    # the penalty on the negatives sums to the pull on the positive
    assert torch.allclose(d_neg.sum(1), -d_pos, rtol=0, atol=1e-12)
    # relative penalty r = |∂L/∂s_ij| / |∂L/∂s_ii| is the Boltzmann distribution over the (kept) negatives
    assert torch.allclose(d_neg / d_pos.abs()[:, None], relative_penalty(s_neg.detach(), tau, k), atol=1e-12)
    if k is not None:  # hard loss: no gradient on the negatives it did not keep
        assert ((auto_neg != 0).sum(1) == k).all()
        kept = s_neg.detach().topk(k, dim=1).indices
        assert torch.equal(auto_neg.gather(1, kept) != 0, torch.ones(6, k, dtype=torch.bool))


def test_relative_penalty_sums_to_one_and_sharpens_as_tau_falls():
    s = torch.tensor([0.9, 0.5, 0.1, -0.3, -0.8], dtype=torch.float64)
    taus = [10.0, 1.0, 0.5, 0.2, 0.1, 0.05, 0.01]
    entropies = [penalty_entropy(s, t).item() for t in taus]
    for t in taus:
        assert relative_penalty(s, t).sum().item() == pytest.approx(1.0, abs=1e-12)
    assert all(a > b for a, b in itertools.pairwise(entropies))
    assert entropies[0] == pytest.approx(math.log(5), abs=0.05) and entropies[-1] < 1e-6
    assert relative_penalty(s, 0.01)[0].item() == pytest.approx(1.0, abs=1e-9)  # all on the hardest negative


def test_small_temperature_limit_is_a_triplet_on_the_hardest_negative():
    s_pos = torch.tensor([0.2, 0.9], dtype=torch.float64)
    s_neg = torch.tensor([[0.5, 0.1, -0.2], [0.5, 0.1, -0.2]], dtype=torch.float64)
    tau = 1e-3
    scaled = tau * contrastive_loss_from_similarities(s_pos, s_neg, tau)
    assert scaled[0].item() == pytest.approx(0.3, abs=1e-3)
    assert torch.allclose(scaled, small_temperature_limit(s_pos, s_neg), atol=1e-3)
    assert small_temperature_limit(s_pos, s_neg)[1].item() == 0.0


def test_large_temperature_limit_weighs_every_negative_alike():
    g = torch.Generator().manual_seed(5)
    s_pos = torch.rand(4, generator=g, dtype=torch.float64)
    s_neg = torch.rand(4, 7, generator=g, dtype=torch.float64) * 2 - 1
    for tau in (1e2, 1e4):
        exact = contrastive_loss_from_similarities(s_pos, s_neg, tau)
        assert torch.allclose(exact, large_temperature_limit(s_pos, s_neg, tau), atol=10 / tau**2)
    # N counts the positive too
    assert contrastive_loss_from_similarities(s_pos, s_neg, 1e4).tolist() == pytest.approx([math.log(8)] * 4, abs=1e-3)


def test_permutation_invariance_and_symmetry():
    z1, z2 = _pair(6, n=10)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    for loss in (ContrastiveLoss(0.2), HardContrastiveLoss(0.5, 5)):
        assert loss(z1[perm], z2[perm]).item() == pytest.approx(loss(z1, z2).item(), abs=1e-12)
        assert loss(z2, z1).item() == pytest.approx(loss(z1, z2).item(), abs=1e-12)


def test_bf16_inputs_give_float32_loss():
    z1, z2 = torch.randn(8, 4).bfloat16(), torch.randn(8, 4).bfloat16()
    assert HardContrastiveLoss(1.0, 4)(z1, z2).dtype == torch.float32


@pytest.mark.parametrize("tau", [0.0, -0.1, float("nan"), "0.1"])
def test_bad_temperature(tau):
    with pytest.raises(ValueError, match="temperature"):
        ContrastiveLoss(tau)
    with pytest.raises(ValueError, match="temperature"):
        contrastive_loss(torch.randn(4, 3), torch.randn(4, 3), tau)
    with pytest.raises(ValueError, match="temperature"):
        similarity_gradients(torch.zeros(2), torch.zeros(2, 3), tau)


@pytest.mark.parametrize("k", [0, -1, 2.5, True, "4"])
def test_bad_k(k):
    with pytest.raises(ValueError, match="hard_negatives"):
        ContrastiveLoss(0.2, k)
    with pytest.raises(ValueError, match="hard_negatives"):
        HardContrastiveLoss(0.2, k)
    with pytest.raises(ValueError, match="hard_negatives"):
        relative_penalty(torch.zeros(3), 0.2, k)


def test_shape_and_dtype_errors():
    with pytest.raises(ValueError, match="needs a positive int K"):
        HardContrastiveLoss(0.2, None)
    with pytest.raises(ValueError, match="same shape"):
        ContrastiveLoss()(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match=r"\(batch, dim\)"):
        ContrastiveLoss()(torch.randn(4), torch.randn(4))
    with pytest.raises(TypeError, match="floating-point"):
        ContrastiveLoss()(torch.ones(4, 3, dtype=torch.long), torch.ones(4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="s_pos must have shape"):
        contrastive_loss_from_similarities(torch.zeros(3), torch.zeros(4, 2), 0.2)
    with pytest.raises(ValueError, match="s_pos must have shape"):
        similarity_gradients(torch.zeros(3), torch.zeros(3, 0), 0.2)
    with pytest.raises(TypeError, match="floating-point"):
        small_temperature_limit(torch.zeros(3, dtype=torch.long), torch.zeros(3, 2))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        large_temperature_limit([0.1], torch.zeros(1, 2), 1.0)


@pytest.mark.distributed
def test_distributed_equivalence():
    """2 gloo processes (each half the batch, gathering the rest; top-K over the global batch) == 1 process."""
    cases = [
        ("methods.clbehaviour:ContrastiveLoss", {"temperature": 0.2}),
        ("methods.clbehaviour:HardContrastiveLoss", {"temperature": 1.0, "k": 3}),
        ("methods.clbehaviour:HardContrastiveLoss", {"temperature": 1.0, "k": 3, "gather_distributed": False}),
    ]
    *gathered, local_only = distributed_equivalence(cases, batch=8)
    for (name, kwargs), r in zip(cases, gathered, strict=False):
        assert r["dist_loss"].item() == pytest.approx(r["single_loss"].item(), abs=1e-10), (name, kwargs)
        assert torch.allclose(r["dist_grad"], r["single_grad"], atol=1e-10), (name, kwargs)
        assert r["single_grad"].abs().sum() > 0
    # the check can fail: without the gather each rank picks its top-K among its own negatives only
    assert abs(local_only["dist_loss"].item() - local_only["single_loss"].item()) > 1e-3
