"""WhitenedCSE: Whitening-based Contrastive Learning of Sentence Embeddings (Zhuo et al., ACL 2023).

    >>> from methods.whitenedcse import ShuffledGroupWhitening, group_whiten, multi_positive_loss
    >>> x_hat = group_whiten(x, groups=64, perm=torch.randperm(384))   # per-group identity covariance

See README.md for the equations, the setting and the deviations from the released code.
"""

from methods.whitenedcse.experiments import PRESETS, build_model
from methods.whitenedcse.model import MultiPositiveLoss, WhitenedCSE, multi_positive_loss
from methods.whitenedcse.whitening import ShuffledGroupWhitening, group_whiten
from shared.registry import PaperCard, Reported

PAPER = PaperCard(
    number=20,
    short_name="WhitenedCSE",
    title="WhitenedCSE: Whitening-based Contrastive Learning of Sentence Embeddings",
    package="whitenedcse",
    family="sentence embeddings",
    tier="B",
    arxiv="2305.17746 (verify)",
    official_code="SupstarZh/WhitenedCSE (released code does not run as-is; see README)",
    bibtex="""@inproceedings{zhuo2023whitenedcse,
  title     = {WhitenedCSE: Whitening-based Contrastive Learning of Sentence Embeddings},
  author    = {Zhuo, Wenjie and Sun, Yifan and Wang, Xiaohan and Zhu, Linchao and Yang, Yi},
  booktitle = {Proceedings of the 61st Annual Meeting of the Association for Computational Linguistics (ACL)},
  year      = {2023}
}""",
    reported=(
        Reported("7-task STS average Spearman, WhitenedCSE", 78.78, "BERT-base, unsupervised, wiki1m", "abstract"),
        Reported("gain over the contrastive baseline (SimCSE)", "+2.53", "BERT-base", "abstract"),
        Reported(
            "STS12/13/14/15/16/STS-B/SICK-R",
            "74.03/84.90/76.40/83.40/80.23/81.14/71.33",
            "BERT-base",
            "official README",
        ),
        Reported("7-task STS average Spearman, WhitenedCSE", 79.97, "BERT-large", "official README"),
    ),
)

__all__ = [
    "PAPER",
    "PRESETS",
    "MultiPositiveLoss",
    "ShuffledGroupWhitening",
    "WhitenedCSE",
    "build_model",
    "group_whiten",
    "multi_positive_loss",
]
