"""Hallucinator: extra positives generated in feature space (Wu, Hobbs, Hovakimyan, ICCV 2023).

    >>> from methods.hallucinator import Hallucinator, HallucinatedInfoNCE, HallucinatedMoCo
    >>> q_h = Hallucinator(128)(q, k)                                   # q' = MLP([q ; (1+λ)q − λk])
    >>> simclr_loss = HallucinatedInfoNCE(dim=128, temperature=0.2)     # TwoViewContrastive's loss
    >>> moco = HallucinatedMoCo(backbone, head, queue_size=4096)        # MoCo v2 + Hallucinator

See README.md for the equations, the setting and the deviations from the official code.
"""

from methods.hallucinator.experiments import PRESETS, build_model, check_queue
from methods.hallucinator.generator import Hallucinator, check_lambda_range, duplicate_pairs, extrapolate
from methods.hallucinator.models import HallucinatedInfoNCE, HallucinatedMoCo, hallucinated_info_nce, same_image_mask
from shared.registry import PaperCard, Reported

PAPER = PaperCard(
    number=22,
    short_name="Hallucinator",
    title="Hallucination Improves the Performance of Unsupervised Visual Representation Learning",
    package="hallucinator",
    family="instance SSL (feature-space positives)",
    tier="A",
    arxiv="2307.12168",
    official_code="jingwu6/Hallucination-improves-the-performance-of-unsupervised-visual-representation-learning",
    bibtex="""@inproceedings{wu2023hallucination,
  title     = {Hallucination Improves the Performance of Unsupervised Visual Representation Learning},
  author    = {Wu, Jing and Hobbs, Jennifer and Hovakimyan, Naira},
  booktitle = {IEEE/CVF International Conference on Computer Vision (ICCV)},
  year      = {2023}
}""",
    reported=(
        Reported(
            "linear top-1 gain from adding the Hallucinator",
            "+0.3 to +3.0",
            "MoCo v1/v2, SimCLR, SimSiam on CIFAR-10/100, Tiny ImageNet, STL-10, ImageNet",
            "abstract (the official README has no table)",
        ),
    ),
)

__all__ = [
    "PAPER",
    "PRESETS",
    "HallucinatedInfoNCE",
    "HallucinatedMoCo",
    "Hallucinator",
    "build_model",
    "check_lambda_range",
    "check_queue",
    "duplicate_pairs",
    "extrapolate",
    "hallucinated_info_nce",
    "same_image_mask",
]
