"""SogCLR / iSogCLR: global contrastive learning with per-sample moving averages, and learned per-sample τ.

    >>> from methods.isogclr import ISogCLRLoss, SogCLRLoss
    >>> loss = ISogCLRLoss(num_samples=len(train))(z1, z2, batch["index"])

See README.md for the equations, the setting and the deviations from the official code.
"""

from methods.isogclr.analysis import correlations, tau_frequency_analysis, tau_statistics
from methods.isogclr.experiments import PRESETS, build_model, make_loss
from methods.isogclr.loss import (
    ISogCLRLoss,
    SogCLRLoss,
    anchor_similarities,
    batch_log_g,
    moving_average,
    surrogate_terms,
    temperature_gradient,
)
from methods.isogclr.model import IndexedTwoViewContrastive
from shared.registry import PaperCard, Reported

PAPER = PaperCard(
    number=32,
    short_name="iSogCLR",
    title="Not All Semantics are Created Equal: Contrastive Self-supervised Learning with Automatic "
    "Temperature Individualization",
    package="isogclr",
    family="instance SSL / CLIP, individualised τ",
    tier="A",
    arxiv="2305.11965",
    official_code="zhqiu/contrastive-learning-iSogCLR (unimodal entry point imports a missing file); "
    "SogCLR: Optimization-AI/SogCLR; maintained re-implementation: libauc GCLoss_v1 (RGCL)",
    bibtex="""@inproceedings{qiu2023not,
  title     = {Not All Semantics are Created Equal: Contrastive Self-supervised Learning with Automatic
               Temperature Individualization},
  author    = {Qiu, Zi-Hao and Hu, Quanqi and Yuan, Zhuoning and Zhou, Denny and Zhang, Lijun and Yang, Tianbao},
  booktitle = {International Conference on Machine Learning (ICML)},
  year      = {2023}
}""",
    reported=(
        Reported(
            "iSogCLR vs SimCLR and CLIP baselines",
            "outperforms; larger gains on imbalanced data",
            "unimodal (CIFAR-10/100, ImageNet-100, iNaturalist, long-tailed variants) and bimodal (CC3M)",
            "abstract (no numbers in abstract/README; paper tables not transcribed)",
        ),
        Reported(
            "learned τ_i vs frequency of the semantics",
            "frequent → large τ, rare → small τ",
            "analysis in the paper",
            "abstract / spec",
        ),
    ),
)

__all__ = [
    "PAPER",
    "PRESETS",
    "ISogCLRLoss",
    "IndexedTwoViewContrastive",
    "SogCLRLoss",
    "anchor_similarities",
    "batch_log_g",
    "build_model",
    "correlations",
    "make_loss",
    "moving_average",
    "surrogate_terms",
    "tau_frequency_analysis",
    "tau_statistics",
    "temperature_gradient",
]
