"""CL-Behaviour: Understanding the Behaviour of Contrastive Loss (Wang & Liu, CVPR 2021).

    >>> from methods.clbehaviour import ContrastiveLoss, HardContrastiveLoss, relative_penalty
    >>> loss = HardContrastiveLoss(temperature=1.0, k=32)(z1, z2)
    >>> r = relative_penalty(s_neg, temperature=0.2)   # the Boltzmann penalty over negatives

See README.md for the equations, the setting and the choices made where the paper is silent.
"""

from methods.clbehaviour.experiments import PRESETS, build_model, make_loss
from methods.clbehaviour.hardness import (
    large_temperature_limit,
    penalty_entropy,
    relative_penalty,
    similarity_gradients,
    small_temperature_limit,
)
from methods.clbehaviour.loss import (
    ContrastiveLoss,
    HardContrastiveLoss,
    contrastive_loss,
    contrastive_loss_from_similarities,
    two_view_similarities,
)
from methods.clbehaviour.metrics import similarity_histograms, tolerance, uniformity_loss
from shared.registry import PaperCard, Reported

PAPER = PaperCard(
    number=33,
    short_name="CL-Behaviour",
    title="Understanding the Behaviour of Contrastive Loss",
    package="clbehaviour",
    family="analysis/theory (temperature, uniformity–tolerance)",
    tier="A",
    arxiv="2012.09740",
    official_code="none found",
    bibtex="""@inproceedings{wang2021understanding,
  title     = {Understanding the Behaviour of Contrastive Loss},
  author    = {Wang, Feng and Liu, Huaping},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages     = {2495--2504},
  year      = {2021}
}""",
    reported=(
        Reported(
            "τ → uniformity / tolerance",
            "smaller τ: more uniform, less tolerant",
            "CIFAR-10/100, SVHN (ResNet-18), ImageNet-100 (ResNet-50), memory bank, τ ∈ {0.07, 0.2, 0.3, 0.7, 1.0}",
            "abstract + §4 (qualitative)",
        ),
        Reported(
            "linear accuracy vs τ, ordinary and hard contrastive loss",
            "peaks at a moderate τ; hard loss better at large τ (values: paper tables, verify)",
            "same",
            "paper tables (not verifiable offline) †",
        ),
    ),
)

__all__ = [
    "PAPER",
    "PRESETS",
    "ContrastiveLoss",
    "HardContrastiveLoss",
    "build_model",
    "contrastive_loss",
    "contrastive_loss_from_similarities",
    "large_temperature_limit",
    "make_loss",
    "penalty_entropy",
    "relative_penalty",
    "similarity_gradients",
    "similarity_histograms",
    "small_temperature_limit",
    "tolerance",
    "two_view_similarities",
    "uniformity_loss",
]
