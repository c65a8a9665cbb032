"""BECLR's loss against a float64 loop of the paper's equation, its hand cases, and 2-process equivalence."""

import math

import pytest
import torch
import torch.nn.functional as F

from methods.beclr import BECLRLoss, beclr_loss, negative_term, positive_term
from shared.testing import distributed_equivalence


def naive_loss(zt, p, zs, lamb=0.1, temp=2.0):
    """L_pos + λ L_neg by loops in float64, straight from the equations."""
    zt, p, zs = (F.normalize(t.double(), dim=1) for t in (zt, p, zs))
    n = len(zt) // 2
    pos = -0.5 * (
        sum(float(p[i] @ zt[n + i]) for i in range(n)) / n + sum(float(p[n + i] @ zt[i]) for i in range(n)) / n
    )
    total, rows, n_neg = 0.0, 2 * n, 2 * n - 2
    for i in range(rows):
        partner = (i + n) % rows
        total += sum(math.exp(float(zs[i] @ zs[j]) / temp) for j in range(rows) if j not in (i, partner)) / n_neg
    neg = math.log(total / rows)
    return pos + lamb * neg, pos, neg


@pytest.mark.parametrize("temp", [0.5, 2.0])
def test_matches_float64_loop(temp):
    g = torch.Generator().manual_seed(0)
    zt, p, zs = (torch.randn(10, 6, generator=g, dtype=torch.float64) for _ in range(3))
    want, want_pos, want_neg = naive_loss(zt, p, zs, 0.1, temp)
    out = beclr_loss(zt, p, zs, 0.1, temp)
    assert out["loss"].item() == pytest.approx(want, abs=1e-10)
    assert out["loss_pos"].item() == pytest.approx(want_pos, abs=1e-10)
    assert out["loss_neg"].item() == pytest.approx(want_neg, abs=1e-10)


def test_hand_case_orthonormal_negatives_give_zero():
    # B = 2, orthonormal embeddings, T = 2: every negative term is exp(0) = 1 → L_neg = log 1 = 0
    z = torch.eye(4, dtype=torch.float64)
    assert negative_term(z[:2], z[2:], 2.0).item() == pytest.approx(0.0, abs=1e-12)


def test_single_row_per_view_is_refused():
    z = torch.randn(2, 4)
    with pytest.raises(ValueError, match="at least 2"):
        beclr_loss(z, z, z)


def test_positive_term_is_minus_one_when_aligned_and_teacher_gets_no_gradient():
    z = torch.randn(8, 5)
    zt = z.clone().requires_grad_(True)
    swapped = torch.cat([z[4:], z[:4]]).requires_grad_(True)  # p_1 = z̄_2, p_2 = z̄_1
    loss = positive_term(swapped, zt)
    assert loss.item() == pytest.approx(-1.0, abs=1e-6)
    loss.backward()
    assert zt.grad is None and swapped.grad is not None


def test_negative_term_is_log_of_mean_not_mean_of_logs():
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randn(5, 4, generator=g, dtype=torch.float64)
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sims = (z @ z.T / 2.0).exp()
    mask = torch.eye(10, dtype=torch.bool) | torch.eye(10, dtype=torch.bool).roll(5, 1)
    per_row = sims.masked_fill(mask, 0).sum(1) / 8
    assert negative_term(z1, z2).item() == pytest.approx(per_row.mean().log().item(), abs=1e-12)
    assert negative_term(z1, z2).item() != pytest.approx(per_row.log().mean().item(), abs=1e-6)


def test_permutation_invariance_and_bf16():
    g = torch.Generator().manual_seed(2)
    zt, p, zs = (torch.randn(12, 6, generator=g) for _ in range(3))
    perm = torch.randperm(6, generator=g)
    idx = torch.cat([perm, perm + 6])
    a, b = BECLRLoss()(zt, p, zs)["loss"], BECLRLoss()(zt[idx], p[idx], zs[idx])["loss"]
    assert a.item() == pytest.approx(b.item(), abs=1e-5)
    assert BECLRLoss()(zt.bfloat16(), p.bfloat16(), zs.bfloat16())["loss"].dtype == torch.float32


def test_errors():
    z = torch.randn(6, 4)
    with pytest.raises(ValueError, match="temperature"):
        BECLRLoss(temperature=0)
    with pytest.raises(ValueError, match="lamb_neg"):
        BECLRLoss(lamb_neg=-1)
    with pytest.raises(ValueError, match="share one shape"):
        beclr_loss(z, z, torch.randn(6, 5))
    with pytest.raises(ValueError, match="two views"):
        beclr_loss(z[:5], z[:5], z[:5])
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        beclr_loss(z, z, "z")
    with pytest.raises(ValueError, match="floating-point"):
        beclr_loss(z.long(), z.long(), z.long())


@pytest.mark.distributed
def test_distributed_equivalence():
    """2 gloo processes (each its half, gathering the rest) == 1 process on the whole batch."""
    cases = [
        ("methods.beclr.loss:NegativeTermLoss", {"temperature": 2.0}),
        ("methods.beclr.loss:NegativeTermLoss", {"temperature": 0.5}),
        ("methods.beclr.loss:PairBECLRLoss", {"lamb_neg": 0.1, "temperature": 2.0}),
        ("methods.beclr.loss:NegativeTermLoss", {"temperature": 0.5, "gather_distributed": False}),
    ]
    *gathered, local_only = distributed_equivalence(cases, batch=8)
    for (name, _), r in zip(cases, gathered, strict=False):
        assert r["dist_loss"].item() == pytest.approx(r["single_loss"].item(), abs=1e-6), name
        assert torch.allclose(r["dist_grad"], r["single_grad"], atol=1e-6), name
        assert r["single_grad"].abs().sum() > 0, name
    assert abs(local_only["dist_loss"].item() - local_only["single_loss"].item()) > 1e-4
