"""CACR against float64 loop re-statements of the paper's equations, its invariants, hand case, distribution."""

import math

import pytest
import torch
import torch.nn.functional as F

from methods.cacr import (
    CACRLoss,
    MultiViewAlignUniform,
    MultiViewInfoNCE,
    cacr_loss,
    cacr_moco_v3_loss,
    cacr_rbf_loss,
    contrastive_attraction,
    contrastive_repulsion,
)
from shared.losses import alignment, info_nce_loss, uniformity
from shared.testing import distributed_equivalence


def views(v=4, n=6, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(v, n, d, generator=g, dtype=torch.float64)


def softmax(xs):
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [x / sum(e) for x in e]


def sqd(a, b):
    return sum((float(a[k]) - float(b[k])) ** 2 for k in range(len(a)))


def naive_ca(z, alpha, tau_pos):
    """L_CA = 1/V Σ_x 1/N Σ_i Σ_{y≠x} softmax_y(τ⁺ d) · α d, by loops (official ``our_loss1``)."""
    z = F.normalize(z, dim=-1)
    v, n = z.shape[:2]
    total = 0.0
    for x in range(v):
        per_query = 0.0
        for i in range(n):
            d = [sqd(z[x, i], z[y, i]) for y in range(v) if y != x]
            w = softmax([tau_pos * c for c in d])
            per_query += sum(wk * alpha * c for wk, c in zip(w, d, strict=True))
        total += per_query / n
    return total / v


def naive_cr(z, beta, tau_neg, tau_plus=None):
    """L_CR = mean_{x<y} 1/N Σ_i Σ_{j≠i} softmax_j(−τ⁻ d) · (−β d), by loops (official ``our_loss2``)."""
    z = F.normalize(z, dim=-1)
    v, n = z.shape[:2]
    pairs = [(x, y) for x in range(v) for y in range(x + 1, v)]
    total = 0.0
    for x, y in pairs:
        acc = 0.0
        for i in range(n):
            d = [sqd(z[x, i], z[y, j]) for j in range(n) if j != i]
            w = softmax([-tau_neg * c for c in d])
            rep = sum(wk * -beta * c for wk, c in zip(w, d, strict=True))
            if tau_plus is not None:
                rep = (-tau_plus * sqd(z[x, i], z[y, i]) + rep) / (1 - tau_plus)
            acc += rep
        total += acc / n
    return total / len(pairs)


@pytest.mark.parametrize(("alpha", "tau_pos", "v"), [(1.0, 1.0, 5), (0.5, 2.0, 3), (2.0, 0.0, 4), (1.0, 1.0, 2)])
def test_attraction_matches_float64_loop(alpha, tau_pos, v):
    z = views(v=v, seed=1)
    assert contrastive_attraction(z, alpha, tau_pos).item() == pytest.approx(naive_ca(z, alpha, tau_pos), abs=1e-10)


@pytest.mark.parametrize(("beta", "tau_neg", "tau_plus"), [(1.0, 0.9, None), (0.5, 2.0, None), (1.0, 0.9, 0.1)])
def test_repulsion_matches_float64_loop(beta, tau_neg, tau_plus):
    z = views(v=4, n=7, seed=2)
    got = contrastive_repulsion(z, beta, tau_neg, tau_plus).item()
    assert got == pytest.approx(naive_cr(z, beta, tau_neg, tau_plus), abs=1e-10)


def test_total_is_ca_plus_cr():
    z = views(seed=3)
    out = CACRLoss(alpha=1, beta=1, tau_pos=1, tau_neg=0.9)(z)
    assert out["loss"].item() == pytest.approx(naive_ca(z, 1, 1) + naive_cr(z, 1, 0.9), abs=1e-10)
    assert out["loss"].item() == pytest.approx((out["ca"] + out["cr"]).item(), abs=1e-12)
    assert not out["ca"].requires_grad and not out["cr"].requires_grad


def test_hand_case_from_spec():
    # z = (1, 0) with positives (0, 1) and (-1, 0), α = τ⁺ = 1: costs 2 and 4, weights softmax(2, 4)
    z = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]], [[-1.0, 0.0]]], dtype=torch.float64)  # (V=3, N=1, d=2)
    w = softmax([2.0, 4.0])
    assert w == pytest.approx([0.1192, 0.8808], abs=1e-4)
    # the query view 0 alone (the spec's case): build it with the loss's own pieces
    d = F.normalize(z, dim=-1)[:, 0]
    sq = ((d[0] - d[1:]) ** 2).sum(-1)
    assert (torch.softmax(sq, 0) * sq).sum().item() == pytest.approx(3.762, abs=1e-3)
    # the full loss averages the spec's query with the other two queries (V = 3, N = 1)
    # query (0,1): positives (1,0), (-1,0) at cost 2, 2 → 2; query (-1,0): costs 4, 2 → same as the spec's query
    expected = (2 * 0.1192 + 4 * 0.8808 + 2.0 + (4 * 0.8808 + 2 * 0.1192)) / 3
    assert contrastive_attraction(z, 1.0, 1.0).item() == pytest.approx(expected, abs=1e-3)


def test_one_positive_is_alignment():
    # V = 2: every query has a single positive, π⁺ ≡ 1 and L_CA = α ‖z − z⁺‖² (Wang–Isola alignment, power 2)
    z = views(v=2, n=9, seed=4)
    for alpha in (1.0, 0.3):
        want = alpha * alignment(z[0], z[1], alpha=2).item()
        assert contrastive_attraction(z, alpha, tau_pos=5.0).item() == pytest.approx(want, abs=1e-12)


def test_tau_pos_zero_is_uniform_average():
    z = F.normalize(views(v=5, seed=5), dim=-1)
    sq = ((z[:, None] - z[None]) ** 2).sum(-1)  # (V, V, N)
    v = z.shape[0]
    uniform = sq.sum((0, 1)) / (v * (v - 1))
    assert contrastive_attraction(z, 1.0, 0.0).item() == pytest.approx(uniform.mean().item(), abs=1e-12)


def test_tau_neg_limits():
    z = F.normalize(views(v=2, n=8, seed=6), dim=-1)
    sq = ((z[0][:, None] - z[1][None]) ** 2).sum(-1)
    off = ~torch.eye(8, dtype=torch.bool)
    beta = 0.7
    mean_neg = -beta * sq[off].view(8, 7).mean(1).mean()
    min_neg = -beta * sq.masked_fill(~off, float("inf")).min(1).values.mean()
    assert contrastive_repulsion(z, beta, 0.0).item() == pytest.approx(mean_neg.item(), abs=1e-12)
    assert contrastive_repulsion(z, beta, 1e4).item() == pytest.approx(min_neg.item(), abs=1e-6)


def test_repulsion_bounds():
    g = torch.Generator().manual_seed(7)
    for beta in (1.0, 2.5):
        for _ in range(5):
            z = torch.randn(3, 16, 4, generator=g) * 10
            for tau in (0.0, 0.9, 50.0):
                cr = contrastive_repulsion(z, beta, tau).item()
                assert -4 * beta - 1e-5 <= cr <= 0
    # extremes: antipodal negatives give −4β (τ⁻ = 0), identical embeddings give 0
    anti = torch.tensor([[[1.0, 0.0], [-1.0, 0.0]]] * 2)  # each image antipodal to the other
    assert contrastive_repulsion(anti, 1.0, 0.0).item() == pytest.approx(-4.0, abs=1e-6)
    same = torch.ones(2, 4, 3)
    assert contrastive_repulsion(same, 1.0, 0.9).item() == pytest.approx(0.0, abs=1e-6)


def test_permutation_invariance_over_batch_and_views():
    z = views(v=5, n=10, seed=8)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    base = cacr_loss(z)["loss"].item()
    assert cacr_loss(z[:, perm])["loss"].item() == pytest.approx(base, abs=1e-12)
    # CA treats the views symmetrically (each is a query once): reordering the views leaves it unchanged
    order = torch.tensor([3, 0, 4, 1, 2])
    assert contrastive_attraction(z[order]).item() == pytest.approx(contrastive_attraction(z).item(), abs=1e-12)


def test_weights_carry_gradient_like_the_official_code():
    # the official small-scale loss does not detach π: the gradient differs from the detached-weight one
    z = views(v=3, n=4, seed=9).requires_grad_(True)
    (g_full,) = torch.autograd.grad(contrastive_attraction(z, 1.0, 1.0), z)
    zn = F.normalize(z, dim=-1).transpose(0, 1)
    sq = ((zn[:, :, None] - zn[:, None]) ** 2).sum(-1)
    eye = torch.eye(3, dtype=torch.bool)
    w = torch.softmax(sq.masked_fill(eye, float("-inf")), -1).detach()
    (g_detached,) = torch.autograd.grad((w * sq).sum(-1).mean(), z)
    assert not torch.allclose(g_full, g_detached)


def test_list_input_and_bf16():
    z = views(v=3, n=6, seed=10).float()
    a = cacr_loss(list(z))["loss"]
    b = cacr_loss(z)["loss"]
    assert a.item() == pytest.approx(b.item(), abs=1e-6)
    assert cacr_loss(z.bfloat16())["loss"].dtype == torch.float32


# --- the ImageNet (MoCo v3) RBF form ---------------------------------------------------------


def moco_v3_ctr_float64(q, k, t):
    """MoCo v3's contrastive_loss(q, k) re-stated with loops: CE(q·kᵀ/T, i) · 2T, mean over i."""
    q, k = F.normalize(q.double(), dim=1), F.normalize(k.double(), dim=1)
    n = len(q)
    total = 0.0
    for i in range(n):
        logits = [float(q[i] @ k[j]) / t for j in range(n)]
        m = max(logits)
        total += -(logits[i] - m - math.log(sum(math.exp(x - m) for x in logits)))
    return total / n * 2 * t


@pytest.mark.parametrize("t", [1.0, 0.2])
def test_two_views_reduce_to_moco_v3_infonce_times_2t(t):
    g = torch.Generator().manual_seed(11)
    q1, q2, k1, k2 = (torch.randn(8, 6, generator=g, dtype=torch.float64) for _ in range(4))
    got = cacr_moco_v3_loss([q1, q2], [k1, k2], temperature=t).item()
    # each key has one query, so p ≡ 1 exactly and every term is MoCo v3's InfoNCE × 2T
    assert cacr_rbf_loss([q1], k2, t).item() == pytest.approx(moco_v3_ctr_float64(q1, k2, t), abs=1e-12)
    want = 0.5 * (moco_v3_ctr_float64(q1, k2, t) + moco_v3_ctr_float64(q2, k1, t))
    assert got == pytest.approx(want, abs=1e-12)  # = MoCo v3's loss (sum of both terms) / 2
    mocov3 = sum(
        F.cross_entropy(F.normalize(a, dim=1) @ F.normalize(b, dim=1).T / t, torch.arange(8)) * 2 * t
        for a, b in ((q1, k2), (q2, k1))
    )
    assert got == pytest.approx(mocov3.item() / 2, abs=1e-12)


def test_rbf_weights_act_with_local_crops():
    g = torch.Generator().manual_seed(12)
    qs = [torch.randn(8, 6, generator=g, dtype=torch.float64) for _ in range(3)]
    k = torch.randn(8, 6, generator=g, dtype=torch.float64)
    qn, kn = [F.normalize(q, dim=1) for q in qs], F.normalize(k, dim=1)
    t = 0.5
    total = 0.0
    for i in range(8):
        d = [float(((q[i] - kn[i]) ** 2).sum()) / t for q in qn]
        p = softmax(d)
        for v, q in enumerate(qn):
            logits = [float(q[i] @ kn[j]) / t for j in range(8)]
            ce = -logits[i] + math.log(sum(math.exp(x) for x in logits))
            total += p[v] * ce / 8 * 2 * t
    assert cacr_rbf_loss(qs, k, t).item() == pytest.approx(total, abs=1e-10)
    # full mode: every crop's key, each against the other crops' queries
    keys = [k, qs[0] * 2, qs[2] - 1]
    full = cacr_moco_v3_loss(qs, keys, t, full_mode=True).item()
    want = sum(cacr_rbf_loss(qs[:i] + qs[i + 1 :], keys[i], t).item() for i in range(3)) / 3
    assert full == pytest.approx(want, abs=1e-12)


# --- the multi-view baselines --------------------------------------------------------------


def test_baselines_reduce_to_two_view_losses():
    z = views(v=2, n=9, seed=13)
    assert MultiViewInfoNCE(0.2)(z)["loss"].item() == pytest.approx(info_nce_loss(z[0], z[1], 0.2).item(), abs=1e-12)
    au = alignment(z[0], z[1]) + (uniformity(z[0]) + uniformity(z[1])) / 2
    assert MultiViewAlignUniform()(z)["loss"].item() == pytest.approx(au.item(), abs=1e-12)


def test_baselines_average_over_view_pairs():
    z = views(v=3, n=6, seed=14)
    pairs = [(0, 1), (0, 2), (1, 2)]
    want = sum(info_nce_loss(z[a], z[b], 0.2).item() for a, b in pairs) / 3
    assert MultiViewInfoNCE(0.2)(z)["loss"].item() == pytest.approx(want, abs=1e-12)
    want = sum(alignment(z[a], z[b]).item() for a, b in pairs) / 3 + sum(uniformity(z[v]).item() for v in range(3)) / 3
    assert MultiViewAlignUniform()(z)["loss"].item() == pytest.approx(want, abs=1e-12)


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alpha": 0}, "alpha"),
        ({"beta": -1}, "beta"),
        ({"tau_pos": -0.1}, "tau_pos"),
        ({"tau_neg": float("nan")}, "tau_neg"),
        ({"tau_neg": float("inf")}, "tau_neg"),
        ({"tau_plus": 1.0}, "tau_plus"),
    ],
)
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CACRLoss(**kwargs)
    with pytest.raises(ValueError, match=match):
        cacr_loss(torch.randn(2, 4, 3), **kwargs)


def test_bad_inputs():
    loss = CACRLoss()
    with pytest.raises(ValueError, match="at least 2 views"):
        loss(torch.randn(1, 4, 3))
    with pytest.raises(ValueError, match=r"\(views, batch, dim\)"):
        loss(torch.randn(4, 3))
    with pytest.raises(ValueError, match="same shape"):
        loss([torch.randn(4, 3), torch.randn(5, 3)])
    with pytest.raises(ValueError, match="batch of at least 2"):
        loss(torch.randn(3, 1, 3))
    with pytest.raises(TypeError, match="floating-point"):
        loss(torch.ones(2, 4, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="tensors"):
        loss([torch.randn(4, 3), "x"])
    with pytest.raises(ValueError, match="temperature"):
        MultiViewInfoNCE(0)
    with pytest.raises(ValueError, match="unif_t"):
        MultiViewAlignUniform(unif_t=0)
    with pytest.raises(ValueError, match="two global views"):
        cacr_moco_v3_loss([torch.randn(4, 3)], [torch.randn(4, 3)])
    with pytest.raises(ValueError, match="key's shape"):
        cacr_rbf_loss([torch.randn(4, 3)], torch.randn(5, 3))
    with pytest.raises(ValueError, match="temperature"):
        cacr_rbf_loss([torch.randn(4, 3)], torch.randn(4, 3), 0.0)


@pytest.mark.distributed
def test_distributed_equivalence():
    """2 gloo processes (each its half of the batch, gathering the rest) == 1 process on all of it."""
    cases = [
        ("methods.cacr.testing:FourViews", {"loss": "cacr"}),
        ("methods.cacr.testing:FourViews", {"loss": "cacr", "tau_neg": 2.0, "tau_plus": 0.1}),
        ("methods.cacr.testing:FourViews", {"loss": "simclr", "temperature": 0.2}),
        ("methods.cacr.testing:FourViews", {"loss": "align_uniform"}),
        ("methods.cacr.testing:MoCoV3Pair", {"temperature": 0.5}),
        ("methods.cacr.testing:FourViews", {"loss": "cacr", "gather_distributed": False}),
    ]
    *gathered, local_only = distributed_equivalence(cases, batch=8)
    for (name, kw), r in zip(cases, gathered, strict=False):
        assert r["dist_loss"].item() == pytest.approx(r["single_loss"].item(), abs=1e-6), (name, kw)
        assert torch.allclose(r["dist_grad"], r["single_grad"], atol=1e-6), (name, kw)
        assert r["single_grad"].abs().sum() > 0, (name, kw)
    # the check can fail: without the gather each rank repels only its own negatives
    assert abs(local_only["dist_loss"].item() - local_only["single_loss"].item()) > 1e-3
