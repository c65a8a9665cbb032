"""The cluster-restricted InfoNCE against a float64 loop, its reduction to SimCLR, and 2-process equivalence."""

import math

import pytest
import torch
import torch.nn.functional as F

from methods.mcl import ClusterBatchSampler, ClusterInfoNCELoss, cluster_info_nce
from methods.mcl.testing import loss_and_grad, sampler_loss_equivalence
from shared.losses import info_nce_loss


def naive(z1, z2, pseudo, tau):
    """Per-anchor loss by loops in float64: negatives = other embeddings with the anchor's pseudo-label."""
    z1, z2 = F.normalize(z1.double(), dim=1), F.normalize(z2.double(), dim=1)
    n = len(z1)
    views = [z1, z2]
    losses = []
    for v in range(2):
        for i in range(n):
            a, pos = views[v][i], views[1 - v][i]
            s_pos = float(a @ pos) / tau
            negs = [
                float(a @ views[w][j]) / tau for w in range(2) for j in range(n) if j != i and pseudo[j] == pseudo[i]
            ]
            losses.append(-s_pos + math.log(math.exp(s_pos) + sum(math.exp(s) for s in negs)))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_matches_float64_loop(tau):
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(9, 5, generator=g, dtype=torch.float64), torch.randn(9, 5, generator=g, dtype=torch.float64)
    pseudo = torch.tensor([0, 3, 0, 3, 3, 7, 0, 7, 3])
    assert cluster_info_nce(z1, z2, pseudo, tau).item() == pytest.approx(naive(z1, z2, pseudo, tau), abs=1e-10)


def test_one_cluster_is_simclr_and_singletons_have_only_the_positive():
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    one = torch.zeros(8, dtype=torch.long)
    assert cluster_info_nce(z1, z2, one, 0.2).item() == pytest.approx(info_nce_loss(z1, z2, 0.2).item(), abs=1e-6)
    # every sample alone in its cluster: the positive is the only candidate, loss 0
    assert cluster_info_nce(z1, z2, torch.arange(8), 0.2).item() == pytest.approx(0.0, abs=1e-6)


def test_clusters_decouple():
    """A step of two single-label groups = the mean of the two groups' own SimCLR losses."""
    g = torch.Generator().manual_seed(2)
    z1, z2 = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(6, 4, generator=g, dtype=torch.float64)
    pseudo = torch.tensor([0, 0, 0, 1, 1, 1])
    both = cluster_info_nce(z1, z2, pseudo, 0.1)
    first, second = info_nce_loss(z1[:3], z2[:3], 0.1), info_nce_loss(z1[3:], z2[3:], 0.1)
    assert both.item() == pytest.approx((first.item() + second.item()) / 2, abs=1e-12)


def test_bf16_gives_float32_and_module_repr():
    z = torch.randn(8, 4).bfloat16()
    loss = ClusterInfoNCELoss(0.1)
    assert loss(z, z, torch.zeros(8, dtype=torch.long)).dtype == torch.float32
    assert "temperature=0.1" in repr(loss)


def test_errors():
    z = torch.randn(4, 3)
    with pytest.raises(ValueError, match="temperature"):
        ClusterInfoNCELoss(0)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        cluster_info_nce(z, z, torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        cluster_info_nce(z, z, torch.zeros(4))
    with pytest.raises(ValueError, match="same shape"):
        cluster_info_nce(z, torch.randn(5, 3), torch.zeros(4, dtype=torch.long))


@pytest.mark.distributed
def test_two_processes_equal_one_process_on_the_sampler_batch():
    """Each rank its share of every sampler group, negatives gathered: == one process on the step."""
    g = torch.Generator().manual_seed(0)
    n = 40
    data = {
        "x1": torch.randn(n, 6, generator=g, dtype=torch.float64),
        "x2": torch.randn(n, 6, generator=g, dtype=torch.float64),
        "weight": torch.randn(6, 5, generator=g, dtype=torch.float64),
        "pseudo": torch.arange(n) % 3,
    }
    r = sampler_loss_equivalence(data, batch_size=16, groups=2)
    assert r["dist_loss"].item() == pytest.approx(r["single_loss"].item(), abs=1e-10)
    assert torch.allclose(r["dist_grad"], r["single_grad"], atol=1e-10)
    assert r["single_grad"].abs().sum() > 0
    # the check can fail: two groups with their own labels differ from one-cluster SimCLR on the step
    batch = ClusterBatchSampler(data["pseudo"], 16, 2).epoch_batches(0, 0)[0]
    one, _ = loss_and_grad({**data, "pseudo": torch.zeros(n, dtype=torch.long)}, batch, 0.2)
    assert abs(one.item() - r["single_loss"].item()) > 1e-3
