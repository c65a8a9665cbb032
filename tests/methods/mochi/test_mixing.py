"""MoCHi's hard negative mixing and loss: the spec's invariants and a float64 re-statement."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from methods.mochi import (
    MoCHi,
    hardest_negatives,
    mix_hard_pairs,
    mix_with_query,
    mochi_logits,
    mochi_loss,
    sample_draws,
    synthetic_negatives,
)
from shared.moco import MoCo, moco_logits, moco_loss


def data(b=5, d=6, k=40, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    q, key = torch.randn(b, d, generator=g, dtype=dtype), torch.randn(b, d, generator=g, dtype=dtype)
    return q, key, F.normalize(torch.randn(k, d, generator=g, dtype=dtype), dim=1)


def naive_mochi_loss(q, k, queue, n_hard, draws, tau):
    """Per query: sort the queue by q·n, take the N first, mix as the paper writes, −log softmax — loops, float64."""
    q, k, queue = (F.normalize(t.double(), dim=1) for t in (q, k, queue))
    total = 0.0
    for b in range(len(q)):
        order = sorted(range(len(queue)), key=lambda j: -float(q[b] @ queue[j]))
        hard = [queue[j] for j in order[:n_hard]]
        synthetic = []
        for i, j, a in zip(draws.i1[b].tolist(), draws.j1[b].tolist(), draws.alpha[b].tolist(), strict=True):
            h = a * hard[i] + (1 - a) * hard[j]
            synthetic.append(h / h.norm())
        for j, beta in zip(draws.j2[b].tolist(), draws.beta[b].tolist(), strict=True):
            h = beta * q[b] + (1 - beta) * hard[j]
            synthetic.append(h / h.norm())
        pos = float(q[b] @ k[b]) / tau
        negs = [float(q[b] @ n) / tau for n in queue] + [float(q[b] @ h) / tau for h in synthetic]
        total += -pos + math.log(math.exp(pos) + sum(math.exp(s) for s in negs))
    return total / len(q)


@pytest.mark.parametrize(("n_hard", "s", "s_prime", "tau"), [(8, 6, 4, 0.2), (40, 3, 0, 0.1), (1, 0, 5, 1.0)])
def test_loss_matches_float64_loop(n_hard, s, s_prime, tau):
    q, k, queue = data()
    draws = sample_draws(len(q), n_hard, s, s_prime, generator=torch.Generator().manual_seed(1))
    ours = mochi_loss(q, k, queue, n_hard, s, s_prime, tau, draws=draws).item()
    assert ours == pytest.approx(naive_mochi_loss(q, k, queue, n_hard, draws, tau), abs=1e-10)


def test_no_mixing_is_exactly_moco():
    q, k, queue = data()
    assert torch.equal(mochi_loss(q, k, queue, 8, 0, 0, 0.2), moco_loss(q, k, queue, 0.2))


def test_no_mixing_model_is_exactly_moco():
    def model(mochi):
        torch.manual_seed(0)
        if mochi:
            return MoCHi(nn.Linear(6, 5), nn.Linear(5, 4), n_hard=8, s=0, s_prime=0, queue_size=16)
        return MoCo(nn.Linear(6, 5), nn.Linear(5, 4), queue_size=16)

    batches = [{"views": (torch.randn(4, 6), torch.randn(4, 6))} for _ in range(3)]
    plain, mixed = model(False), model(True)
    for batch in batches:
        assert torch.equal(plain(batch)["loss"], mixed(batch)["loss"])


def test_logits_width_is_one_plus_k_plus_s_plus_s_prime():
    q, k, queue = data()
    assert mochi_logits(q, k, queue, 8, 6, 3).shape == (5, 1 + 40 + 6 + 3)
    assert mochi_logits(q, k, queue, 8, 0, 0).shape == (5, 1 + 40)


def test_synthetic_vectors_are_unit_norm_and_detached():
    q, _, queue = data()
    q = F.normalize(q, dim=1).requires_grad_(True)
    h = synthetic_negatives(q, queue, 8, 7, 5)
    assert h.shape == (5, 12, 6) and not h.requires_grad
    assert torch.allclose(h.norm(dim=2), torch.ones(5, 12, dtype=h.dtype), atol=1e-12)


def test_hard_set_is_topk_of_similarities():
    q, _, queue = data(b=7, k=50)
    index = hardest_negatives(q, queue, 10)
    sims = q @ queue.T
    full_sort = sims.argsort(dim=1, descending=True)[:, :10]
    assert torch.equal(index, full_sort)
    # every hard entry is at least as similar as every entry left out
    kept = sims.gather(1, index).min(dim=1).values
    left = sims.scatter(1, index, float("-inf")).max(dim=1).values
    assert (kept >= left).all()


def test_mixtures_use_only_hard_negatives_with_coefficients_in_range():
    q, _, queue = data()
    q = F.normalize(q, dim=1)
    index = hardest_negatives(q, queue, 4)
    draws = sample_draws(5, 4, 200, 200, generator=torch.Generator().manual_seed(0))
    assert draws.alpha.min() >= 0 and draws.alpha.max() < 1
    assert draws.beta.min() >= 0 and draws.beta.max() < 0.5
    raw = mix_hard_pairs(queue, index, draws, normalize=False)
    hard = queue[index]  # (B, N, d)
    b = torch.arange(5)[:, None]
    a = draws.alpha[..., None]
    assert torch.allclose(raw, a * hard[b, draws.i1] + (1 - a) * hard[b, draws.j1], atol=1e-12)


@pytest.mark.parametrize("beta_max", [0.5, 1.0])
def test_type2_mixture_is_at_least_as_hard_before_normalisation(beta_max):
    """q·(βq + (1−β)n) = β + (1−β) q·n ≥ q·n for unit q, n and β ∈ [0, 1]."""
    q, _, queue = data(b=6, k=30)
    q = F.normalize(q, dim=1)
    index = hardest_negatives(q, queue, 10)
    draws = sample_draws(6, 10, 0, 50, beta_max=beta_max, generator=torch.Generator().manual_seed(2))
    raw = mix_with_query(q, queue, index, draws, normalize=False)
    n_j = queue[index.gather(1, draws.j2)]
    mixed_sim = (raw * q[:, None]).sum(-1)
    assert (mixed_sim >= (n_j * q[:, None]).sum(-1) - 1e-12).all()
    assert torch.allclose(mixed_sim, draws.beta + (1 - draws.beta) * (n_j * q[:, None]).sum(-1), atol=1e-12)


def leaky_type2_loss(q, k, queue, n_hard, draws, tau):
    """MoCHi's loss with s = 0 and its type-2 mixtures built *with* gradient: the leak the package must not have.

    The key and the real negatives are constants, so the queue can get a gradient only through the
    mixtures β q + (1 − β) n_j.
    """
    q_unit, queue_unit = F.normalize(q, dim=1), F.normalize(queue, dim=1)
    hard = hardest_negatives(q_unit.detach(), queue_unit.detach(), n_hard)
    n_j = queue_unit[hard.gather(1, draws.j2)]  # (B, s', d), differentiable w.r.t. the queue
    beta = draws.beta.unsqueeze(-1).to(q.dtype)
    mixed = F.normalize(beta * q_unit.unsqueeze(1) + (1 - beta) * n_j, dim=2)
    positive = (q_unit * F.normalize(k.detach(), dim=1)).sum(dim=1, keepdim=True)
    parts = [positive, q_unit @ queue_unit.detach().T, torch.einsum("bd,bmd->bm", q_unit, mixed)]
    logits = torch.cat(parts, dim=1) / tau
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long))


def test_gradient_flows_only_through_the_query():
    """The query, key and queue all require grad; after MoCHi's mixing + loss only the query has a gradient."""
    q, k, queue = data()
    n_hard, s, s_prime, tau = 8, 4, 6, 0.2

    def backward(loss_fn, draws):
        leaves = [t.clone().requires_grad_(True) for t in (q, k, queue)]
        loss = loss_fn(*leaves, draws)
        loss.backward()
        return loss, *(t.grad for t in leaves)

    def package(n_type1):
        return lambda q_, k_, queue_, draws: mochi_loss(q_, k_, queue_, n_hard, n_type1, s_prime, tau, draws=draws)

    draws = sample_draws(len(q), n_hard, s, s_prime, generator=torch.Generator().manual_seed(3))
    _, q_grad, k_grad, queue_grad = backward(package(s), draws)
    assert q_grad is not None and q_grad.abs().sum() > 0
    assert k_grad is None and queue_grad is None

    # the check can fail: type-2 mixtures built with gradient (same loss value) give the queue one,
    # on exactly the hard negatives they mix, and change the query's gradient
    type2 = sample_draws(len(q), n_hard, 0, s_prime, generator=torch.Generator().manual_seed(4))
    loss, q_grad, _, queue_grad = backward(package(0), type2)
    leaky, leaky_q_grad, leaky_k_grad, leaky_queue_grad = backward(
        lambda q_, k_, queue_, draws: leaky_type2_loss(q_, k_, queue_, n_hard, draws, tau), type2
    )
    assert leaky.item() == pytest.approx(loss.item(), abs=1e-12)
    assert queue_grad is None and leaky_k_grad is None
    assert leaky_queue_grad is not None
    mixed_rows = hardest_negatives(F.normalize(q, dim=1), queue, n_hard).gather(1, type2.j2).unique()
    assert (leaky_queue_grad.abs().sum(dim=1) > 0).nonzero().flatten().tolist() == mixed_rows.tolist()
    assert (leaky_q_grad - q_grad).abs().max() > 1e-3


def test_model_waits_for_its_warmup():
    """Before ``warmup_steps`` training steps the logits are MoCo's, bit for bit; then they gain s + s′ columns."""
    q, k, queue = data(dtype=torch.float32)
    model = MoCHi(nn.Linear(6, 5), nn.Linear(5, 6), n_hard=8, s=3, s_prime=2, warmup_steps=5, queue_size=40)
    model.steps.fill_(4)
    assert torch.equal(model.logits(q, k, queue), moco_logits(q, k, queue, model.temperature))
    model.steps.fill_(5)
    assert model.logits(q, k, queue).shape == (5, 1 + 40 + 5)


def test_bf16_queries_give_float32_logits():
    q, k, queue = data(dtype=torch.float32)
    assert mochi_logits(q.bfloat16(), k.bfloat16(), queue, 8, 2, 2).dtype == torch.float32


def test_errors():
    q, k, queue = data()
    with pytest.raises(ValueError, match="cannot exceed the queue size"):
        mochi_loss(q, k, queue, 41, 2, 2)
    with pytest.raises(ValueError, match="temperature"):
        mochi_loss(q, k, queue, 8, 2, 2, temperature=0)
    with pytest.raises(ValueError, match="same shape"):
        mochi_loss(q, k[:2], queue, 8, 2, 2)
    with pytest.raises(ValueError, match="queue dim"):
        mochi_loss(q, k, queue[:, :3], 8, 2, 2)
    with pytest.raises(ValueError, match="share d"):
        hardest_negatives(q, queue[:, :3], 4)

    def mochi(*args, **kwargs):
        return MoCHi(nn.Linear(6, 5), nn.Linear(5, 4), *args, queue_size=16, **kwargs)

    for args in ((0, 1, 1), (8, -1, 1), (8, 1, 2.5)):
        with pytest.raises(ValueError, match=r"n_hard|s must|s_prime"):
            mochi(*args)
    with pytest.raises(ValueError, match="beta_max"):
        mochi(8, 1, 1, beta_max=0.7 + 1)
    with pytest.raises(ValueError, match="warmup_steps"):
        mochi(8, 1, 1, warmup_steps=-1)
    with pytest.raises(ValueError, match="cannot exceed the queue size"):
        mochi(17, 1, 1)
    with pytest.raises(ValueError, match="extra_negatives"):
        mochi(8, 1, 1, extra_negatives=lambda q, queue, step: None)
