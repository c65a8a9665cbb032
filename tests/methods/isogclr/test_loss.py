"""SogCLR / iSogCLR against float64 loops of the paper's updates, the spec's invariants and 2 processes."""

import math

import pytest
import torch
import torch.nn.functional as F

from methods.isogclr import (
    ISogCLRLoss,
    SogCLRLoss,
    anchor_similarities,
    batch_log_g,
    moving_average,
    temperature_gradient,
)
from methods.isogclr.loss import AnchorSims
from shared.testing import distributed_equivalence


def rand_pair(n=6, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64)


def naive_step(z1, z2, index, log_s, tau, u, gamma, rho, beta_u, eta, tau_min, tau_max, clip=3.0):
    """One step of the official algorithm by loops in float64: value, surrogate and the new states."""
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    n = len(z1)
    views = torch.cat([z1, z2])
    value, surrogate = 0.0, 0.0
    s_view, grad_view = {}, {}
    for a in range(2 * n):
        i = a % n
        pos = a + n if a < n else a - n
        t = float(tau[index[i]])
        negs = [views[a] @ views[j] for j in range(2 * n) if j not in (a, pos)]
        g = sum(math.exp(float(s.detach()) / t) for s in negs) / len(negs)
        old = float(log_s[index[i]])
        s = g if old == float("-inf") else (1 - gamma) * math.exp(old) + gamma * g
        s_view[a] = s
        value += t * math.log(g) - float((views[a] @ views[pos]).detach())
        surrogate = (
            surrogate + sum(math.exp(float(x.detach()) / t) / s * x for x in negs) / len(negs) - views[a] @ views[pos]
        )
        grad_view[a] = (
            math.log(s)
            + rho
            - sum(math.exp(float(x.detach()) / t) / s * float(x.detach()) / t for x in negs) / len(negs)
        )
    new_log_s, new_u, new_tau = log_s.clone(), u.clone(), tau.clone()
    for i in range(n):
        k = index[i]
        new_log_s[k] = math.log((s_view[i] + s_view[i + n]) / 2)
        grad = min(max((grad_view[i] + grad_view[i + n]) / 2, -clip), clip)
        new_u[k] = (1 - beta_u) * u[k] + beta_u * grad
        new_tau[k] = min(max(float(tau[k]) - eta * float(new_u[k]), tau_min), tau_max)
    return value / (2 * n), surrogate / (2 * n), new_log_s, new_u, new_tau


@pytest.mark.parametrize("first_visit", [True, False])
def test_isogclr_step_matches_float64_loop(first_visit):
    z1, z2 = rand_pair(6, 5, seed=1)
    kw = dict(tau_min=0.05, tau_max=1.0, rho=0.4, gamma=0.8, beta_u=0.5, eta=0.03)
    loss_fn = ISogCLRLoss(10, tau_init=0.2, **kw).double()
    g = torch.Generator().manual_seed(2)
    loss_fn.tau.uniform_(0.1, 0.5, generator=g)
    loss_fn.tau_momentum.normal_(generator=g)
    if not first_visit:
        loss_fn.log_s.uniform_(0.0, 2.0, generator=g)
        loss_fn.visited.fill_(True)
    index = torch.tensor([7, 2, 9, 0, 4, 5])
    before = {k: v.clone() for k, v in loss_fn.state_dict().items()}
    before["log_s"] = loss_fn.log_state().clone()  # −inf: not yet visited
    value, _, log_s, u, tau = naive_step(
        z1, z2, index.tolist(), before["log_s"], before["tau"], before["tau_momentum"], **kw
    )
    a, b = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
    loss = loss_fn(a, b, index)
    assert loss.item() == pytest.approx(value, abs=1e-10)
    assert torch.equal(loss_fn.log_state().isfinite(), log_s.isfinite())
    assert torch.allclose(loss_fn.log_state().nan_to_num(neginf=0), log_s.nan_to_num(neginf=0), atol=1e-10)
    assert loss_fn.visited.sum() == (10 if not first_visit else 6) and torch.isfinite(loss_fn.log_s).all()
    assert torch.allclose(loss_fn.tau_momentum, u, atol=1e-10)
    assert torch.allclose(loss_fn.tau, tau, atol=1e-10)
    untouched = torch.tensor([1, 3, 6, 8])
    assert torch.equal(loss_fn.tau[untouched], before["tau"][untouched])
    # the gradient is the surrogate's (the loop's weights are plain floats: detached)
    ga, gb = torch.autograd.grad(loss, (a, b))
    a2, b2 = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
    _, surrogate2, *_ = naive_step(a2, b2, index.tolist(), before["log_s"], before["tau"], before["tau_momentum"], **kw)
    ea, eb = torch.autograd.grad(surrogate2, (a2, b2))
    assert torch.allclose(ga, ea, atol=1e-10) and torch.allclose(gb, eb, atol=1e-10)


def test_sogclr_is_isogclr_with_frozen_temperature():
    z1, z2 = rand_pair(8, 4, seed=3)
    index = torch.arange(8)
    sog, iso = SogCLRLoss(8, 0.3).double(), ISogCLRLoss(8, tau_init=0.3, eta=0.0).double()
    tau0 = iso.tau.clone()
    for step in range(3):
        perm = torch.roll(index, step)
        assert sog(z1, z2, perm).item() == pytest.approx(iso(z1, z2, perm).item(), abs=1e-6)
        z1, z2 = z2 + 0.1 * z1, z1
    assert torch.allclose(sog.log_s, iso.log_s, atol=1e-6)
    assert torch.equal(iso.tau, tau0)  # η = 0 leaves τ unchanged


@pytest.mark.parametrize("cls", [SogCLRLoss, ISogCLRLoss])
def test_gradient_identity_with_gamma_one(cls):
    """γ = 1: ∇_z of the surrogate == ∇_z of mean_i τ_i log mean_j exp(h_ij/τ_i) (per-sample τ for iSogCLR)."""
    z1, z2 = rand_pair(7, 6, seed=4)
    loss_fn = cls(7, 0.2, gamma=1.0).double()
    if cls is ISogCLRLoss:
        loss_fn.tau.copy_(torch.linspace(0.05, 0.9, 7, dtype=torch.float64))
    tau = loss_fn.anchor_temperatures(torch.arange(7)).clone()
    a, b = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
    ga, gb = torch.autograd.grad(loss_fn(a, b, torch.arange(7)), (a, b))
    a2, b2 = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
    sims = anchor_similarities(a2, b2)
    h = (sims.sim - sims.positive[:, None]) / tau[:, None]
    lse = torch.logsumexp(h.masked_fill(~sims.negative, float("-inf")), dim=1) - math.log(sims.num_negatives)
    ea, eb = torch.autograd.grad((tau * lse).mean(), (a2, b2))
    assert torch.allclose(ga, ea, rtol=1e-5, atol=1e-12) and torch.allclose(gb, eb, rtol=1e-5, atol=1e-12)


def test_temperature_gradient_sim_form_equals_h_form():
    """∂/∂τ [τ log mean exp(h/τ) + τρ] (autograd, h = sim − sim⁺) == log s + ρ − mean w·sim/τ with s = g."""
    z1, z2 = rand_pair(5, 4, seed=5)
    sims = anchor_similarities(z1, z2)
    tau = torch.linspace(0.1, 0.7, 10, dtype=torch.float64).requires_grad_(True)
    rho = 0.4
    h = ((sims.sim - sims.positive[:, None]) / tau[:, None]).masked_fill(~sims.negative, float("-inf"))
    f = tau * (torch.logsumexp(h, dim=1) - math.log(sims.num_negatives)) + tau * rho
    (auto,) = torch.autograd.grad(f.sum(), tau)
    ours = temperature_gradient(sims, tau.detach(), batch_log_g(sims, tau.detach()), rho)
    assert torch.allclose(ours, auto, atol=1e-10)


def test_hand_example_from_spec():
    # two negatives with sim 0 and ln 2 (τ = 1, ρ = 0): g = 1.5, ∇τ = log 1.5 − (0 + ln2 · 2/1.5)/2 ≈ −0.0566
    sim = torch.tensor([[1.0, 0.5, 0.0, math.log(2)]], dtype=torch.float64)
    negative = torch.tensor([[False, False, True, True]])
    sims = AnchorSims(sim, sim[:, 1], negative)
    tau = torch.ones(1, dtype=torch.float64)
    log_g = batch_log_g(sims, tau)
    assert log_g.exp().item() == pytest.approx(1.5, abs=1e-12)
    grad = temperature_gradient(sims, tau, log_g, rho=0.0).item()
    assert grad == pytest.approx(math.log(1.5) - math.log(2) * (2 / 1.5) / 2, abs=1e-12)
    assert grad == pytest.approx(-0.0566, abs=1e-4)


def test_moving_average_first_visit_then_gamma():
    log_g = torch.log(torch.tensor([2.0, 4.0, 6.0, 8.0], dtype=torch.float64))  # n = 2: views [1; 2]
    per_view, stored = moving_average(torch.full((2,), float("-inf"), dtype=torch.float64), log_g, 0.8)
    assert torch.allclose(per_view.exp(), torch.tensor([2.0, 4.0, 6.0, 8.0], dtype=torch.float64))
    assert torch.allclose(stored.exp(), torch.tensor([4.0, 6.0], dtype=torch.float64))  # mean of the two views
    per_view, stored = moving_average(stored, log_g, 0.8)
    expected = torch.tensor([0.2 * 4 + 0.8 * 2, 0.2 * 6 + 0.8 * 4, 0.2 * 4 + 0.8 * 6, 0.2 * 6 + 0.8 * 8])
    assert torch.allclose(per_view.exp(), expected.double())
    assert torch.allclose(moving_average(stored, log_g, 1.0)[0], log_g)


def test_uniform_negatives_move_tau_by_rho():
    # all negatives equally similar: p is uniform, KL = 0, so ∇τ = ρ exactly and τ ← τ − η β_u ρ
    z = torch.eye(4, dtype=torch.float64)
    loss_fn = ISogCLRLoss(4, tau_init=0.5, rho=0.4, beta_u=0.5, eta=0.03).double()
    loss_fn(z, z, torch.arange(4))
    assert torch.allclose(loss_fn.tau_momentum, torch.full((4,), 0.5 * 0.4, dtype=torch.float64))
    assert torch.allclose(loss_fn.tau, torch.full((4,), 0.5 - 0.03 * 0.2, dtype=torch.float64))


def test_tau_stays_within_bounds():
    loss_fn = ISogCLRLoss(16, tau_init=0.2, tau_min=0.1, tau_max=0.3, rho=0.0, eta=5.0, beta_u=1.0)
    g = torch.Generator().manual_seed(6)
    for step in range(20):
        z1, z2 = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
        loss_fn.rho = 6.0 if step % 2 else 0.0  # push both ways
        loss_fn(z1, z2, torch.randperm(16, generator=g)[:8])
        assert loss_fn.tau.min() >= 0.1 - 1e-7 and loss_fn.tau.max() <= 0.3 + 1e-7
    assert (loss_fn.tau == 0.1).any() and (loss_fn.tau == 0.3).any()


def test_frequent_semantics_get_larger_tau():
    # anchors with near-duplicate negatives (a frequent "class") have a peaked p, KL(p‖uniform) > ρ → τ grows;
    # anchors whose negatives are all equally far (rare, orthogonal) have KL ≈ 0 < ρ → τ shrinks
    g = torch.Generator().manual_seed(7)
    frequent = F.normalize(torch.eye(16)[:1] + 0.05 * torch.randn(4, 16, generator=g), dim=1)
    rare = torch.eye(16)[1:13]
    z = torch.cat([frequent, rare])
    loss_fn = ISogCLRLoss(16, tau_init=0.1, rho=0.4, eta=0.03)
    for _ in range(5):
        loss_fn(z, F.normalize(z + 0.01 * torch.randn(16, 16, generator=g), dim=1), torch.arange(16))
    assert loss_fn.tau[:4].min() > 0.1 > loss_fn.tau[4:].max()


def test_value_is_batch_objective_and_scale():
    z1, z2 = rand_pair(6, 5, seed=8)
    loss_fn = SogCLRLoss(6, 0.2, loss_scale=5.0).double()
    sims = anchor_similarities(z1, z2)
    objective = (0.2 * batch_log_g(sims, torch.full((12,), 0.2, dtype=torch.float64)) - sims.positive).mean()
    assert loss_fn(z1, z2, torch.arange(6)).item() == pytest.approx(5.0 * objective.item(), abs=1e-12)


def test_bf16_inputs_give_float32_loss_and_finite_states():
    loss_fn = ISogCLRLoss(8, tau_init=0.05)
    z1, z2 = torch.randn(8, 4).bfloat16(), torch.randn(8, 4).bfloat16()
    assert loss_fn(z1, z2, torch.arange(8)).dtype == torch.float32
    assert torch.isfinite(loss_fn.log_s).all() and loss_fn.log_s.dtype == torch.float32


def test_tiny_temperature_stays_finite():
    # s is kept in log space: exp(1/τ) would overflow float32 at τ = 0.005
    loss_fn = ISogCLRLoss(4, tau_init=0.005, tau_min=0.005)
    z = torch.randn(4, 3)
    loss = loss_fn(z, z, torch.arange(4))
    assert torch.isfinite(loss) and torch.isfinite(loss_fn.log_s).all() and torch.isfinite(loss_fn.tau).all()


def test_states_are_buffers_in_state_dict():
    assert set(ISogCLRLoss(5).state_dict()) == {"log_s", "visited", "tau", "tau_momentum"}
    assert set(SogCLRLoss(5).state_dict()) == {"log_s", "visited"}


def test_unvisited_samples_leave_the_state_finite():
    """Checkpoints may hold no NaN/Inf (the engine refuses them): "not yet visited" is a flag, not −inf."""
    loss_fn = ISogCLRLoss(10)
    loss_fn(*rand_pair(4, 5, seed=4), torch.tensor([1, 3, 5, 7]))
    assert loss_fn.visited.tolist() == [i in (1, 3, 5, 7) for i in range(10)]
    assert all(torch.isfinite(t).all() for t in loss_fn.state_dict().values() if t.is_floating_point())
    assert torch.isneginf(loss_fn.log_state()).sum() == 6


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_samples": 1}, "num_samples"),
        ({"num_samples": 4.0}, "num_samples"),
        ({"tau_init": 0.0}, "temperature"),
        ({"gamma": 0.0}, "gamma"),
        ({"gamma": 1.5}, "gamma"),
        ({"beta_u": 0.0}, "beta_u"),
        ({"rho": -1.0}, "rho"),
        ({"eta": float("nan")}, "eta"),
        ({"tau_min": 0.2, "tau_init": 0.1}, "tau_min <= tau_init"),
        ({"tau_max": 0.05}, "tau_min <= tau_init"),
        ({"grad_clip": 0.0}, "grad_clip"),
        ({"loss_scale": -1.0}, "loss_scale"),
    ],
)
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ISogCLRLoss(**{"num_samples": 8, **kwargs})


def test_bad_inputs():
    loss_fn = SogCLRLoss(8)
    z = torch.randn(4, 3)
    with pytest.raises(TypeError, match="integer tensor"):
        loss_fn(z, z, torch.arange(4).float())
    with pytest.raises(TypeError, match="integer tensor"):
        loss_fn(z, z, [0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        loss_fn(z, z, torch.arange(5))
    with pytest.raises(ValueError, match="out of range"):
        loss_fn(z, z, torch.tensor([0, 1, 2, 8]))
    with pytest.raises(ValueError, match="same shape"):
        loss_fn(z, torch.randn(5, 3), torch.arange(4))
    with pytest.raises(TypeError, match="floating-point"):
        loss_fn(z.long(), z.long(), torch.arange(4))


@pytest.mark.distributed
def test_distributed_equivalence():
    """2 gloo processes (half the batch each, negatives gathered, states synced) == 1 process, over two steps."""
    common = {"gamma": 0.8}
    cases = [
        ("methods.isogclr.testing:TwoStepLoss", {"kind": "sogclr", "temperature": 0.2, **common}),
        ("methods.isogclr.testing:TwoStepLoss", {"kind": "isogclr", "tau_init": 0.2, "eta": 0.5, **common}),
        ("methods.isogclr.testing:TwoStepLoss", {"kind": "isogclr", "rho": 2.0, "eta": 0.5, "loss_scale": 10.0}),
        ("methods.isogclr.testing:TwoStepLoss", {"kind": "isogclr", "eta": 0.5, "gather_distributed": False}),
    ]
    *gathered, local_only = distributed_equivalence(cases, batch=8)
    for (_, kwargs), r in zip(cases, gathered, strict=False):
        assert r["dist_loss"].item() == pytest.approx(r["single_loss"].item(), abs=1e-10), kwargs
        assert torch.allclose(r["dist_grad"], r["single_grad"], atol=1e-10), kwargs
        assert r["single_grad"].abs().sum() > 0
    # the check can fail: without the gather each rank sees only its own negatives (and states)
    assert abs(local_only["dist_loss"].item() - local_only["single_loss"].item()) > 1e-3
