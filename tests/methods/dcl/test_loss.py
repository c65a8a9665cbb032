"""DCL / DCLW against the paper's equations, its invariants, and 2-process equivalence."""

import math

import pytest
import torch
import torch.nn.functional as F

from methods.dcl import DCLLoss, DCLWLoss, dcl_loss, von_mises_weight
from shared.losses import info_nce_loss
from shared.testing import distributed_equivalence


def naive_losses(z1, z2, tau, weights=None):
    """Per-anchor InfoNCE and DCL by loops in float64, straight from the equations."""
    z1 = F.normalize(z1.double(), dim=1)
    z2 = F.normalize(z2.double(), dim=1)
    n = len(z1)
    views = [z1, z2]
    infonce, dcl = [], []
    for v in range(2):
        for i in range(n):
            anchor, positive = views[v][i], views[1 - v][i]
            s_pos = float(anchor @ positive) / tau
            negs = [float(anchor @ views[l][j]) / tau for l in range(2) for j in range(n) if j != i]
            w = 1.0 if weights is None else float(weights[i])
            dcl.append(-w * s_pos + math.log(sum(math.exp(s) for s in negs)))
            infonce.append(-s_pos + math.log(math.exp(s_pos) + sum(math.exp(s) for s in negs)))
    return torch.tensor(infonce, dtype=torch.float64), torch.tensor(dcl, dtype=torch.float64)


@pytest.mark.parametrize("tau", [0.1, 0.5, 1.0])
def test_dcl_matches_float64_loop(tau):
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(7, 5, generator=g, dtype=torch.float64), torch.randn(7, 5, generator=g, dtype=torch.float64)
    infonce, dcl = naive_losses(z1, z2, tau)
    assert dcl_loss(z1, z2, tau).item() == pytest.approx(dcl.mean().item(), abs=1e-10)
    assert info_nce_loss(z1, z2, tau).item() == pytest.approx(infonce.mean().item(), abs=1e-10)


def test_dclw_matches_float64_loop():
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(6, 4, generator=g, dtype=torch.float64)
    s = (F.normalize(z1, dim=1) * F.normalize(z2, dim=1)).sum(1)
    weights = [2 - math.exp(s[i] / 0.5) / (sum(math.exp(x / 0.5) for x in s) / len(s)) for i in range(len(s))]
    _, dclw = naive_losses(z1, z2, 0.1, weights)
    assert DCLWLoss(0.1, sigma=0.5)(z1, z2).item() == pytest.approx(dclw.mean().item(), abs=1e-10)


def test_hand_case_from_spec():
    # B=2, d=2, z1 = z2 = [e1, e2], τ = 1: per anchor DCL = -1 + log 2, InfoNCE = -1 + log(e + 2)
    z = torch.eye(2, dtype=torch.float64)
    assert dcl_loss(z, z, 1.0).item() == pytest.approx(-1 + math.log(2), abs=1e-12)
    assert dcl_loss(z, z, 1.0).item() == pytest.approx(-0.3069, abs=1e-4)
    assert info_nce_loss(z, z, 1.0).item() == pytest.approx(-1 + math.log(math.e + 2), abs=1e-12)
    assert info_nce_loss(z, z, 1.0).item() == pytest.approx(0.5514, abs=1e-4)


def test_dcl_below_infonce_by_exactly_softplus():
    g = torch.Generator().manual_seed(2)
    z1, z2 = torch.randn(9, 8, generator=g, dtype=torch.float64), torch.randn(9, 8, generator=g, dtype=torch.float64)
    tau = 0.2
    infonce, dcl = naive_losses(z1, z2, tau)
    # per anchor: InfoNCE - DCL = softplus(s_pos/τ - LSE_neg) = log(1 + e^{s_pos}/Σ e^{s_neg}) > 0
    lse_neg = dcl  # DCL_i = -s_pos + LSE_neg = -(s_pos - LSE_neg)
    gap = F.softplus(-lse_neg)
    assert torch.allclose(infonce - dcl, gap, atol=1e-10)
    assert (infonce > dcl).all()
    assert info_nce_loss(z1, z2, tau) - dcl_loss(z1, z2, tau) == pytest.approx(gap.mean().item(), abs=1e-10)


def test_dclw_weights_mean_one_and_equal_positives_reduce_to_dcl():
    g = torch.Generator().manual_seed(3)
    z1, z2 = torch.randn(16, 8, generator=g), torch.randn(16, 8, generator=g)
    w = von_mises_weight(z1, z2, sigma=0.5)
    assert w.mean().item() == pytest.approx(1.0, abs=1e-6)
    assert not w.requires_grad
    # all positive similarities equal (z2 = z1): every weight is 1 and DCLW == DCL
    assert torch.allclose(von_mises_weight(z1, z1), torch.ones(16), atol=1e-6)
    assert DCLWLoss(0.1)(z1, z1).item() == pytest.approx(DCLLoss(0.1)(z1, z1).item(), abs=1e-6)


def test_permutation_invariance():
    g = torch.Generator().manual_seed(4)
    z1, z2 = torch.randn(10, 6, generator=g), torch.randn(10, 6, generator=g)
    perm = torch.randperm(10, generator=g)
    for loss in (DCLLoss(0.1), DCLWLoss(0.1)):
        assert loss(z1[perm], z2[perm]).item() == pytest.approx(loss(z1, z2).item(), abs=1e-5)


def test_symmetric_in_views():
    g = torch.Generator().manual_seed(5)
    z1, z2 = torch.randn(10, 6, generator=g), torch.randn(10, 6, generator=g)
    assert DCLLoss(0.1)(z1, z2).item() == pytest.approx(DCLLoss(0.1)(z2, z1).item(), abs=1e-5)


def naive_loss_with_grad(z1, z2, tau, sigma=None, detach_weights=True):
    """The paper's DCL (``sigma=None``) or DCLW loss in float64, by loops over the samples, differentiable.

    Mean over the 2N anchors of ``−w_i·s_ii'/τ + log Σ_{j≠i, l∈{1,2}} exp(s(z_i, z_j^(l))/τ)``, with
    ``w_i = 2 − exp(s_ii'/σ) / ((1/N) Σ_k exp(s_kk'/σ))`` for DCLW (1 for DCL), held constant unless
    ``detach_weights=False``.
    """
    n = len(z1)
    views = [[z1[i] / z1[i].norm() for i in range(n)], [z2[i] / z2[i].norm() for i in range(n)]]
    weights = [1.0] * n
    if sigma is not None:
        pos = [views[0][k] @ views[1][k] for k in range(n)]
        if detach_weights:
            pos = [p.detach() for p in pos]
        mean_e = sum(torch.exp(p / sigma) for p in pos) / n
        weights = [2 - torch.exp(p / sigma) / mean_e for p in pos]
    terms = []
    for v in range(2):
        for i in range(n):
            anchor = views[v][i]
            s_pos = anchor @ views[1 - v][i] / tau
            negatives = [anchor @ views[m][j] / tau for m in range(2) for j in range(n) if j != i]
            terms.append(-weights[i] * s_pos + torch.log(sum(torch.exp(s) for s in negatives)))
    return sum(terms) / len(terms)


def input_grads(loss_fn, z1, z2):
    """(loss, d loss / d z1, d loss / d z2) of ``loss_fn`` at float64 copies of the raw (unnormalised) inputs."""
    a, b = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
    loss = loss_fn(a, b)
    return (loss, *torch.autograd.grad(loss, (a, b)))


def grad_inputs(seed):
    g = torch.Generator().manual_seed(seed)
    z1 = 3 * torch.randn(6, 5, generator=g, dtype=torch.float64)
    return z1, z1 + 2 * torch.randn(6, 5, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("tau", [0.1, 0.5])
@pytest.mark.parametrize("variant", ["dcl", "dclw"])
def test_gradient_through_the_package_matches_float64_loop(variant, tau):
    """Autograd through DCLLoss / DCLWLoss == autograd through the paper's loss written as loops."""
    z1, z2 = grad_inputs(6)
    sigma = 0.5 if variant == "dclw" else None
    ours = DCLWLoss(tau, sigma=0.5) if variant == "dclw" else DCLLoss(tau)
    loss, g1, g2 = input_grads(ours, z1, z2)
    ref_loss, r1, r2 = input_grads(lambda a, b: naive_loss_with_grad(a, b, tau, sigma), z1, z2)
    assert loss.item() == pytest.approx(ref_loss.item(), abs=1e-10)
    assert g1.abs().max() > 1e-3 and g2.abs().max() > 1e-3
    assert torch.allclose(g1, r1, rtol=0, atol=1e-10) and torch.allclose(g2, r2, rtol=0, atol=1e-10)


def test_gradient_check_tells_the_losses_apart():
    """The comparison above can fail: InfoNCE (positive kept in the denominator, the coupling factor q_B)
    and DCLW with gradients through its weights have other gradients than the paper's DCL / DCLW."""
    tau = 0.1
    z1, z2 = grad_inputs(6)
    _, d1, d2 = input_grads(lambda a, b: naive_loss_with_grad(a, b, tau), z1, z2)
    _, i1, i2 = input_grads(lambda a, b: info_nce_loss(a, b, tau), z1, z2)
    assert (d1 - i1).abs().max() > 1e-3 and (d2 - i2).abs().max() > 1e-3
    _, w1, _ = input_grads(DCLWLoss(tau, sigma=0.5), z1, z2)
    _, t1, _ = input_grads(lambda a, b: naive_loss_with_grad(a, b, tau, 0.5, detach_weights=False), z1, z2)
    assert (w1 - t1).abs().max() > 1e-3


def test_can_be_negative():
    z = torch.eye(2)
    assert dcl_loss(z, z, 1.0).item() < 0


@pytest.mark.parametrize("tau", [0.0, -0.1, float("nan")])
def test_bad_temperature(tau):
    with pytest.raises(ValueError, match="temperature"):
        DCLLoss(tau)
    with pytest.raises(ValueError, match="temperature"):
        dcl_loss(torch.randn(4, 3), torch.randn(4, 3), tau)


def test_bad_sigma():
    with pytest.raises(ValueError, match="sigma"):
        DCLWLoss(0.1, sigma=0)


def test_shape_and_dtype_errors():
    with pytest.raises(ValueError, match="same shape"):
        DCLLoss()(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match=r"\(batch, dim\)"):
        DCLLoss()(torch.randn(4), torch.randn(4))
    with pytest.raises(TypeError, match="floating-point"):
        DCLLoss()(torch.ones(4, 3, dtype=torch.long), torch.ones(4, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="callable"):
        DCLLoss(weight_fn=3)


def test_bf16_inputs_give_float32_loss():
    z1, z2 = torch.randn(8, 4).bfloat16(), torch.randn(8, 4).bfloat16()
    assert DCLLoss()(z1, z2).dtype == torch.float32


@pytest.mark.distributed
def test_distributed_equivalence():
    """2 gloo processes (each its half of the batch, gathering the rest) == 1 process on all of it."""
    cases = [
        ("methods.dcl:DCLLoss", {"temperature": 0.2}),
        ("methods.dcl:DCLWLoss", {"temperature": 0.2}),
        ("shared.losses:InfoNCELoss", {"temperature": 0.2}),
        ("methods.dcl:DCLLoss", {"temperature": 0.2, "gather_distributed": False}),
    ]
    *gathered, local_only = distributed_equivalence(cases, batch=8)
    for (name, _), r in zip(cases, gathered, strict=False):
        assert r["dist_loss"].item() == pytest.approx(r["single_loss"].item(), abs=1e-5), name
        assert torch.allclose(r["dist_grad"], r["single_grad"], atol=1e-5), name
        assert r["single_grad"].abs().sum() > 0, name
    # the check can fail: without the gather each rank sees only its own negatives
    assert abs(local_only["dist_loss"].item() - local_only["single_loss"].item()) > 1e-3
