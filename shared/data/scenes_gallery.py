"""Galleries of generated scenes: look at the data before training on it (``repro data scenes``).

Each function draws a grid with matplotlib's object API (no pyplot, no global state) and writes a
PNG atomically: a temp file in the target folder, then a rename, so an interrupted call never
leaves half an image behind.
"""

from __future__ import annotations

import os
import tempfile
import textwrap
from pathlib import Path

import numpy as np

from shared.data.arrays import ImageArrays
from shared.data.scenes import SCENE_SHAPES, Clips, Scenes

# semantic classes: background black, then one colour per shape (fixed, so galleries compare)
CLASS_COLOURS = np.asarray(
    [
        (0, 0, 0),
        (230, 25, 75),
        (60, 180, 75),
        (255, 225, 25),
        (0, 130, 200),
        (245, 130, 48),
        (145, 30, 180),
        (70, 240, 240),
        (240, 50, 230),
    ],
    dtype=np.uint8,
)
# instance ids 1..8: colours unrelated to the classes
INSTANCE_COLOURS = np.asarray(
    [
        (0, 0, 0),
        (255, 255, 255),
        (170, 110, 40),
        (128, 128, 0),
        (0, 128, 128),
        (250, 190, 212),
        (0, 0, 128),
        (170, 255, 195),
        (128, 0, 0),
    ],
    dtype=np.uint8,
)
assert len(CLASS_COLOURS) == len(SCENE_SHAPES) + 1


def check_output(path: str | os.PathLike) -> Path:
    """The gallery's path, or a clear ``ValueError``: it must end in .png and its folder must exist."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"the gallery is a PNG: {path} must end in .png")
    if not path.parent.is_dir():
        raise ValueError(f"folder {path.parent} does not exist (create it first)")
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a file")
    return path


def _save(fig, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=100)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def _show(ax, image: np.ndarray, title: str | None = None, **kw) -> None:
    ax.imshow(image, interpolation="nearest", **kw)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def _rgb(chw: np.ndarray) -> np.ndarray:
    return chw.transpose(1, 2, 0)


def scene_gallery(scenes: Scenes, path: str | os.PathLike) -> Path:
    """One row per scene: RGB, semantic mask, instance mask, [height, landslide], and its captions."""
    from matplotlib.figure import Figure

    path = check_output(path)
    n = len(scenes)
    panels = 3 + (scenes.height is not None) + (scenes.landslide is not None)
    height = 1.7 * n + 0.5
    fig = Figure(figsize=(1.6 * panels + 4.2, height))
    grid = fig.add_gridspec(
        n,
        panels + 1,
        width_ratios=[1] * panels + [2.6],
        wspace=0.08,
        hspace=0.25,
        left=0.02,
        right=0.98,
        top=1 - 0.75 / height,
        bottom=0.1 / height,
    )
    for i in range(n):
        first = i == 0
        row = [
            (_rgb(scenes.images[i].numpy()), "image", {}),
            (CLASS_COLOURS[scenes.semantic[i].numpy()], "semantic", {}),
            (INSTANCE_COLOURS[scenes.instance[i].numpy()], "instance", {}),
        ]
        if scenes.height is not None:
            row.append((scenes.height[i, 0].numpy(), "height", {"cmap": "terrain"}))
        if scenes.landslide is not None:
            row.append((scenes.landslide[i].numpy(), "landslide", {"cmap": "gray", "vmin": 0, "vmax": 1}))
        for c, (image, title, kw) in enumerate(row):
            _show(fig.add_subplot(grid[i, c]), image, title if first else None, **kw)
        text = fig.add_subplot(grid[i, panels])
        text.axis("off")
        noisy = int(scenes.caption_source[i]) != i
        lines = [textwrap.fill(f"• {c}", 44) for c in scenes.captions[i]]
        if noisy:
            lines.append(f"(captions of image {int(scenes.caption_source[i])}: caption noise)")
        text.text(0, 0.5, "\n".join(lines), fontsize=7, va="center", ha="left", family="monospace")
    fig.suptitle(
        f"scenes {scenes.config.image_size}px: image, semantic, instance masks and captions",
        fontsize=9,
        y=1 - 0.12 / height,
    )
    return _save(fig, path)


def classification_gallery(data: ImageArrays, path: str | os.PathLike, columns: int = 8) -> Path:
    """A grid of the classification view's images, each titled with its class."""
    from matplotlib.figure import Figure

    path = check_output(path)
    n = len(data)
    rows = (n + columns - 1) // columns
    height = 1.35 * rows + 0.5
    fig = Figure(figsize=(1.2 * columns, height))
    fig.subplots_adjust(left=0.02, right=0.98, top=1 - 0.5 / height, bottom=0.1 / height)
    for i in range(n):
        ax = fig.add_subplot(rows, columns, i + 1)
        _show(ax, _rgb(data.images[i].numpy()), data.classes[int(data.labels[i])])
    fig.suptitle(f"{data.name}: label = shape of the main object", fontsize=9)
    return _save(fig, path)


def clip_gallery(clips: Clips, path: str | os.PathLike) -> Path:
    """Two rows per clip: its frames, then their instance masks."""
    from matplotlib.figure import Figure

    path = check_output(path)
    n, t = clips.frames.shape[:2]
    height = 2.5 * n + 0.5
    fig = Figure(figsize=(1.2 * t, height))
    fig.subplots_adjust(left=0.02, right=0.98, top=1 - 0.5 / height, bottom=0.1 / height)
    for i in range(n):
        for f in range(t):
            title = f"t={f}" if i == 0 else None
            _show(fig.add_subplot(2 * n, t, 2 * i * t + f + 1), _rgb(clips.frames[i, f].numpy()), title)
            _show(fig.add_subplot(2 * n, t, (2 * i + 1) * t + f + 1), INSTANCE_COLOURS[clips.instance[i, f].numpy()])
    fig.suptitle("clips: frames and instance masks", fontsize=9)
    return _save(fig, path)


__all__ = [
    "CLASS_COLOURS",
    "INSTANCE_COLOURS",
    "check_output",
    "classification_gallery",
    "clip_gallery",
    "scene_gallery",
]
