"""DebCSE: unsupervised contrastive sentence embeddings in the debiasing perspective (Miao et al., CIKM 2023).

No official code exists; this package is a **reconstruction** from the abstract (README lists
every assumption).

    >>> from methods.debcse import IPWConfig, build_pair_table, DebCSELoss
    >>> table = build_pair_table(sentences, teacher_embeddings, IPWConfig())
    >>> positives, negatives = table.sample(anchor_index, generator)
"""

from methods.debcse.experiments import PRESETS, build_model
from methods.debcse.model import DebCSE, DebCSELoss, DebCSELossPair, IPWPairBatches
from methods.debcse.sampler import IPWConfig, PairTable, build_pair_table, ipw_weights, propensity
from shared.registry import PaperCard, Reported

PAPER = PaperCard(
    number=38,
    short_name="DebCSE",
    title="DebCSE: Rethinking Unsupervised Contrastive Sentence Embedding Learning in the Debiasing Perspective",
    package="debcse",
    family="sentence embeddings",
    tier="B",
    arxiv="2309.07396 (verify)",
    official_code="none (reconstruction from the abstract)",
    bibtex="""@inproceedings{miao2023debcse,
  title     = {DebCSE: Rethinking Unsupervised Contrastive Sentence Embedding Learning in the Debiasing Perspective},
  author    = {Miao, Pu and Du, Zeyao and Zhang, Junlin},
  booktitle = {Proceedings of the 32nd ACM International Conference on Information and Knowledge Management (CIKM)},
  year      = {2023}
}""",
    reported=(
        Reported("7-task STS average Spearman, DebCSE", 80.33, "BERT-base, unsupervised", "abstract"),
        Reported("7-task STS average Spearman, unsup. SimCSE", 76.25, "BERT-base", "SimCSE paper (context)"),
    ),
)

__all__ = [
    "PAPER",
    "PRESETS",
    "DebCSE",
    "DebCSELoss",
    "DebCSELossPair",
    "IPWConfig",
    "IPWPairBatches",
    "PairTable",
    "build_model",
    "build_pair_table",
    "ipw_weights",
    "propensity",
]
