"""Dense metrics: confusion matrix, IoU / mIoU, pixel accuracy, Dice, adjusted Rand index.

All functions take integer label maps (any integer dtype or ``bool``) and work on the device of
their inputs; counting is one ``torch.bincount`` per call (no Python loop over pixels or images).

**Confusion matrix.** ``M[t, p]`` = number of pixels whose target is ``t`` and prediction ``p``
(rows: target, columns: prediction), over the pixels whose target is not ``ignore_index``.

**IoU** of class c from M, with TP_c = M[c, c], FP_c = Σ_t M[t, c] − TP_c, FN_c = Σ_p M[c, p] − TP_c:

    IoU_c = TP_c / (TP_c + FP_c + FN_c),      mIoU = mean of IoU_c over the classes with
                                               TP_c + FP_c + FN_c > 0,
    pixel accuracy = Σ_c TP_c / Σ_{t,p} M[t, p].

A class absent from both the prediction and the (non-ignored) target has IoU 0/0: it is reported
as NaN and left out of the mean (the mmsegmentation / torchmetrics ``average="macro"`` rule). A
class present in only one of them has IoU 0 and counts.

**Dice** of class c in one image or volume (Sørensen–Dice, the medical-imaging score):

    Dice_c = 2 |P_c ∩ T_c| / (|P_c| + |T_c|) = 2 TP_c / (2 TP_c + FP_c + FN_c),

with P_c, T_c the predicted and target voxel sets of class c. If both are empty (0/0) the score is
``empty`` (default NaN: left out of every mean, as nnU-Net and torchmetrics do; pass ``empty=1.0``
for the "nothing to find, nothing found" convention). A class with an empty target but a non-empty
prediction scores 0.

**Adjusted Rand index** (Hubert & Arabie, 1985) of two partitions of the same n pixels, from their
contingency table n_ij (pixels in predicted group i and true group j), row sums a_i, column sums
b_j, and C(x) = x (x − 1) / 2:

    index = Σ_ij C(n_ij),   expected = Σ_i C(a_i) · Σ_j C(b_j) / C(n),
    max = (Σ_i C(a_i) + Σ_j C(b_j)) / 2,      ARI = (index − expected) / (max − expected).

ARI is 1 for identical partitions up to a renaming of the groups, about 0 for independent ones.
When max = expected (every pair of pixels is treated alike by both partitions, e.g. n = 1 or both
partitions a single group) ARI is 1, as in scikit-learn. FG-ARI, the object-discovery score of
slot-attention style papers, is ARI over the pixels whose *true* label is not background.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch


class IoUScores(NamedTuple):
    """Scores from a confusion matrix: per-class IoU (NaN for absent classes), mIoU, pixel accuracy."""

    per_class: torch.Tensor
    miou: float
    pixel_accuracy: float


class DiceScores(NamedTuple):
    """Dice per sample and class ``(N, len(classes))``, its mean over samples per class, the class mean.

    ``classes`` are the class ids of the columns. NaN entries (both sets empty, with the default
    ``empty``) are skipped by both means; a mean over nothing is NaN.
    """

    per_sample: torch.Tensor
    per_class: torch.Tensor
    mean: float
    classes: tuple[int, ...]


def _check_label_maps(pred: torch.Tensor, target: torch.Tensor, min_dim: int = 0) -> None:
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise ValueError(f"pred and target must be tensors, got {type(pred).__name__} and {type(target).__name__}")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    for name, t in (("pred", pred), ("target", target)):
        if t.is_floating_point() or t.is_complex():
            raise ValueError(f"{name} must hold integer labels (or bool), got dtype {t.dtype}")
    if pred.dim() < min_dim:
        raise ValueError(f"expected label maps with a leading batch dimension (≥ {min_dim} dims), got {pred.dim()}")


def _check_num_classes(num_classes: int, ignore_index: int | None) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    if ignore_index is not None and 0 <= ignore_index < num_classes:
        raise ValueError(f"ignore_index must lie outside [0, num_classes) = [0, {num_classes}), got {ignore_index}")


def _batched_confusion(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None
) -> torch.Tensor:
    """Per-sample confusion matrices ``(N, K, K)`` (int64) of ``(N, ...)`` label maps, ignore pixels dropped."""
    n, k = pred.shape[0], num_classes
    p, t = pred.reshape(n, -1).long(), target.reshape(n, -1).long()
    valid = t != ignore_index if ignore_index is not None else torch.ones_like(t, dtype=torch.bool)
    pv, tv = p[valid], t[valid]
    if tv.numel():
        for name, v in (("target", tv), ("pred", pv)):
            lo, hi = v.min().item(), v.max().item()
            if lo < 0 or hi >= k:
                extra = f" other than ignore_index={ignore_index}" if name == "target" else " at non-ignored pixels"
                raise ValueError(f"{name} labels{extra} must lie in [0, {k}), found values in [{lo}, {hi}]")
    sample = torch.arange(n, device=p.device).unsqueeze(1).expand_as(p)[valid]
    return torch.bincount((sample * k + tv) * k + pv, minlength=n * k * k).reshape(n, k, k)


def confusion_matrix(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None = 255
) -> torch.Tensor:
    """Confusion matrix ``(K, K)`` (int64, rows = target, columns = prediction) of label maps of any shape.

    Pixels whose target equals ``ignore_index`` are dropped (``None``: none are); every other label of
    ``pred`` and ``target`` must lie in ``[0, num_classes)``, and ``ignore_index`` outside that range.
    Confusion matrices of several batches add up.
    """
    _check_label_maps(pred, target)
    _check_num_classes(num_classes, ignore_index)
    return _batched_confusion(pred.reshape(1, -1), target.reshape(1, -1), num_classes, ignore_index)[0]


def iou_from_confusion(confusion: torch.Tensor) -> IoUScores:
    """Per-class IoU (float64, NaN where a class is absent from prediction and target), mIoU, pixel accuracy.

    See the module docstring for the formulas. mIoU and pixel accuracy are NaN for an all-zero matrix.
    """
    if not isinstance(confusion, torch.Tensor) or confusion.dim() != 2 or confusion.shape[0] != confusion.shape[1]:
        shape = tuple(confusion.shape) if isinstance(confusion, torch.Tensor) else type(confusion).__name__
        raise ValueError(f"confusion must be a square (K, K) tensor, got {shape}")
    m = confusion.double()
    tp = m.diagonal()
    union = m.sum(0) + m.sum(1) - tp
    per_class = torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))
    present = union > 0
    miou = per_class[present].mean().item() if present.any() else float("nan")
    total = m.sum()
    acc = (tp.sum() / total).item() if total > 0 else float("nan")
    return IoUScores(per_class, miou, acc)


def segmentation_scores(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None = 255
) -> IoUScores:
    """:func:`iou_from_confusion` of :func:`confusion_matrix` (one pass over the pixels)."""
    return iou_from_confusion(confusion_matrix(pred, target, num_classes, ignore_index))


def dice(
    pred: torch.Tensor,
    target: torch.Tensor,
    num_classes: int = 2,
    *,
    ignore_index: int | None = None,
    include_background: bool = False,
    empty: float = float("nan"),
) -> DiceScores:
    """Dice per image (``(N, H, W)``) or per volume (``(N, D, H, W)``) and class; see the module docstring.

    Binary segmentation: boolean (or 0/1) masks with the defaults ``num_classes=2`` and
    ``include_background=False`` give the foreground Dice. Multi-class: class 0 is the background and
    is left out unless ``include_background``. Voxels whose target is ``ignore_index`` are dropped.
    ``per_class`` averages each class over the samples where it is defined (not NaN), ``mean`` averages
    ``per_class`` over the classes (each class weighs the same, as in organ-segmentation tables).
    """
    _check_label_maps(pred, target)
    if pred.dim() not in (3, 4):
        raise ValueError(f"dice expects (N, H, W) images or (N, D, H, W) volumes, got shape {tuple(pred.shape)}")
    _check_num_classes(num_classes, ignore_index)
    first = 0 if include_background else 1
    if first >= num_classes:
        raise ValueError(f"include_background=False needs num_classes ≥ 2, got {num_classes}")
    cm = _batched_confusion(pred, target, num_classes, ignore_index).double()
    tp = cm.diagonal(dim1=1, dim2=2)
    denom = cm.sum(1) + cm.sum(2)  # |P_c| + |T_c|
    per_sample = torch.where(denom > 0, 2 * tp / denom.clamp_min(1), torch.full_like(tp, empty))[:, first:]
    per_class = per_sample.nanmean(0)
    mean = per_class.nanmean().item()
    return DiceScores(per_sample, per_class, mean, tuple(range(first, num_classes)))


def adjusted_rand_index(
    pred_labels: torch.Tensor, true_labels: torch.Tensor, ignore: int | Sequence[int] | None = None
) -> torch.Tensor:
    """ARI of each image's predicted grouping against its true one: ``(N, ...)`` integer ids → ``(N,)`` float64.

    Ids are arbitrary integers (slot or instance indices; only which pixels share an id matters).
    Pixels whose *true* label is in ``ignore`` are left out (``ignore=0`` with background 0 gives FG-ARI,
    :func:`foreground_ari`). An image with no pixel left scores NaN; see the module docstring for the
    formula and the degenerate case (ARI = 1). Computed in float64 from one batched contingency table.
    """
    _check_label_maps(pred_labels, true_labels, min_dim=2)
    n = pred_labels.shape[0]
    p, t = pred_labels.reshape(n, -1).long(), true_labels.reshape(n, -1).long()
    if ignore is None:
        valid = torch.ones_like(t, dtype=torch.bool)
    else:
        ids = [ignore] if isinstance(ignore, int) else list(ignore) if isinstance(ignore, Sequence) else [ignore]
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise ValueError(f"ignore must be an integer label or a sequence of them, got {ignore!r}")
        valid = ~torch.isin(t, torch.tensor(ids, dtype=torch.long, device=t.device))
    _, p = torch.unique(p, return_inverse=True)  # dense ids 0..P-1 over the whole batch
    _, t = torch.unique(t, return_inverse=True)
    num_p, num_t = int(p.max()) + 1 if p.numel() else 1, int(t.max()) + 1 if t.numel() else 1
    sample = torch.arange(n, device=p.device).unsqueeze(1).expand_as(p)
    idx = (sample * num_p + p) * num_t + t
    table = torch.bincount(idx[valid], minlength=n * num_p * num_t).reshape(n, num_p, num_t).double()

    def pairs(x: torch.Tensor) -> torch.Tensor:
        return x * (x - 1) / 2

    npix = table.sum((1, 2))
    index = pairs(table).sum((1, 2))
    rows, cols = pairs(table.sum(2)).sum(1), pairs(table.sum(1)).sum(1)
    expected = rows * cols / pairs(npix).clamp_min(1)
    spread = (rows + cols) / 2 - expected
    ari = torch.where(spread != 0, (index - expected) / torch.where(spread != 0, spread, 1.0), 1.0)
    return torch.where(npix > 0, ari, float("nan"))


def foreground_ari(pred_labels: torch.Tensor, true_labels: torch.Tensor, background: int = 0) -> torch.Tensor:
    """FG-ARI per image: :func:`adjusted_rand_index` over the pixels whose true label is not ``background``."""
    return adjusted_rand_index(pred_labels, true_labels, ignore=background)
