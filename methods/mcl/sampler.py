"""Feature-aware negative sampling: every batch group is drawn from one pseudo-label.

MCL (Zhang et al., ECCV 2024) trains stage s on batches whose samples all share the anchor's
pseudo-label from the earlier stages, so that every in-batch negative already agrees with the
anchor on the features those stages learned; to separate them the model must learn something
new. The official sampler (``MCL_batch_sampler_DDP``, ``my_training/data.py``):

* shuffles each pseudo-label's indices every epoch and keeps a multiple of the batch size
  (the remainder of a label, and a label smaller than a batch, is dropped for that epoch);
* walks the labels round-robin, label 0, 1, 2, …: each turn takes one full batch from the
  current label, or skips it when it has none left, until every label is used up.

So an epoch visits every sample at most once. Here a global step holds ``groups`` such
single-label groups of ``batch_size / groups`` samples (consecutive turns of the round-robin;
``groups = 1`` is the official sampler). With ``groups > 1`` BatchNorm sees several clusters per
step instead of one, while the loss (``methods.mcl.loss``) still takes each anchor's negatives
only from its own pseudo-label. Under W processes each rank receives ``1/W`` of every group,
so every rank's BatchNorm sees every group of the step and the union over ranks is the step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch


def _check_labels(pseudo_labels: torch.Tensor) -> torch.Tensor:
    if not isinstance(pseudo_labels, torch.Tensor) or pseudo_labels.ndim != 1:
        raise ValueError("pseudo_labels must be a 1-D integer tensor, one label per sample")
    if pseudo_labels.is_floating_point() or pseudo_labels.dtype == torch.bool:
        raise TypeError(f"pseudo_labels must be integers, got {pseudo_labels.dtype}")
    if len(pseudo_labels) and int(pseudo_labels.min()) < 0:
        raise ValueError("pseudo_labels must be non-negative")
    return pseudo_labels.long()


class ClusterBatchSampler:
    """Global batches of ``batch_size`` indices, each made of ``groups`` single-label groups.

    Args:
        pseudo_labels: (N,) non-negative integer label per sample (any ids, not necessarily dense).
        batch_size: the global batch B; ``B % groups == 0``.
        groups: single-label groups per step (1: every batch is one pseudo-label, as the paper).

    ``epoch_batches(epoch, seed)`` is a pure function of (labels, epoch, seed): the same on every
    rank. Its length does not depend on the epoch.
    """

    def __init__(self, pseudo_labels: torch.Tensor, batch_size: int, groups: int = 1) -> None:
        self.pseudo_labels = _check_labels(pseudo_labels)
        if not (isinstance(groups, int) and groups >= 1):
            raise ValueError(f"groups must be a positive integer, got {groups!r}")
        if not (isinstance(batch_size, int) and batch_size >= 2):
            raise ValueError(f"batch_size must be an integer >= 2, got {batch_size!r}")
        if batch_size % groups:
            raise ValueError(f"batch_size {batch_size} is not divisible by groups={groups}")
        self.batch_size, self.groups = batch_size, groups
        self.group_size = batch_size // groups
        if self.group_size < 2:
            raise ValueError(f"each group needs at least 2 samples, got batch_size/groups = {self.group_size}")
        ids, inverse = torch.unique(self.pseudo_labels, return_inverse=True)
        self.label_ids = ids
        self.members = [(inverse == k).nonzero().squeeze(1) for k in range(len(ids))]
        self.groups_per_label = [len(m) // self.group_size for m in self.members]
        self.num_steps = sum(self.groups_per_label) // groups
        if self.num_steps < 1:
            raise ValueError(
                f"no pseudo-label holds a full group of {self.group_size} samples; lower the batch size "
                f"or the number of clusters (largest label: {max((len(m) for m in self.members), default=0)})"
            )

    def __len__(self) -> int:
        return self.num_steps

    @property
    def dropped(self) -> int:
        """Samples an epoch never visits (label remainders, too-small labels, the last partial step)."""
        return len(self.pseudo_labels) - self.num_steps * self.batch_size

    def group_order(self, epoch: int, seed: int) -> list[torch.Tensor]:
        """The epoch's single-label groups in the official round-robin order over labels."""
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        queues = []
        for members, n_groups in zip(self.members, self.groups_per_label, strict=True):
            perm = members[torch.randperm(len(members), generator=g)]
            queues.append(list(perm[: n_groups * self.group_size].split(self.group_size)) if n_groups else [])
        order: list[torch.Tensor] = []
        taken = [0] * len(queues)
        while len(order) < sum(self.groups_per_label):
            for k, q in enumerate(queues):  # one turn per label; empty labels are skipped
                if taken[k] < len(q):
                    order.append(q[taken[k]])
                    taken[k] += 1
        return order

    def epoch_batches(self, epoch: int, seed: int) -> list[torch.Tensor]:
        """(B,) index tensors, group after group; consecutive groups of the round-robin share a step."""
        order = self.group_order(epoch, seed)
        g = self.groups
        return [torch.cat(order[i * g : (i + 1) * g]) for i in range(self.num_steps)]

    def rank_slice(self, batch: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
        """Rank ``rank``'s share: ``group_size / W`` samples of every group of the step."""
        if self.group_size % world_size:
            raise ValueError(f"group size {self.group_size} is not divisible by {world_size} processes")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        local = self.group_size // world_size
        return batch.view(self.groups, self.group_size)[:, rank * local : (rank + 1) * local].reshape(-1)


class ClusterBatches:
    """The engine's data source for one MCL stage: in-memory tensors batched by :class:`ClusterBatchSampler`.

    ``fetch(index) -> dict`` turns an index tensor into the batch's tensors (default: ``images``);
    the batch also carries ``pseudo`` (the samples' pseudo-labels, for the loss) and ``index``.
    """

    def __init__(
        self,
        images: torch.Tensor,
        pseudo_labels: torch.Tensor,
        batch_size: int,
        groups: int = 1,
        fetch: Callable[[torch.Tensor], dict] | None = None,
    ) -> None:
        if images.shape[0] != len(pseudo_labels):
            raise ValueError(f"{images.shape[0]} images but {len(pseudo_labels)} pseudo-labels")
        self.images = images
        self.sampler = ClusterBatchSampler(pseudo_labels, batch_size, groups)
        self.fetch = fetch or (lambda idx: {"images": self.images[idx]})

    def steps_per_epoch(self, world_size: int) -> int:
        return len(self.sampler)

    def epoch(self, epoch: int, seed: int, rank: int, world_size: int, skip: int = 0) -> Iterator[dict]:
        for batch in self.sampler.epoch_batches(epoch, seed)[skip:]:
            idx = self.sampler.rank_slice(batch, rank, world_size)
            yield {**self.fetch(idx), "pseudo": self.sampler.pseudo_labels[idx], "index": idx}


class LoaderClusterBatches:
    """The same batches from a map-style dataset through a DataLoader (per-image views, workers; paper scale).

    Items are dicts (``shared.data.hub.HubViews``: ``{"views": (x1, x2), "labels": y}``); the batch
    gets ``pseudo`` and ``index`` added.
    """

    def __init__(
        self,
        dataset: torch.utils.data.Dataset,
        pseudo_labels: torch.Tensor,
        batch_size: int,
        groups: int = 1,
        num_workers: int = 8,
    ) -> None:
        if len(dataset) != len(pseudo_labels):  # type: ignore[arg-type]
            raise ValueError(f"{len(dataset)} items but {len(pseudo_labels)} pseudo-labels")  # type: ignore[arg-type]
        self.dataset, self.num_workers = dataset, num_workers
        self.sampler = ClusterBatchSampler(pseudo_labels, batch_size, groups)

    def steps_per_epoch(self, world_size: int) -> int:
        return len(self.sampler)

    def epoch(self, epoch: int, seed: int, rank: int, world_size: int, skip: int = 0) -> Iterator[dict]:
        index = [self.sampler.rank_slice(b, rank, world_size) for b in self.sampler.epoch_batches(epoch, seed)[skip:]]
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=[i.tolist() for i in index], num_workers=self.num_workers
        )
        for idx, batch in zip(index, loader, strict=True):
            yield {**batch, "pseudo": self.sampler.pseudo_labels[idx], "index": idx}
