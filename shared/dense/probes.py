"""Dense probes of a frozen backbone: a linear 1×1 segmentation probe and per-pixel weighted kNN.

Both take feature maps ``(N, C, h, w)`` extracted once from the frozen backbone
(:func:`extract_feature_maps`, batched, under ``no_grad``) and masks ``(N, H, W)`` at image
resolution, and return :class:`~shared.dense.metrics.IoUScores` (mIoU, per-class IoU, pixel
accuracy) on the test images, ``ignore_index`` pixels left out everywhere.

**Linear probe.** Logits ``z = W f + b`` at every feature-map position (a 1×1 convolution,
``W ∈ R^{K×C}``) on features standardised by the training images' per-channel mean and std,
upsampled bilinearly to the mask size (``align_corners=False``), trained by per-pixel cross-entropy
over the non-ignored pixels with Adam and a cosine learning-rate decay for a fixed number of epochs.
The prediction is the argmax of the upsampled logits. Deterministic given ``seed`` (initialisation
and batch order come from a seeded generator, and the upsampling is written as two matrix products
so that its backward pass has no atomic adds on CUDA).

**Per-pixel kNN.** Each feature-map position of a training image is a bank entry labelled with the
class distribution of the mask pixels under it, ``q_j(c)`` (adaptive average pooling of the one-hot
mask over the non-ignored pixels; a one-hot label where the region is pure). A random subset of
``bank_size`` positions, drawn with ``seed``, forms the bank. Each test position takes its k nearest
bank entries by cosine similarity s_j and scores class c as in :func:`shared.evaluation.knn_predict`,

    score(c) = Σ_{j ∈ top-k} exp(s_j / T) q_j(c),

normalised over the classes; the class-score map is upsampled bilinearly to the mask size and its
argmax is the prediction (the protocol of dense nearest-neighbour retrieval: queries at feature
resolution, since querying every pixel of the upsampled map costs (H/h)(W/w) times more).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from shared.dense.metrics import IoUScores, _check_num_classes, confusion_matrix, iou_from_confusion


def _interp_matrix(n_in: int, n_out: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``(n_out, n_in)`` weights of 1-D linear interpolation (``align_corners=False``) from n_in to n_out points."""
    eye = torch.eye(n_in, device=device, dtype=dtype).unsqueeze(1)  # (n_in, 1, n_in): each input point alone
    return F.interpolate(eye, size=n_out, mode="linear", align_corners=False).squeeze(1).T


def upsample_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``(..., h, w)`` to ``(..., H, W)``, equal to ``F.interpolate(mode="bilinear")``.

    Bilinear interpolation is separable: ``out = R_y x R_xᵀ`` with the 1-D linear-interpolation
    matrices ``R_y (H×h)`` and ``R_x (W×w)``. As matrix products it is deterministic on CUDA in the
    backward pass too (``F.interpolate``'s backward accumulates with atomic adds there).
    """
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    ry = _interp_matrix(h, size[0], x.device, x.dtype)
    rx = _interp_matrix(w, size[1], x.device, x.dtype)
    return ry @ x @ rx.T


@torch.no_grad()
def extract_feature_maps(
    model: nn.Module,
    images: torch.Tensor,
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    *,
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    desc: str | None = None,
) -> torch.Tensor:
    """Feature maps ``(N, C, h, w)`` (float32, CPU) of ``model`` in eval mode, in batches, under ``no_grad``.

    ``forward(x)`` maps a preprocessed batch to ``(B, C, h, w)``; by default the last map of
    ``model.feature_maps`` (e.g. :class:`shared.backbones.SmallConvNet`) or else ``model(x)``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if forward is None:
        forward = (lambda x: model.feature_maps(x, (-1,))[-1]) if hasattr(model, "feature_maps") else model
    was_training = model.training
    model.eval()
    out = []
    try:
        for i in tqdm(range(0, len(images), batch_size), desc=desc, leave=False, disable=desc is None):
            x = images[i : i + batch_size].to(device)
            f = forward(preprocess(x) if preprocess is not None else x)
            if f.dim() != 4:
                raise ValueError(f"forward must return (B, C, h, w) feature maps, got shape {tuple(f.shape)}")
            out.append(f.float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out)


def _check_dense_inputs(
    features: torch.Tensor, masks: torch.Tensor, num_classes: int, ignore_index: int | None, name: str
) -> None:
    if not isinstance(features, torch.Tensor) or features.dim() != 4 or not features.is_floating_point():
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ValueError(f"{name}_features must be a float (N, C, h, w) tensor, got {shape}")
    if not isinstance(masks, torch.Tensor) or masks.dim() != 3 or masks.is_floating_point():
        shape = tuple(masks.shape) if isinstance(masks, torch.Tensor) else type(masks).__name__
        raise ValueError(f"{name}_masks must be an integer (N, H, W) tensor, got {shape}")
    if masks.shape[0] != features.shape[0]:
        raise ValueError(f"{name}: {features.shape[0]} feature maps but {masks.shape[0]} masks")
    if features.shape[0] == 0:
        raise ValueError(f"{name}: no images")
    for i in range(0, len(masks), 256):  # in batches: no int64 copy of every mask at once
        m = masks[i : i + 256].long()
        valid = m[m != ignore_index] if ignore_index is not None else m.flatten()
        if valid.numel() and (valid.min() < 0 or valid.max() >= num_classes):
            raise ValueError(
                f"{name}_masks labels other than ignore_index={ignore_index} must lie in [0, {num_classes}), "
                f"found values in [{valid.min().item()}, {valid.max().item()}]"
            )


def _check_channels(train: torch.Tensor, test: torch.Tensor) -> None:
    if train.shape[1] != test.shape[1]:
        raise ValueError(f"train and test features differ in channels: {train.shape[1]} vs {test.shape[1]}")


def linear_segmentation_probe(
    train_features: torch.Tensor,
    train_masks: torch.Tensor,
    test_features: torch.Tensor,
    test_masks: torch.Tensor,
    num_classes: int,
    *,
    ignore_index: int | None = 255,
    epochs: int = 20,
    lr: float = 1e-2,
    weight_decay: float = 1e-5,
    batch_size: int = 32,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> IoUScores:
    """Train a linear 1×1 probe on frozen feature maps and score it by mIoU on the test images.

    See the module docstring. ``batch_size`` counts images; ``epochs`` passes over the training images
    (the fixed budget); ``device`` (default: that of ``train_features``) is where the probe trains.
    """
    _check_num_classes(num_classes, ignore_index)
    _check_dense_inputs(train_features, train_masks, num_classes, ignore_index, "train")
    _check_dense_inputs(test_features, test_masks, num_classes, ignore_index, "test")
    _check_channels(train_features, test_features)
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive, got {epochs} and {batch_size}")
    dev = torch.device(device) if device is not None else train_features.device
    g = torch.Generator().manual_seed(seed)
    mean = train_features.mean(dim=(0, 2, 3)).to(dev)[:, None, None]
    std = train_features.std(dim=(0, 2, 3)).nan_to_num(1.0).clamp_min(1e-6).to(dev)[:, None, None]
    probe = nn.Linear(train_features.shape[1], num_classes)
    with torch.no_grad():
        probe.weight.normal_(0, 0.01, generator=g)
        probe.bias.zero_()
    probe = probe.to(dev)

    def logits(feats: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = (feats.to(dev).float() - mean) / std
        z = probe(x.movedim(1, -1)).movedim(-1, 1)  # (B, K, h, w): the 1×1 convolution
        return upsample_bilinear(z, size)

    n = len(train_features)
    steps = epochs * math.ceil(n / batch_size)
    opt = torch.optim.Adam(probe.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    with torch.enable_grad():
        for _ in range(epochs):
            perm = torch.randperm(n, generator=g)
            for i in range(0, n, batch_size):
                idx = perm[i : i + batch_size]
                y = train_masks[idx].to(dev).long()
                z = logits(train_features[idx], tuple(y.shape[-2:]))
                ce = F.cross_entropy(z, y, ignore_index=-100 if ignore_index is None else ignore_index, reduction="sum")
                count = (y != ignore_index).sum() if ignore_index is not None else y.new_tensor(y.numel())
                loss = ce / count.clamp_min(1)  # mean over the non-ignored pixels (0 if there are none)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
    cm = torch.zeros(num_classes, num_classes, dtype=torch.long, device=dev)
    with torch.no_grad():
        for i in range(0, len(test_features), batch_size):
            y = test_masks[i : i + batch_size].to(dev)
            pred = logits(test_features[i : i + batch_size], tuple(y.shape[-2:])).argmax(1)
            cm += confusion_matrix(pred, y, num_classes, ignore_index)
    return iou_from_confusion(cm.cpu())


def _mask_batch_size(masks: torch.Tensor, num_classes: int) -> int:
    """Images per batch whose one-hot float maps stay under about 2^25 values (128 MB)."""
    return max(1, 2**25 // (num_classes * masks.shape[-2] * masks.shape[-1]))


def _cell_distribution(
    masks: torch.Tensor, size: tuple[int, int], num_classes: int, ignore_index: int | None
) -> torch.Tensor:
    m = masks.long()
    valid = m != ignore_index if ignore_index is not None else torch.ones_like(m, dtype=torch.bool)
    onehot = torch.zeros(len(m), num_classes, *m.shape[-2:], device=m.device)
    onehot.scatter_(1, torch.where(valid, m, 0).unsqueeze(1), valid.unsqueeze(1).float())
    pooled = F.adaptive_avg_pool2d(onehot, size)
    return pooled / pooled.sum(1, keepdim=True).clamp_min(1e-12)


@torch.no_grad()
def label_distribution(
    masks: torch.Tensor, size: tuple[int, int], num_classes: int, ignore_index: int | None = 255
) -> torch.Tensor:
    """Class distribution of the mask pixels under each feature-map cell: ``(N, H, W)`` → ``(N, K, h, w)``.

    Cell (i, j) covers mask rows ``[⌊iH/h⌋, ⌈(i+1)H/h⌉)`` and the like for columns (adaptive average
    pooling); its entry is the fraction of that region's non-ignored pixels in each class, all zeros
    where every pixel of the region is ignored. float32, on the masks' device; computed in batches.
    """
    _check_num_classes(num_classes, ignore_index)
    step = _mask_batch_size(masks, num_classes)
    return torch.cat(
        [_cell_distribution(masks[i : i + step], size, num_classes, ignore_index) for i in range(0, len(masks), step)]
    )


@torch.no_grad()
def dense_knn_votes(
    bank_features: torch.Tensor,
    bank_labels: torch.Tensor,
    query_features: torch.Tensor,
    k: int = 200,
    temperature: float = 0.1,
    chunk: int = 4096,
    normalize: bool = False,
) -> torch.Tensor:
    """Weighted-kNN class scores ``(Q, K)`` of ``(Q, C)`` queries against a ``(M, C)`` bank with soft labels.

    ``bank_labels`` is ``(M, K)`` (class distributions, or one-hot rows: then this equals
    :func:`shared.evaluation.knn_predict`). Cosine similarity, ``score(c) = Σ_{top-k} exp(s_j / T) q_j(c)``;
    the similarity matrix is computed ``chunk`` queries at a time. ``normalize`` returns each query's
    scores divided by their sum, computed as ``exp((s_j − max_j s_j) / T)`` so that no small T overflows.
    """
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    if bank_features.dim() != 2 or bank_labels.dim() != 2 or len(bank_features) != len(bank_labels):
        raise ValueError(
            f"bank_features (M, C) and bank_labels (M, K) must agree, got {tuple(bank_features.shape)} "
            f"and {tuple(bank_labels.shape)}"
        )
    if len(bank_features) == 0:
        raise ValueError("the kNN bank is empty (no labelled training pixel)")
    if query_features.dim() != 2 or query_features.shape[1] != bank_features.shape[1]:
        raise ValueError(f"query_features must be (Q, {bank_features.shape[1]}), got {tuple(query_features.shape)}")
    bank = F.normalize(bank_features.float(), dim=1)
    labels = bank_labels.float()
    k = min(k, len(bank))
    out = []
    for i in range(0, len(query_features), chunk):
        q = F.normalize(query_features[i : i + chunk].float(), dim=1)
        sim, idx = (q @ bank.T).topk(k, dim=1)  # sorted: sim[:, :1] is the largest
        weights = ((sim - sim[:, :1]) / temperature).exp() if normalize else (sim / temperature).exp()
        votes = torch.einsum("qk,qkc->qc", weights, labels[idx])
        out.append(votes / votes.sum(1, keepdim=True).clamp_min(1e-30) if normalize else votes)
    return torch.cat(out) if out else query_features.new_zeros(0, labels.shape[1])


def knn_segmentation(
    train_features: torch.Tensor,
    train_masks: torch.Tensor,
    test_features: torch.Tensor,
    test_masks: torch.Tensor,
    num_classes: int,
    *,
    ignore_index: int | None = 255,
    k: int = 200,
    temperature: float = 0.1,
    bank_size: int = 100_000,
    seed: int = 0,
    chunk: int = 4096,
    device: torch.device | str | None = None,
) -> IoUScores:
    """Per-pixel weighted-kNN segmentation from frozen feature maps, scored by mIoU on the test images.

    See the module docstring. At most ``bank_size`` labelled training positions, drawn uniformly
    without replacement with ``seed``, form the bank (``bank_size × C`` floats); ``chunk`` bounds the
    similarity matrix at about ``chunk × bank_size`` floats (whole test images per chunk, at least one).
    """
    _check_num_classes(num_classes, ignore_index)
    _check_dense_inputs(train_features, train_masks, num_classes, ignore_index, "train")
    _check_dense_inputs(test_features, test_masks, num_classes, ignore_index, "test")
    _check_channels(train_features, test_features)
    if bank_size < 1 or chunk < 1 or k < 1 or temperature <= 0:
        raise ValueError(
            f"bank_size, chunk, k and temperature must be positive, got {bank_size}, {chunk}, {k} and {temperature}"
        )
    dev = torch.device(device) if device is not None else train_features.device
    h, w = train_features.shape[-2:]
    # the positions with at least one non-ignored pixel under them, then a seeded subset of them
    step = _mask_batch_size(train_masks, 1)
    labelled = torch.cat(
        [
            F.adaptive_avg_pool2d((m != ignore_index if ignore_index is not None else m >= 0).float()[:, None], (h, w))
            for m in (train_masks[i : i + step].cpu() for i in range(0, len(train_masks), step))
        ]
    )
    labelled = labelled.flatten().nonzero().squeeze(1)
    if len(labelled) > bank_size:
        g = torch.Generator().manual_seed(seed)
        labelled = labelled[torch.randperm(len(labelled), generator=g)[:bank_size]].sort().values
    if len(labelled) == 0:
        raise ValueError("the kNN bank is empty (every training pixel is ignored)")
    img, rem = labelled // (h * w), labelled % (h * w)
    row, col = rem // w, rem % w
    bank = train_features[img, :, row, col].to(dev)  # (M, C); CPU indices work on any device
    bank_labels = torch.empty(len(labelled), num_classes)  # (M, K), filled batch by batch of images
    step = _mask_batch_size(train_masks, num_classes)
    for i in range(0, len(train_masks), step):
        sel = ((img >= i) & (img < i + step)).nonzero().squeeze(1)
        if len(sel):
            dist = _cell_distribution(train_masks[i : i + step].cpu(), (h, w), num_classes, ignore_index)
            bank_labels[sel] = dist[img[sel] - i, :, row[sel], col[sel]]
    bank_labels = bank_labels.to(dev)

    th, tw = test_features.shape[-2:]
    per_chunk = max(1, chunk // (th * tw))
    cm = torch.zeros(num_classes, num_classes, dtype=torch.long, device=dev)
    for i in range(0, len(test_features), per_chunk):
        f = test_features[i : i + per_chunk].to(dev)
        y = test_masks[i : i + per_chunk].to(dev)
        queries = f.movedim(1, -1).reshape(-1, f.shape[1])
        probs = dense_knn_votes(bank, bank_labels, queries, k, temperature, chunk, normalize=True)
        scores = probs.reshape(len(f), th, tw, num_classes).movedim(-1, 1)
        cm += confusion_matrix(upsample_bilinear(scores, tuple(y.shape[-2:])).argmax(1), y, num_classes, ignore_index)
    return iou_from_confusion(cm.cpu())


def dense_evaluator(
    train_images: torch.Tensor,
    train_masks: torch.Tensor,
    test_images: torch.Tensor,
    test_masks: torch.Tensor,
    num_classes: int,
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    *,
    forward: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
    ignore_index: int | None = 255,
    knn: bool = True,
    probe_kwargs: dict | None = None,
    knn_kwargs: dict | None = None,
    feature_attr: str = "backbone",
) -> Callable[[nn.Module], dict[str, float]]:
    """``evaluate(model)`` → ``{"probe_miou", "probe_pixel_acc"[, "knn_miou"]}`` on ``model.<feature_attr>``.

    Feature maps of the train and test images are extracted once per call on the backbone's device
    (:func:`extract_feature_maps`; ``forward(net, x)`` overrides how a batch becomes a map), then
    :func:`linear_segmentation_probe` and, with ``knn``, :func:`knn_segmentation` run on them.
    """
    _check_num_classes(num_classes, ignore_index)

    def evaluate(model: nn.Module) -> dict[str, float]:
        net = getattr(model, feature_attr)
        device = next(net.parameters()).device
        fwd = (lambda x: forward(net, x)) if forward is not None else None
        ftr = extract_feature_maps(net, train_images, preprocess, forward=fwd, device=device)
        fte = extract_feature_maps(net, test_images, preprocess, forward=fwd, device=device)
        kw = {"ignore_index": ignore_index, "device": device, **(probe_kwargs or {})}
        probe = linear_segmentation_probe(ftr, train_masks, fte, test_masks, num_classes, **kw)
        out = {"probe_miou": probe.miou, "probe_pixel_acc": probe.pixel_accuracy}
        if knn:
            kw = {"ignore_index": ignore_index, "device": device, **(knn_kwargs or {})}
            out["knn_miou"] = knn_segmentation(ftr, train_masks, fte, test_masks, num_classes, **kw).miou
        return out

    return evaluate
