"""BECLR: Batch Enhanced Contrastive Few-Shot Learning (Poulakakis-Daktylidis & Jamali-Rad, ICLR 2024).

    >>> from methods.beclr import BECLR, BECLRLoss, DyCE, DyCEConfig, OpTA, opta_for_shots
    >>> loss = BECLRLoss(lamb_neg=0.1, temperature=2.0)(z_teacher, p, z_student)["loss"]

See README.md for the equations, the setting and the deviations from the official code.
"""

from methods.beclr.dyce import DyCE, DyCEConfig, memory_size, official_sinkhorn_codes, sinkhorn_codes
from methods.beclr.experiments import PRESETS, build_model
from methods.beclr.loss import BECLRLoss, beclr_loss, negative_term, positive_term
from methods.beclr.model import BECLR
from methods.beclr.opta import OpTA, opta_for_shots, sinkhorn_plan, transport_prototypes
from shared.registry import PaperCard, Reported

PAPER = PaperCard(
    number=28,
    short_name="BECLR",
    title="BECLR: Batch Enhanced Contrastive Few-Shot Learning",
    package="beclr",
    family="unsupervised few-shot learning",
    tier="A",
    arxiv="2402.09036",
    official_code="stypoumic/BECLR",
    bibtex="""@inproceedings{poulakakis-daktylidis2024beclr,
  title     = {{BECLR}: Batch Enhanced Contrastive Few-Shot Learning},
  author    = {Poulakakis-Daktylidis, Stylianos and Jamali-Rad, Hadi},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2024},
  url       = {https://openreview.net/forum?id=k9SVcrmXL8}
}""",
    reported=(
        Reported(
            "mini-ImageNet 5-way 1-shot accuracy (%)",
            80.57,
            "backbone not stated on Papers-with-Code, presumably ResNet-50 (verify)",
            "Papers-with-Code entry (paper results)",
        ),
        Reported(
            "mini-ImageNet 5-way 5-shot accuracy (%)",
            87.82,
            "same (verify)",
            "Papers-with-Code entry (paper results)",
        ),
        Reported(
            "gain over the best U-FSL baseline, 5-way 1-shot",
            "up to +14 % (mini-ImageNet), +12 % (tiered-ImageNet)",
            "paper-scale benchmarks",
            "abstract / official README",
        ),
    ),
)

__all__ = [
    "BECLR",
    "PAPER",
    "PRESETS",
    "BECLRLoss",
    "DyCE",
    "DyCEConfig",
    "OpTA",
    "beclr_loss",
    "build_model",
    "memory_size",
    "negative_term",
    "official_sinkhorn_codes",
    "opta_for_shots",
    "positive_term",
    "sinkhorn_codes",
    "sinkhorn_plan",
    "transport_prototypes",
]
