"""Procedural RGB "shapes": a deterministic, generated stand-in for natural-image data.

Each image shows one shape (circle, square, triangle, ring) of one colour (red, green,
blue) at a random position, size and rotation, over a noisy textured background; the
class is ``shape × colour`` (12 classes). The same ``seed`` always gives the same images,
and per-pixel masks come with them for dense tasks. Generation is vectorised: 12k images
of 32×32 take about three seconds on two cores.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from shared.data.arrays import ImageArrays

SHAPE_KINDS = ("circle", "square", "triangle", "ring")
SHAPE_COLOURS = {"red": (0.85, 0.15, 0.15), "green": (0.15, 0.75, 0.2), "blue": (0.2, 0.3, 0.9)}


def _masks(kind: int, dx: np.ndarray, dy: np.ndarray, r: np.ndarray) -> np.ndarray:
    name = SHAPE_KINDS[kind]
    dist = np.sqrt(dx**2 + dy**2)
    if name == "circle":
        return dist <= r
    if name == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) <= r * 0.8
    if name == "ring":
        return (dist <= r) & (dist >= r * 0.55)
    # equilateral triangle: inside three half-planes at 120° apart
    inside = np.ones_like(dist, dtype=bool)
    for k in range(3):
        a = math.pi / 2 + 2 * math.pi * k / 3
        inside &= dx * math.cos(a) + dy * math.sin(a) <= r * 0.5
    return inside


def make_shapes(
    n_per_class: int = 100, image_size: int = 32, seed: int = 0, return_masks: bool = False
) -> ImageArrays | tuple[ImageArrays, torch.Tensor]:
    """Generate ``12 · n_per_class`` images, uint8 (N, 3, S, S), labels ``shape·3 + colour``."""
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16, got {image_size}")
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be positive, got {n_per_class}")
    rng = np.random.default_rng(seed)
    colours = list(SHAPE_COLOURS.values())
    n_classes = len(SHAPE_KINDS) * len(colours)
    n = n_per_class * n_classes
    labels = np.repeat(np.arange(n_classes), n_per_class)
    rng.shuffle(labels)
    s = image_size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    r = rng.uniform(0.18, 0.32, n).astype(np.float32) * s
    cx = rng.uniform(0, 1, n).astype(np.float32) * (s - 2 * r) + r
    cy = rng.uniform(0, 1, n).astype(np.float32) * (s - 2 * r) + r
    theta = rng.uniform(0, 2 * math.pi, n).astype(np.float32)
    dx0 = xx[None] - cx[:, None, None]
    dy0 = yy[None] - cy[:, None, None]
    cos, sin = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
    dx, dy = dx0 * cos + dy0 * sin, -dx0 * sin + dy0 * cos
    masks = np.zeros((n, s, s), dtype=bool)
    kind = labels // len(colours)
    for k in range(len(SHAPE_KINDS)):
        sel = kind == k
        masks[sel] = _masks(k, dx[sel], dy[sel], r[sel][:, None, None])
    colour = np.asarray(colours, dtype=np.float32)[labels % len(colours)]
    colour = np.clip(colour + rng.normal(0, 0.06, colour.shape), 0, 1).astype(np.float32)
    background = rng.uniform(0.05, 0.45, (n, 1, 1, 1)).astype(np.float32)
    texture = rng.normal(0, 0.08, (n, 3, s, s)).astype(np.float32)
    img = np.clip(background + texture, 0, 1)
    img = np.where(masks[:, None], colour[:, :, None, None] * (0.85 + 0.15 * rng.random((n, 1, s, s))), img)
    images = torch.from_numpy((img * 255).round().astype(np.uint8))
    classes = tuple(f"{k} {c}" for k in SHAPE_KINDS for c in SHAPE_COLOURS)
    arrays = ImageArrays(images, torch.from_numpy(labels.astype(np.int64)), classes, f"shapes{image_size}")
    return (arrays, torch.from_numpy(masks)) if return_masks else arrays
