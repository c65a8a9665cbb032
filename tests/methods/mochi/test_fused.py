"""The fused MoCHi logits (one q·Q for the logits and the hard set, closed-form q·h) equal the previous computation.

``previous_mochi_logits`` re-states the implementation before the fusion: its own q·Q for the top-N,
the (B, s + s′, d) mixtures built with gather + lerp + normalize, then MoCo's logits against them
(which re-normalise the mixtures). Same draws, same result: float64 values and gradients to 1e-12.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from methods.mochi import MoCHi, mochi_logits, sample_draws, synthetic_similarities, top_n
from shared.moco import MoCo, moco_logits


def previous_hard_index(q_unit, queue_unit, n_hard):
    return (q_unit @ queue_unit.T).topk(n_hard, dim=1, sorted=True).indices


def previous_mixtures(q_unit, queue_unit, n_hard, draws):
    """(B, s + s′, d) unit mixtures [α n_i + (1 − α) n_j ; β q + (1 − β) n_j], built as vectors."""
    hard = previous_hard_index(q_unit, queue_unit, n_hard)

    def pick(positions):
        return queue_unit[hard.gather(1, positions)]  # (B, m, d)

    alpha, beta = draws.alpha.unsqueeze(-1).to(q_unit.dtype), draws.beta.unsqueeze(-1).to(q_unit.dtype)
    type_1 = F.normalize(torch.lerp(pick(draws.j1), pick(draws.i1), alpha), dim=2)
    n_j = pick(draws.j2)
    type_2 = F.normalize(torch.lerp(n_j, q_unit.unsqueeze(1).expand_as(n_j), beta), dim=2)
    return torch.cat([type_1, type_2], dim=1)


def previous_mochi_logits(q, k, queue, n_hard, s, s_prime, temperature=0.2, beta_max=0.5, draws=None):
    """The package's ``mochi_logits`` before the fusion (draws, when None, taken after the hard set, as there)."""
    k, queue = k.detach(), queue.detach()
    q_unit = F.normalize(q.detach().double() if q.dtype == torch.float64 else q.detach().float(), dim=1)
    queue_unit = F.normalize(queue.to(q_unit.dtype), dim=1)
    if draws is None:  # drawn after the hard set (which draws nothing)
        draws = sample_draws(len(q), n_hard, s, s_prime, beta_max, q.device)
    extra = previous_mixtures(q_unit, queue_unit, n_hard, draws)
    return moco_logits(q, k, queue, temperature, extra)


def data(b=6, d=8, k=48, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    q, key = torch.randn(b, d, generator=g, dtype=dtype), torch.randn(b, d, generator=g, dtype=dtype)
    return q, key, F.normalize(torch.randn(k, d, generator=g, dtype=dtype), dim=1)


def value_and_grad(fn, q):
    q = q.clone().requires_grad_(True)
    logits = fn(q)
    weights = torch.linspace(-1, 1, logits.numel(), dtype=logits.dtype).view_as(logits)  # every column counts
    loss = F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long)) + (weights * logits).sum()
    (grad,) = torch.autograd.grad(loss, q)
    return logits.detach(), grad


@pytest.mark.parametrize(
    ("n_hard", "s", "s_prime", "tau", "beta_max"),
    [(10, 7, 5, 0.2, 0.5), (48, 3, 0, 0.1, 0.5), (1, 0, 4, 1.0, 0.5), (6, 5, 5, 0.2, 1.0)],
)
def test_fused_logits_equal_the_previous_computation_in_value_and_gradient(n_hard, s, s_prime, tau, beta_max):
    q, k, queue = data()
    draws = sample_draws(len(q), n_hard, s, s_prime, beta_max, generator=torch.Generator().manual_seed(1))
    new, new_grad = value_and_grad(lambda x: mochi_logits(x, k, queue, n_hard, s, s_prime, tau, beta_max, draws), q)
    old, old_grad = value_and_grad(
        lambda x: previous_mochi_logits(x, k, queue, n_hard, s, s_prime, tau, beta_max, draws), q
    )
    assert new.shape == old.shape == (6, 1 + 48 + s + s_prime)
    assert torch.allclose(new, old, rtol=0, atol=1e-12)
    assert torch.allclose(new_grad, old_grad, rtol=0, atol=1e-12)
    assert new_grad.abs().max() > 1e-3


def test_same_random_draws_same_result():
    """Without given draws both consume the global generator the same way, after the hard set."""
    q, k, queue = data(seed=3)
    torch.manual_seed(7)
    new = mochi_logits(q, k, queue, 12, 8, 8)
    after_new = torch.rand(1)
    torch.manual_seed(7)
    old = previous_mochi_logits(q, k, queue, 12, 8, 8)
    assert torch.equal(torch.rand(1), after_new)
    assert torch.allclose(new, old, rtol=0, atol=1e-12)


def test_hard_set_from_the_logits_similarities_and_moco_columns_bit_for_bit():
    """The top-N comes from the logits' own q·Q; the first 1 + K columns are MoCo's logits exactly."""
    q, k, queue = data(b=9, k=64, dtype=torch.float32)
    for dtype in (torch.float32, torch.bfloat16):
        logits = mochi_logits(q.to(dtype), k.to(dtype), queue, 16, 4, 4)
        moco = moco_logits(q.to(dtype), k.to(dtype), queue)
        assert logits.dtype == torch.float32 and torch.equal(logits[:, : 1 + 64], moco)
    q_unit, queue_unit = F.normalize(q.double(), dim=1), queue.double()
    assert torch.equal(top_n(q_unit @ queue_unit.T, 16), previous_hard_index(q_unit, queue_unit, 16))


def test_float32_and_bf16_stay_close_to_the_float64_previous_computation():
    q, k, queue = data(b=16, d=32, k=256, seed=5, dtype=torch.float32)
    draws = sample_draws(16, 32, 16, 16, generator=torch.Generator().manual_seed(2))
    reference = previous_mochi_logits(q.double(), k.double(), queue.double(), 32, 16, 16, draws=draws)
    for dtype, atol in ((torch.float32, 1e-5), (torch.bfloat16, None)):
        new = mochi_logits(q.to(dtype), k.to(dtype), queue, 32, 16, 16, draws=draws)
        assert new.dtype == torch.float32
        if atol is not None:
            assert torch.allclose(new.double(), reference, rtol=0, atol=atol)
        else:  # bf16 queries: compare with the previous computation on the same rounded queries
            old = previous_mochi_logits(q.to(dtype), k.to(dtype), queue, 32, 16, 16, draws=draws)
            assert torch.allclose(new, old, rtol=0, atol=1e-5)


def test_a_zero_mixture_gives_a_zero_logit_as_f_normalize_does():
    """n_j = −n_i and α = 1/2: h̃ = 0, F.normalize returns 0, so q·h = 0 and it adds no gradient."""
    q = F.normalize(torch.tensor([[1.0, 2.0, 0.5]], dtype=torch.float64), dim=1).requires_grad_(True)
    n = F.normalize(torch.tensor([[0.3, -1.0, 2.0]], dtype=torch.float64), dim=1)
    queue = torch.cat([n, -n, F.normalize(torch.tensor([[-5.0, 0.1, 0.1]], dtype=torch.float64), dim=1)])
    sims = q @ queue.T
    hard = top_n(sims, 2)  # the hard set is {n, −n} in some order
    draws = sample_draws(1, 2, 1, 0, generator=torch.Generator().manual_seed(0))
    draws = type(draws)(torch.tensor([[0]]), torch.tensor([[1]]), torch.tensor([[0.5]]), draws.j2, draws.beta)
    value = synthetic_similarities(q, sims, queue, hard, draws)
    assert value.item() == 0.0
    (grad,) = torch.autograd.grad(value.sum(), q)
    assert torch.equal(grad, torch.zeros_like(grad))
    assert previous_mixtures(q.detach(), queue, 2, draws).abs().max() == 0


class PreviousMixer(nn.Module):
    """The previous model path: MoCo's ``extra_negatives`` hook building the mixtures from the raw queue snapshot."""

    def __init__(self, n_hard, s, s_prime, warmup_steps=0):
        super().__init__()
        self.n_hard, self.s, self.s_prime, self.warmup_steps = n_hard, s, s_prime, warmup_steps

    def forward(self, q, queue, step):
        if step < self.warmup_steps:
            return None
        draws = sample_draws(len(q), self.n_hard, self.s, self.s_prime, device=q.device)
        return previous_mixtures(q, queue, self.n_hard, draws)


def test_model_equals_the_previous_model_path():
    """Three training steps (warm-up 1) from one seed: same losses and gradients as MoCo + the previous hook."""

    def build(mochi):
        torch.manual_seed(0)
        backbone, head = nn.Sequential(nn.Linear(6, 8), nn.ReLU()), nn.Linear(8, 4)
        kwargs = dict(temperature=0.2, queue_size=32, momentum=0.9, bn_splits=2)
        if mochi:
            return MoCHi(backbone, head, n_hard=12, s=6, s_prime=5, warmup_steps=1, **kwargs)
        return MoCo(backbone, head, extra_negatives=PreviousMixer(12, 6, 5, warmup_steps=1), **kwargs)

    g = torch.Generator().manual_seed(1)
    batches = [{"views": (torch.randn(8, 6, generator=g), torch.randn(8, 6, generator=g))} for _ in range(3)]
    new, old = build(True), build(False)
    for step, batch in enumerate(batches):
        torch.manual_seed(100 + step)  # the shuffled-BN permutation and the draws
        loss_new = new(batch)["loss"]
        torch.manual_seed(100 + step)
        loss_old = old(batch)["loss"]
        assert loss_new.item() == pytest.approx(loss_old.item(), abs=1e-5), step
        grads_new = torch.autograd.grad(loss_new, list(new.backbone.parameters()) + list(new.projector.parameters()))
        grads_old = torch.autograd.grad(loss_old, list(old.backbone.parameters()) + list(old.projector.parameters()))
        for a, b in zip(grads_new, grads_old, strict=True):
            assert torch.allclose(a, b, rtol=0, atol=1e-5), step
    assert torch.equal(new.queue.queue, old.queue.queue) and int(new.steps) == 3
