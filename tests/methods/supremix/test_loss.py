"""SupReMix against a float64 loop over materialised mixtures, the spec's invariants, and 2-process equivalence."""

import math

import pytest
import torch
import torch.nn.functional as F

from methods.supremix import (
    SupConRegressionLoss,
    SupReMixConfig,
    SupReMixLoss,
    label_weight,
    negative_mixture_mask,
    positive_mixtures,
    supremix_loss,
)
from shared.testing import distributed_equivalence


def naive_supremix(z1, z2, y, cfg: SupReMixConfig, neg_alpha=None):
    """Per-anchor loss by loops in float64: every mixture built as a vector, as the official code does.

    ``neg_alpha[a][k]``: α of anchor a's negative mixture with candidate k (or cfg.neg_alpha).
    """
    z = torch.cat([F.normalize(z1.double(), dim=1), F.normalize(z2.double(), dim=1)])
    lab = [float(v) for v in torch.cat([y, y])]
    m, tau = len(z), cfg.temperature

    def weight(diff, mixture):
        if not cfg.use_weight:
            return 1.0
        d = cfg.distance
        if d == "L1_inv":
            return abs(diff) + 1
        if d == "L2_inv":
            return (diff + 1) ** 2 + 1 if (mixture and cfg.official_l2_inv) else diff**2 + 1
        if d == "L1":
            return 1 / (abs(diff) + 1)
        return 1 / (diff**2 + 1)

    out = []
    for a in range(m):
        cands = []  # (vector, label, is_positive, is_mixture)
        for c in range(m):
            if c != a:
                cands.append((z[c], lab[c], lab[c] == lab[a], False))
        if cfg.mix_neg:
            for k in range(m):
                if lab[k] != lab[a]:
                    al = cfg.neg_alpha if neg_alpha is None else float(neg_alpha[a][k])
                    cands.append((al * z[a] + (1 - al) * z[k], al * lab[a] + (1 - al) * lab[k], False, True))
        if cfg.mix_pos:
            for j in range(m):
                for k in range(m):
                    yi, yj, yk = lab[a], lab[j], lab[k]
                    if yj < yi < yk and yi - yj < cfg.window and yk - yi < cfg.window:
                        al = (yk - yi) / (yk - yj)
                        mix_label = al * yj + (1 - al) * yk
                        assert math.isclose(mix_label, yi, abs_tol=1e-9)
                        cands.append((al * z[j] + (1 - al) * z[k], mix_label, True, True))
        logits = [float(z[a] @ v) / tau for v, _, _, _ in cands]
        den = sum(weight(lab[a] - lc, mix) * math.exp(lg) for lg, (_, lc, _, mix) in zip(logits, cands, strict=True))
        pos = [lg - math.log(den) for lg, (_, _, p, _) in zip(logits, cands, strict=True) if p]
        count = len(pos) + (1.0 if cfg.official_positive_count else 0.0)
        out.append(-(cfg.temperature / cfg.base_temperature) * sum(pos) / count)
    return torch.tensor(out, dtype=torch.float64)


def batch(n=6, d=5, seed=0, labels=None):
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, d, generator=g, dtype=torch.float64)
    z2 = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.tensor(labels, dtype=torch.float64) if labels is not None else torch.randint(0, 8, (n,), generator=g)
    return z1, z2, y.double()


LABELS = [3, 5, 5, 7, 10, 4, 6]


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"neg_alpha": 0.3},
        {"distance": "L2_inv", "neg_alpha": 0.6},
        {"distance": "L2_inv", "neg_alpha": 0.6, "official_l2_inv": True},
        {"distance": "L1", "neg_alpha": 0.25},
        {"distance": "L2", "mix_neg": False},
        {"official_positive_count": True, "neg_alpha": 0.2},
        {"use_weight": False, "temperature": 0.5, "base_temperature": 0.07, "window": 3},
        {"mix_pos": False, "neg_alpha": 0.5},
    ],
)
def test_matches_float64_loop_over_materialised_mixtures(kwargs):
    z1, z2, y = batch(7, 4, seed=1, labels=LABELS)
    if "neg_alpha" not in kwargs and kwargs.get("mix_neg", True):
        kwargs = {**kwargs, "mix_neg": False}  # random α is tested below with a fixed seed
    cfg = SupReMixConfig(**kwargs)
    got = supremix_loss(z1, z2, y, cfg, reduction="none")
    assert torch.allclose(got, naive_supremix(z1, z2, y, cfg), atol=1e-10)


def test_beta_alpha_draws_match_the_loop():
    z1, z2, y = batch(5, 3, seed=2, labels=[1, 2, 2, 4, 9])
    cfg = SupReMixConfig(neg_beta=(2.0, 8.0))
    torch.manual_seed(7)
    alpha = torch.distributions.Beta(torch.tensor(2.0), torch.tensor(8.0)).sample((10, 10)).double()
    torch.manual_seed(7)
    got = supremix_loss(z1, z2, y, cfg, reduction="none")
    assert torch.allclose(got, naive_supremix(z1, z2, y, cfg, alpha), atol=1e-6)
    assert 0.1 < alpha.mean() < 0.3  # Beta(2, 8) has mean 0.2


def test_positive_mixture_label_equals_anchor_label():
    y = torch.tensor([0.0, 1.5, 2.0, 3.0, 4.5, 7.0, 2.0])
    a, j, k, alpha = positive_mixtures(y, y, window=5.0)
    assert len(a) > 0
    mix_label = alpha * y[j] + (1 - alpha) * y[k]
    assert torch.allclose(mix_label, y[a], atol=1e-6)
    assert ((alpha > 0) & (alpha < 1)).all()
    # exactly the triples y_j < y_i < y_k with both gaps < n
    yi, yj, yk = y[:, None, None], y[None, :, None], y[None, None, :]
    brute = ((yj < yi) & (yi < yk) & (yi - yj < 5) & (yk - yi < 5)).nonzero(as_tuple=True)
    assert all(torch.equal(u, v) for u, v in zip((a, j, k), brute, strict=True))
    assert len(positive_mixtures(y, y, window=0.4)[0]) == 0


def test_negative_mixture_label_differs_iff_labels_differ():
    y = torch.tensor([1.0, 1.0, 2.0, 5.0])
    mask = negative_mixture_mask(y, y)
    for alpha in (0.0, 0.2, 0.7, 0.99):
        mix_label = alpha * y[:, None] + (1 - alpha) * y[None, :]
        differs = mix_label != y[:, None]
        assert torch.equal(differs, (y[:, None] != y[None, :]) if alpha < 1 else torch.zeros_like(differs))
        assert torch.equal(mask, y[:, None] != y[None, :])


def test_weights_at_least_one_with_equality_iff_equal_labels():
    diff = torch.tensor([0.0, 0.5, -1.0, 3.0, -7.5])
    for distance in ("L1_inv", "L2_inv"):
        w = label_weight(diff, distance)
        assert (w >= 1).all() and torch.equal(w == 1, diff == 0)
    assert torch.allclose(label_weight(diff, "L1_inv"), diff.abs() + 1)
    # the official misplaced +1: (d + 1)² + 1, which is 2 at d = 0 and 1 at d = −1
    official = label_weight(diff, "L2_inv", official_l2_inv=True)
    assert official[0] == 2 and official[2] == 1
    assert (label_weight(diff, "L1") <= 1).all() and (label_weight(diff, "L2") <= 1).all()


def supcon_reference(z1, z2, y, tau, plus_one=False):
    """SupCon (Khosla et al.) with positives = same label, mean over anchors, τ/τ_b = 1."""
    z = torch.cat([F.normalize(z1, dim=1), F.normalize(z2, dim=1)])
    lab = torch.cat([y, y])
    logits = z @ z.T / tau
    eye = torch.eye(len(z), dtype=torch.bool)
    log_prob = logits - torch.logsumexp(logits.masked_fill(eye, float("-inf")), 1, keepdim=True)
    pos = (lab[:, None] == lab[None, :]) & ~eye
    count = pos.sum(1) + (1 if plus_one else 0)
    return (-(log_prob * pos).sum(1) / count).mean()


@pytest.mark.parametrize("plus_one", [False, True])
def test_no_mixtures_no_weights_is_supcon_up_to_the_plus_one(plus_one):
    z1, z2, y = batch(8, 6, seed=3)
    cfg = SupReMixConfig(mix_pos=False, mix_neg=False, use_weight=False, official_positive_count=plus_one)
    got = supremix_loss(z1, z2, y, cfg)
    assert got.item() == pytest.approx(supcon_reference(z1, z2, y, 0.3, plus_one).item(), abs=1e-12)
    assert SupConRegressionLoss(0.3, official_positive_count=plus_one)(z1, z2, y).item() == pytest.approx(
        got.item(), abs=1e-12
    )
    # the +1 shrinks each anchor's loss by |P|/(|P| + 1): they differ unless the loss is 0
    other = supremix_loss(z1, z2, y, SupReMixConfig(mix_pos=False, mix_neg=False, use_weight=False,
                                                    official_positive_count=not plus_one))  # fmt: skip
    assert abs(other.item() - got.item()) > 1e-3


def weighted_supcon_loop(z1, z2, y, tau, tau_b):
    """The official script's SupCon baseline, restated by loops in float64 (autograd through the loop):
    L_i = −(τ/τ_b)/|P_i| · Σ_{p ∈ P_i} [ z_i·z_p/τ − log Σ_{c ≠ i} (|y_i − y_c| + 1) e^{z_i·z_c/τ} ]."""
    z = torch.cat([z1 / z1.norm(dim=1, keepdim=True), z2 / z2.norm(dim=1, keepdim=True)])
    lab = [float(v) for v in torch.cat([y, y])]
    out = []
    for i in range(len(z)):
        den = sum((abs(lab[i] - lab[c]) + 1) * torch.exp(z[i] @ z[c] / tau) for c in range(len(z)) if c != i)
        pos = [z[i] @ z[p] / tau - torch.log(den) for p in range(len(z)) if p != i and lab[p] == lab[i]]
        out.append(-(tau / tau_b) * sum(pos) / len(pos))
    return torch.stack(out)


def test_weighted_supcon_matches_float64_loop_values_and_gradients():
    """``SupConRegressionLoss(use_weight=True)``, the official (weighted) SupCon baseline, against the loop."""
    z1, z2, y = batch(7, 4, seed=11, labels=LABELS)
    z1.requires_grad_(True)
    loss = SupConRegressionLoss(0.3, 0.5, use_weight=True, gather_distributed=False)
    got = supremix_loss(z1, z2, y, loss.cfg, gather_distributed=False, reduction="none")
    want = weighted_supcon_loop(z1, z2, y, 0.3, 0.5)
    assert torch.allclose(got, want, atol=1e-12)
    (g_got,) = torch.autograd.grad(loss(z1, z2, y), z1)
    (g_want,) = torch.autograd.grad(want.mean(), z1)
    assert torch.allclose(g_got, g_want, atol=1e-12)
    # the weights make every anchor's loss larger (w ≥ 1 in the denominator) unless all its candidates share its label
    plain = supremix_loss(z1, z2, y, SupConRegressionLoss(0.3, 0.5).cfg, reduction="none")
    assert (got > plain + 1e-6).all()
    same = torch.full((7,), 4.0, dtype=torch.float64)
    weighted_same = SupConRegressionLoss(0.3, use_weight=True)(z1, z2, same)
    assert weighted_same.item() == pytest.approx(SupConRegressionLoss(0.3)(z1, z2, same).item(), abs=1e-12)


def test_unique_labels_make_it_nt_xent():
    # every label distinct, no mixtures, no weights: the only positive is the other view -> SimCLR's NT-Xent
    from shared.losses import info_nce_loss

    z1, z2, _ = batch(6, 4, seed=4)
    cfg = SupReMixConfig(mix_pos=False, mix_neg=False, use_weight=False, temperature=0.2, base_temperature=0.2)
    got = supremix_loss(z1, z2, torch.arange(6.0), cfg)
    assert got.item() == pytest.approx(info_nce_loss(z1, z2, 0.2).item(), abs=1e-12)


@pytest.mark.parametrize("max_elements", [1, 100, 500, 4000])
def test_chunked_path_equals_full_path(max_elements):
    z1, z2, y = batch(9, 5, seed=5, labels=[1, 2, 3, 3, 4, 6, 7, 8, 2])
    z1.requires_grad_(True)
    full_cfg = SupReMixConfig(neg_alpha=0.4)
    full = supremix_loss(z1, z2, y, full_cfg)
    (g_full,) = torch.autograd.grad(full, z1)
    chunked = supremix_loss(z1, z2, y, SupReMixConfig(neg_alpha=0.4, max_elements=max_elements))
    (g_chunk,) = torch.autograd.grad(chunked, z1)
    assert chunked.item() == pytest.approx(full.item(), abs=1e-12)
    assert torch.allclose(g_chunk, g_full, atol=1e-12)


def test_chunked_path_keeps_the_random_alpha_draws():
    z1, z2, y = batch(8, 5, seed=6)
    torch.manual_seed(3)
    full = supremix_loss(z1, z2, y, SupReMixConfig())
    torch.manual_seed(3)
    chunked = supremix_loss(z1, z2, y, SupReMixConfig(max_elements=300))
    assert chunked.item() == pytest.approx(full.item(), abs=1e-12)


def test_mixtures_are_constants_by_default():
    # with detached mixtures, a sample that appears only inside mixtures gets no gradient from them
    z1, z2, y = batch(4, 3, seed=7, labels=[0, 2, 4, 20])
    w = torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for detach in (True, False):
        cfg = SupReMixConfig(neg_alpha=0.3, detach_mixtures=detach)
        loss = supremix_loss(z1 @ w, z2 @ w, y, cfg)
        assert torch.isfinite(loss)
    z1.requires_grad_(True)
    a = supremix_loss(z1, z2, y, SupReMixConfig(neg_alpha=0.3, detach_mixtures=True))
    b = supremix_loss(z1, z2, y, SupReMixConfig(neg_alpha=0.3, detach_mixtures=False))
    assert a.item() == pytest.approx(b.item(), abs=1e-12)  # same value, different gradient
    (ga,) = torch.autograd.grad(a, z1)
    (gb,) = torch.autograd.grad(b, z1)
    assert not torch.allclose(ga, gb)


def test_mixtures_make_a_difference_and_loss_is_permutation_invariant():
    z1, z2, y = batch(8, 5, seed=8)
    plain = supremix_loss(z1, z2, y, SupReMixConfig(mix_pos=False, mix_neg=False))
    mixed = supremix_loss(z1, z2, y, SupReMixConfig(neg_alpha=0.2))
    assert abs(plain.item() - mixed.item()) > 1e-3
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(1))
    again = supremix_loss(z1[perm], z2[perm], y[perm], SupReMixConfig(neg_alpha=0.2))
    assert again.item() == pytest.approx(mixed.item(), abs=1e-10)


def test_bf16_inputs_give_float32_loss():
    z1, z2 = torch.randn(8, 4).bfloat16(), torch.randn(8, 4).bfloat16()
    assert SupReMixLoss()(z1, z2, torch.arange(8.0) % 3).dtype == torch.float32


@pytest.mark.distributed
def test_distributed_equivalence():
    """2 gloo processes (each its half, gathering embeddings and labels) == 1 process on the whole batch."""
    labels = [1.0, 3.0, 2.0, 3.0, 5.0, 4.0, 8.0, 2.0]
    cases = [
        ("methods.supremix.testing:LabelledLoss", {"labels": labels, "neg_alpha": 0.3}),
        ("methods.supremix.testing:LabelledLoss", {"labels": labels, "neg_alpha": 0.7, "max_elements": 64}),
        ("methods.supremix.testing:LabelledLoss", {"labels": labels, "mix_pos": False, "mix_neg": False}),
        ("methods.supremix.testing:LabelledLoss", {"labels": labels, "neg_alpha": 0.3, "detach_mixtures": False}),
        ("methods.supremix.testing:LabelledLoss", {"labels": labels, "neg_alpha": 0.3, "gather_distributed": False}),
    ]
    *gathered, local_only = distributed_equivalence(cases, batch=8)
    for (_, kwargs), r in zip(cases, gathered, strict=False):
        assert r["dist_loss"].item() == pytest.approx(r["single_loss"].item(), abs=1e-10), kwargs
        assert torch.allclose(r["dist_grad"], r["single_grad"], atol=1e-10), kwargs
        assert r["single_grad"].abs().sum() > 0
    assert abs(local_only["dist_loss"].item() - local_only["single_loss"].item()) > 1e-4


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"temperature": 0}, "temperature"),
        ({"base_temperature": -1}, "base_temperature"),
        ({"window": 0}, "window"),
        ({"distance": "cosine"}, "distance"),
        ({"neg_beta": (2.0, 0.0)}, "neg_beta"),
        ({"neg_alpha": 1.5}, "neg_alpha"),
        ({"max_elements": 0}, "max_elements"),
    ],
)
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SupReMixLoss(**kwargs)


def test_bad_inputs():
    z = torch.randn(4, 3)
    loss = SupReMixLoss()
    with pytest.raises(ValueError, match="labels must have shape"):
        loss(z, z, torch.arange(5.0))
    with pytest.raises(TypeError, match=r"labels must be a torch\.Tensor"):
        loss(z, z, [1, 2, 3, 4])
    with pytest.raises(ValueError, match="finite"):
        loss(z, z, torch.tensor([1.0, float("nan"), 2.0, 3.0]))
    with pytest.raises(ValueError, match="same shape"):
        loss(z, torch.randn(5, 3), torch.arange(4.0))
    with pytest.raises(ValueError, match="reduction"):
        supremix_loss(z, z, torch.arange(4.0), reduction="sum")
    with pytest.raises(ValueError, match="distance"):
        label_weight(torch.zeros(2), "cos")
