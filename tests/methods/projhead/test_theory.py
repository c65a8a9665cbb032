"""The linear two-layer model: spectral loss vs its equation, conservation law, √ weighting, 2 processes."""

import pytest
import torch

from methods.projhead import (
    SpectralContrastiveLoss,
    SyntheticFeatures,
    TwoLayerLinear,
    feature_weights,
    population_spectral_loss,
    spectral_contrastive_loss,
    train_two_layer,
)
from methods.projhead.theory import population_spectral_grad
from shared.testing import distributed_equivalence


def naive_spectral(z1, z2):
    """−2·mean_i z1_i·z2_i + mean_{i≠j} (z1_i·z2_j)², by loops in float64."""
    n = len(z1)
    pos = sum(float(z1[i] @ z2[i]) for i in range(n)) / n
    neg = [float(z1[i] @ z2[j]) ** 2 for i in range(n) for j in range(n) if i != j]
    return -2 * pos + sum(neg) / len(neg)


def test_matches_float64_loop():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(7, 4, generator=g, dtype=torch.float64), torch.randn(7, 4, generator=g, dtype=torch.float64)
    assert spectral_contrastive_loss(z1, z2).item() == pytest.approx(naive_spectral(z1, z2), abs=1e-12)
    assert SpectralContrastiveLoss()(z1, z2).item() == pytest.approx(naive_spectral(z1, z2), abs=1e-12)


def test_hand_case_from_spec():
    e1 = torch.zeros(6, 3)
    e1[:, 0] = 1
    assert spectral_contrastive_loss(e1, e1).item() == pytest.approx(-1.0)  # −2 + 1


def test_population_loss_is_the_expected_batch_loss_and_its_gradient_is_exact():
    data = SyntheticFeatures(strengths=(1.0, 0.5), drop_p=(0.2, 0.5), dim=4, noise=0.3)
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 4, generator=g, dtype=torch.float64) * 0.5
    pos, cov = data.moments()
    batches = []
    for _ in range(20):
        a = data.latents(1000, g)
        x1, x2 = data.inputs(a, g, True), data.inputs(a, g, True)
        batches.append(spectral_contrastive_loss(x1 @ w.T, x2 @ w.T, False).item())
    assert sum(batches) / len(batches) == pytest.approx(population_spectral_loss(w, pos, cov).item(), abs=0.03)
    w.requires_grad_(True)
    population_spectral_loss(w, pos, cov).backward()
    assert torch.allclose(w.grad, population_spectral_grad(w.detach(), pos, cov), atol=1e-12)


@pytest.fixture
def one_thread():
    """Thousands of tiny matmuls: thread hand-offs would cost more than the arithmetic."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_conservation_law_under_small_step_gradient_descent(one_thread):
    """W₁W₁ᵀ − W₂ᵀW₂ moves by O(lr) while each term moves by O(1) (lr 1e-4, 1000 steps, any loss of W₂W₁)."""
    data = SyntheticFeatures(strengths=(2.0, 1.0, 0.5), drop_p=(0.1, 0.3, 0.0), dim=6, noise=0.3)
    pos, cov = data.moments()
    net = TwoLayerLinear(6, 5, 4, init_scale=0.5, seed=1)
    w1, w2 = net.w1.detach().clone(), net.w2.detach().clone()
    d0, gram0 = w1 @ w1.T - w2.T @ w2, w1 @ w1.T
    for _ in range(1000):
        g = population_spectral_grad(w2 @ w1, pos, cov)
        w1, w2 = w1 - 1e-4 * w2.T @ g, w2 - 1e-4 * g @ w1.T
    drift = (w1 @ w1.T - w2.T @ w2 - d0).norm()
    moved = (w1 @ w1.T - gram0).norm()
    assert moved > 0.05
    assert drift < 1e-3 * moved
    # and the autograd path agrees with the analytic gradient used above
    net.zero_grad()
    population_spectral_loss(net.w2 @ net.w1, pos, cov).backward()
    g = population_spectral_grad((net.w2 @ net.w1).detach(), pos, cov)
    assert torch.allclose(net.w1.grad, net.w2.detach().T @ g) and torch.allclose(net.w2.grad, g @ net.w1.detach().T)


def test_balanced_start_gives_square_root_weights(one_thread):
    """Balanced layers ⇒ singular values of W₁ = √ of those of W₂W₁; per feature ‖W₁e_k‖ = √‖W₂W₁e_k‖."""
    data = SyntheticFeatures(strengths=(1.0, 0.8, 0.6, 0.4, 0.3), drop_p=(0.0, 0.5, 0.0, 0.0, 0.0))
    net = train_two_layer(data, steps=1500)
    assert net.imbalance().abs().max() < 1e-8
    s1 = torch.linalg.svdvals(net.w1)[:5]
    s = torch.linalg.svdvals(net.w2 @ net.w1)[:5]
    assert torch.allclose(s1, s.sqrt(), rtol=0.03)
    w = feature_weights(net, 5)
    for pre, post in zip(w["pre"], w["post"], strict=True):
        assert pre == pytest.approx(post**0.5, rel=0.03)
    # features are weighted more evenly before the projection than after it
    assert max(w["pre"]) / min(w["pre"]) < max(w["post"]) / min(w["post"])


def test_unbalanced_random_start_keeps_its_imbalance_and_the_square_root_law_within_it(one_thread):
    """From a Gaussian start with unequal widths the layers are not balanced, so the √ law is not exact;
    the theory bounds how far off it is. With D = W₁W₁ᵀ − W₂ᵀW₂ and W = W₂W₁, the algebra
    WᵀW = (W₁ᵀW₁)² − W₁ᵀDW₁ and Weyl's inequality give |s_i(W)² − s_i(W₁)⁴| ≤ ‖W₁ᵀDW₁‖; conservation
    says D stays at its start D₀ (up to O(lr²) per step), so the tolerance is computed from D₀ and
    the final W₁, plus ‖W₁‖²·‖D − D₀‖ for the discrete steps."""
    data = SyntheticFeatures(strengths=(1.0, 0.8, 0.6, 0.4, 0.3), drop_p=(0.0, 0.5, 0.0, 0.0, 0.0), dim=8, noise=0.1)
    pos, cov = data.moments()
    net = TwoLayerLinear(8, 6, 10, init_scale=0.25, seed=3)  # Gaussian, d_in ≠ d_hidden ≠ d_out
    w1, w2 = net.w1.detach().clone(), net.w2.detach().clone()
    d0 = w1 @ w1.T - w2.T @ w2
    start_loss = population_spectral_loss(w2 @ w1, pos, cov).item()
    for _ in range(6000):
        g = population_spectral_grad(w2 @ w1, pos, cov)
        w1, w2 = w1 - 0.01 * w2.T @ g, w2 - 0.01 * g @ w1.T
    assert population_spectral_loss(w2 @ w1, pos, cov).item() < start_loss - 3  # trained, far from the start
    spectral = lambda m: torch.linalg.matrix_norm(m, 2).item()  # noqa: E731
    drift = spectral(w1 @ w1.T - w2.T @ w2 - d0)
    assert spectral(d0) > 0.5 and drift < 0.01 * spectral(d0)  # unbalanced, and the imbalance is conserved
    s1, s = torch.linalg.svdvals(w1), torch.linalg.svdvals(w2 @ w1)[:6]
    deviation = (s**2 - s1**4).abs()
    tolerance = spectral(w1.T @ d0 @ w1) + spectral(w1) ** 2 * drift
    assert (deviation <= tolerance).all()
    assert deviation.max() > 0.1 and ((s1**2 - s).abs() / s).max() > 0.1  # the √ law itself does not hold here


def test_diagonal_relu_net_starts_balanced_per_unit_and_conserves_it(one_thread):
    """ReLU is positively homogeneous, so each hidden unit's (input weight)² − ‖output column‖² is conserved
    by gradient flow: it stays 0 from the balanced start under small-step descent (O(lr) drift)."""
    from methods.projhead.theory import DiagonalReLUNet, SignMagnitudeFeatures

    data = SignMagnitudeFeatures()
    net = DiagonalReLUNet(data.k, 4, init_scale=0.3, seed=0)
    assert net.unit_imbalance().abs().max() < 1e-12
    g = torch.Generator().manual_seed(0)
    a, high = data.latents(256, g)
    x1, x2 = data.view(a, high, g), data.view(a, high, g)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3)
    u0 = net.u.detach().clone()
    for _ in range(1000):
        loss = spectral_contrastive_loss(net(x1)[1], net(x2)[1], False)
        opt.zero_grad()
        loss.backward()
        opt.step()
    moved = (net.u.detach() - u0).abs().max()
    assert moved > 0.05  # the weights moved
    assert net.unit_imbalance().abs().max() < 1e-3 * moved


def test_two_process_equivalence():
    out = distributed_equivalence([("methods.projhead.theory:SpectralContrastiveLoss", {})], batch=8)
    for case in out:
        assert torch.allclose(case["single_loss"], case["dist_loss"], atol=1e-5)
        assert torch.allclose(case["single_grad"], case["dist_grad"], atol=1e-5)


@pytest.mark.parametrize(
    "call, err",
    [
        (lambda: spectral_contrastive_loss(torch.randn(1, 3), torch.randn(1, 3)), "at least 2"),
        (lambda: spectral_contrastive_loss(torch.randn(4, 3), torch.randn(4, 2)), "same shape"),
        (None, "int"),
        (lambda: SyntheticFeatures(strengths=(1.0,), drop_p=(0.1, 0.2)), "one drop probability"),
        (lambda: SyntheticFeatures(strengths=(1.0,), drop_p=(1.5,)), r"\[0, 1\]"),
        (lambda: TwoLayerLinear(4, 0, 3), "positive"),
        (lambda: TwoLayerLinear(4, 5, 3, balanced=True), "balanced"),
    ],
)
def test_errors(call, err):
    if call is None:
        with pytest.raises(TypeError, match="floating-point"):
            spectral_contrastive_loss(torch.ones(4, 3, dtype=torch.long), torch.ones(4, 3, dtype=torch.long))
        return
    with pytest.raises(ValueError, match=err):
        call()
