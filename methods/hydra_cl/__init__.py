"""Hydra / SimLAP: contrastive learning from arbitrary class pairs with a gated feature filter.

**Supervised:** the disparate loss pairs every sample with the *label* of another one, so it needs class
labels (``batch["labels"]``); only its MoCo v3 instance term is self-supervised.

    >>> from methods.hydra_cl import BasicGate, DisparateLoss
    >>> loss_fn = DisparateLoss(BasicGate(embed_dim=128, num_classes=10, in_dim=64, mlp_dim=128))
    >>> loss = loss_fn(q, k, y1, y2)        # queries, keys (B, d); labels of the queries/keys, paired labels

See README.md for the equations, the setting and the deviations from the official code.
"""

from methods.hydra_cl.experiments import PRESETS, build_model
from methods.hydra_cl.gate import BasicGate, OpenGate, pair_gates, soft_jaccard
from methods.hydra_cl.loss import (
    DisparateLoss,
    disparate_loss,
    gated_logits,
    gated_logits_materialised,
    gated_vectors,
    instance_loss,
    multipos_ce,
)
from methods.hydra_cl.model import HydraMoCo, build_mlp
from shared.registry import PaperCard, Reported

PAPER = PaperCard(
    number=3,
    short_name="Hydra / SimLAP",
    title="Rethinking Positive Pairs in Contrastive Learning",
    package="hydra_cl",
    family="instance SSL + supervised (class-pair) CL — needs class labels",
    tier="A",
    arxiv="2410.18200",
    official_code="erow/hydra (moco/builder.py, moco/filter.py, main_moco.py, CONFIG.md); SimLAP single-file "
    "variant simlap.py in another erow repository",
    bibtex="""@article{wu2024rethinking,
  title   = {Rethinking Positive Pairs in Contrastive Learning},
  author  = {Wu, Jiantao and Mo, Shentong and Feng, Zhenhua and Atito, Sara and Kittler, Josef and Awais, Muhammad},
  journal = {arXiv preprint arXiv:2410.18200},
  year    = {2024}
}""",
    reported=(
        Reported(
            "ImageNet-1k fine-tune top-1, Hydra-MoCo ViT-B",
            84.02,
            "ViT-B, 200 epochs from MAE weights, batch 4096 (supervised pairs)",
            "official README",
        ),
        Reported(
            "CIFAR-10 pretrain accuracy, SimLAP ResNet-18",
            "90.86 (verify)",
            "ResNet-18, CIFAR-10; a command comment in the SimLAP README",
            "SimLAP README (comment)",
        ),
        Reported(
            "class pairs used on ImageNet-1k",
            "500,500",
            "all C(1000, 2) + 1000 pairs; claims superior performance, no dimensional collapse, class "
            "relationships discovered (no numbers)",
            "abstract",
        ),
    ),
)

__all__ = [
    "PAPER",
    "PRESETS",
    "BasicGate",
    "DisparateLoss",
    "HydraMoCo",
    "OpenGate",
    "build_mlp",
    "build_model",
    "disparate_loss",
    "gated_logits",
    "gated_logits_materialised",
    "gated_vectors",
    "instance_loss",
    "multipos_ce",
    "pair_gates",
    "soft_jaccard",
]
