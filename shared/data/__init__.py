"""Embedded data sets with two roads each: a local copy (offline) and the Hugging Face hub."""

from shared.data.arrays import ImageArrays, subset_per_class
from shared.data.errors import DataUnavailableError
from shared.data.fashion_mnist import load_fashion_mnist
from shared.data.shapes import SHAPE_COLOURS, SHAPE_KINDS, make_shapes

__all__ = [
    "SHAPE_COLOURS",
    "SHAPE_KINDS",
    "DataUnavailableError",
    "ImageArrays",
    "load_fashion_mnist",
    "make_shapes",
    "subset_per_class",
]
