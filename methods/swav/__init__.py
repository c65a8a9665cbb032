"""SwAV: Swapping Assignments between Views (Caron et al., NeurIPS 2020).

    >>> from methods.swav import SwAVLoss, sinkhorn
    >>> codes = sinkhorn(scores, epsilon=0.05, iterations=3)     # (B, K), rows sum to 1
    >>> loss = SwAVLoss(temperature=0.1)(scores_of_all_crops)    # (V, B, K)

See README.md for the equations, the setting and the deviations from the official code.
"""

from methods.swav.experiments import PRESETS, build_model, paper_model
from methods.swav.loss import SwAVLoss, swapped_prediction, swav_loss
from methods.swav.model import SwAV
from methods.swav.queue import EmbeddingQueue
from methods.swav.sinkhorn import sinkhorn
from shared.registry import PaperCard, Reported

PAPER = PaperCard(
    number=7,
    short_name="SwAV",
    title="Unsupervised Learning of Visual Features by Contrasting Cluster Assignments",
    package="swav",
    family="instance SSL (clustering)",
    tier="A",
    arxiv="2006.09882",
    official_code="facebookresearch/swav",
    bibtex="""@inproceedings{caron2020unsupervised,
  title     = {Unsupervised Learning of Visual Features by Contrasting Cluster Assignments},
  author    = {Caron, Mathilde and Misra, Ishan and Mairal, Julien and Goyal, Priya and
               Bojanowski, Piotr and Joulin, Armand},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year      = {2020}
}""",
    reported=(
        Reported("ImageNet-1k linear top-1", 75.3, "ResNet-50, 800 epochs, batch 4096, 2×224+6×96", "abstract"),
        Reported("ImageNet-1k linear top-1", 74.6, "ResNet-50, 400 epochs, batch 4096, 2×224+6×96", "official README"),
        Reported("ImageNet-1k linear top-1", 70.1, "ResNet-50, 400 epochs, batch 4096, 2×224 only", "official README"),
        Reported("ImageNet-1k linear top-1", 72.7, "ResNet-50, 200 epochs, batch 256 (queue)", "official README"),
    ),
)

__all__ = [
    "PAPER",
    "PRESETS",
    "EmbeddingQueue",
    "SwAV",
    "SwAVLoss",
    "build_model",
    "paper_model",
    "sinkhorn",
    "swapped_prediction",
    "swav_loss",
]
