"""DebCSE's loss: float64 loop, reduction to SimCSE, a hand value, 2-process equivalence, the model."""

import math

import pytest
import torch
import torch.nn.functional as F

from methods.debcse import DebCSE, DebCSELoss
from shared.testing import distributed_equivalence
from shared.text.encoders import tiny_bert_encoder
from shared.text.simcse import MLPHead, SimCSE, simcse_loss


def naive(anchor, pos, neg, tau):
    a, p = F.normalize(anchor.double(), dim=1), F.normalize(pos.double(), dim=1)
    n = None if neg is None else F.normalize(neg.double(), dim=1)
    total = 0.0
    for i in range(len(a)):
        denom = sum(math.exp(float(a[i] @ p[j]) / tau) for j in range(len(a)))
        if n is not None:
            denom += sum(math.exp(float(a[i] @ n[j]) / tau) for j in range(len(a)))
        total += -float(a[i] @ p[i]) / tau + math.log(denom)
    return total / len(a)


def test_matches_float64_loop():
    g = torch.Generator().manual_seed(0)
    a, p, n = (torch.randn(6, 4, generator=g, dtype=torch.float64) for _ in range(3))
    assert DebCSELoss(0.05)(a, p, n).item() == pytest.approx(naive(a, p, n, 0.05), abs=1e-9)


def test_without_hard_negatives_it_is_simcse():
    a, p = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    assert DebCSELoss(0.05)(a, p).item() == pytest.approx(simcse_loss(a, p, 0.05).item(), abs=1e-12)


def test_hand_value():
    # a = p = [e1, e2], hard negatives = [e2, e1], τ = 1: ℓ = −1 + log(e + 1 + 1 + e)
    a = torch.eye(2, dtype=torch.float64)
    assert DebCSELoss(1.0)(a, a, a.flip(0)).item() == pytest.approx(-1 + math.log(2 * math.e + 2), abs=1e-12)


@pytest.mark.distributed
def test_two_processes_equal_one():
    res = distributed_equivalence([("methods.debcse.model:DebCSELossPair", {"temperature": 0.05})], batch=8)
    for r in res:
        assert torch.allclose(r["single_loss"], r["dist_loss"], atol=1e-10)
        assert torch.allclose(r["single_grad"], r["dist_grad"], atol=1e-10)


def test_model_with_self_positive_and_no_negative_is_simcse():
    torch.manual_seed(0)
    enc = tiny_bert_encoder(hidden=16, layers=1)
    head = MLPHead(16)
    tokens = enc.tokenize(["one sentence here.", "another one there.", "a third line.", "and a fourth."])
    deb, sim = DebCSE(enc, head, 0.05), SimCSE(enc, head, 0.05)
    doubled = {k: v.repeat(2, 1) for k, v in tokens.items()}
    torch.manual_seed(1)
    a = deb({**doubled, "blocks": 2})["loss"]
    torch.manual_seed(1)
    b = sim(tokens)["loss"]
    assert a.item() == pytest.approx(b.item(), abs=1e-6)  # same dropout masks: identical loss
    with pytest.raises(ValueError, match="blocks"):
        deb({**tokens, "blocks": 1})
