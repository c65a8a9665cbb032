"""ProjHead: Investigating the Benefits of Projection Head for Representation Learning (Xue et al., ICLR 2024).

    >>> from methods.projhead import ReweightHead, extract_layers, ridge_probe, effective_rank
    >>> head = ReweightHead(256, kappa=1.05)  # fixed z_i = h_i · κ^{-i}, no trainable parameter

See README.md for the equations, the setting and the deviations from the coauthor code.
"""

from methods.projhead.experiments import PRESETS, build_model, grey_shapes, layer_table
from methods.projhead.heads import ReweightHead, build_head, reweight_weights
from methods.projhead.layers import backbone_stages, extract_layers, image_batches, layer_names
from methods.projhead.probes import effective_rank, ridge_probe
from methods.projhead.theory import (
    DiagonalReLUNet,
    SignMagnitudeFeatures,
    SpectralContrastiveLoss,
    SyntheticFeatures,
    TwoLayerLinear,
    feature_weights,
    population_spectral_loss,
    spectral_contrastive_loss,
    train_diagonal_relu,
    train_two_layer,
)
from shared.registry import PaperCard, Reported

PAPER = PaperCard(
    number=29,
    short_name="ProjHead",
    title="Investigating the Benefits of Projection Head for Representation Learning",
    package="projhead",
    family="analysis/theory",
    tier="A",
    arxiv="2403.11391",
    official_code="none official; coauthor experiments repo jiayini1119/projection-head-experiments "
    "(ReweightProjectionHead)",
    bibtex="""@inproceedings{xue2024investigating,
  title     = {Investigating the Benefits of Projection Head for Representation Learning},
  author    = {Xue, Yihao and Gan, Eric and Ni, Jiayi and Joshi, Siddharth and Mirzasoleiman, Baharan},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2024}
}""",
    reported=(
        Reported(
            "pre- vs post-projection linear probe",
            "pre > post (figures, per layer; values not transcribed)",
            "SimCLR ResNet-18 CIFAR-100; SCL/SL on Waterbirds, CelebA, UrbanCars, ImageNet-9 backgrounds",
            "paper figures (verify)",
        ),
        Reported(
            "fixed re-weighting head κ",
            1.05,
            "w_i = κ^{-i}, non-trainable; SCL on Waterbirds/CelebA, DFR evaluation",
            "coauthor code default",
        ),
        Reported(
            "Waterbirds SL worst-group, no projection vs pre-projection",
            "nearly equal",
            "supervised learning, DFR",
            "OpenReview reviewer (†)",
        ),
    ),
)

__all__ = [
    "PAPER",
    "PRESETS",
    "DiagonalReLUNet",
    "ReweightHead",
    "SignMagnitudeFeatures",
    "SpectralContrastiveLoss",
    "SyntheticFeatures",
    "TwoLayerLinear",
    "backbone_stages",
    "build_head",
    "build_model",
    "effective_rank",
    "extract_layers",
    "feature_weights",
    "grey_shapes",
    "image_batches",
    "layer_names",
    "layer_table",
    "population_spectral_loss",
    "reweight_weights",
    "ridge_probe",
    "spectral_contrastive_loss",
    "train_diagonal_relu",
    "train_two_layer",
]
