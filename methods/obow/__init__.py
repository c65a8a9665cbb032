"""OBoW: Online Bag-of-Visual-Words Generation for Self-Supervised Learning (Gidaris et al., CVPR 2021).

    >>> from methods.obow import OBoW, BoWExtractor, BoWPredictor, obow_loss
    >>> model = OBoW(backbone, levels=(-2, -1), num_words=8192, inv_delta=15, kappa=8, total_steps=T)
    >>> loss = model({"images": uint8_batch})["loss"]; ...; model.after_step(step)

See README.md for the equations, the setting and the deviations from the official code.
"""

from methods.obow.augment import HubOBoW, ImagePatches, cut_patches, obow_transform, teacher_view
from methods.obow.bow import (
    BoWExtractor,
    bow_from_codes,
    perplexity,
    soft_codes,
    squared_distances,
    vocabulary_candidates,
)
from methods.obow.experiments import PRESETS, build_model
from methods.obow.loss import bow_kl, obow_loss
from methods.obow.model import OBoW, cosine_momentum, level_dims, level_maps
from methods.obow.predictor import BoWPredictor, weight_generator
from shared.registry import PaperCard, Reported

PAPER = PaperCard(
    number=24,
    short_name="OBoW",
    title="OBoW: Online Bag-of-Visual-Words Generation for Self-Supervised Learning",
    package="obow",
    family="instance SSL (BoW reconstruction, teacher–student)",
    tier="A",
    arxiv="2012.11552",
    official_code="valeoai/obow",
    bibtex="""@inproceedings{gidaris2021obow,
  title     = {{OBoW}: Online Bag-of-Visual-Words Generation for Self-Supervised Learning},
  author    = {Gidaris, Spyros and Bursuc, Andrei and Puy, Gilles and Komodakis, Nikos and Cord, Matthieu and
               P{\\'e}rez, Patrick},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2021}
}""",
    reported=(
        Reported("ImageNet-1k linear top-1", 73.8, "ResNet-50, 200 epochs, batch 256 (full OBoW)", "official README"),
        Reported(
            "VOC07 / Places205 / VOC detection",
            "better than prior self-supervised methods and than supervised pre-training (values: paper tables, verify)",
            "ResNet-50, 200 epochs",
            "abstract",
        ),
    ),
)

__all__ = [
    "PAPER",
    "PRESETS",
    "BoWExtractor",
    "BoWPredictor",
    "HubOBoW",
    "ImagePatches",
    "OBoW",
    "bow_from_codes",
    "bow_kl",
    "build_model",
    "cosine_momentum",
    "cut_patches",
    "level_dims",
    "level_maps",
    "obow_loss",
    "obow_transform",
    "perplexity",
    "soft_codes",
    "squared_distances",
    "teacher_view",
    "vocabulary_candidates",
    "weight_generator",
]
