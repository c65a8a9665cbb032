"""DyCE: the paper's vs the official Sinkhorn sign, balance, prototype update, batch enhancement."""

import pytest
import torch
import torch.nn.functional as F

from methods.beclr import DyCE, DyCEConfig, memory_size, official_sinkhorn_codes, sinkhorn_codes


def clustered_batch(k: int = 4, per: int = 8, dim: int = 8, seed: int = 0):
    """k well-separated unit prototypes and ``per`` noisy points around each (balanced batch)."""
    g = torch.Generator().manual_seed(seed)
    protos = F.normalize(torch.randn(k, dim, generator=g), dim=1)
    labels = torch.arange(k).repeat_interleave(per)
    z = F.normalize(protos[labels] + 0.05 * torch.randn(k * per, dim, generator=g), dim=1)
    return protos, z, labels


def test_paper_sinkhorn_assigns_to_the_nearest_cluster_official_does_not():
    protos, z, labels = clustered_batch()
    d = torch.cdist(z, protos)
    nearest = d.argmin(1)
    assert torch.equal(nearest, labels)
    paper = sinkhorn_codes(d, epsilon=1e-5, iterations=10).argmax(1)
    official, eps = official_sinkhorn_codes(d, epsilon=1e-5, iterations=10)
    assert torch.equal(paper, nearest)
    assert (official.argmax(1) == nearest).float().mean() < 0.25  # distances as scores: far clusters win
    assert eps > 1e-5  # ε = 1e-5 overflowed and the retry loop raised it (by 0.1 steps)
    assert eps == pytest.approx(1e-5 + 0.1 * round((eps - 1e-5) / 0.1))


def test_sinkhorn_codes_are_balanced_rows_sum_to_one():
    g = torch.Generator().manual_seed(1)
    d = torch.rand(64, 8, generator=g, dtype=torch.float64) * 2
    q = sinkhorn_codes(d, epsilon=0.05, iterations=50)
    assert torch.allclose(q.sum(1), torch.ones(64, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(q.sum(0), torch.full((8,), 64 / 8, dtype=torch.float64), atol=1e-3)
    counts = torch.bincount(q.argmax(1), minlength=8)
    assert counts.min() >= 4 and counts.max() <= 12  # ≈ B/K = 8 each


def test_tiny_epsilon_is_finite_in_the_paper_version():
    d = torch.rand(16, 4)
    q = sinkhorn_codes(d, epsilon=1e-5)
    assert torch.isfinite(q).all()


def memory(size=32, k=4, topk=3, official=False, dim=8):
    return DyCE(dim, DyCEConfig(size=size, num_clusters=k, topk=topk, official_sign=official), seed=0)


def fill(mem, steps, seed=0, per=4):
    for s in range(steps):
        _, z, _ = clustered_batch(k=4, per=per, seed=seed)  # the same 4 clusters each step, new order
        mem.update(z[torch.randperm(len(z), generator=torch.Generator().manual_seed(s))], gather=False)


def test_clusters_when_full_then_labels_and_prototypes():
    mem = memory()
    fill(mem, 2)  # 2 × 16 rows = 32 = size, not yet clustered (clustering happens on the next update)
    assert not mem.ready and int(mem.count) == 32
    fill(mem, 1)
    assert mem.ready and (mem.labels >= 0).all()
    # k-means found the 4 true clusters: every cluster holds 8 memory entries
    assert sorted(torch.bincount(mem.labels, minlength=4).tolist()) == [8, 8, 8, 8]


def test_prototype_update_equals_cluster_means_with_zero_momentum():
    mem = memory()
    fill(mem, 3)
    mem.update_prototypes()
    for c in range(4):
        assert torch.allclose(mem.prototypes[c], mem.bank[mem.labels == c].mean(0), atol=1e-6)
    # momentum m: P ← m P_old + (1 − m) mean; an empty cluster keeps its prototype
    m = DyCE(8, DyCEConfig(size=32, num_clusters=5, topk=3, prototype_momentum=0.9))
    m.bank.copy_(torch.randn(32, 8))
    m.labels.copy_(torch.arange(32) % 4)  # cluster 4 is empty
    old = torch.randn(5, 8)
    m.prototypes.copy_(old)
    m.update_prototypes()
    assert torch.allclose(m.prototypes[0], 0.9 * old[0] + 0.1 * m.bank[m.labels == 0].mean(0), atol=1e-6)
    assert torch.equal(m.prototypes[4], old[4])


def test_enhanced_batch_rows_come_from_the_nearest_cluster():
    mem = memory(size=64, topk=3)
    fill(mem, 5)
    _, z, _ = clustered_batch(k=4, per=4, seed=0)
    z = z.clone().requires_grad_(True)
    out = mem.enhance(z, views=2)
    b, k = 8, 3
    assert out.shape == (2 * b * (1 + k), 8)
    nearest = (F.normalize(z.detach(), dim=1) @ F.normalize(mem.prototypes, dim=1).T).argmax(1)
    idx = mem.neighbours(z)
    assert (mem.labels[idx] == nearest[:, None]).all()  # every cluster has > k members
    # layout [v1; v1 neighbours (i-major); v2; v2 neighbours]; originals keep their gradient
    assert torch.equal(out[:b], z[:b]) and torch.equal(out[b * (1 + k) : b * (1 + k) + b], z[b:])
    assert torch.equal(out[b : b + k], mem.bank[idx[0]])
    out.sum().backward()
    assert torch.equal(z.grad, torch.ones_like(z))  # appended rows are detached


def test_small_cluster_falls_back_to_whole_memory():
    mem = DyCE(2, DyCEConfig(size=8, num_clusters=2, topk=3))
    mem.bank.copy_(torch.tensor([[1.0, 0]] * 2 + [[0, 1.0]] * 6))
    mem.labels.copy_(torch.tensor([0, 0, 1, 1, 1, 1, 1, 1]))
    mem.prototypes.copy_(torch.tensor([[1.0, 0], [0, 1.0]]))
    mem.clustered.fill_(True)
    idx = mem.neighbours(torch.tensor([[1.0, 0.1]]))
    assert set(mem.labels[idx[0]].tolist()) == {0, 1}  # cluster 0 has 2 ≤ k members: whole memory


def test_official_flag_changes_assignments_in_the_memory():
    paper, official = memory(), memory(official=True)
    fill(paper, 3)
    fill(official, 3)
    protos = F.normalize(paper.prototypes, dim=1)
    _, z, _ = clustered_batch(k=4, per=4, seed=0)
    nearest = (F.normalize(z, dim=1) @ protos.T).argmax(1)
    assert (paper.assign(z) == nearest).float().mean() == 1.0
    assert (official.assign(z) == nearest).float().mean() < 0.5
    assert official.last_epsilon > 1e-5


def test_memory_size_formula():
    assert memory_size(40, 200, 256) == 8192  # official 8193 without its trailing +1
    assert memory_size(40, 200, 256) % 512 == 0


def test_errors():
    with pytest.raises(ValueError, match="num_clusters"):
        DyCEConfig(size=4, num_clusters=8)
    with pytest.raises(ValueError, match="topk"):
        DyCEConfig(topk=0)
    with pytest.raises(ValueError, match="epsilon"):
        DyCEConfig(epsilon=0)
    with pytest.raises(ValueError, match="momentum"):
        DyCEConfig(prototype_momentum=1.5)
    with pytest.raises(ValueError, match="epsilon"):
        sinkhorn_codes(torch.rand(4, 2), epsilon=-1)
    with pytest.raises(ValueError, match="cost"):
        sinkhorn_codes(torch.rand(4))
    mem = memory()
    with pytest.raises(ValueError, match="shape"):
        mem.update(torch.randn(4, 3), gather=False)
    with pytest.raises(RuntimeError, match="before the memory"):
        mem.enhance(torch.randn(4, 8))
    with pytest.raises(ValueError, match="multiple"):
        mem.update(torch.randn(5, 8), gather=False)
    with pytest.raises(ValueError, match="views"):
        mem.update(torch.randn(5, 8))  # gathered view by view: [v_1; v_2] must split evenly
