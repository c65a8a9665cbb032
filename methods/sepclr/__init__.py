"""SepCLR: separating common from salient patterns with contrastive learning (Louiset et al., ICLR 2024).

    >>> from methods.sepclr import SepCLRLoss
    >>> out = SepCLRLoss()(c1, c2, s1, s2, labels)  # labels: 0 background, 1 target
    >>> out["loss"], out["common"], out["salient"], out["reg"], out["jem"]

See README.md for the equations, the setting and the deviations from the official code.
"""

from methods.sepclr.data import ContrastiveSet, GroupBatches, cifar_mnist_from_arrays, fashion_digits, sklearn_digits
from methods.sepclr.experiments import PRESETS, build_model, probe_analysis
from methods.sepclr.loss import (
    SepCLRLoss,
    background_regulariser,
    common_loss,
    joint_entropy_loss,
    kernel_align,
    kernel_joint_entropy,
    kernel_uniformity,
    null_background,
    salient_loss,
    sepclr_terms,
)
from methods.sepclr.model import GroupSimCLR, SepCLR, SplitSimCLR
from shared.registry import PaperCard, Reported

PAPER = PaperCard(
    number=27,
    short_name="SepCLR",
    title="Separating common from salient patterns with Contrastive Representation Learning",
    package="sepclr",
    family="contrastive analysis (common vs salient)",
    tier="A",
    arxiv="2402.11928 (verify)",
    official_code="neurospin-projects/2024_rlouiset_sep_clr",
    bibtex="""@inproceedings{louiset2024separating,
  title     = {Separating common from salient patterns with Contrastive Representation Learning},
  author    = {Louiset, Robin and Duchesnay, Edouard and Grigis, Antoine and Gori, Pietro},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2024}
}""",
    reported=(
        Reported(
            "linear-probe accuracy of common / salient spaces on CIFAR-10-MNIST, CelebA accessories, "
            "CheXpert, ODIR, dSprites-digit",
            "see the paper's tables (not transcribed; verify)",
            "two ResNet-18s, d=32, batch 512, 250 epochs",
            "paper (the abstract and the official README give no number)",
        ),
    ),
)

__all__ = [
    "PAPER",
    "PRESETS",
    "ContrastiveSet",
    "GroupBatches",
    "GroupSimCLR",
    "SepCLR",
    "SepCLRLoss",
    "SplitSimCLR",
    "background_regulariser",
    "build_model",
    "cifar_mnist_from_arrays",
    "common_loss",
    "fashion_digits",
    "joint_entropy_loss",
    "kernel_align",
    "kernel_joint_entropy",
    "kernel_uniformity",
    "null_background",
    "probe_analysis",
    "salient_loss",
    "sepclr_terms",
    "sklearn_digits",
]
