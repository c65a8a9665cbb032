"""Hydra-MoCo: labels required, the warmup detaches the queries, the momentum schedule, the heads."""

import math

import pytest
import torch
from torch import nn

from methods.hydra_cl import BasicGate, HydraMoCo, build_mlp
from methods.hydra_cl.analysis import class_similarity, effective_rank, group_contrast, off_diagonal, spearman
from methods.hydra_cl.model import cosine_momentum


def tiny_model(beta=1.0, warmup=0, classes=3, gate=True, **kwargs):
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(12, 10))
    return HydraMoCo(
        backbone,
        build_mlp(3, 10, 16, 8, "ln"),
        build_mlp(2, 8, 16, 8, "none"),
        gate=BasicGate(8, classes, in_dim=4, mlp_dim=8) if gate else None,
        temperature=0.5,
        beta=beta,
        dis_warmup_steps=warmup,
        total_steps=10,
        **kwargs,
    )


def batch(n=8, classes=3):
    g = torch.Generator().manual_seed(1)
    return {
        "views": (torch.randn(n, 12, generator=g), torch.randn(n, 12, generator=g)),
        "labels": torch.arange(n) % classes,
    }


def test_forward_returns_losses_and_trains_everything():
    model = tiny_model()
    out = model(batch())
    assert set(out) == {"loss", "ins", "dis", "scale"}
    assert out["loss"].item() == pytest.approx((out["ins"] + out["dis"]).item() / 2, rel=1e-5)
    out["loss"].backward()
    for name, p in model.named_parameters():
        if name.startswith("key_"):
            assert p.grad is None and not p.requires_grad, name
        else:
            assert p.grad is not None, name
    assert int(model.steps) == 1


def test_fixed_scale_is_not_trained():
    model = tiny_model(learn_scale=False)
    model(batch())["loss"].backward()
    assert model.disparate.scale_logit.grad is None and model.disparate.scale.item() == pytest.approx(20.0)


def test_hydra_needs_labels_the_baseline_does_not():
    model = tiny_model()
    b = batch()
    del b["labels"]
    with pytest.raises(ValueError, match=r"needs class labels.*supervised"):
        model(b)
    baseline = tiny_model(beta=0.0, gate=False)
    assert set(baseline(b)) == {"loss", "ins"}
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        model({**batch(), "labels": torch.arange(8)})


def test_warmup_detaches_the_queries_inside_the_disparate_loss():
    """During warmup the backbone gets only the instance loss's gradient (scaled by 1/(1+β))."""
    hydra = tiny_model(warmup=5)
    torch.manual_seed(3)
    hydra(batch())["loss"].backward()
    grads_hydra = [p.grad.clone() for p in hydra.backbone.parameters()]
    assert all(p.grad is not None for p in hydra.disparate.gate.parameters())
    plain = tiny_model(warmup=5)
    plain.beta = 0.0  # same weights, instance loss only
    plain(batch())["loss"].backward()
    for gh, gp in zip(grads_hydra, [p.grad for p in plain.backbone.parameters()], strict=True):
        assert torch.allclose(gh, gp / 2, atol=1e-6)
    after = tiny_model(warmup=0)
    torch.manual_seed(3)
    after(batch())["loss"].backward()
    assert not torch.allclose(next(after.backbone.parameters()).grad, grads_hydra[0], atol=1e-6)


def test_momentum_cosine_schedule_and_key_update():
    assert cosine_momentum(0, 100, 0.99) == pytest.approx(0.99)
    assert cosine_momentum(50, 100, 0.99) == pytest.approx(0.995)
    assert cosine_momentum(100, 100, 0.99) == pytest.approx(1.0)
    assert cosine_momentum(7, None, 0.99) == 0.99
    model = tiny_model()
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.add_(1.0)
    before = [p.clone() for p in model.key_backbone.parameters()]
    model(batch())
    m = 0.99
    for b, k, q in zip(before, model.key_backbone.parameters(), model.backbone.parameters(), strict=True):
        assert torch.allclose(k, m * b + (1 - m) * q, atol=1e-6)


def test_build_mlp_norms():
    assert isinstance(build_mlp(3, 4, 8, 6, "ln")[-1], nn.LayerNorm)
    assert isinstance(build_mlp(2, 4, 8, 6, "none")[-1], nn.Linear)
    bn = build_mlp(2, 4, 8, 6, "bn")[-1]
    assert isinstance(bn, nn.BatchNorm1d) and not bn.affine
    with pytest.raises(ValueError, match="last_norm"):
        build_mlp(2, 4, 8, 6, "gn")
    with pytest.raises(ValueError, match="num_layers"):
        build_mlp(0, 4, 8, 6)


def test_model_errors():
    with pytest.raises(ValueError, match="beta"):
        tiny_model(beta=-1.0)
    with pytest.raises(ValueError, match="needs a gate"):
        tiny_model(gate=False)
    with pytest.raises(ValueError, match="dis_warmup_steps"):
        tiny_model(warmup=-1)
    with pytest.raises(ValueError, match="momentum"):
        tiny_model(momentum=1.5)
    with pytest.raises(ValueError, match="no 'views'"):
        tiny_model()({"images": torch.zeros(2, 1, 4, 3, dtype=torch.uint8), "labels": torch.tensor([0, 1])})


def test_effective_rank_and_analysis_helpers():
    g = torch.Generator().manual_seed(4)
    iso = torch.randn(4000, 8, generator=g, dtype=torch.float64)
    assert effective_rank(iso) == pytest.approx(8, rel=0.02)
    rank_one = torch.randn(100, 1, generator=g) * torch.randn(1, 8, generator=g)
    assert effective_rank(rank_one) == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ValueError, match="features"):
        effective_rank(torch.randn(1, 4))
    a = torch.tensor([0.1, 0.5, 0.3, 0.9])
    assert spearman(a, 2 * a + 1) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    m = torch.tensor([[1.0, 0.9, 0.1], [0.9, 1.0, 0.2], [0.1, 0.2, 1.0]])
    assert off_diagonal(m).tolist() == pytest.approx([0.9, 0.1, 0.2])
    assert group_contrast(m, ((0, 1),)) == pytest.approx(0.9 - 0.15)
    feats = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    sim = class_similarity(feats, torch.tensor([0, 0, 1]), 2)
    assert torch.allclose(sim, torch.eye(2))
    assert math.isfinite(spearman(torch.ones(3), a[:3]))
