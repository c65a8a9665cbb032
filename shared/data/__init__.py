"""Embedded data sets with two roads each: a local copy (offline) and the Hugging Face hub."""

from shared.data.arrays import ImageArrays, subset_per_class
from shared.data.errors import DataUnavailableError
from shared.data.fashion_mnist import load_fashion_mnist
from shared.data.scenes import (
    SCENE_COLOURS,
    SCENE_SHAPES,
    ClassificationView,
    SceneConfig,
    SceneShift,
    make_clips,
    make_scene_classification,
    make_scenes,
    scenes_dataset,
)
from shared.data.shapes import SHAPE_COLOURS, SHAPE_KINDS, make_shapes

__all__ = [
    "SCENE_COLOURS",
    "SCENE_SHAPES",
    "SHAPE_COLOURS",
    "SHAPE_KINDS",
    "ClassificationView",
    "DataUnavailableError",
    "ImageArrays",
    "SceneConfig",
    "SceneShift",
    "load_fashion_mnist",
    "make_clips",
    "make_scene_classification",
    "make_scenes",
    "make_shapes",
    "scenes_dataset",
    "subset_per_class",
]
