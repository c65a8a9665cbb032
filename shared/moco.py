"""MoCo v2: query encoder, momentum key encoder, queue of negatives, MLP head — a generic baseline.

He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020
(arXiv:1911.05722); Chen et al., "Improved Baselines with Momentum Contrastive Learning"
(MoCo v2, arXiv:2003.04297). For a batch of images, two MoCo-v2 views x_q, x_k:

    q = normalize(g_q(f_q(x_q)))                      query, with gradient
    k = normalize(g_k(f_k(x_k)))                      key, no gradient (momentum encoder)
    logits = [q·k, q·Q_1, …, q·Q_K, q·E_1, …, q·E_M] / τ      Q: queue, E: extra negatives
    L = CE(logits, 0) = −log( e^{q·k/τ} / (e^{q·k/τ} + Σ_j e^{q·Q_j/τ} + Σ_m e^{q·E_m/τ}) )

then θ_k ← m θ_k + (1 − m) θ_q and the keys k replace the oldest K entries of the queue.
MoCo v2 defaults: τ = 0.2, m = 0.999, K = 65536, 2-layer MLP head 2048→2048→128, SGD lr
0.03·B/256, wd 1e-4, cosine, augmentations of :func:`moco_v2_augment_config`.

``extra_negatives`` is the hook through which a paper adds per-query negatives to the
logits: ``hook(q, queue, step) -> (B, M, d) | None`` with q the detached normalised
queries, queue the (K, d) snapshot used for this step's logits and ``step`` the number of
training steps done. M = 0 leaves the loss unchanged. A paper whose extra logits are
cheaper to compute without building the vectors overrides :meth:`MoCo.logits` instead.

Shuffling BN. MoCo computes the keys of a batch shuffled across GPUs, so that a query and
its positive key never share BatchNorm statistics (otherwise the model "cheats" with the
batch statistics). Here: across W processes the key batch is gathered, permuted with one
permutation broadcast from rank 0, encoded by each rank on its slice and un-permuted, as
the official code does. On one process, ``bn_splits = G > 1`` simulates G devices as the
MoCo authors' single-GPU CIFAR demo does: queries are encoded in G chunks (BatchNorm per
chunk) and keys are shuffled and then encoded in G chunks. ``bn_splits = 1`` on one process
means no shuffle: query and key BatchNorm both see the whole batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from shared.augment import AugmentConfig, BatchedSimCLRAugment
from shared.distributed import gather_no_grad, get_rank, is_distributed
from shared.losses import at_least_float32, check_temperature
from shared.momentum import EmbeddingQueue, check_momentum, ema_update, momentum_copy

NegativeHook = Callable[[torch.Tensor, torch.Tensor, int], "torch.Tensor | None"]


def moco_v2_augment_config(
    image_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    blur_p: float = 0.5,
    crop_scale: tuple[float, float] = (0.2, 1.0),
) -> AugmentConfig:
    """MoCo v2's view: crop scale (0.2, 1), jitter (0.4, 0.4, 0.4, 0.1) p=0.8, grey 0.2, blur 0.5, flip."""
    return AugmentConfig(
        image_size=image_size,
        crop_scale=crop_scale,
        jitter_strength=0.5,  # AugmentConfig's jitter is (0.8 s, 0.8 s, 0.8 s, 0.2 s) = (0.4, 0.4, 0.4, 0.1)
        jitter_p=0.8,
        grayscale_p=0.2,
        blur_p=blur_p,
        mean=tuple(mean),
        std=tuple(std),
    )


def check_embeddings(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor) -> None:
    """Raise a clear error unless q, k are (B, d) floats and queue is (K, d)."""
    for name, z in (("q", q), ("k", k), ("queue", queue)):
        if not isinstance(z, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(z).__name__}")
        if z.ndim != 2:
            raise ValueError(f"{name} must be 2-D, got shape {tuple(z.shape)}")
        if not z.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {z.dtype}")
    if q.shape != k.shape:
        raise ValueError(f"q and k must have the same shape, got {tuple(q.shape)} and {tuple(k.shape)}")
    if queue.shape[1] != q.shape[1]:
        raise ValueError(f"queue dim {queue.shape[1]} != embedding dim {q.shape[1]}")


def moco_logits(
    q: torch.Tensor,
    k: torch.Tensor,
    queue: torch.Tensor,
    temperature: float = 0.2,
    extra: torch.Tensor | None = None,
) -> torch.Tensor:
    """``[q·k, q·Q, q·E] / τ`` in float32, shape (B, 1 + K + M); the positive is column 0.

    q, k, queue and extra are L2-normalised here; k, the queue and the extra negatives are
    used as given (detach them beforehand where the method has a stop-gradient).
    """
    check_temperature(temperature)
    check_embeddings(q, k, queue)
    q = F.normalize(at_least_float32(q), dim=1)
    k = F.normalize(at_least_float32(k), dim=1)
    queue = F.normalize(at_least_float32(queue), dim=1)
    with torch.autocast(device_type=q.device.type, enabled=False):
        parts = [(q * k).sum(dim=1, keepdim=True), q @ queue.T.to(q.dtype)]
        if extra is not None:
            if extra.ndim != 3 or extra.shape[0] != q.shape[0] or extra.shape[2] != q.shape[1]:
                want = f"({q.shape[0]}, M, {q.shape[1]})"
                raise ValueError(f"extra negatives must have shape {want}, got {tuple(extra.shape)}")
            e = F.normalize(at_least_float32(extra), dim=2).to(q.dtype)
            parts.append(torch.einsum("bd,bmd->bm", q, e))
        return torch.cat(parts, dim=1) / temperature


def moco_loss(
    q: torch.Tensor,
    k: torch.Tensor,
    queue: torch.Tensor,
    temperature: float = 0.2,
    extra: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over the batch of ``CE(moco_logits, 0)`` (InfoNCE against the queue and the extras)."""
    logits = moco_logits(q, k, queue, temperature, extra)
    return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))


def _encode_in_splits(encoder: nn.Module, x: torch.Tensor, splits: int) -> torch.Tensor:
    """``encoder`` on ``splits`` equal chunks of x (BatchNorm statistics per chunk), concatenated."""
    if splits == 1:
        return encoder(x)
    return torch.cat([encoder(c) for c in x.chunk(splits)])


class MoCo(nn.Module):
    """MoCo v2 with an optional hook for extra negatives.

    Args:
        backbone, projector: the query encoder f_q and head g_q; the key encoder is a
            momentum copy of both.
        temperature: τ (MoCo v2: 0.2).
        queue_size: K, a multiple of the global batch (MoCo v2: 65536).
        momentum: m of the key encoder (MoCo v2: 0.999).
        augment: batched view maker for ``{"images": uint8}`` batches (None: the batch
            brings ``{"views": (x_q, x_k)}``).
        channels_last: feed the encoders channels-last inputs.
        bn_splits: G simulated devices for shuffled BN on one process (1: no split).
        extra_negatives: ``hook(q, queue, step) -> (B, M, d) | None`` (see module docs).

    ``forward(batch)`` (training only) returns ``{"loss", "proxy_acc", "pos_rank"}``:
    the fraction of queries whose positive has the largest logit, and its mean rank among
    the logits (0 = first), the "proxy task difficulty" MoCHi tracks.
    """

    steps: torch.Tensor

    def __init__(
        self,
        backbone: nn.Module,
        projector: nn.Module,
        temperature: float = 0.2,
        queue_size: int = 65536,
        momentum: float = 0.999,
        augment: BatchedSimCLRAugment | None = None,
        channels_last: bool = False,
        bn_splits: int = 1,
        extra_negatives: NegativeHook | None = None,
        embed_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)
        self.momentum = check_momentum(momentum)
        if not (isinstance(bn_splits, int) and bn_splits >= 1):
            raise ValueError(f"bn_splits must be a positive integer, got {bn_splits!r}")
        if extra_negatives is not None and not callable(extra_negatives):
            raise TypeError("extra_negatives must be callable (q, queue, step) -> (B, M, d), or None")
        self.backbone, self.projector = backbone, projector
        self.key_backbone, self.key_projector = momentum_copy(backbone), momentum_copy(projector)
        dim = embed_dim or _out_features(projector)
        self.queue = EmbeddingQueue(queue_size, dim)
        self.augment, self.channels_last, self.bn_splits = augment, channels_last, bn_splits
        self.extra_negatives = extra_negatives
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def views(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        if "views" in batch:
            x1, x2 = batch["views"]
        elif self.augment is not None:
            with torch.autocast(batch["images"].device.type, enabled=False):
                x1, x2 = self.augment(batch["images"]), self.augment(batch["images"])
        else:
            raise ValueError("batch has no 'views' and the model has no augmentation for 'images'")
        if self.channels_last:
            x1, x2 = x1.contiguous(memory_format=torch.channels_last), x2.contiguous(memory_format=torch.channels_last)
        return x1, x2

    def _check_batch(self, n: int) -> None:
        if n % self.bn_splits:
            raise ValueError(f"the local batch {n} is not divisible by bn_splits={self.bn_splits}")

    def encode_query(self, x: torch.Tensor) -> torch.Tensor:
        self._check_batch(len(x))
        return _encode_in_splits(lambda c: self.projector(self.backbone(c)), x, self.bn_splits)

    @torch.no_grad()
    def encode_key(self, x: torch.Tensor) -> torch.Tensor:
        """Keys of x through the momentum encoder, with shuffled BN (see module docs)."""
        self._check_batch(len(x))

        def key_encoder(c: torch.Tensor) -> torch.Tensor:
            return self.key_projector(self.key_backbone(c))

        if not is_distributed() and self.bn_splits == 1:
            return key_encoder(x)
        n = len(x)
        x_all = gather_no_grad(x)
        perm = torch.randperm(len(x_all), device=x.device)
        if is_distributed():
            dist.broadcast(perm, src=0)
        start = get_rank() * n
        k_local = _encode_in_splits(key_encoder, x_all[perm][start : start + n], self.bn_splits)
        k_all = gather_no_grad(k_local)
        unshuffled = torch.empty_like(k_all)
        unshuffled[perm] = k_all
        return unshuffled[start : start + n]

    @torch.no_grad()
    def update_key_encoder(self) -> None:
        ema_update(self.key_backbone, self.backbone, self.momentum)
        ema_update(self.key_projector, self.projector, self.momentum)

    def logits(self, q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor) -> torch.Tensor:
        """This step's ``[q·k, q·Q, q·E] / τ`` (E from ``extra_negatives``); a subclass may compute its own.

        Called once per forward pass, after the keys and before the queue update; ``queue`` is the
        snapshot of this step and ``self.steps`` the number of training steps done.
        """
        extra = None
        if self.extra_negatives is not None:
            with torch.no_grad():
                q_det = F.normalize(at_least_float32(q.detach()), dim=1)
                extra = self.extra_negatives(q_det, queue, int(self.steps))
            if extra is not None:
                extra = extra.detach()
        return moco_logits(q, k, queue, self.temperature, extra)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        x_q, x_k = self.views(batch)
        q = self.encode_query(x_q)
        if self.training:
            self.update_key_encoder()  # MoCo's order: momentum update, then the keys
        k = self.encode_key(x_k).detach()
        queue = self.queue.snapshot()
        logits = self.logits(q, k, queue)
        loss = F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))
        if self.training:
            self.queue.enqueue(F.normalize(at_least_float32(k), dim=1))
            self.steps += 1
        with torch.no_grad():
            rank = (logits[:, 1:] > logits[:, :1]).sum(dim=1).float()
        return {"loss": loss, "proxy_acc": (rank == 0).float().mean(), "pos_rank": rank.mean()}


def _out_features(projector: nn.Module) -> int:
    last = [m for m in projector.modules() if isinstance(m, nn.Linear)]
    if not last:
        raise ValueError("cannot infer the embedding dim from the projector; pass embed_dim")
    return last[-1].out_features
