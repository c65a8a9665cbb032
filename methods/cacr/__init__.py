"""CACR: Contrastive Attraction and Contrastive Repulsion (Zheng et al., TMLR 2023).

    >>> from methods.cacr import CACRLoss
    >>> out = CACRLoss(tau_neg=0.9)(views)  # views: (V, N, d), V >= 2 views of N images
    >>> out["loss"], out["ca"], out["cr"]

See README.md for the equations, the setting and the deviations from the official code.
"""

from methods.cacr.baselines import MultiViewAlignUniform, MultiViewInfoNCE
from methods.cacr.encoder import SmallAlexNet
from methods.cacr.experiments import PRESETS, build_model, make_loss
from methods.cacr.loss import CACRLoss, cacr_loss, contrastive_attraction, contrastive_repulsion
from methods.cacr.moco_v3 import cacr_moco_v3_loss, cacr_rbf_loss
from methods.cacr.model import MultiViewContrastive
from shared.registry import PaperCard, Reported

PAPER = PaperCard(
    number=13,
    short_name="CACR",
    title="Contrastive Attraction and Contrastive Repulsion for Representation Learning",
    package="cacr",
    family="instance SSL (loss)",
    tier="A",
    arxiv="2105.03746",
    official_code="JegZheng/CACR-SSL",
    bibtex="""@article{zheng2023contrastive,
  title   = {Contrastive Attraction and Contrastive Repulsion for Representation Learning},
  author  = {Zheng, Huangjie and Chen, Xu and Yao, Jiangchao and Yang, Hongxia and Li, Chunyuan and
             Zhang, Ya and Zhang, Hao and Tsang, Ivor and Zhou, Jingren and Zhou, Mingyuan},
  journal = {Transactions on Machine Learning Research},
  year    = {2023}
}""",
    reported=(
        Reported(
            "ImageNet-1k linear top-1, ResNet-50",
            74.7,
            "MoCo v3 framework, RBF cost, 1000 epochs, batch 4096",
            "official README",
        ),
        Reported(
            "ImageNet-1k linear top-1, ViT-Base",
            77.1,
            "MoCo v3 framework, RBF cost, 300 epochs, batch 4096",
            "official README",
        ),
        Reported(
            "CIFAR-10/100, STL-10 (balanced and imbalanced) linear top-1",
            "see paper (verify)",
            "SmallAlexNet, Ny=4, batch 128, 200 epochs",
            "paper small-scale tables (not checked here)",
        ),
    ),
)

__all__ = [
    "PAPER",
    "PRESETS",
    "CACRLoss",
    "MultiViewAlignUniform",
    "MultiViewContrastive",
    "MultiViewInfoNCE",
    "SmallAlexNet",
    "build_model",
    "cacr_loss",
    "cacr_moco_v3_loss",
    "cacr_rbf_loss",
    "contrastive_attraction",
    "contrastive_repulsion",
    "make_loss",
]
