"""The multi-positive loss against a float64 loop, its reduction to SimCSE, 2-process equivalence."""

import math

import pytest
import torch
import torch.nn.functional as F

from methods.whitenedcse import multi_positive_loss
from shared.testing import distributed_equivalence
from shared.text.simcse import simcse_loss


def naive_multi_positive(z, tau):
    """Σ_{k≥2} (1/N) Σ_i −log e^{s(z¹_i, zᵏ_i)/τ} / Σ_j e^{s(z¹_i, zᵏ_j)/τ}, loops in float64."""
    z = F.normalize(z.double(), dim=-1)
    total = 0.0
    for k in range(1, len(z)):
        per = []
        for i in range(z.shape[1]):
            logits = [float(z[0, i] @ z[k, j]) / tau for j in range(z.shape[1])]
            per.append(-logits[i] + math.log(sum(math.exp(v) for v in logits)))
        total += sum(per) / len(per)
    return total


@pytest.mark.parametrize("views", [2, 3, 4])
def test_matches_float64_loop(views):
    z = torch.randn(views, 6, 5, generator=torch.Generator().manual_seed(views), dtype=torch.float64)
    assert multi_positive_loss(z, 0.05).item() == pytest.approx(naive_multi_positive(z, 0.05), abs=1e-9)


def test_two_views_is_simcse():
    z = torch.randn(2, 8, 4, dtype=torch.float64)
    assert multi_positive_loss(z, 0.1).item() == pytest.approx(simcse_loss(z[0], z[1], 0.1).item(), abs=1e-12)


def test_errors():
    with pytest.raises(ValueError, match="at least 2 views"):
        multi_positive_loss(torch.randn(1, 4, 3))
    with pytest.raises(ValueError, match="views, batch, dim"):
        multi_positive_loss(torch.randn(4, 3))


@pytest.mark.distributed
def test_two_processes_equal_one():
    res = distributed_equivalence([("methods.whitenedcse.model:MultiPositiveLoss", {"temperature": 0.05})], batch=8)
    for r in res:
        assert torch.allclose(r["single_loss"], r["dist_loss"], atol=1e-10)
        assert torch.allclose(r["single_grad"], r["dist_grad"], atol=1e-10)
