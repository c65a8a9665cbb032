"""The objective AdaInf trains with: solo-learn's SimCLR NT-Xent (τ = 0.2), against a float64 loop."""

import math

import pytest
import torch
import torch.nn.functional as F

from methods.adainf import build_model
from methods.adainf.experiments import SMOKE_ARM
from shared.losses import InfoNCELoss


def naive_simclr(z1, z2, tau):
    """L = −mean_i log[ Σ_pos e^{s_ij/τ} / (Σ_pos + Σ_neg) ] with one positive per anchor, by loops."""
    z = F.normalize(torch.cat([z1, z2]).double(), dim=1)
    n = len(z1)
    total = 0.0
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        num = math.exp(float(z[i] @ z[pos]) / tau)
        den = sum(math.exp(float(z[i] @ z[j]) / tau) for j in range(2 * n) if j != i)
        total += -math.log(num / den)
    return total / (2 * n)


@pytest.mark.parametrize("tau", [0.2, 0.5, 1.0])
def test_loss_matches_float64_loop(tau):
    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(6, 5, generator=g, dtype=torch.float64)
    z2 = torch.randn(6, 5, generator=g, dtype=torch.float64)
    assert InfoNCELoss(tau, gather_distributed=False)(z1, z2).item() == pytest.approx(
        naive_simclr(z1, z2, tau), abs=1e-10
    )


def test_spec_hand_check():
    """2 pairs of identical unit vectors, orthogonal across pairs, τ = 1: −log(e / (e + 2)) ≈ 0.551 per row."""
    z = torch.eye(2, dtype=torch.float64)
    assert InfoNCELoss(1.0)(z, z).item() == pytest.approx(-math.log(math.e / (math.e + 2)), abs=1e-12)
    assert InfoNCELoss(1.0)(z, z).item() == pytest.approx(0.551, abs=1e-3)


def test_model_uses_the_arm_temperature_and_strength():
    model = build_model({**SMOKE_ARM, "inflation": "adainf", "augmentation": "weak"})
    assert model.loss.temperature == 0.2
    assert model.augment.cfg.crop_scale == (0.2, 1.0) and model.augment.cfg.jitter_p == 0.4
    with pytest.raises(ValueError, match="unknown augmentation strength"):
        build_model({**SMOKE_ARM, "augmentation": "none"})
