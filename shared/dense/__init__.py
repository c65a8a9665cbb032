"""Dense evaluation of frozen representations: segmentation metrics, object-grouping ARI, dense probes.

* :mod:`shared.dense.metrics` — confusion matrix, per-class IoU / mIoU / pixel accuracy, Dice (2D and
  3D), adjusted Rand index (ARI, FG-ARI), all vectorised over pixels and images.
* :mod:`shared.dense.probes` — frozen feature maps (extracted once), a linear 1×1 segmentation probe
  and per-pixel weighted-kNN segmentation, both scored by mIoU on held-out images.
"""

from shared.dense.metrics import (
    DiceScores,
    IoUScores,
    adjusted_rand_index,
    confusion_matrix,
    dice,
    foreground_ari,
    iou_from_confusion,
    segmentation_scores,
)
from shared.dense.probes import (
    dense_evaluator,
    dense_knn_votes,
    extract_feature_maps,
    knn_segmentation,
    label_distribution,
    linear_segmentation_probe,
    upsample_bilinear,
)

__all__ = [
    "DiceScores",
    "IoUScores",
    "adjusted_rand_index",
    "confusion_matrix",
    "dense_evaluator",
    "dense_knn_votes",
    "dice",
    "extract_feature_maps",
    "foreground_ari",
    "iou_from_confusion",
    "knn_segmentation",
    "label_distribution",
    "linear_segmentation_probe",
    "segmentation_scores",
    "upsample_bilinear",
]
