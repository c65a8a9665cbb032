"""SepCLR's losses against float64 loops of the paper's equations, the spec's invariants, and 2 processes."""

import math

import pytest
import torch
import torch.nn.functional as F

from methods.sepclr import (
    SepCLRLoss,
    background_regulariser,
    common_loss,
    joint_entropy_loss,
    kernel_align,
    kernel_joint_entropy,
    kernel_uniformity,
    null_background,
    salient_loss,
    sepclr_terms,
)
from shared.testing import distributed_equivalence

TAU = 0.5


# --- naive float64 re-statements of the equations -------------------------------------------------


def k(a, b, tau=TAU):
    return math.exp(-sum((x - y) ** 2 for x, y in zip(a, b, strict=True)) / (2 * tau))


def naive_align(x, y, tau=TAU):
    if len(x) == 0:
        return 0.0
    return sum(sum((a - b) ** 2 for a, b in zip(xi, yi, strict=True)) for xi, yi in zip(x, y, strict=True)) / (
        2 * tau * len(x)
    )


def naive_unif(x, tau=TAU):
    n = len(x)
    pairs = [k(x[i], x[j], tau) for i in range(n) for j in range(i + 1, n)]
    return math.log(sum(pairs) / len(pairs))


def naive_jem_view(c, s, tau=TAU):
    n = len(c)
    return sum(math.log(sum(k(c[i], c[j], tau) * k(s[i], s[j], tau) for j in range(n)) / n) for i in range(n)) / n


def naive_total(c1, c2, s1, s2, y, tau=TAU, beta_s=1000.0, beta_reg=1000.0, lam=10.0):
    """Lists of float64 rows; y: list of 0/1."""

    def norm(rows):
        return [[v / math.sqrt(sum(u * u for u in r)) for v in r] for r in rows]

    def sprime(rows):
        return [r if t else [0.0] * len(r) for r, t in zip(rows, y, strict=True)]

    n1, n2 = norm(c1), norm(c2)
    tgt = [i for i, t in enumerate(y) if t]
    bg = [i for i, t in enumerate(y) if not t]
    l_c = naive_align(n1, n2, tau) + 2 * 0.5 * (naive_unif(n1, tau) + naive_unif(n2, tau))
    l_s = naive_align([s1[i] for i in tgt], [s2[i] for i in tgt], tau) + 2 * 0.5 * (
        naive_unif(sprime(s1), tau) + naive_unif(sprime(s2), tau)
    )
    zeros = [[0.0] * len(s1[0]) for _ in bg]
    l_reg = 0.5 * (naive_align(zeros, [s1[i] for i in bg], tau) + naive_align(zeros, [s2[i] for i in bg], tau))
    l_jem = 0.5 * (naive_jem_view(n1, sprime(s1), tau) + naive_jem_view(n2, sprime(s2), tau))
    return {
        "common": l_c,
        "salient": l_s,
        "reg": l_reg,
        "jem": l_jem,
        "loss": l_c + beta_s * l_s + beta_reg * l_reg + lam * l_jem,
    }


def batch(n=7, dc=3, ds=4, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    c1, c2 = torch.randn(n, dc, generator=g, dtype=dtype), torch.randn(n, dc, generator=g, dtype=dtype)
    s1, s2 = torch.randn(n, ds, generator=g, dtype=dtype), torch.randn(n, ds, generator=g, dtype=dtype)
    y = torch.tensor([0, 1, 1, 0, 1, 0, 1, 1, 0, 1][:n])
    return c1, c2, s1, s2, y


# --- equality with the loops ----------------------------------------------------------------------


@pytest.mark.parametrize("tau", [0.5, 0.2, 1.0])
def test_total_and_terms_match_float64_loops(tau):
    c1, c2, s1, s2, y = batch(seed=1)
    out = SepCLRLoss(tau=tau, beta_salient=3.0, beta_reg=5.0, jem_lambda=7.0)(c1, c2, s1, s2, y)
    ref = naive_total(c1.tolist(), c2.tolist(), s1.tolist(), s2.tolist(), y.tolist(), tau, 3.0, 5.0, 7.0)
    for key, value in ref.items():
        assert out[key].item() == pytest.approx(value, abs=1e-9), key


def test_official_weights_match_loops():
    c1, c2, s1, s2, y = batch(n=9, seed=2)
    out = SepCLRLoss()(c1, c2, s1, s2, y)
    ref = naive_total(c1.tolist(), c2.tolist(), s1.tolist(), s2.tolist(), y.tolist())
    assert out["loss"].item() == pytest.approx(ref["loss"], rel=1e-10, abs=1e-8)


def test_functional_terms_match_module():
    c1, c2, s1, s2, y = batch(seed=3)
    t = y.bool()
    out = SepCLRLoss()(c1, c2, s1, s2, y)
    assert common_loss(c1, c2).item() == pytest.approx(out["common"].item(), abs=1e-12)
    assert salient_loss(s1, s2, t).item() == pytest.approx(out["salient"].item(), abs=1e-12)
    assert background_regulariser(s1, s2, t).item() == pytest.approx(out["reg"].item(), abs=1e-12)
    assert joint_entropy_loss(c1, c2, s1, s2, t).item() == pytest.approx(out["jem"].item(), abs=1e-12)


# --- the spec's invariants ------------------------------------------------------------------------


def test_align_with_tau_half_is_mean_squared_distance():
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(6, 5, generator=g, dtype=torch.float64), torch.randn(6, 5, generator=g, dtype=torch.float64)
    assert kernel_align(x, y, 0.5).item() == pytest.approx((x - y).pow(2).sum(1).mean().item(), abs=1e-12)
    assert kernel_align(x, y, 0.25).item() == pytest.approx(2 * (x - y).pow(2).sum(1).mean().item(), abs=1e-12)


def test_uniformity_nonpositive_and_zero_iff_points_coincide():
    g = torch.Generator().manual_seed(5)
    for _ in range(5):
        x = torch.randn(8, 3, generator=g, dtype=torch.float64)
        assert kernel_uniformity(x).item() < 0
    same = torch.randn(1, 3, generator=g, dtype=torch.float64).expand(6, 3)
    assert kernel_uniformity(same).item() == pytest.approx(0.0, abs=1e-12)
    moved = same.clone()
    moved[0, 0] += 1e-3
    assert kernel_uniformity(moved).item() < 0


def test_uniformity_matches_pdist_form_and_does_not_underflow():
    x = torch.randn(10, 4, dtype=torch.float64)
    official = torch.pdist(x).pow(2).mul(-1 / (2 * TAU)).exp().mean().log()
    assert kernel_uniformity(x).item() == pytest.approx(official.item(), abs=1e-10)
    far = torch.arange(5, dtype=torch.float32)[:, None] * 100.0  # exp(−1e4) underflows in float32
    assert torch.isfinite(kernel_uniformity(far))
    # the 8 ordered neighbour pairs at distance 100 dominate: log(8 e^{-1e4} / 20)
    assert kernel_uniformity(far).item() == pytest.approx(-1e4 + math.log(8 / 20), rel=1e-6)


def test_reg_zero_iff_background_salient_embeddings_are_zero():
    _, _, s1, s2, y = batch(seed=6)
    bg = ~y.bool()
    s1, s2 = s1.clone(), s2.clone()
    s1[bg], s2[bg] = 0.0, 0.0
    assert background_regulariser(s1, s2, y.bool()).item() == 0.0
    s1[bg.nonzero()[0, 0], 1] = 1e-3
    assert background_regulariser(s1, s2, y.bool()).item() > 0
    # target rows do not matter
    s2[y.bool()] = 123.0
    assert background_regulariser(s1, s2, y.bool()).item() == pytest.approx(0.5 * 1e-6 / (2 * TAU) / bg.sum().item())


def test_jem_nonpositive_zero_iff_all_pairs_coincide_and_permutation_invariant():
    g = torch.Generator().manual_seed(7)
    c, s = torch.randn(8, 3, generator=g, dtype=torch.float64), torch.randn(8, 2, generator=g, dtype=torch.float64)
    assert kernel_joint_entropy(c, s).item() < 0
    perm = torch.randperm(8, generator=g)
    assert kernel_joint_entropy(c[perm], s[perm]).item() == pytest.approx(kernel_joint_entropy(c, s).item(), abs=1e-12)
    c_same, s_same = c[:1].expand(8, 3), s[:1].expand(8, 2)
    assert kernel_joint_entropy(c_same, s_same).item() == pytest.approx(0.0, abs=1e-12)
    # coinciding in one space only is not enough
    assert kernel_joint_entropy(c_same, s).item() < 0 and kernel_joint_entropy(c, s_same).item() < 0
    # the whole L_JEM is invariant to permuting the batch (labels permuted along)
    c1, c2, s1, s2, y = batch(n=8, seed=8)
    p = torch.randperm(8, generator=g)
    a = joint_entropy_loss(c1, c2, s1, s2, y.bool())
    b = joint_entropy_loss(c1[p], c2[p], s1[p], s2[p], y.bool()[p])
    assert a.item() == pytest.approx(b.item(), abs=1e-12) and a.item() <= 0


def test_jem_hand_check():
    c = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    s = torch.zeros(2, 2, dtype=torch.float64)
    value = kernel_joint_entropy(c, s, tau=0.5).item()
    assert value == pytest.approx(math.log((1 + math.exp(-1)) / 2), abs=1e-12)
    assert value == pytest.approx(-0.3799, abs=1e-4)


def test_background_rows_of_s_prime_are_zero_and_carry_no_gradient():
    _, _, s1, s2, y = batch(seed=9)
    s1 = s1.clone().requires_grad_(True)
    t = y.bool()
    sp = null_background(s1, t)
    assert (sp[~t] == 0).all() and torch.equal(sp[t], s1[t])
    # uniformity of s' only: no gradient reaches the background rows of s
    (g,) = torch.autograd.grad(kernel_uniformity(sp), s1)
    assert (g[~t] == 0).all() and g[t].abs().sum() > 0
    # the whole salient term and k-JEM: background rows of s get no gradient either
    (g,) = torch.autograd.grad(salient_loss(s1, s2, t) + joint_entropy_loss(s2, s2, s1, s2, t), s1)
    assert (g[~t] == 0).all()
    # only L_reg moves them (towards 0)
    (g,) = torch.autograd.grad(background_regulariser(s1, s2, t), s1)
    assert (g[t] == 0).all() and torch.allclose(g[~t], s1[~t].detach() / (2 * TAU * (~t).sum()) * 2 * 0.5)


def test_salient_heads_are_not_normalised_common_heads_are():
    c1, c2, s1, s2, y = batch(seed=10)
    out = SepCLRLoss()(c1, c2, s1, s2, y)
    scaled = SepCLRLoss()(3 * c1, 3 * c2, s1, s2, y)
    assert scaled["common"].item() == pytest.approx(out["common"].item(), abs=1e-12)  # ĉ = c/‖c‖
    assert scaled["jem"].item() == pytest.approx(out["jem"].item(), abs=1e-12)
    s_scaled = SepCLRLoss()(c1, c2, 3 * s1, 3 * s2, y)
    assert s_scaled["salient"].item() != pytest.approx(out["salient"].item(), abs=1e-3)  # scale matters
    # the null vector is reachable: all background at 0 gives L_reg = 0 exactly
    bg = ~y.bool()
    s1z, s2z = s1.clone(), s2.clone()
    s1z[bg], s2z[bg] = 0, 0
    assert SepCLRLoss()(c1, c2, s1z, s2z, y)["reg"].item() == 0.0


def test_groups_without_members_give_zero_align_not_nan():
    c1, c2, s1, s2, _ = batch(seed=11)
    all_target = torch.ones(7, dtype=torch.long)
    out = SepCLRLoss()(c1, c2, s1, s2, all_target)
    assert out["reg"].item() == 0.0 and torch.isfinite(out["loss"])
    all_background = torch.zeros(7, dtype=torch.long)
    out = SepCLRLoss()(c1, c2, s1, s2, all_background)
    assert torch.isfinite(out["loss"])
    assert out["salient"].item() == pytest.approx(0.0, abs=1e-12)  # s' all zero: unif = 0, no target to align


def test_bf16_inputs_give_float32_loss_and_finite_gradients():
    c1, c2, s1, s2, y = batch(n=8, seed=12, dtype=torch.float32)
    leaves = [x.bfloat16().requires_grad_(True) for x in (c1, c2, s1, s2)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = SepCLRLoss()(*leaves, y)
    assert out["loss"].dtype == torch.float32
    out["loss"].backward()
    assert all(torch.isfinite(x.grad).all() for x in leaves)


def test_normalisation_matches_official_norm():
    c1, c2, *_ = batch(seed=13)
    n1, n2 = F.normalize(c1, dim=1), F.normalize(c2, dim=1)
    assert common_loss(c1, c2).item() == pytest.approx(common_loss(n1, n2).item(), abs=1e-12)


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("tau", [0.0, -1.0, float("nan")])
def test_bad_tau(tau):
    with pytest.raises(ValueError, match="tau"):
        SepCLRLoss(tau=tau)
    with pytest.raises(ValueError, match="tau"):
        sepclr_terms(*batch(), tau=tau)


@pytest.mark.parametrize("name", ["beta_salient", "beta_reg", "jem_lambda"])
@pytest.mark.parametrize("value", [-1.0, float("inf"), float("nan")])
def test_bad_weights(name, value):
    with pytest.raises(ValueError, match=name):
        SepCLRLoss(**{name: value})


def test_shape_and_label_errors():
    c1, c2, s1, s2, y = batch()
    loss = SepCLRLoss()
    with pytest.raises(ValueError, match="views must match"):
        loss(c1, c2[:5], s1, s2, y)
    with pytest.raises(ValueError, match="views must match"):
        loss(c1, c2, s1[:5], s2[:5], y)
    with pytest.raises(ValueError, match=r"\(batch, dim\)"):
        loss(c1[0], c2[0], s1, s2, y)
    with pytest.raises(TypeError, match="floating-point"):
        loss(c1.long(), c2.long(), s1, s2, y)
    with pytest.raises(ValueError, match="labels must have shape"):
        loss(c1, c2, s1, s2, y[:3])
    with pytest.raises(ValueError, match="0 \\(background\\) or 1"):
        loss(c1, c2, s1, s2, y + 1)
    with pytest.raises(TypeError, match="integer or bool"):
        loss(c1, c2, s1, s2, y.double())
    with pytest.raises(TypeError, match=r"labels must be a torch\.Tensor"):
        loss(c1, c2, s1, s2, [0, 1] * 3 + [0])
    with pytest.raises(ValueError, match="at least 2"):
        loss(c1[:1], c2[:1], s1[:1], s2[:1], y[:1])
    with pytest.raises(ValueError, match="equal shapes"):
        kernel_align(c1, c2[:3])


@pytest.mark.distributed
def test_distributed_equivalence():
    """2 gloo processes (each half the batch, gathering the rest with gradients) == 1 process on all of it."""
    cases = [
        ("methods.sepclr.loss:SepCLRPairLoss", {"common_dim": 2}),
        ("methods.sepclr.loss:SepCLRPairLoss", {"common_dim": 3, "beta_salient": 2.0, "jem_lambda": 0.5}),
        ("methods.sepclr.loss:SepCLRPairLoss", {"common_dim": 2, "gather_distributed": False}),
    ]
    *gathered, local_only = distributed_equivalence(cases, batch=12, dim=5)
    for (name, kwargs), r in zip(cases, gathered, strict=False):
        assert r["dist_loss"].item() == pytest.approx(r["single_loss"].item(), rel=1e-9, abs=1e-7), kwargs
        assert torch.allclose(r["dist_grad"], r["single_grad"], rtol=1e-7, atol=1e-7), kwargs
        assert r["single_grad"].abs().sum() > 0, name
    # the check can fail: without the gather each process sees only its half of the pairs
    assert abs(local_only["dist_loss"].item() - local_only["single_loss"].item()) > 1e-3
