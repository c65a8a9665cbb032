"""MoCHi: Hard Negative Mixing for Contrastive Learning (Kalantidis et al., NeurIPS 2020).

    >>> from methods.mochi import MoCHi, mochi_loss
    >>> model = MoCHi(backbone, head, n_hard=1024, s=512, s_prime=256, queue_size=65536)

See README.md for the equations, the setting and the deviations (no official code exists).
"""

from methods.mochi.experiments import PRESETS, build_model, mixing_options
from methods.mochi.loss import mochi_logits, mochi_loss
from methods.mochi.mixing import (
    MixingDraws,
    hardest_negatives,
    mix_hard_pairs,
    mix_with_query,
    sample_draws,
    synthetic_negatives,
    synthetic_similarities,
    top_n,
)
from methods.mochi.model import MoCHi
from shared.registry import PaperCard, Reported

PAPER = PaperCard(
    number=8,
    short_name="MoCHi",
    title="Hard Negative Mixing for Contrastive Learning",
    package="mochi",
    family="instance SSL (hard negatives)",
    tier="A",
    arxiv="2010.01028",
    official_code="none official (NAVER LABS Europe project page only); unofficial: davidsvy/hard-negative-mixing",
    bibtex="""@inproceedings{kalantidis2020hard,
  title     = {Hard Negative Mixing for Contrastive Learning},
  author    = {Kalantidis, Yannis and Sariyildiz, Mert Bulent and Pion, No{\\'e} and
               Weinzaepfel, Philippe and Larlus, Diane},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year      = {2020}
}""",
    reported=(
        Reported(
            "linear top-1 / detection gain over MoCo v2",
            "+0.5 to +1 pt (verify)",
            "ImageNet-100 / ImageNet-1k, ResNet-50, 200 epochs; VOC / COCO detection",
            "paper Tables 1-3 (values to be filled from the paper; not in any README)",
        ),
        Reported(
            "MoCHi configuration on ImageNet-1k",
            "MoCHi(1024, 512, 256) (verify)",
            "ResNet-50, 200 epochs, MoCo v2 recipe",
            "paper (spec)",
        ),
    ),
)

__all__ = [
    "PAPER",
    "PRESETS",
    "MixingDraws",
    "MoCHi",
    "build_model",
    "hardest_negatives",
    "mix_hard_pairs",
    "mix_with_query",
    "mixing_options",
    "mochi_logits",
    "mochi_loss",
    "sample_draws",
    "synthetic_negatives",
    "synthetic_similarities",
    "top_n",
]
