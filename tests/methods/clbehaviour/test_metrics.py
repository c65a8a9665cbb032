"""Uniformity and tolerance against float64 loops and their bounds; the sweep analysis helpers."""

import math

import pytest
import torch
import torch.nn.functional as F

from methods.clbehaviour import similarity_histograms, tolerance, uniformity_loss
from methods.clbehaviour.analysis import spearman
from shared.losses import uniformity


def naive_uniformity(z, t):
    z = F.normalize(z.double(), dim=1)
    n = len(z)
    vals = [math.exp(-t * float((z[i] - z[j]).pow(2).sum())) for i in range(n) for j in range(n) if i != j]
    return math.log(sum(vals) / len(vals))


def naive_tolerance(z, labels):
    z = F.normalize(z.double(), dim=1)
    n = len(z)
    sims = [float(z[i] @ z[j]) for i in range(n) for j in range(n) if i != j and labels[i] == labels[j]]
    return sum(sims) / len(sims)


def test_uniformity_matches_loop_and_shared_metric_in_any_chunking():
    z = torch.randn(23, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = naive_uniformity(z, 2.0)
    for chunk in (1, 5, 23, 100):
        assert uniformity_loss(z, 2.0, chunk=chunk) == pytest.approx(expected, abs=1e-10)
    assert uniformity(z, 2.0).item() == pytest.approx(expected, abs=1e-10)
    assert uniformity_loss(z, 0.5) == pytest.approx(naive_uniformity(z, 0.5), abs=1e-10)


def test_uniformity_bounds_jensen():
    """−4t ≤ −t·E‖f(x) − f(y)‖² ≤ L_unif ≤ 0 for unit vectors."""
    z = torch.randn(50, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    t = 2.0
    zn = F.normalize(z, dim=1)
    mean_sq = torch.pdist(zn).pow(2).mean().item()
    value = uniformity_loss(z, t)
    assert -4 * t <= -t * mean_sq <= value <= 0
    # collapse: every embedding the same → L_unif = 0, tolerance = 1
    same = torch.ones(10, 4, dtype=torch.float64)
    assert uniformity_loss(same) == pytest.approx(0.0, abs=1e-12)
    # antipodal pairs spread further than random ones
    assert uniformity_loss(torch.tensor([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(-4 * t, abs=1e-6)


def test_tolerance_matches_loop():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(30, 5, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (30,), generator=g)
    assert tolerance(z, labels) == pytest.approx(naive_tolerance(z, labels), abs=1e-12)


def test_tolerance_hand_cases():
    # two classes, each collapsed to its own point: tolerance 1 whatever the classes' angle
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    assert tolerance(z, torch.tensor([0, 0, 1, 1])) == pytest.approx(1.0, abs=1e-12)
    # classes mixed across the two points: same-class pairs are orthogonal
    assert tolerance(z, torch.tensor([0, 1, 0, 1])) == pytest.approx(0.0, abs=1e-12)
    # a singleton class contributes no pair
    assert tolerance(z[:3], torch.tensor([0, 0, 1])) == pytest.approx(1.0, abs=1e-12)


def test_similarity_histograms_are_densities():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(40, 6, generator=g)
    labels = torch.randint(0, 3, (40,), generator=g)
    h = similarity_histograms(z, labels, bins=20, chunk=7)
    width = h["edges"][1] - h["edges"][0]
    assert len(h["edges"]) == 21 and len(h["same_class"]) == 20
    assert sum(h["same_class"]) * width == pytest.approx(1.0, abs=1e-9)
    assert sum(h["different_class"]) * width == pytest.approx(1.0, abs=1e-9)
    # a collapsed class puts all its mass in the last bin (cos = 1)
    h1 = similarity_histograms(torch.ones(5, 3), torch.zeros(5, dtype=torch.long), bins=10)
    assert h1["same_class"][-1] * 0.2 == pytest.approx(1.0)


def test_metric_errors():
    with pytest.raises(ValueError, match="shape"):
        uniformity_loss(torch.randn(5))
    with pytest.raises(ValueError, match="at least 2"):
        uniformity_loss(torch.randn(1, 3))
    with pytest.raises(ValueError, match="t must be positive"):
        uniformity_loss(torch.randn(4, 3), t=0)
    with pytest.raises(ValueError, match="labels"):
        tolerance(torch.randn(4, 3), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        tolerance(torch.randn(4, 3), torch.zeros(4))
    with pytest.raises(ValueError, match="two samples"):
        tolerance(torch.randn(3, 3), torch.tensor([0, 1, 2]))


def test_spearman():
    assert spearman([0.05, 0.1, 0.5, 1.0], [1.0, 2.0, 3.0, 10.0]) == pytest.approx(1.0)
    assert spearman([0.05, 0.1, 0.5, 1.0], [4.0, 3.0, 2.0, 1.0]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [1.0, 3.0, 2.0]) == pytest.approx(0.5)
    assert math.isnan(spearman([1, 2, 3], [1.0, 1.0, 1.0]))


def test_analyse_sweep_on_a_synthetic_record(tmp_path):
    from methods.clbehaviour.analysis import analyse_sweep
    from shared.experiment import ArmResult

    taus = (0.05, 0.2, 1.0)
    setting = {f"plain_tau{t:g}": {"loss": "plain", "temperature": t} for t in taus}
    setting["hard_tau1"] = {"loss": "hard", "temperature": 1.0}
    # two seeds: L_unif rises with τ in both; tolerance only in seed 0; kNN peaks at τ = 0.2
    values = {
        "plain_tau0.05": {"l_unif": [-3.5, -3.4], "tolerance": [0.2, 0.5], "knn_top1": [0.70, 0.71]},
        "plain_tau0.2": {"l_unif": [-3.0, -3.1], "tolerance": [0.4, 0.3], "knn_top1": [0.75, 0.74]},
        "plain_tau1": {"l_unif": [-2.0, -2.2], "tolerance": [0.6, 0.7], "knn_top1": [0.68, 0.69]},
        "hard_tau1": {"l_unif": [-3.2, -3.3], "tolerance": [0.3, 0.3], "knn_top1": [0.73, 0.72]},
    }
    record = {"package": "clbehaviour", "preset": "test", "seeds": [0, 1], "setting": {"arms": setting}, "arms": values}
    results = {a: [ArmResult({}) for _ in range(2)] for a in values}
    out = analyse_sweep(record, results, tmp_path / "test")
    assert out["curves"]["plain"]["0.2"]["knn_top1"]["mean"] == pytest.approx(0.745)
    assert set(out["curves"]["hard"]) == {"1"}
    assert out["plain_trend_vs_tau"]["l_unif"]["spearman_per_seed"] == [1.0, 1.0]
    assert out["plain_trend_vs_tau"]["tolerance"]["monotone_increasing_seeds"] == 1
    assert out["best_knn_tau_per_seed"] == [0.2, 0.2]
    assert (tmp_path / "test_tau_sweep.png").stat().st_size > 1000
    assert not (tmp_path / "test_similarity.png").exists()  # no histograms in the extras
