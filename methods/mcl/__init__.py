"""MCL: Multistage Contrastive Learning against feature suppression (Zhang et al., ECCV 2024), unimodal case.

    >>> from methods.mcl import ClusterBatchSampler, combine_pseudo_labels, IntegratedEncoder
    >>> y = combine_pseudo_labels([c0, c1], num_clusters=8)        # stage-2 pseudo-labels
    >>> batches = ClusterBatchSampler(y, batch_size=256).epoch_batches(epoch=0, seed=0)
    >>> h = IntegratedEncoder([f0, f1, f2])(x)                      # concatenated stage features

See README.md for the equations, the setting and the deviations from the official code.
"""

from methods.mcl.clustering import combine_pseudo_labels, kmeans_labels, official_pseudo_labels
from methods.mcl.data import ColourPreservingAugment, TwoFeatureSet, coloured_fashion_mnist, tint
from methods.mcl.experiments import PRESETS, build_stage_model, probe_all
from methods.mcl.loss import ClusterInfoNCELoss, cluster_info_nce
from methods.mcl.model import IntegratedEncoder, StageSimCLR
from methods.mcl.sampler import ClusterBatches, ClusterBatchSampler, LoaderClusterBatches
from methods.mcl.stages import StagePlan, train_stages
from shared.registry import PaperCard, Reported

PAPER = PaperCard(
    number=17,
    short_name="MCL",
    title="Learning the Unlearned: Mitigating Feature Suppression in Contrastive Learning",
    package="mcl",
    family="instance SSL + VL (multistage)",
    tier="A (unimodal) / C (CLIP)",
    arxiv="2402.11816",
    official_code="MajorDavidZhang/MCL (cluster.py, my_training/data.py MCL_batch_sampler_DDP)",
    bibtex="""@inproceedings{zhang2024learning,
  title     = {Learning the Unlearned: Mitigating Feature Suppression in Contrastive Learning},
  author    = {Zhang, Jihai and Lan, Xiang and Qu, Xiaoye and Cheng, Yu and Feng, Mengling and Hooi, Bryan},
  booktitle = {European Conference on Computer Vision (ECCV)},
  year      = {2024}
}""",
    reported=(
        Reported(
            "MMVP attribute gain over original CLIP",
            "up to 3x",
            "CLIP ViT-L/14 fine-tuned with MCL on CC12M",
            "abstract",
        ),
        Reported(
            "MMVP-VLM average, CLIP ViT → MCL",
            "20.0 → 32.6 (verify)",
            "ViT-L/14, CC12M, MCL stages",
            "paper Table (verify; quoted from a third-party summary)",
        ),
        Reported(
            "MMVP-VLM average, CLIP ResNet → MCL",
            "19.3 → 24.4 (verify)",
            "RN50, CC12M, MCL stages",
            "paper Table (verify; quoted from a third-party summary)",
        ),
    ),
)

__all__ = [
    "PAPER",
    "PRESETS",
    "ClusterBatchSampler",
    "ClusterBatches",
    "ClusterInfoNCELoss",
    "ColourPreservingAugment",
    "IntegratedEncoder",
    "LoaderClusterBatches",
    "StagePlan",
    "StageSimCLR",
    "TwoFeatureSet",
    "build_stage_model",
    "cluster_info_nce",
    "coloured_fashion_mnist",
    "combine_pseudo_labels",
    "kmeans_labels",
    "official_pseudo_labels",
    "probe_all",
    "tint",
    "train_stages",
]
