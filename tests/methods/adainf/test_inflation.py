"""The inflated data set D = [R] × N + [G]: size, exact sampling probabilities, the batch stream."""

from fractions import Fraction

import pytest
import torch

from methods.adainf import GENERATED_LABEL, InflatedBatches, InflatedData
from shared.data.arrays import ImageArrays


def images(n: int, offset: int = 0, label: int | None = None, size: int = 4) -> ImageArrays:
    """n distinguishable 1×size×size images: pixel (0, 0) holds offset + i."""
    x = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    x[:, 0, 0, 0] = torch.arange(offset, offset + n, dtype=torch.uint8)
    y = torch.arange(n) % 3 if label is None else torch.full((n,), label)
    return ImageArrays(x, y, ("a", "b", "c"))


REAL = images(6)
GEN = images(20, offset=100, label=GENERATED_LABEL)


@pytest.mark.parametrize("copies,gen", [(1, None), (1, GEN), (3, GEN), (10, GEN)])
def test_size_is_n_real_plus_generated(copies, gen):
    data = InflatedData(REAL, gen, copies)
    assert len(data) == copies * len(REAL) + (0 if gen is None else len(gen))
    assert len(data.materialize()) == len(data)


@pytest.mark.parametrize("copies", [1, 2, 10])
def test_sampling_probability_is_exact(copies):
    data = InflatedData(REAL, GEN, copies)
    n = len(data)
    assert Fraction(data.real_image_probability()).limit_denominator(10_000) == Fraction(copies, n)
    assert data.generated_image_probability() == pytest.approx(1 / n)
    # probabilities of all images sum to 1
    total = len(REAL) * data.real_image_probability() + len(GEN) * data.generated_image_probability()
    assert total == pytest.approx(1.0, abs=1e-12)
    # one pass of the stream (|D| consecutive draws) holds each real image exactly N times, each generated once
    batch = 2
    source = InflatedBatches(data, batch, steps_per_epoch=n // batch)
    drawn = torch.cat([source.indices(t, seed=3) for t in range(n // batch)])
    assert sorted(drawn.tolist()) == list(range(n))  # a permutation of D
    imgs, _, is_real = data.lookup(drawn)
    pixel = imgs[:, 0, 0, 0].long()
    counts = torch.bincount(pixel, minlength=120)
    assert (counts[: len(REAL)] == copies).all()
    assert (counts[100 : 100 + len(GEN)] == 1).all()
    assert int(is_real.sum()) == copies * len(REAL)


def test_paper_shares_of_real_data():
    """Vanilla (N=1, |G| = 20|R|): real ≈ 4.8% of draws; AdaInf (N=10): 1/3; each real 10× a generated one."""
    real, gen = images(50), images(1000, label=GENERATED_LABEL)
    vanilla, adainf = InflatedData(real, gen, 1), InflatedData(real, gen, 10)
    assert vanilla.real_fraction() == pytest.approx(1 / 21) and round(100 * vanilla.real_fraction(), 1) == 4.8
    assert adainf.real_fraction() == pytest.approx(1 / 3)
    assert adainf.real_image_probability() / adainf.generated_image_probability() == pytest.approx(10)


def test_matches_official_concatenation_and_lookup():
    data = InflatedData(REAL, GEN, 3)
    full = data.materialize()
    expected_x = torch.cat([REAL.images] * 3 + [GEN.images])
    expected_y = torch.cat([REAL.labels] * 3 + [GEN.labels])
    assert torch.equal(full.images, expected_x) and torch.equal(full.labels, expected_y)
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    x, y, is_real = data.lookup(idx)
    assert torch.equal(x, expected_x[idx]) and torch.equal(y, expected_y[idx])
    assert torch.equal(is_real, idx < 3 * len(REAL))
    assert (y[~is_real] == GENERATED_LABEL).all() and (y[is_real] >= 0).all()


def test_no_inflation_reproduces_the_baseline_dataset():
    data = InflatedData(REAL)
    full = data.materialize()
    assert torch.equal(full.images, REAL.images) and torch.equal(full.labels, REAL.labels)
    assert data.real_fraction() == 1.0 and data.real_image_probability() == pytest.approx(1 / len(REAL))
    assert data.generated_image_probability() == 0.0


def test_stream_is_deterministic_and_resumable():
    data = InflatedData(REAL, GEN, 2)
    source = InflatedBatches(data, 4, steps_per_epoch=5)
    full = [b["index"] for b in source.epoch(1, seed=7, rank=0, world_size=1)]
    again = [b["index"] for b in InflatedBatches(data, 4, steps_per_epoch=5).epoch(1, seed=7, rank=0, world_size=1)]
    resumed = [b["index"] for b in source.epoch(1, seed=7, rank=0, world_size=1, skip=2)]
    assert all(torch.equal(a, b) for a, b in zip(full, again, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(full[2:], resumed, strict=True))
    other = [b["index"] for b in source.epoch(1, seed=8, rank=0, world_size=1)]
    assert not all(torch.equal(a, b) for a, b in zip(full, other, strict=True))
    assert source.drawn == 4 * (5 + 3 + 5) and 0 < source.drawn_real < source.drawn


def test_ranks_split_the_global_batch():
    data = InflatedData(REAL, GEN, 2)
    source = InflatedBatches(data, 4, steps_per_epoch=3)
    single = [b["index"] for b in source.epoch(0, 1, rank=0, world_size=1)]
    r0 = [b["index"] for b in source.epoch(0, 1, rank=0, world_size=2)]
    r1 = [b["index"] for b in source.epoch(0, 1, rank=1, world_size=2)]
    for s, a, b in zip(single, r0, r1, strict=True):
        assert torch.equal(s, torch.cat([a, b]))


def test_default_epoch_is_a_real_data_sized_pass():
    """Every inflation takes |R| // B steps per epoch: the arms of a comparison train equally long."""
    assert InflatedBatches(InflatedData(REAL), 2).steps_per_epoch(1) == 3
    assert InflatedBatches(InflatedData(REAL, GEN, 10), 2).steps_per_epoch(1) == 3


def test_errors():
    with pytest.raises(ValueError, match="copies"):
        InflatedData(REAL, GEN, 0)
    with pytest.raises(ValueError, match="copies"):
        InflatedData(REAL, GEN, 1.5)
    with pytest.raises(ValueError, match="do not match"):
        InflatedData(REAL, images(3, size=5), 1)
    with pytest.raises(ValueError, match="empty"):
        InflatedData(images(0))
    with pytest.raises(IndexError, match="out of range"):
        InflatedData(REAL, GEN, 1).lookup(torch.tensor([26]))
    with pytest.raises(ValueError, match="exceeds"):
        InflatedBatches(InflatedData(REAL), 8)
    with pytest.raises(ValueError, match="at least 2"):
        InflatedBatches(InflatedData(REAL), 1)
    with pytest.raises(ValueError, match="divisible"):
        next(InflatedBatches(InflatedData(REAL), 3).epoch(0, 0, rank=0, world_size=2))
