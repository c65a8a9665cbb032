"""AdaInf: adaptive data inflation for contrastive learning (Wang et al., ICLR 2024).

    >>> from methods.adainf import InflatedData, InflatedBatches, SYMMETRIC_ADAINF
    >>> data = InflatedData(real, generated, copies=10)      # D = [R] × 10 + [G]
    >>> data.real_image_probability()                        # 10 / (10·|R| + |G|)

See README.md for the equations, the setting and the deviations from the official code.
"""

from methods.adainf.augment import (
    ASYMMETRIC,
    ASYMMETRIC_ADAINF,
    STRENGTHS,
    SYMMETRIC,
    SYMMETRIC_ADAINF,
    ViewAugmentation,
    strength,
)
from methods.adainf.experiments import INFLATIONS, PRESETS, build_model, inflation_copies
from methods.adainf.generator import (
    GENERATED_LABEL,
    GeneratorConfig,
    PCAGMMGenerator,
    cache_dir,
    generated_set,
    load_generated_npz,
)
from methods.adainf.inflation import InflatedBatches, InflatedData
from shared.registry import PaperCard, Reported

PAPER = PaperCard(
    number=37,
    short_name="AdaInf",
    title="Do Generated Data Always Help Contrastive Learning?",
    package="adainf",
    family="instance SSL, data-centric (generated data)",
    tier="A",
    arxiv="2403.12448 (verify)",
    official_code="PKU-ML/adainf (solo-learn based)",
    bibtex="""@inproceedings{wang2024adainf,
  title     = {Do Generated Data Always Help Contrastive Learning?},
  author    = {Wang, Yifei and Zhang, Jizhe and Wang, Yisen},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2024}
}""",
    reported=(
        Reported(
            "CIFAR-10 linear top-1, SimCLR + AdaInf, no external data",
            94.70,
            "diffusion model trained on CIFAR-10 itself; budget not stated in the README (verify in the paper)",
            "abstract",
        ),
        Reported(
            "CIFAR-10 linear top-1, SimCLR, no / vanilla / AdaInf",
            "91.56 / 91.38 / 93.42",
            "ResNet-18, 100k steps, 1M STF images",
            "official README",
        ),
        Reported(
            "CIFAR-10 linear top-1, MoCo v2, no / vanilla / AdaInf", "92.75 / 92.51 / 94.19", "same", "official README"
        ),
        Reported(
            "CIFAR-10 linear top-1, BYOL, no / vanilla / AdaInf", "92.46 / 92.90 / 92.87", "same", "official README"
        ),
        Reported(
            "CIFAR-10 linear top-1, Barlow Twins, no / vanilla / AdaInf",
            "91.24 / 92.09 / 93.64",
            "same",
            "official README",
        ),
        Reported("generator FID, STF CIFAR-10 1M", 1.94, "generated set used for inflation", "official README_gen"),
    ),
)

__all__ = [
    "ASYMMETRIC",
    "ASYMMETRIC_ADAINF",
    "GENERATED_LABEL",
    "INFLATIONS",
    "PAPER",
    "PRESETS",
    "STRENGTHS",
    "SYMMETRIC",
    "SYMMETRIC_ADAINF",
    "GeneratorConfig",
    "InflatedBatches",
    "InflatedData",
    "PCAGMMGenerator",
    "ViewAugmentation",
    "build_model",
    "cache_dir",
    "generated_set",
    "inflation_copies",
    "load_generated_npz",
    "strength",
]
