"""Data inflation: the training set D = N copies of the real set R plus the generated set G.

The official code (``solo-learn/main_pretrain.py``) builds

    D = concat([R] × N + [G]),      |D| = N·|R| + |G|,

and shuffles D like any data set. One draw from D hits a given real image with probability
N / (N·|R| + |G|) and a given generated image with 1 / (N·|R| + |G|): the real images are
re-weighted N : 1. *Vanilla* inflation is N = 1 (with |G| = 20·|R|, real images are 1/21 ≈ 4.8%
of the draws); *AdaInf* is N = 10 (real images ≈ 33% of the draws).

:class:`InflatedData` is that index space without materialising the copies (index i < N·|R| is
real image i mod |R|, the rest generated); :class:`InflatedBatches` streams a fixed number of
batches per epoch through a fresh permutation of D per pass, so every arm of a comparison takes
the same number of steps whatever |D| is (the paper fixes the number of training steps).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from shared.data.arrays import ImageArrays


@dataclass
class InflatedData:
    """D = [R] × ``copies`` + [G]; ``generated`` may be None (no inflation: D = R when copies = 1)."""

    real: ImageArrays
    generated: ImageArrays | None = None
    copies: int = 1

    def __post_init__(self) -> None:
        if not (isinstance(self.copies, int) and self.copies >= 1):
            raise ValueError(f"copies (N) must be a positive integer, got {self.copies!r}")
        if len(self.real) == 0:
            raise ValueError("the real data set is empty")
        g = self.generated
        if g is not None and (g.images.shape[1:] != self.real.images.shape[1:]):
            raise ValueError(
                f"generated images {tuple(g.images.shape[1:])} do not match the real ones "
                f"{tuple(self.real.images.shape[1:])}"
            )

    @property
    def num_real(self) -> int:
        return len(self.real)

    @property
    def num_generated(self) -> int:
        return 0 if self.generated is None else len(self.generated)

    def __len__(self) -> int:
        return self.copies * self.num_real + self.num_generated

    def real_image_probability(self) -> float:
        """Probability that one uniform draw from D is a given real image: N / (N·|R| + |G|)."""
        return self.copies / len(self)

    def generated_image_probability(self) -> float:
        """Probability that one uniform draw from D is a given generated image: 1 / (N·|R| + |G|)."""
        return 1 / len(self) if self.num_generated else 0.0

    def real_fraction(self) -> float:
        """Share of real images among the draws, N·|R| / (N·|R| + |G|)."""
        return self.copies * self.num_real / len(self)

    def lookup(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(images, labels, is_real) of D-indices; generated images carry label −1."""
        index = torch.as_tensor(index, dtype=torch.long)
        if index.numel() and (index.min() < 0 or index.max() >= len(self)):
            raise IndexError(f"index out of range for an inflated set of {len(self)}")
        boundary = self.copies * self.num_real
        is_real = index < boundary
        real_idx = index % self.num_real
        images = self.real.images[real_idx]
        labels = self.real.labels[real_idx]
        if self.generated is not None and not bool(is_real.all()):
            gen_rows = (~is_real).nonzero().squeeze(1)
            gen_idx = index[gen_rows] - boundary
            images[gen_rows] = self.generated.images[gen_idx]
            labels[gen_rows] = self.generated.labels[gen_idx]
        return images, labels, is_real

    def materialize(self) -> ImageArrays:
        """D as one array, ``concat([R] * N + [G])`` as the official code builds it (small sets only)."""
        parts_x = [self.real.images] * self.copies
        parts_y = [self.real.labels] * self.copies
        if self.generated is not None:
            parts_x.append(self.generated.images)
            parts_y.append(self.generated.labels)
        return ImageArrays(torch.cat(parts_x), torch.cat(parts_y), self.real.classes, f"inflated({self.real.name})")


class InflatedBatches:
    """A data source for ``shared.engine.fit``: ``steps_per_epoch`` batches of uniform draws from D.

    Batch t takes the samples at stream positions t·B … (t+1)·B − 1; position p is element
    p mod |D| of the permutation of D for pass p // |D| (seeded by (seed, pass)). Every position
    is therefore a uniform draw from D, batches never repeat an element within a pass, and the
    stream is a pure function of (seed, step), so resuming after k steps gives the same batches.

    Args:
        data: the inflated set D.
        batch_size: the global batch B.
        steps_per_epoch: batches per "epoch" (default ``|R| // B``: an epoch is one real-data-sized
            pass, so "epochs" mean the same number of steps for every N and |G|).
    """

    def __init__(self, data: InflatedData, batch_size: int, steps_per_epoch: int | None = None) -> None:
        if batch_size < 2:
            raise ValueError(f"batch_size must be at least 2, got {batch_size}")
        self.data, self.batch_size = data, batch_size
        self._steps = data.num_real // batch_size if steps_per_epoch is None else steps_per_epoch
        if self._steps < 1:
            raise ValueError(f"batch_size {batch_size} exceeds the real data set size {data.num_real}")
        self._perms: dict[tuple[int, int], torch.Tensor] = {}
        self.drawn = 0  # samples this process has drawn, and how many of them were real
        self.drawn_real = 0

    def steps_per_epoch(self, world_size: int) -> int:
        return self._steps

    def permutation(self, seed: int, pass_index: int) -> torch.Tensor:
        key = (seed, pass_index)
        if key not in self._perms:
            if len(self._perms) > 4:
                self._perms.pop(next(iter(self._perms)))
            g = torch.Generator().manual_seed(seed * 1_000_003 + pass_index)
            self._perms[key] = torch.randperm(len(self.data), generator=g)
        return self._perms[key]

    def indices(self, step: int, seed: int) -> torch.Tensor:
        """D-indices of the global batch at ``step``."""
        positions = step * self.batch_size + torch.arange(self.batch_size)
        passes, offsets = positions // len(self.data), positions % len(self.data)
        out = torch.empty(self.batch_size, dtype=torch.long)
        for p in passes.unique().tolist():
            rows = passes == p
            out[rows] = self.permutation(seed, p)[offsets[rows]]
        return out

    def epoch(self, epoch: int, seed: int, rank: int, world_size: int, skip: int = 0) -> Iterator[dict]:
        if self.batch_size % world_size:
            raise ValueError(f"batch_size {self.batch_size} is not divisible by {world_size} processes")
        local = self.batch_size // world_size
        for step in range(skip, self._steps):
            idx = self.indices(epoch * self._steps + step, seed)[rank * local : (rank + 1) * local]
            images, labels, is_real = self.data.lookup(idx)
            self.drawn += len(idx)
            self.drawn_real += int(is_real.sum())
            yield {"images": images, "labels": labels, "index": idx, "is_real": is_real}
