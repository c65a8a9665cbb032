"""Shuffled group whitening against the spec's invariants and a float64 loop re-statement."""

import pytest
import torch

from methods.whitenedcse import ShuffledGroupWhitening, group_whiten


def naive_sgw(x, groups, perm):
    """Permute, then per group: centre, Σ = X̄ᵀX̄/N, W = UΛ^{-1/2}Uᵀ, X̄W; un-permute. Loops in float64."""
    x = x.double()[:, perm]
    n, d = x.shape
    c = d // groups
    out = torch.empty_like(x)
    for g in range(groups):
        xg = x[:, g * c : (g + 1) * c]
        xg = xg - xg.mean(0)
        cov = sum(torch.outer(xg[i], xg[i]) for i in range(n)) / n
        lam, u = torch.linalg.eigh(cov)
        w = u @ torch.diag(lam**-0.5) @ u.T
        out[:, g * c : (g + 1) * c] = xg @ w
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(d)
    return out[:, inv]


def group_covariances(y, groups, perm=None):
    y = y if perm is None else y[:, perm]
    n, d = y.shape
    yg = y.view(n, groups, d // groups).transpose(0, 1)
    return yg.mean(1), yg.transpose(1, 2) @ yg / n


@pytest.fixture
def x():
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(24, 24, generator=g, dtype=torch.float64)
    return torch.randn(40, 24, generator=g, dtype=torch.float64) @ mix + 3.0


def test_matches_float64_loop(x):
    perm = torch.randperm(24, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(group_whiten(x, 4, perm), naive_sgw(x, 4, perm), atol=1e-8)


@pytest.mark.parametrize("groups", [1, 4, 24])
def test_each_group_has_zero_mean_and_identity_covariance(x, groups):
    perm = torch.randperm(24, generator=torch.Generator().manual_seed(2))
    y = group_whiten(x, groups, perm)
    mean, cov = group_covariances(y, groups, perm)
    assert torch.allclose(mean, torch.zeros_like(mean), atol=1e-10)
    assert torch.allclose(cov, torch.eye(24 // groups, dtype=torch.float64).expand_as(cov), atol=1e-6)


def test_one_group_without_shuffle_is_full_zca_with_symmetric_w(x):
    xc = x - x.mean(0)
    lam, u = torch.linalg.eigh(xc.T @ xc / len(x))
    w = u @ torch.diag(lam.rsqrt()) @ u.T
    assert torch.allclose(w, w.T)
    assert torch.allclose(group_whiten(x, 1), xc @ w, atol=1e-8)


def test_shuffle_then_inverse_restores_channel_order(x):
    """On already-white groups ZCA is the identity, so a shuffled whitening must return the input as is."""
    white = group_whiten(x, 1)  # fully white: every channel subset is white too
    perm = torch.randperm(24, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(group_whiten(white, 6, perm), white, atol=1e-6)


def test_zca_is_closest_whitening_identity_on_white_input(x):
    white = group_whiten(x, 4)
    assert torch.allclose(group_whiten(white, 4), white, atol=1e-6)


def test_two_permutations_differ_but_both_whiten(x):
    g = torch.Generator().manual_seed(4)
    p1, p2 = torch.randperm(24, generator=g), torch.randperm(24, generator=g)
    y1, y2 = group_whiten(x, 4, p1), group_whiten(x, 4, p2)
    assert not torch.allclose(y1, y2, atol=1e-3)
    for y, p in ((y1, p1), (y2, p2)):
        _, cov = group_covariances(y, 4, p)
        assert torch.allclose(cov, torch.eye(6, dtype=torch.float64).expand_as(cov), atol=1e-6)


def test_module_whitens_each_view_with_its_own_permutation(x):
    torch.manual_seed(0)
    sgw = ShuffledGroupWhitening(24, groups=4, eps=0.0)
    h = torch.stack([x, x + 0.01 * torch.randn_like(x), x])
    out = sgw(h)
    assert out.shape == h.shape
    assert not torch.allclose(out[0], out[2], atol=1e-3)  # same input, different shuffle
    for v in range(3):  # every view is white in its own channel groups: total covariance has trace D
        yc = out[v] - out[v].mean(0)
        assert torch.trace(yc.T @ yc / len(x)).item() == pytest.approx(24, abs=1e-4)


def test_official_grouping_whitens_contiguous_row_blocks_not_views(x):
    """Released code: (N, m, D) flattened sentence-major, split into m contiguous row blocks."""
    sgw = ShuffledGroupWhitening(24, groups=4, shuffle=False, eps=0.0, grouping="official")
    h = torch.stack([x[:10], x[10:20], x[20:30]])  # 3 views of 10 sentences
    out = sgw(h)
    flat_in = h.transpose(0, 1).reshape(30, 24)
    flat_out = out.transpose(0, 1).reshape(30, 24)
    for b in range(3):
        assert torch.allclose(flat_out[b * 10 : (b + 1) * 10], group_whiten(flat_in[b * 10 : (b + 1) * 10], 4))
    per_view = ShuffledGroupWhitening(24, groups=4, shuffle=False, eps=0.0)(h)
    assert not torch.allclose(per_view, out)


def test_gradient_through_whitening_matrix_is_optional(x):
    xs = x[:, :12].clone().requires_grad_(True)
    group_whiten(xs, 2).pow(3).sum().backward()
    detached = xs.grad.clone()
    xs.grad = None
    group_whiten(xs, 2, whitening_grad=True).pow(3).sum().backward()
    assert torch.isfinite(xs.grad).all() and not torch.allclose(detached, xs.grad)


def test_bf16_input_keeps_dtype_and_eps_regularises():
    x = torch.randn(8, 12)
    y = group_whiten(x.bfloat16(), 2, eps=1e-5)
    assert y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all()
    # N = 4 ≤ c = 6: Σ is singular; ε keeps the output finite
    assert torch.isfinite(group_whiten(torch.randn(4, 12), 2, eps=1e-3)).all()


def test_errors():
    with pytest.raises(ValueError, match="divide"):
        group_whiten(torch.randn(8, 10), 3)
    with pytest.raises(ValueError, match="shape"):
        group_whiten(torch.randn(8), 1)
    with pytest.raises(ValueError, match="at least 2"):
        group_whiten(torch.randn(1, 4), 1)
    with pytest.raises(ValueError, match="must divide"):
        ShuffledGroupWhitening(10, groups=3)
    with pytest.raises(ValueError, match="grouping"):
        ShuffledGroupWhitening(12, groups=2, grouping="thirds")
    with pytest.raises(ValueError, match="expected"):
        ShuffledGroupWhitening(12, groups=2)(torch.randn(5, 12))
