"""The Hallucinator itself: extrapolation identity, λ = 0, shapes, λ sampling, error paths."""

import pytest
import torch
from torch import nn

from methods.hallucinator import Hallucinator, check_lambda_range, duplicate_pairs, extrapolate


def _qk(b=6, d=4, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g, dtype=dtype), torch.randn(b, d, generator=g, dtype=dtype)


@pytest.mark.parametrize("lam", [0.0, 0.03, 0.1, 0.7])
def test_extrapolation_identity(lam):
    q, k = _qk()
    u = extrapolate(q, k, lam)
    # u − k = (1 + λ)(q − k): u lies on the ray from k through q, beyond q
    assert torch.allclose(u - k, (1 + lam) * (q - k), atol=1e-12)
    assert torch.allclose((u - k).norm(dim=1), (1 + lam) * (q - k).norm(dim=1), atol=1e-12)
    assert torch.allclose((u - q).norm(dim=1), lam * (q - k).norm(dim=1), atol=1e-12)


def test_lambda_zero_gives_u_equal_q_and_identity_like_stub():
    q, k = _qk()
    assert torch.equal(extrapolate(q, k, 0.0), q)
    # a stub MLP that returns the second half of its input ([q ; u] → u) makes q' = u = q at λ = 0
    stub = Hallucinator(4, dtype=torch.float64)

    class SecondHalf(nn.Module):
        def forward(self, x):
            return x[:, x.shape[1] // 2 :]

    stub.mlp = nn.Sequential(SecondHalf())
    assert torch.equal(stub(q, k, lam=0.0), q)
    assert torch.allclose(stub(q, k, lam=0.1), 1.1 * q - 0.1 * k, atol=1e-12)


def test_shapes_and_architecture():
    g = Hallucinator(128)
    linears = [m for m in g.mlp if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(256, 256), (256, 256), (256, 128)]
    assert sum(isinstance(m, nn.ReLU) for m in g.mlp) == 2
    q, k = torch.randn(10, 128), torch.randn(10, 128)
    q_h = g(q, k)
    assert q_h.shape == (10, 128)
    queries, keys = duplicate_pairs(q, q_h, k)
    assert queries.shape == (20, 128) and keys.shape == (20, 128)
    assert torch.equal(keys[10:], keys[:10]) and torch.equal(keys[:10], k)
    assert torch.equal(queries[:10], q) and torch.equal(queries[10:], q_h)
    assert Hallucinator(8, hidden_dim=32).mlp[0].out_features == 32


def test_lambda_is_drawn_in_range_once_per_call():
    g = Hallucinator(4, lambda_range=(0.0, 0.1))
    torch.manual_seed(0)
    draws = [g.sample_lambda() for _ in range(200)]
    assert all(0.0 <= x <= 0.1 for x in draws) and len(set(draws)) > 100
    assert 0.04 < sum(draws) / len(draws) < 0.06
    q, k = torch.randn(3, 4), torch.randn(3, 4)
    g(q, k)
    assert 0.0 <= g.last_lambda <= 0.1
    g(q, k, lam=0.05)
    assert g.last_lambda == 0.05
    assert Hallucinator(4, lambda_range=(0.07, 0.07)).sample_lambda() == 0.07


def test_seeded_init_is_reproducible_and_leaves_global_rng_alone():
    torch.manual_seed(3)
    before = torch.rand(1)
    torch.manual_seed(3)
    a = Hallucinator(4, seed=1)
    after = torch.rand(1)
    b = Hallucinator(4, seed=1)
    assert torch.equal(before, after)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))


def test_float64_module_accepts_float32_input_and_bf16_under_autocast():
    g = Hallucinator(4, dtype=torch.float64)
    q, k = _qk(dtype=torch.float32)
    assert g(q, k).dtype == torch.float64
    h = Hallucinator(4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = h(q.bfloat16(), k)
    assert out.shape == (6, 4)


def test_gradients_reach_the_generator_and_its_inputs():
    g = Hallucinator(4, dtype=torch.float64)
    q, k = _qk()
    q.requires_grad_(True)
    k.requires_grad_(True)
    g(q, k, lam=0.05).sum().backward()
    assert q.grad.abs().sum() > 0 and k.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in g.parameters())


@pytest.mark.parametrize("bad", [(-0.1, 0.1), (0.2, 0.1), (0.0, float("inf")), (0.1,), "ab", None])
def test_bad_lambda_range(bad):
    with pytest.raises(ValueError, match="lambda_range"):
        check_lambda_range(bad)
    with pytest.raises(ValueError, match="lambda_range"):
        Hallucinator(4, lambda_range=bad)


def test_errors():
    g = Hallucinator(4)
    with pytest.raises(ValueError, match="same shape"):
        g(torch.randn(3, 4), torch.randn(4, 4))
    with pytest.raises(ValueError, match=r"\(batch, dim\)"):
        g(torch.randn(4), torch.randn(4))
    with pytest.raises(TypeError, match="floating-point"):
        g(torch.ones(3, 4, dtype=torch.long), torch.ones(3, 4, dtype=torch.long))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        extrapolate([1.0], torch.randn(1, 1), 0.1)
    with pytest.raises(ValueError, match="expects 4"):
        g(torch.randn(3, 5), torch.randn(3, 5))
    with pytest.raises(ValueError, match="non-negative"):
        g(torch.randn(3, 4), torch.randn(3, 4), lam=-0.5)
    with pytest.raises(ValueError, match="dim"):
        Hallucinator(0)
    with pytest.raises(ValueError, match="hidden_dim"):
        Hallucinator(4, hidden_dim=0)
