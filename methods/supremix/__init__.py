"""SupReMix: supervised contrastive regression with mixup hard pairs (Wu et al., 2023).

    >>> from methods.supremix import SupReMixLoss
    >>> loss = SupReMixLoss(temperature=0.3, window=5)(z1, z2, labels)

See README.md for the equations, the setting and the deviations from the official code.
"""

from methods.supremix.experiments import PRESETS, build_model, make_loss
from methods.supremix.loss import (
    SupConRegressionLoss,
    SupReMixConfig,
    SupReMixLoss,
    label_weight,
    negative_mixture_mask,
    positive_mixtures,
    supremix_loss,
)
from shared.registry import PaperCard, Reported

PAPER = PaperCard(
    number=10,
    short_name="SupReMix",
    title="Mixup Your Own Pairs (SupReMix: supervised contrastive regression with mixup hard pairs)",
    package="supremix",
    family="supervised CL for regression",
    tier="A",
    arxiv="2309.16633",
    official_code="yilei-wu/SupReMix (README only, 'code coming soon'); a matching loss (supremix_loss.SupConLoss_v2) "
    "and IMDB-WIKI trainer exist in public code, repository unconfirmed",
    bibtex="""@article{wu2023mixup,
  title   = {Mixup Your Own Pairs},
  author  = {Wu, Yilei and Dong, Zijian and Chen, Chongyao and Zhou, Wangchunshu and Zhou, Juan Helen},
  journal = {arXiv preprint arXiv:2309.16633},
  year    = {2023}
}""",
    reported=(
        Reported(
            "MAE tables (IMDB-WIKI, AgeDB-DIR, STS-B-DIR, UCI-airfoil, UK Biobank, HCP-Aging)",
            "not filled (verify)",
            "six data sets; the abstract gives no numbers",
            "spec 10-supremix.md: fill from the paper (verify)",
        ),
    ),
)

__all__ = [
    "PAPER",
    "PRESETS",
    "SupConRegressionLoss",
    "SupReMixConfig",
    "SupReMixLoss",
    "build_model",
    "label_weight",
    "make_loss",
    "negative_mixture_mask",
    "positive_mixtures",
    "supremix_loss",
]
