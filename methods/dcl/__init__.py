"""DCL / DCLW: Decoupled Contrastive Learning (Yeh et al., ECCV 2022).

    >>> from methods.dcl import DCLLoss, DCLWLoss
    >>> loss = DCLLoss(temperature=0.1)(z1, z2)

See README.md for the equations, the setting and the deviations from the reference code.
"""

from methods.dcl.experiments import PRESETS, build_model, make_loss
from methods.dcl.loss import DCLLoss, DCLWLoss, dcl_loss, von_mises_weight
from shared.registry import PaperCard, Reported

PAPER = PaperCard(
    number=11,
    short_name="DCL / DCLW",
    title="Decoupled Contrastive Learning",
    package="dcl",
    family="instance SSL (loss)",
    tier="A",
    arxiv="2110.06848",
    official_code="none official; reference re-implementations: raminnakhli/Decoupled-Contrastive-Learning, "
    "lightly DCLLoss/DCLWLoss",
    bibtex="""@inproceedings{yeh2022decoupled,
  title     = {Decoupled Contrastive Learning},
  author    = {Yeh, Chun-Hsiao and Hong, Cheng-Yao and Hsu, Yen-Chi and Liu, Tyng-Luh and Chen, Yubei and LeCun, Yann},
  booktitle = {European Conference on Computer Vision (ECCV)},
  year      = {2022}
}""",
    reported=(
        Reported("ImageNet-1k linear top-1, SimCLR+DCL", 68.2, "ResNet-50, batch 256, 200 epochs", "abstract"),
        Reported(
            "ImageNet-1k linear top-1 gain over SimCLR", "+6.4", "same setting (SimCLR 61.8, derived)", "abstract"
        ),
        Reported("ImageNet-1k linear top-1, NNCLR+DCL", 72.3, "ResNet-50, batch 512, 400 epochs", "abstract"),
        Reported(
            "CIFAR-10 kNN top-1, InfoNCE → DCL",
            "78.3 → 84.6",
            "ResNet-18, batch 32, 100 epochs",
            "raminnakhli README (third-party)",
        ),
    ),
)

__all__ = ["PAPER", "PRESETS", "DCLLoss", "DCLWLoss", "build_model", "dcl_loss", "make_loss", "von_mises_weight"]
