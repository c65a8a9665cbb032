"""The EMA teacher update and the FIFO queue of embeddings (shared/momentum.py)."""

import pytest
import torch
from torch import nn

from shared.momentum import EmbeddingQueue, check_momentum, ema_update, momentum_copy


def pair(seed=0):
    torch.manual_seed(seed)
    student = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    teacher = momentum_copy(student)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p))
    return teacher, student


def test_momentum_copy_is_equal_and_frozen():
    student = nn.Linear(4, 3)
    teacher = momentum_copy(student)
    assert all(not p.requires_grad for p in teacher.parameters())
    assert all(torch.equal(a, b) for a, b in zip(teacher.parameters(), student.parameters(), strict=True))
    assert teacher.weight.data_ptr() != student.weight.data_ptr()


def test_m_one_keeps_the_teacher_fixed():
    teacher, student = pair()
    before = [p.clone() for p in teacher.parameters()]
    ema_update(teacher, student, 1.0)
    assert all(torch.equal(a, b) for a, b in zip(teacher.parameters(), before, strict=True))


def test_m_zero_copies_the_student():
    teacher, student = pair()
    ema_update(teacher, student, 0.0)
    assert all(torch.equal(a, b) for a, b in zip(teacher.parameters(), student.parameters(), strict=True))


def test_ema_formula_and_buffers_untouched():
    teacher, student = pair()
    student[1].running_mean.fill_(3.0)
    old = [p.clone() for p in teacher.parameters()]
    ema_update(teacher, student, 0.9)
    for t, o, s in zip(teacher.parameters(), old, student.parameters(), strict=True):
        assert torch.allclose(t, 0.9 * o + 0.1 * s, atol=1e-7)
    assert torch.equal(teacher[1].running_mean, torch.zeros(3))  # the teacher's own statistics


@pytest.mark.parametrize("m", [-0.1, 1.5, float("nan"), "0.9"])
def test_bad_momentum(m):
    with pytest.raises(ValueError, match="momentum"):
        check_momentum(m)
    teacher, student = pair()
    with pytest.raises(ValueError, match="momentum"):
        ema_update(teacher, student, m)


def test_mismatched_modules():
    with pytest.raises(ValueError, match="same parameters"):
        ema_update(nn.Linear(4, 3), nn.Sequential(nn.Linear(4, 3)), 0.5)
    with pytest.raises(ValueError, match="shape"):
        ema_update(nn.Linear(4, 3), nn.Linear(4, 2), 0.5)


def test_queue_starts_with_unit_vectors_and_lives_in_the_state_dict():
    q = EmbeddingQueue(16, 5)
    assert q.queue.shape == (16, 5) and int(q.ptr) == 0
    assert torch.allclose(q.queue.norm(dim=1), torch.ones(16), atol=1e-6)
    assert set(q.state_dict()) == {"queue", "ptr"}


def test_queue_is_fifo_by_exactly_the_batch_with_wrap_around():
    q = EmbeddingQueue(12, 3)
    init = q.queue.clone()
    batches = [torch.full((4, 3), float(i + 1)) for i in range(4)]
    q.enqueue(batches[0])
    assert int(q.ptr) == 4
    assert torch.equal(q.queue[:4], batches[0]) and torch.equal(q.queue[4:], init[4:])
    q.enqueue(batches[1])
    q.enqueue(batches[2])
    assert int(q.ptr) == 0  # wrapped around
    assert torch.equal(q.queue, torch.cat(batches[:3]))
    q.enqueue(batches[3])  # replaces the oldest keys (batch 0), nothing else
    assert int(q.ptr) == 4
    assert torch.equal(q.queue, torch.cat([batches[3], batches[1], batches[2]]))


def test_snapshot_is_independent_of_later_enqueues():
    q = EmbeddingQueue(8, 2)
    snap = q.snapshot()
    q.enqueue(torch.zeros(4, 2))
    assert not torch.equal(snap, q.queue) and snap.norm(dim=1).min() > 0.99


def test_enqueue_takes_no_gradient():
    q = EmbeddingQueue(8, 2)
    keys = torch.randn(4, 2, requires_grad=True)
    q.enqueue(keys)
    assert not q.queue.requires_grad


def test_queue_errors():
    q = EmbeddingQueue(10, 3)
    with pytest.raises(ValueError, match="multiple of the global batch"):
        q.enqueue(torch.randn(4, 3))
    with pytest.raises(ValueError, match="multiple of the global batch"):
        q.enqueue(torch.randn(20, 3))
    with pytest.raises(ValueError, match=r"shape \(batch, 3\)"):
        q.enqueue(torch.randn(5, 4))
    with pytest.raises(ValueError, match=r"shape \(batch, 3\)"):
        q.enqueue(torch.randn(5))
    for size, dim in ((0, 3), (8, 0), (8.0, 3)):
        with pytest.raises(ValueError, match="positive integer"):
            EmbeddingQueue(size, dim)
