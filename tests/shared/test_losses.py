"""shared.losses against float64 loop re-statements of the papers' equations.

* NT-Xent / InfoNCE of SimCLR (Chen et al., 2020, eq. 1): 2N anchors, each with one positive
  (the other view of its image) and 2N-2 negatives; the positive stays in the denominator.
* Alignment and uniformity of Wang & Isola (2020): E ‖f(x) − f(x⁺)‖^α and
  log E_{x≠y} exp(−t ‖f(x) − f(y)‖²) on L2-normalised embeddings.

shared.losses exports no SupCon and no one-sided InfoNCE (those live in the method packages);
its "local-loss" form (this rank's anchors against gathered candidates) is the
``gather_distributed`` switch, which is the identity with one process and is checked across two
processes in test_gather_with_grad.py.
"""

from __future__ import annotations

import math

import pytest
import torch

from shared.losses import (
    InfoNCELoss,
    TwoViewLogits,
    alignment,
    at_least_float32,
    check_pair,
    check_temperature,
    info_nce_loss,
    two_view_logits,
    uniformity,
)

# ---------------------------------------------------------------------------- naive references


def unit(v: torch.Tensor) -> torch.Tensor:
    return v / torch.sqrt((v * v).sum())


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (unit(a) * unit(b)).sum()


def naive_nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> torch.Tensor:
    """SimCLR eq. (1) with a loop over the 2N anchors and their 2N-1 candidates (float64)."""
    z = [row for row in z1.double()] + [row for row in z2.double()]
    n = z1.shape[0]
    total = torch.zeros((), dtype=torch.float64)
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        denom = torch.zeros((), dtype=torch.float64)
        count = 0
        for k in range(2 * n):
            if k == i:
                continue
            denom = denom + torch.exp(cosine(z[i], z[k]) / tau)
            count += 1
        assert count == 2 * n - 1  # the positive and 2N-2 negatives
        total = total - torch.log(torch.exp(cosine(z[i], z[pos]) / tau) / denom)
    return total / (2 * n)


def naive_alignment(z1: torch.Tensor, z2: torch.Tensor, alpha: float) -> torch.Tensor:
    total = torch.zeros((), dtype=torch.float64)
    for a, b in zip(z1.double(), z2.double(), strict=True):
        d = unit(a) - unit(b)
        total = total + torch.sqrt((d * d).sum()) ** alpha
    return total / z1.shape[0]


def naive_uniformity(z: torch.Tensor, t: float) -> torch.Tensor:
    rows = [unit(r) for r in z.double()]
    total, pairs = torch.zeros((), dtype=torch.float64), 0
    for i in range(len(rows)):
        for j in range(len(rows)):
            if i != j:  # all ordered distinct pairs: the same mean as the i<j pairs
                d = rows[i] - rows[j]
                total = total + torch.exp(-t * (d * d).sum())
                pairs += 1
    return torch.log(total / pairs)


# ---------------------------------------------------------------------------- helpers


def pair(n: int = 6, d: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64)


def value_and_grads(fn, *inputs: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
    out = fn(*leaves)
    return out.detach(), torch.autograd.grad(out, leaves)


def assert_same_value_and_grads(package_fn, naive_fn, *inputs: torch.Tensor) -> None:
    got, got_grads = value_and_grads(package_fn, *inputs)
    want, want_grads = value_and_grads(naive_fn, *inputs)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-12)
    for g, w in zip(got_grads, want_grads, strict=True):
        assert torch.isfinite(g).all()
        assert w.abs().max() > 1e-6  # the reference gradient is not trivially zero
        torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-12)


# ---------------------------------------------------------------------------- NT-Xent / InfoNCE


@pytest.mark.parametrize("tau", [0.07, 0.5, 1.0])
@pytest.mark.parametrize(("n", "seed"), [(6, 0), (8, 1), (2, 2)])
@pytest.mark.parametrize("gather", [True, False])
def test_info_nce_matches_loop(tau, n, seed, gather):
    z1, z2 = pair(n, 5, seed)
    assert_same_value_and_grads(
        lambda a, b: info_nce_loss(a, b, tau, gather_distributed=gather),
        lambda a, b: naive_nt_xent(a, b, tau),
        z1,
        z2,
    )


def test_module_equals_function_and_repr():
    z1, z2 = pair(7, 5, 3)
    loss_fn = InfoNCELoss(temperature=0.2, gather_distributed=False)
    assert torch.equal(loss_fn(z1, z2), info_nce_loss(z1, z2, 0.2))
    assert loss_fn.temperature == 0.2 and isinstance(loss_fn.temperature, float)
    assert repr(loss_fn) == "InfoNCELoss(temperature=0.2, gather_distributed=False)"
    assert InfoNCELoss().temperature == 0.1  # documented default
    assert info_nce_loss(z1, z2).item() == pytest.approx(naive_nt_xent(z1, z2, 0.1).item(), rel=1e-6)


def test_info_nce_symmetry_and_scale_invariance():
    z1, z2 = pair(6, 5, 4)
    loss = info_nce_loss(z1, z2, 0.3)
    # swapping the views permutes the 2N anchors; positive rescaling of rows leaves cosines unchanged
    torch.testing.assert_close(info_nce_loss(z2, z1, 0.3), loss, rtol=1e-12, atol=0)
    scale = torch.arange(1, 7, dtype=torch.float64)[:, None]
    torch.testing.assert_close(info_nce_loss(z1 * scale, 3 * z2, 0.3), loss, rtol=1e-12, atol=0)
    # permuting the images (both views alike) permutes the anchors only
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    torch.testing.assert_close(info_nce_loss(z1[perm], z2[perm], 0.3), loss, rtol=1e-12, atol=0)


def test_two_samples_identical_orthogonal_views_by_hand():
    # z1 = z2 = (e1, e2), τ = 1: each anchor's positive has cosine 1, its two negatives cosine 0
    z = torch.eye(2, 5, dtype=torch.float64)
    expected = -math.log(math.e / (math.e + 2))
    assert info_nce_loss(z, z.clone(), 1.0).item() == pytest.approx(expected, abs=1e-14)


@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_two_samples_opposite_images_by_hand(tau):
    # z1 = z2 = (e1, −e1): positive cosine 1, both negatives cosine −1 → log(1 + 2 e^{−2/τ})
    z = torch.zeros(2, 5, dtype=torch.float64)
    z[0, 0], z[1, 0] = 1.0, -1.0
    expected = math.log1p(2 * math.exp(-2 / tau))
    assert info_nce_loss(z, z.clone(), tau).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("n", [2, 5])
def test_collapsed_embeddings_give_log_2n_minus_1(n):
    # every cosine is 1: the positive is one of 2N-1 equal candidates, whatever τ
    z = torch.ones(n, 5, dtype=torch.float64)
    for tau in (0.1, 1.0):
        assert info_nce_loss(z, 2 * z, tau).item() == pytest.approx(math.log(2 * n - 1), abs=1e-12)


def test_two_view_logits_layout():
    z1, z2 = pair(4, 5, 5)
    tv = two_view_logits(z1, z2, 0.5)
    assert isinstance(tv, TwoViewLogits)
    assert tv.logits.shape == (8, 8)
    assert tv.positive.tolist() == [4, 5, 6, 7, 0, 1, 2, 3]
    assert tv.self_index.tolist() == list(range(8))
    assert torch.equal(tv.self_mask(), torch.eye(8, dtype=torch.bool))
    for a in range(8):
        za = z1[a] if a < 4 else z2[a - 4]
        for c in range(8):
            zc = z1[c] if c < 4 else z2[c - 4]
            assert tv.logits[a, c].item() == pytest.approx(cosine(za, zc).item() / 0.5, rel=1e-12)
    torch.testing.assert_close(tv.positive_logits(), torch.diagonal(tv.logits, 4).repeat(2), rtol=0, atol=0)
    torch.testing.assert_close(torch.diagonal(tv.logits), torch.full((8,), 2.0, dtype=torch.float64))


# ---------------------------------------------------------------------------- alignment / uniformity


@pytest.mark.parametrize("alpha", [1.0, 2.0, 3.0])
@pytest.mark.parametrize(("n", "seed"), [(6, 10), (8, 11)])
def test_alignment_matches_loop(alpha, n, seed):
    z1, z2 = pair(n, 5, seed)
    assert_same_value_and_grads(lambda a, b: alignment(a, b, alpha), lambda a, b: naive_alignment(a, b, alpha), z1, z2)


def test_alignment_default_alpha_is_two():
    z1, z2 = pair(6, 5, 12)
    assert alignment(z1, z2).item() == pytest.approx(naive_alignment(z1, z2, 2.0).item(), rel=1e-12)


def test_alignment_by_hand():
    e = torch.eye(2, 5, dtype=torch.float64)
    z1, z2 = e[[0, 0]], e[[1, 0]] * 4  # pair 0: orthogonal (‖·‖ = √2); pair 1: identical direction
    assert alignment(z1, z2, 2.0).item() == pytest.approx(1.0, abs=1e-14)  # (2 + 0) / 2
    assert alignment(z1, z2, 1.0).item() == pytest.approx(math.sqrt(2) / 2, abs=1e-14)
    assert alignment(e, -e, 2.0).item() == pytest.approx(4.0, abs=1e-14)  # antipodal views


def test_alignment_identical_views_is_zero_with_zero_gradient():
    z = pair(6, 5, 13)[0].requires_grad_(True)
    a = alignment(z, z.detach().clone())
    (g,) = torch.autograd.grad(a, z)
    assert a.item() == 0.0
    assert torch.equal(g, torch.zeros_like(z))


@pytest.mark.parametrize("t", [0.5, 2.0, 5.0])
@pytest.mark.parametrize(("n", "seed"), [(6, 20), (8, 21), (2, 22)])
def test_uniformity_matches_loop(t, n, seed):
    z = pair(n, 5, seed)[0]
    assert_same_value_and_grads(lambda a: uniformity(a, t), lambda a: naive_uniformity(a, t), z)


def test_uniformity_default_t_is_two():
    z = pair(7, 5, 23)[0]
    assert uniformity(z).item() == pytest.approx(naive_uniformity(z, 2.0).item(), rel=1e-12)


def test_uniformity_by_hand():
    e = torch.eye(5, dtype=torch.float64)
    assert uniformity(torch.stack([e[0], -3 * e[0]]), 2.0).item() == pytest.approx(-8.0, abs=1e-12)  # ‖·‖² = 4
    assert uniformity(e * 7, 2.0).item() == pytest.approx(-4.0, abs=1e-12)  # all pairs ‖·‖² = 2
    collapsed = torch.ones(4, 5, dtype=torch.float64, requires_grad=True)
    u = uniformity(collapsed, 2.0)
    (g,) = torch.autograd.grad(u, collapsed)
    assert u.item() == 0.0  # log E exp(0)
    assert torch.equal(g, torch.zeros_like(g))  # pdist at zero distance: finite (zero) subgradient


# ---------------------------------------------------------------------------- dtypes


def test_float64_kept_half_upcast():
    z64 = torch.randn(3, 2, dtype=torch.float64)
    assert at_least_float32(z64) is z64
    z32 = z64.float()
    assert at_least_float32(z32) is z32
    assert at_least_float32(z64.half()).dtype == torch.float32
    assert at_least_float32(z64.bfloat16()).dtype == torch.float32
    z1, z2 = pair(4, 5, 30)
    assert info_nce_loss(z1, z2).dtype == torch.float64
    assert info_nce_loss(z1.half(), z2.half()).dtype == torch.float32


def test_bf16_autocast_uses_float32_logits():
    g = torch.Generator().manual_seed(31)
    x1, x2 = torch.randn(6, 7, generator=g), torch.randn(6, 7, generator=g)
    layer = torch.nn.Linear(7, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z1, z2 = layer(x1), layer(x2)
        assert z1.dtype == torch.bfloat16  # the encoder output really is bf16
        tv = two_view_logits(z1, z2, 0.1)
        loss = info_nce_loss(z1, z2, 0.1)
        align, unif = alignment(z1, z2), uniformity(z1)
    assert tv.logits.dtype == loss.dtype == align.dtype == unif.dtype == torch.float32
    # float32 arithmetic on the bf16 values: agrees with float64 on the same values far below bf16's
    # resolution (a bf16 matmul would be off by ~1e-2 in the logits at τ = 0.1)
    ref_logits = two_view_logits(z1.double(), z2.double(), 0.1).logits
    torch.testing.assert_close(tv.logits.double(), ref_logits, rtol=0, atol=1e-5)
    assert loss.item() == pytest.approx(naive_nt_xent(z1.double(), z2.double(), 0.1).item(), rel=1e-5)
    assert align.item() == pytest.approx(naive_alignment(z1.double(), z2.double(), 2.0).item(), rel=1e-5)
    assert unif.item() == pytest.approx(naive_uniformity(z1.double(), 2.0).item(), rel=1e-5)
    loss.backward()
    assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize("tau", [0, 0.0, -0.1, float("nan"), "0.1", None])
def test_bad_temperature(tau):
    z1, z2 = pair(4, 5, 40)
    with pytest.raises(ValueError, match="temperature"):
        info_nce_loss(z1, z2, tau)
    with pytest.raises(ValueError, match="temperature"):
        InfoNCELoss(temperature=tau)
    with pytest.raises(ValueError, match="tau must be"):
        check_temperature(tau, "tau")


def test_good_temperature_is_float():
    assert check_temperature(1) == 1.0 and isinstance(check_temperature(1), float)
    assert check_temperature(0.05) == 0.05


def test_shape_and_type_errors():
    z1, z2 = pair(4, 5, 41)
    cases = [
        ((z1, z2[:3]), ValueError, "same shape"),
        ((z1, z2[:, :4]), ValueError, "same shape"),
        ((z1[0], z2), ValueError, r"z1 must have shape \(batch, dim\)"),
        ((z1, z2[None]), ValueError, r"z2 must have shape \(batch, dim\)"),
        ((z1[:1], z2[:1]), ValueError, "at least 2"),
        ((z1.long(), z2), TypeError, "floating-point"),
        ((z1.numpy(), z2), TypeError, "torch.Tensor"),
    ]
    for fn in (check_pair, lambda a, b: info_nce_loss(a, b, 0.1), lambda a, b: alignment(a, b)):
        for args, exc, msg in cases:
            with pytest.raises(exc, match=msg):
                fn(*args)
    with pytest.raises(ValueError, match="same shape"):
        InfoNCELoss(0.1)(z1, z2[:2])
    with pytest.raises(ValueError, match="same shape"):
        two_view_logits(z1, z2[:2], 0.1)


@pytest.mark.parametrize("bad", [True, float("inf"), -1.0])
def test_temperature_rejects_bool_and_infinity(bad):
    with pytest.raises(ValueError, match="positive finite"):
        check_temperature(bad)


@pytest.mark.parametrize(("z", "t"), [(torch.randn(1, 5), 2.0), (torch.randn(5), 2.0), (torch.randn(4, 5), -1.0)])
def test_uniformity_rejects_bad_input(z, t):
    with pytest.raises(ValueError):
        uniformity(z, t)
