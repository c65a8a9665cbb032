"""Procedural multi-object scenes with masks, attributes, captions, height maps and clips.

A scene is 0–8 objects (circle, square, triangle, star, ring, cross, heart, crescent) of ten
named colours and three sizes, painted back to front over a flat, noisy or textured
background. Per image the generator returns

* the RGB image (uint8), a **semantic mask** (``1 + index into SCENE_SHAPES`` per pixel,
  0 = background) and an **instance mask** (``1 + slot`` per pixel; slots are the painting
  order, so a higher id is in front of a lower one);
* per-object attributes (shape, colour, size, radius, angle, centre, 3×3 position bin,
  box of the visible pixels, full and visible area, depth) and per-class object counts;
* several **compositional captions** from templates ("a small red star left of a blue
  ring", "a scene with two hearts and a cross", ...), with a rate of swapped (noisy) captions;
* optionally a smooth **height** map, and a "landslide" blob with a scarp in the height and
  a weak RGB cue (the HPCL-Net proxy);
* under **domain-shift** knobs (:class:`SceneShift`: palette, texture, noise, blur, night)
  that change only the pixels they name.

:func:`make_clips` moves the objects of a scene at constant velocities, bouncing off the
frame, with masks per frame; :func:`make_scene_classification` is the classification view
(class of the main object under nuisance colour, texture, background, scale, position and
clutter) as :class:`~shared.data.arrays.ImageArrays`; :func:`scenes_dataset` is the same data
as a Hugging Face ``datasets.Dataset``, built with ``Dataset.from_generator`` and cached on
disk by config hash.

Determinism: every output is a function of (config, seed, number of images). Images are made
in chunks of :data:`CHUNK`; each chunk draws from its own numpy streams, one per component
(layout, background, captions, caption noise, each random shift knob, terrain, landslide,
motion), so turning a knob changes only the component it names. Generation is vectorised over
the chunk (numpy, and torch for resampling); the only Python loops run over object slots (≤ 8),
shape kinds and captions.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from shared.data.arrays import ImageArrays

GENERATOR_VERSION = 1  # bump when a change alters the images of an existing config (invalidates caches)
CHUNK = 256  # images generated together; the unit of determinism
_T = TypeVar("_T")

SCENE_SHAPES = ("circle", "square", "triangle", "star", "ring", "cross", "heart", "crescent")
SCENE_COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.86, 0.13, 0.13),
    "orange": (0.97, 0.52, 0.08),
    "yellow": (0.95, 0.86, 0.12),
    "green": (0.16, 0.66, 0.22),
    "cyan": (0.10, 0.80, 0.86),
    "blue": (0.16, 0.30, 0.92),
    "purple": (0.56, 0.22, 0.80),
    "pink": (0.98, 0.52, 0.74),
    "white": (0.96, 0.96, 0.96),
    "brown": (0.50, 0.31, 0.13),
}
SIZES = ("small", "medium", "large")
SIZE_RANGES = ((0.08, 0.12), (0.12, 0.17), (0.17, 0.23))  # object radius as a fraction of the side
POSITIONS = (
    "top left",
    "top",
    "top right",
    "left",
    "centre",
    "right",
    "bottom left",
    "bottom",
    "bottom right",
)
BACKGROUNDS = ("flat", "noisy", "textured")
PATTERNS = ("plain", "striped")
PALETTES = ("standard", "muted", "pastel", "dark")
RELATIONS = ("left of", "right of", "above", "below", "in front of", "behind")

POSITION_PHRASES = {
    "top left": "in the top left corner",
    "top": "at the top",
    "top right": "in the top right corner",
    "left": "on the left",
    "centre": "in the centre",
    "right": "on the right",
    "bottom left": "in the bottom left corner",
    "bottom": "at the bottom",
    "bottom right": "in the bottom right corner",
}
BACKGROUND_WORDS = {"flat": "plain", "noisy": "noisy", "textured": "patterned"}
PLURALS = {name: name + ("es" if name.endswith("ss") else "s") for name in SCENE_SHAPES}
NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight")
MAX_OBJECTS = 8
RELATION_MARGIN = 0.08  # centres must differ by this fraction of the side for left/right/above/below
CAPTION_MIN_VISIBLE = 0.3  # captions name only objects with at least this fraction of their area visible

# one numpy stream per component: a knob that draws from its own stream cannot disturb the others
# (the numbers are part of the data: changing one changes every data set that uses it)
_LAYOUT, _BACKGROUND = 0, 1
_CAPTIONS, _CAPTION_NOISE, _TEXTURE, _NOISE, _TERRAIN, _LANDSLIDE, _MOTION, _LABELS = range(3, 11)


# --- configuration -----------------------------------------------------------------------


@dataclass(frozen=True)
class SceneShift:
    """Domain-shift knobs; each changes only the pixels it names (masks, attributes, captions stay).

    ``palette``: how the named colours render (``standard``, ``muted``, ``pastel``, ``dark``;
    objects only). ``texture`` in [0, 1]: amplitude of a grating laid over the whole image.
    ``noise``: std of Gaussian pixel noise (in [0, 1] intensity units). ``blur``: std of a Gaussian
    blur in pixels. ``night`` in [0, 1]: darkening, a stronger gamma and a blue cast.
    """

    palette: str = "standard"
    texture: float = 0.0
    noise: float = 0.0
    blur: float = 0.0
    night: float = 0.0

    def __post_init__(self) -> None:
        if self.palette not in PALETTES:
            raise ValueError(f"palette must be one of {PALETTES}, got {self.palette!r}")
        for name, hi in (("texture", 1.0), ("noise", 0.5), ("blur", 4.0), ("night", 1.0)):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 <= value <= hi):
                raise ValueError(f"shift {name} must be a number in [0, {hi}], got {value!r}")


def _check_names(name: str, values: tuple[str, ...], vocabulary: tuple[str, ...]) -> None:
    if not values:
        raise ValueError(f"{name} must name at least one of {vocabulary}")
    unknown = [v for v in values if v not in vocabulary]
    if unknown:
        raise ValueError(f"unknown {name} {unknown}; choose from {vocabulary}")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} lists a value twice: {values}")


def _from_mapping(cls: type[_T], values: Mapping[str, Any], what: str) -> _T:
    """``cls(**values)`` for a config dataclass: unknown keys are an error, lists become tuples and a
    ``shift`` mapping becomes a :class:`SceneShift`."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {what} keys {unknown}; known: {sorted(known)}")
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    if isinstance(kw.get("shift"), Mapping):
        kw["shift"] = SceneShift(**kw["shift"])
    return cls(**kw)


@dataclass(frozen=True)
class SceneConfig:
    """What a scene holds and how it is drawn (see the module docstring).

    ``image_size`` 32–128 px; ``min_objects``..``max_objects`` objects per image (0–8; 0 for bare
    landslide tiles); ``shapes``, ``colours``, ``sizes``, ``backgrounds``, ``patterns``: the
    vocabularies drawn from (uniformly); ``captions_per_image`` captions per image, of which a
    fraction ``caption_noise`` of images carry another image's captions; ``height`` adds an
    elevation map; ``landslide`` adds a landslide blob (mask, scarp in the height, RGB cue of
    strength ``landslide_contrast``); ``shift``: the domain-shift knobs.
    """

    image_size: int = 64
    min_objects: int = 2
    max_objects: int = 5
    shapes: tuple[str, ...] = SCENE_SHAPES
    colours: tuple[str, ...] = tuple(SCENE_COLOURS)
    sizes: tuple[str, ...] = SIZES
    backgrounds: tuple[str, ...] = BACKGROUNDS
    patterns: tuple[str, ...] = ("plain",)
    captions_per_image: int = 3
    caption_noise: float = 0.0
    height: bool = False
    landslide: bool = False
    landslide_contrast: float = 0.06
    shift: SceneShift = field(default_factory=SceneShift)

    def __post_init__(self) -> None:
        if not (isinstance(self.image_size, int) and 32 <= self.image_size <= 128):
            raise ValueError(f"image_size must be an integer in [32, 128], got {self.image_size!r}")
        if not (0 <= self.min_objects <= self.max_objects <= MAX_OBJECTS):
            raise ValueError(
                f"need 0 <= min_objects <= max_objects <= {MAX_OBJECTS}, got {self.min_objects}, {self.max_objects}"
            )
        _check_names("shapes", self.shapes, SCENE_SHAPES)
        _check_names("colours", self.colours, tuple(SCENE_COLOURS))
        _check_names("sizes", self.sizes, SIZES)
        _check_names("backgrounds", self.backgrounds, BACKGROUNDS)
        _check_names("patterns", self.patterns, PATTERNS)
        if not 0 <= self.captions_per_image <= 16:
            raise ValueError(f"captions_per_image must be in [0, 16], got {self.captions_per_image}")
        if not 0 <= self.caption_noise <= 1:
            raise ValueError(f"caption_noise must be a rate in [0, 1], got {self.caption_noise}")
        if not 0 <= self.landslide_contrast <= 1:
            raise ValueError(f"landslide_contrast must be in [0, 1], got {self.landslide_contrast}")
        if not isinstance(self.shift, SceneShift):
            raise TypeError(f"shift must be a SceneShift, got {type(self.shift).__name__}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> SceneConfig:
        """From a plain (JSON-like) mapping, e.g. ``asdict(config)`` or a preset's data config."""
        return _from_mapping(cls, values, "scene config")


def config_key(config: Any, **extra: Any) -> str:
    """A short hash of a config dataclass, the generator version and ``extra`` (n, seed, ...)."""
    payload = {"version": GENERATOR_VERSION, "kind": type(config).__name__, "config": asdict(config), **extra}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=list).encode()).hexdigest()[:16]


def cache_root(override: str | os.PathLike | None = None) -> Path:
    """Where generated data sets are cached: ``override``, ``$REPRO_CACHE_DIR`` or ``~/.cache/repro``."""
    if override:
        return Path(override)
    root = os.environ.get("REPRO_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "repro"


def _rng(seed: int, chunk: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, chunk, stream])


def _check_seed(seed: int) -> None:
    if not (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0):
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def _chunks(n: int) -> Iterator[tuple[int, int, int]]:
    """(chunk index, first image, number of images) of ``n`` images."""
    for c, start in enumerate(range(0, n, CHUNK)):
        yield c, start, min(CHUNK, n - start)


# --- shapes ------------------------------------------------------------------------------
# Each takes local coordinates (u, v) (pixels, rotated into the object's frame, v downwards)
# and the radius r (broadcastable) and returns the boolean mask of the shape.


def _circle(u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    return u * u + v * v <= r * r


def _square(u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(u), np.abs(v)) <= 0.78 * r


def _triangle(u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    inside = np.ones(np.broadcast_shapes(u.shape, np.shape(r)), dtype=bool)
    for k in range(3):  # three edges, outward normals 120° apart, at distance 0.55 r from the centre
        a = math.pi / 2 + 2 * math.pi * k / 3
        inside &= u * math.cos(a) + v * math.sin(a) <= 0.55 * r
    return inside


def _star(u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    phase = np.mod(np.arctan2(v, u) * 5 / (2 * math.pi), 1.0)
    spike = np.abs(phase - 0.5) * 2  # 1 at the five tips, 0 between them
    return np.sqrt(u * u + v * v) <= r * (0.42 + 0.58 * spike)


def _ring(u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    d2 = u * u + v * v
    return (d2 <= r * r) & (d2 >= (0.55 * r) ** 2)


def _cross(u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    au, av, arm = np.abs(u), np.abs(v), 0.3 * r
    return ((au <= arm) & (av <= 0.95 * r)) | ((av <= arm) & (au <= 0.95 * r))


def _heart(u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    x, y = u / (0.82 * r), -v / (0.82 * r) + 0.1  # the classic sextic heart, point downwards
    q, x2 = x * x + y * y - 1, x * x
    return q * q * q <= x2 * y * y * y


def _crescent(u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    return (u * u + v * v <= r * r) & ((u - 0.45 * r) ** 2 + v * v > (0.78 * r) ** 2)


SHAPE_MASKS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    "circle": _circle,
    "square": _square,
    "triangle": _triangle,
    "star": _star,
    "ring": _ring,
    "cross": _cross,
    "heart": _heart,
    "crescent": _crescent,
}


def palette_table(palette: str = "standard") -> np.ndarray:
    """RGB of every colour of :data:`SCENE_COLOURS` (rows in its order) under a palette, float32 (10, 3)."""
    rgb = np.asarray(list(SCENE_COLOURS.values()), dtype=np.float32)
    grey = (rgb @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32))[:, None]
    if palette == "standard":
        return rgb
    if palette == "muted":
        return 0.45 * rgb + 0.55 * grey
    if palette == "pastel":
        return 0.55 * rgb + 0.45
    if palette == "dark":
        return 0.5 * rgb
    raise ValueError(f"palette must be one of {PALETTES}, got {palette!r}")


# --- layout, background, painting --------------------------------------------------------


@dataclass
class _Layout:
    """Per image, ``M`` object slots (painted in slot order, so later slots are in front)."""

    present: np.ndarray  # (n, M) bool
    shape: np.ndarray  # (n, M) int64: index into SCENE_SHAPES
    colour: np.ndarray  # (n, M) int64: index into SCENE_COLOURS
    size: np.ndarray  # (n, M) int64: index into SIZES
    radius: np.ndarray  # (n, M) float32, pixels
    angle: np.ndarray  # (n, M) float32, radians
    centre: np.ndarray  # (n, M, 2) float32, (x, y) pixels
    pattern: np.ndarray  # (n, M) int64: index into PATTERNS
    tint: np.ndarray  # (n, M, 3) float32: colour jitter
    light: np.ndarray  # (n, M) float32: direction of the shading gradient

    def repeat(self, times: int) -> _Layout:
        return _Layout(**{f.name: np.repeat(getattr(self, f.name), times, axis=0) for f in fields(self)})


def _indices(names: tuple[str, ...], vocabulary: tuple[str, ...]) -> np.ndarray:
    return np.asarray([vocabulary.index(name) for name in names], dtype=np.int64)


def _place(rng: np.random.Generator, radius: np.ndarray, present: np.ndarray, s: int, tries: int = 3) -> np.ndarray:
    """Centres inside the frame; each object takes the best of ``tries`` candidates (largest gap to
    the objects placed before it), so scenes spread out but still overlap when crowded."""
    n, m = radius.shape
    centre = np.zeros((n, m, 2), dtype=np.float32)
    for j in range(m):
        r = radius[:, j, None, None]
        cand = (r + rng.random((n, tries, 2)) * (s - 2 * r)).astype(np.float32)
        if j == 0:
            centre[:, 0] = cand[:, 0]
            continue
        gap = np.linalg.norm(cand[:, :, None] - centre[:, None, :j], axis=-1) - (r + radius[:, None, :j])
        gap = np.where(present[:, None, :j], gap, np.inf).min(axis=2)
        centre[:, j] = cand[np.arange(n), gap.argmax(axis=1)]
    return centre


def _scene_layout(rng: np.random.Generator, n: int, cfg: SceneConfig) -> _Layout:
    m, s = cfg.max_objects, cfg.image_size
    count = rng.integers(cfg.min_objects, cfg.max_objects + 1, n)
    present = np.arange(m)[None] < count[:, None]
    shape = _indices(cfg.shapes, SCENE_SHAPES)[rng.integers(0, len(cfg.shapes), (n, m))]
    colour = _indices(cfg.colours, tuple(SCENE_COLOURS))[rng.integers(0, len(cfg.colours), (n, m))]
    size = _indices(cfg.sizes, SIZES)[rng.integers(0, len(cfg.sizes), (n, m))]
    lo, hi = np.asarray(SIZE_RANGES, dtype=np.float32)[size].transpose(2, 0, 1)
    radius = ((lo + (hi - lo) * rng.random((n, m))) * s).astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi, (n, m)).astype(np.float32)
    pattern = _indices(cfg.patterns, PATTERNS)[rng.integers(0, len(cfg.patterns), (n, m))]
    tint = rng.normal(0, 0.035, (n, m, 3)).astype(np.float32)
    light = rng.uniform(0, 2 * math.pi, (n, m)).astype(np.float32)
    centre = _place(rng, radius, present, s)
    return _Layout(present, shape, colour, size, radius, angle, centre, pattern, tint, light)


def _upsample(low: np.ndarray, s: int) -> np.ndarray:
    """Bicubic upsampling of (n, c, k, k) noise to (n, c, s, s): smooth random fields."""
    out = F.interpolate(torch.from_numpy(low.astype(np.float32)), size=(s, s), mode="bicubic", align_corners=False)
    return out.numpy()


def _minmax(x: np.ndarray) -> np.ndarray:
    lo = x.min(axis=(-2, -1), keepdims=True)
    hi = x.max(axis=(-2, -1), keepdims=True)
    return (x - lo) / np.maximum(hi - lo, 1e-6)


def _grid(s: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (y, x), float32 (s, s) each."""
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
    return yy, xx


def _background(
    rng: np.random.Generator, n: int, s: int, kinds: tuple[str, ...], value: tuple[float, float] = (0.08, 0.6)
) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3, s, s) float32 backgrounds and their kind (index into BACKGROUNDS).

    Every image draws its colours and pattern parameters whatever its kind; only the pixel grain
    (drawn last) is drawn just for the images that show it.
    """
    kind = _indices(kinds, BACKGROUNDS)[rng.integers(0, len(kinds), n)]
    base = rng.uniform(*value, (n, 3)).astype(np.float32)
    second = rng.uniform(*value, (n, 3)).astype(np.float32)
    style = rng.integers(0, 3, n)  # stripes, checks, blotches
    freq = rng.uniform(2, 6, n).astype(np.float32)[:, None, None]
    orient = rng.uniform(0, math.pi, n).astype(np.float32)[:, None, None]
    phase = rng.uniform(0, 2 * math.pi, n).astype(np.float32)[:, None, None]
    low = rng.random((n, 1, 5, 5))
    image = np.repeat(np.repeat(base[:, :, None, None], s, axis=2), s, axis=3)
    textured = np.flatnonzero(kind == 2)
    if len(textured):
        yy, xx = _grid(s)
        o, f, ph, st = orient[textured], freq[textured], phase[textured], style[textured, None, None]
        along = (xx * np.cos(o) + yy * np.sin(o)) / s
        across = (-xx * np.sin(o) + yy * np.cos(o)) / s
        pattern = np.where(
            st == 0,
            0.5 + 0.5 * np.sin(2 * math.pi * f * along + ph),
            np.mod(np.floor(f * along + ph) + np.floor(f * across), 2),
        )
        blotchy = np.flatnonzero(style[textured] == 2)
        if len(blotchy):
            pattern[blotchy] = _minmax(_upsample(low[textured[blotchy]], s)[:, 0])
        image[textured] += (second - base)[textured, :, None, None] * pattern[:, None]
    grainy = np.flatnonzero(kind > 0)
    if len(grainy):
        grain = rng.standard_normal((len(grainy), 3, s, s), dtype=np.float32) * 0.07
        image[grainy] += np.where(kind[grainy, None, None, None] == 1, 1.0, 0.3).astype(np.float32) * grain
    return image, kind


@dataclass
class _Painted:
    image: np.ndarray  # (n, 3, s, s) float32
    instance: np.ndarray  # (n, s, s) uint8
    semantic: np.ndarray  # (n, s, s) uint8
    amodal: np.ndarray  # (n, M, s, s) bool: each object's full mask, occluded or not


def _paint(layout: _Layout, image: np.ndarray, palette: str) -> _Painted:
    """Paint the objects over ``image`` back to front (slot 0 first)."""
    n, m = layout.present.shape
    s = image.shape[-1]
    yy, xx = _grid(s)
    image = image.copy()
    instance = np.zeros((n, s, s), dtype=np.uint8)
    semantic = np.zeros((n, s, s), dtype=np.uint8)
    amodal = np.zeros((n, m, s, s), dtype=bool)
    table = palette_table(palette)
    for j in range(m):
        dx = xx[None] - layout.centre[:, j, 0, None, None]
        dy = yy[None] - layout.centre[:, j, 1, None, None]
        cos, sin = np.cos(layout.angle[:, j])[:, None, None], np.sin(layout.angle[:, j])[:, None, None]
        u, v = dx * cos + dy * sin, -dx * sin + dy * cos
        r = layout.radius[:, j, None, None]
        mask = np.zeros((n, s, s), dtype=bool)
        for k in np.unique(layout.shape[layout.present[:, j], j]):
            sel = layout.present[:, j] & (layout.shape[:, j] == k)
            mask[sel] = SHAPE_MASKS[SCENE_SHAPES[k]](u[sel], v[sel], r[sel])
        amodal[:, j] = mask
        b, y, x = np.nonzero(mask)  # shade only the object's pixels
        light, rb = layout.light[b, j], layout.radius[b, j]
        shade = 1 + 0.16 * np.clip((dx[b, y, x] * np.cos(light) + dy[b, y, x] * np.sin(light)) / rb, -1, 1)
        stripe = np.sin(2 * math.pi * u[b, y, x] / np.maximum(0.55 * rb, 2.0)) > 0
        shade = shade * np.where((layout.pattern[b, j] == 1) & ~stripe, 0.5, 1.0)
        colour = table[layout.colour[b, j]] + layout.tint[b, j]
        image[b, :, y, x] = np.clip(colour * shade[:, None], 0, 1)
        instance[b, y, x] = j + 1
        semantic[b, y, x] = layout.shape[b, j] + 1
    return _Painted(image.astype(np.float32), instance, semantic, amodal)


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of the last two axes (reflecting borders), vectorised over the rest."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(t**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    shape = x.shape
    y = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).reshape(-1, 1, *shape[-2:])
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))
    return y.reshape(shape).numpy()


def _apply_shift(image: np.ndarray, shift: SceneShift, seed: int, chunk: int, group: int = 1) -> np.ndarray:
    """The pixel-level knobs, in a fixed order: texture, blur, night, noise. ``group`` consecutive
    images (a clip's frames) share their texture grating; the noise is drawn per image."""
    n, _, s, _ = image.shape
    if shift.texture > 0:
        rng, g = _rng(seed, chunk, _TEXTURE), n // group
        freq = np.repeat(rng.uniform(4, 10, g), group).astype(np.float32)[:, None, None]
        orient = np.repeat(rng.uniform(0, math.pi, g), group).astype(np.float32)[:, None, None]
        phase = np.repeat(rng.uniform(0, 2 * math.pi, g), group).astype(np.float32)[:, None, None]
        yy, xx = _grid(s)
        wave = np.sin(2 * math.pi * freq * (xx * np.cos(orient) + yy * np.sin(orient)) / s + phase)
        image = image + 0.25 * shift.texture * wave[:, None]
    if shift.blur > 0:
        image = _blur(image, shift.blur)
    if shift.night > 0:
        cast = np.asarray([1 - 0.25 * shift.night, 1 - 0.1 * shift.night, 1 + 0.1 * shift.night], dtype=np.float32)
        image = np.clip(image, 0, 1) ** (1 + 1.2 * shift.night) * (1 - 0.55 * shift.night) * cast[:, None, None]
    if shift.noise > 0:
        image = image + _rng(seed, chunk, _NOISE).normal(0, shift.noise, image.shape).astype(np.float32)
    return image


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


# --- height and landslides ---------------------------------------------------------------


def _terrain(rng: np.random.Generator, n: int, s: int) -> tuple[np.ndarray, np.ndarray]:
    """Smooth elevation (n, s, s) float32 (a tilted plane plus rolling relief) and its downhill angle."""
    downhill = rng.uniform(0, 2 * math.pi, n).astype(np.float32)
    slope = rng.uniform(0.4, 1.2, n).astype(np.float32)[:, None, None]
    relief = _upsample(rng.normal(0, 1, (n, 1, 6, 6)), s)[:, 0]  # rolling hills, ~0.15 high
    yy, xx = _grid(s)
    d = downhill[:, None, None]
    along = ((xx - s / 2) * np.cos(d) + (yy - s / 2) * np.sin(d)) / s
    return (-slope * along + 0.15 * relief).astype(np.float32), downhill


def _landslide(
    rng: np.random.Generator, n: int, s: int, downhill: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An irregular blob elongated downhill: mask (n, s, s) bool, the position from head (0) to toe (1)
    inside it (n, s, s) float32, and the scarp depth (n,)."""
    centre = rng.uniform(0.35, 0.65, (n, 2)).astype(np.float32) * s
    r0 = (rng.uniform(0.13, 0.22, n) * s).astype(np.float32)[:, None, None]
    stretch = rng.uniform(1.2, 1.7, n).astype(np.float32)[:, None, None]
    amp = rng.uniform(0, 0.14, (n, 3)).astype(np.float32)
    phase = rng.uniform(0, 2 * math.pi, (n, 3)).astype(np.float32)
    depth = rng.uniform(0.15, 0.3, n).astype(np.float32)
    yy, xx = _grid(s)
    d = downhill[:, None, None]
    dx, dy = xx[None] - centre[:, 0, None, None], yy[None] - centre[:, 1, None, None]
    a, c = (dx * np.cos(d) + dy * np.sin(d)) / stretch, -dx * np.sin(d) + dy * np.cos(d)
    phi = np.arctan2(c, a)
    edge = np.ones_like(phi)
    for k in range(3):  # lobes of order 2, 3, 4 make the outline irregular
        edge += amp[:, k, None, None] * np.cos((k + 2) * phi + phase[:, k, None, None])
    mask = np.sqrt(a * a + c * c) <= r0 * edge
    t = np.clip((a / (r0 * 1.45) + 1) / 2, 0, 1).astype(np.float32)
    return mask, t, depth


# --- attributes and captions -------------------------------------------------------------


def _attributes(layout: _Layout, painted: _Painted, s: int) -> dict[str, np.ndarray]:
    """Per-object attributes (n, M) from the layout and the masks; absent objects get -1 / 0."""
    n, m = layout.present.shape
    visible = np.stack([(painted.instance == j + 1).sum(axis=(1, 2)) for j in range(m)], 1) if m else np.zeros((n, 0))
    area = painted.amodal.sum(axis=(2, 3))
    box = np.full((n, m, 4), -1, dtype=np.int64)
    for j in range(m):
        mine = painted.instance == j + 1
        rows, cols = mine.any(axis=2), mine.any(axis=1)
        seen = rows.any(axis=1)
        box[seen, j] = np.stack(
            [
                cols.argmax(1),
                rows.argmax(1),
                s - 1 - cols[:, ::-1].argmax(1),
                s - 1 - rows[:, ::-1].argmax(1),
            ],
            1,
        )[seen]
    col = np.clip((layout.centre[..., 0] * 3 // s).astype(np.int64), 0, 2)
    row = np.clip((layout.centre[..., 1] * 3 // s).astype(np.int64), 0, 2)

    def absent(x: np.ndarray, fill: float) -> np.ndarray:
        p = layout.present if x.ndim == 2 else layout.present[..., None]
        return np.where(p, x, fill)

    return {
        "present": layout.present.copy(),
        "shape": absent(layout.shape, -1),
        "colour": absent(layout.colour, -1),
        "size": absent(layout.size, -1),
        "pattern": absent(layout.pattern, -1),
        "position": absent(row * 3 + col, -1),
        "radius": absent(layout.radius, 0).astype(np.float32),
        "angle": absent(layout.angle, 0).astype(np.float32),
        "centre": absent(layout.centre, 0).astype(np.float32),
        "box": box,
        "area": area.astype(np.int64),
        "visible": np.asarray(visible, dtype=np.int64),
        "depth": absent(np.broadcast_to(np.arange(m), (n, m)), -1).astype(np.int64),
    }


def _overlaps(amodal: np.ndarray) -> np.ndarray:
    """(n, M, M) bool: whether the full masks of two objects share a pixel."""
    n, m = amodal.shape[:2]
    out = np.zeros((n, m, m), dtype=bool)
    for j in range(m):
        for k in range(j + 1, m):
            out[:, j, k] = out[:, k, j] = (amodal[:, j] & amodal[:, k]).any(axis=(1, 2))
    return out


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _noun(shape: int, colour: int, size: int, draw: np.ndarray) -> str:
    """ "a [size] [colour] shape": the size is named when ``draw[0] < 0.6``, the colour when ``draw[1] < 0.9``."""
    words = [SIZES[size]] if draw[0] < 0.6 else []
    words += [list(SCENE_COLOURS)[colour]] if draw[1] < 0.9 else []
    words.append(SCENE_SHAPES[shape])
    return f"{_article(words[0])} {' '.join(words)}"


def _relations(obj: Mapping[str, np.ndarray], a: int, b: int, overlap: np.ndarray, s: int) -> list[str]:
    """Every relation of :data:`RELATIONS` that holds for "object a <relation> object b"."""
    (xa, ya), (xb, yb) = obj["centre"][a], obj["centre"][b]
    dx, dy, margin = xb - xa, yb - ya, RELATION_MARGIN * s
    rel = []
    if abs(dx) >= abs(dy) and abs(dx) >= margin:
        rel.append("left of" if dx > 0 else "right of")
    if abs(dy) > abs(dx) and abs(dy) >= margin:
        rel.append("above" if dy > 0 else "below")
    if overlap[a, b]:
        rel.append("in front of" if obj["depth"][a] > obj["depth"][b] else "behind")
    return rel


def _inventory(counts: np.ndarray) -> str:
    parts = [
        f"{_article(SCENE_SHAPES[k])} {SCENE_SHAPES[k]}" if c == 1 else f"{NUMBER_WORDS[c]} {PLURALS[SCENE_SHAPES[k]]}"
        for k, c in sorted(enumerate(counts.tolist()), key=lambda kc: (-kc[1], kc[0]))
        if c > 0
    ]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"a scene with {listed}"


TEMPLATE_WEIGHTS = (0.4, 0.25, 0.2, 0.15)  # relation, position, inventory, count


def _image_captions(
    draws: np.ndarray,
    obj: Mapping[str, np.ndarray],
    counts: np.ndarray,
    overlap: np.ndarray,
    background: str,
    landslide: tuple[int, int] | None,
    s: int,
) -> list[str]:
    """One caption per row of ``draws`` (uniforms, (C, 8)) from one image's attributes.

    The template is a relation between two objects, an object and its position, the inventory of
    shapes, or the object count and background; the first two need objects that are at least
    :data:`CAPTION_MIN_VISIBLE` visible and fall back to the next template without them. A scene
    without objects describes its ``landslide`` (position index, size index) if it has one.
    """
    shown = np.flatnonzero(obj["present"] & (obj["visible"] >= CAPTION_MIN_VISIBLE * np.maximum(obj["area"], 1)))
    total = int(obj["present"].sum())
    captions: list[str] = []
    for d in draws:
        first = int(np.searchsorted(np.cumsum(TEMPLATE_WEIGHTS), d[0] * 0.999999, side="right"))
        for shift in range(len(TEMPLATE_WEIGHTS)):  # the next template when this one repeats a caption
            caption = _caption(
                d, (first + shift) % len(TEMPLATE_WEIGHTS), shown, total, obj, counts, overlap, background, landslide, s
            )
            if caption not in captions:
                break
        captions.append(caption)
    return captions


def _caption(
    d: np.ndarray,
    template: int,
    shown: np.ndarray,
    total: int,
    obj: Mapping[str, np.ndarray],
    counts: np.ndarray,
    overlap: np.ndarray,
    background: str,
    landslide: tuple[int, int] | None,
    s: int,
) -> str:
    """One caption from template ``template`` (see :func:`_image_captions`) and the uniforms ``d``."""
    if template == 0 and len(shown) >= 2:
        a = shown[int(d[1] * len(shown))]
        others = shown[shown != a]
        b = others[int(d[2] * len(others))]
        rel = _relations(obj, a, b, overlap, s)
        if rel:
            noun_a = _noun(obj["shape"][a], obj["colour"][a], obj["size"][a], d[4:6])
            noun_b = _noun(obj["shape"][b], obj["colour"][b], obj["size"][b], d[6:8])
            return f"{noun_a} {rel[int(d[3] * len(rel))]} {noun_b}"
        template = 1
    if template in (0, 1) and len(shown) >= 1:
        a = shown[int(d[1] * len(shown))]
        noun = _noun(obj["shape"][a], obj["colour"][a], obj["size"][a], d[4:6])
        return f"{noun} {POSITION_PHRASES[POSITIONS[obj['position'][a]]]}"
    if template == 2 and total >= 1:
        return _inventory(counts)
    if total >= 1:
        noun = "object" if total == 1 else "objects"
        return f"{NUMBER_WORDS[total]} {noun} on a {BACKGROUND_WORDS[background]} background"
    if landslide is not None:
        position, size = landslide
        if template in (0, 1):
            return f"a landslide {POSITION_PHRASES[POSITIONS[position]]}"
        if template == 2:
            return f"a {SIZES[size]} landslide"
        return f"a landslide on {BACKGROUND_WORDS[background]} terrain"
    return f"an empty scene on a {BACKGROUND_WORDS[background]} background"


def _swap_captions(rng: np.random.Generator, n: int, rate: float) -> np.ndarray:
    """For each image, the image whose captions it carries: a fraction ``rate`` are passed on in a cycle."""
    source = np.arange(n)
    noisy = np.flatnonzero(rng.random(n) < rate)
    if len(noisy) == 1 and n > 1:  # one image cannot swap with itself: give it a partner
        others = np.delete(np.arange(n), noisy[0])
        noisy = np.sort(np.append(noisy, rng.choice(others)))
    if len(noisy) >= 2:
        source[noisy] = np.roll(noisy, 1)
    return source


# --- scenes ------------------------------------------------------------------------------


@dataclass
class Scenes:
    """A batch of generated scenes (all tensors share the first axis, N images).

    ``objects`` maps each attribute to an (N, M) tensor over the M = ``max_objects`` slots
    (``centre`` (N, M, 2), ``box`` (N, M, 4)); absent objects hold -1 (indices) or 0:

    ``present`` bool; ``shape`` (index into SCENE_SHAPES; the semantic class is shape + 1),
    ``colour`` (SCENE_COLOURS), ``size`` (SIZES), ``pattern`` (PATTERNS), ``position`` (POSITIONS,
    from the centre's 3×3 cell); ``radius`` and ``angle`` of the shape; ``centre`` (x, y) in pixels;
    ``box`` (x0, y0, x1, y1), inclusive, of the visible pixels (-1 where none are visible);
    ``area`` and ``visible`` pixel counts of the full and the visible mask; ``depth``, the painting
    order (the instance id is depth + 1; a larger depth is in front).
    """

    images: torch.Tensor  # uint8 (N, 3, S, S)
    semantic: torch.Tensor  # uint8 (N, S, S): 0 background, 1 + shape index
    instance: torch.Tensor  # uint8 (N, S, S): 0 background, 1 + depth
    objects: dict[str, torch.Tensor]
    counts: torch.Tensor  # int64 (N, len(SCENE_SHAPES)): present objects per shape class
    background: torch.Tensor  # int64 (N,): index into BACKGROUNDS
    captions: list[list[str]]
    caption_source: torch.Tensor  # int64 (N,): the image whose captions row i carries (i when clean)
    config: SceneConfig
    height: torch.Tensor | None = None  # float32 (N, 1, S, S)
    landslide: torch.Tensor | None = None  # bool (N, S, S)
    amodal: torch.Tensor | None = None  # bool (N, M, S, S): full object masks (``make_scenes(amodal=True)``)

    def __len__(self) -> int:
        return self.images.shape[0]

    def object_list(self, i: int) -> list[dict[str, Any]]:
        """The present objects of image ``i`` as dicts with names (shape, colour, size, position, ...)."""
        out = []
        for j in np.flatnonzero(self.objects["present"][i].numpy()):
            o = {k: v[i, j].tolist() for k, v in self.objects.items() if k != "present"}
            for key, vocab in (
                ("shape", SCENE_SHAPES),
                ("colour", tuple(SCENE_COLOURS)),
                ("size", SIZES),
                ("pattern", PATTERNS),
                ("position", POSITIONS),
            ):
                o[key] = vocab[o[key]]
            out.append(o)
        return out


def _scene_chunk(cfg: SceneConfig, seed: int, chunk: int, n: int, amodal: bool) -> dict[str, Any]:
    """One chunk of ``n`` scenes as numpy arrays (and caption lists)."""
    s = cfg.image_size
    layout = _scene_layout(_rng(seed, chunk, _LAYOUT), n, cfg)
    image, kind = _background(_rng(seed, chunk, _BACKGROUND), n, s, cfg.backgrounds)
    out: dict[str, Any] = {}
    slides: list[tuple[int, int] | None] = [None] * n  # (position, size) of each image's landslide
    if cfg.height or cfg.landslide:
        elevation, downhill = _terrain(_rng(seed, chunk, _TERRAIN), n, s)
        if cfg.landslide:
            rng = _rng(seed, chunk, _LANDSLIDE)
            mask, t, depth = _landslide(rng, n, s, downhill)
            soil = np.clip(np.asarray([0.58, 0.47, 0.36]) + rng.normal(0, 0.05, (n, 3)), 0, 1).astype(np.float32)
            soft = _blur(mask.astype(np.float32), 1.5)[:, None]
            image = image + cfg.landslide_contrast * soft * (soil[:, :, None, None] - image)
            scarp = _blur(mask.astype(np.float32), 0.6)
            elevation = elevation + scarp * depth[:, None, None] * (1.4 * t - 1.0)  # head sinks, toe bulges
            out["landslide"] = mask
            area = mask.sum(axis=(1, 2))
            yy, xx = _grid(s)
            cx = (mask * xx).sum(axis=(1, 2)) / np.maximum(area, 1)
            cy = (mask * yy).sum(axis=(1, 2)) / np.maximum(area, 1)
            cell = np.clip(cy * 3 // s, 0, 2) * 3 + np.clip(cx * 3 // s, 0, 2)
            size_bin = np.digitize(area / s**2, (0.08, 0.16))  # small, medium, large
            slides = [(int(p), int(z)) for p, z in zip(cell, size_bin, strict=True)]
        if cfg.height:
            out["height"] = elevation[:, None].astype(np.float32)
    painted = _paint(layout, image, cfg.shift.palette)
    out["images"] = _to_uint8(_apply_shift(painted.image, cfg.shift, seed, chunk))
    out["semantic"], out["instance"] = painted.semantic, painted.instance
    obj = _attributes(layout, painted, s)
    out["objects"] = obj
    counts = np.zeros((n, len(SCENE_SHAPES)), dtype=np.int64)
    for j in range(cfg.max_objects):
        np.add.at(counts, (np.arange(n)[obj["present"][:, j]], obj["shape"][obj["present"][:, j], j]), 1)
    out["counts"], out["background"] = counts, kind
    overlap = _overlaps(painted.amodal)
    draws = _rng(seed, chunk, _CAPTIONS).random((n, cfg.captions_per_image, 8))
    captions = [
        _image_captions(
            draws[i],
            {k: v[i] for k, v in obj.items()},
            counts[i],
            overlap[i],
            BACKGROUNDS[kind[i]],
            slides[i],
            s,
        )
        for i in range(n)
    ]
    source = _swap_captions(_rng(seed, chunk, _CAPTION_NOISE), n, cfg.caption_noise)
    out["captions"] = [captions[j] for j in source]
    out["caption_source"] = source + chunk * CHUNK
    if amodal:
        out["amodal"] = painted.amodal
    return out


def _check_n(n: int, name: str = "n") -> None:
    if not (isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1):
        raise ValueError(f"{name} must be a positive integer, got {n!r}")


def make_scenes(
    n: int,
    config: SceneConfig | None = None,
    seed: int = 0,
    amodal: bool = False,
    cache: bool | str | os.PathLike = False,
) -> Scenes:
    """Generate ``n`` scenes (the in-memory tensor path).

    ``amodal`` also returns every object's full mask. ``cache`` (True, or a folder) stores the
    tensors under ``$REPRO_CACHE_DIR/scenes`` (or that folder) keyed by the config hash and
    reloads them next time: worth it for large or 128 px sets; 32 px sets generate in seconds.
    """
    cfg = config or SceneConfig()
    _check_n(n)
    _check_seed(seed)
    path = None
    if cache:
        path = cache_root(None if cache is True else cache) / "scenes" / f"{config_key(cfg, n=n, seed=seed)}.pt"
        if not amodal and path.is_file():
            saved = torch.load(path, weights_only=True)
            return Scenes(**saved["tensors"], captions=saved["captions"], config=cfg)
    parts = [_scene_chunk(cfg, seed, c, size, amodal) for c, _, size in _chunks(n)]

    def cat(key: str) -> torch.Tensor | None:
        if key not in parts[0]:
            return None
        return torch.from_numpy(np.ascontiguousarray(np.concatenate([p[key] for p in parts])))

    objects = {k: torch.from_numpy(np.concatenate([p["objects"][k] for p in parts])) for k in parts[0]["objects"]}
    tensors = dict(
        images=cat("images"),
        semantic=cat("semantic"),
        instance=cat("instance"),
        objects=objects,
        counts=cat("counts"),
        background=cat("background"),
        caption_source=cat("caption_source"),
        height=cat("height"),
        landslide=cat("landslide"),
    )
    captions = [c for p in parts for c in p["captions"]]
    if path is not None and not amodal:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            torch.save({"tensors": tensors, "captions": captions}, tmp)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    return Scenes(**tensors, captions=captions, config=cfg, amodal=cat("amodal"))


# --- clips -------------------------------------------------------------------------------


@dataclass
class Clips:
    """Short clips of moving objects: ``frames`` uint8 (N, T, 3, S, S), ``semantic`` and ``instance``
    (N, T, S, S) as in :class:`Scenes` (an object keeps its instance id in every frame), ``centres``
    (N, T, M, 2) per frame, ``velocity`` (N, M, 2) in pixels per frame at the start (the sign flips at
    each bounce), and the static per-object attributes ``objects`` (N, M)."""

    frames: torch.Tensor
    semantic: torch.Tensor
    instance: torch.Tensor
    centres: torch.Tensor
    velocity: torch.Tensor
    objects: dict[str, torch.Tensor]
    background: torch.Tensor
    config: SceneConfig

    def __len__(self) -> int:
        return self.frames.shape[0]


def _bounce(p: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Fold positions into [lo, hi] as a point bouncing elastically between the two walls."""
    span = hi - lo
    q = np.mod(p - lo, 2 * span)
    return lo + np.where(q > span, 2 * span - q, q)


def make_clips(
    n: int,
    frames: int = 8,
    config: SceneConfig | None = None,
    seed: int = 0,
    speed: tuple[float, float] = (0.02, 0.06),
) -> Clips:
    """``n`` clips of ``frames`` frames: the objects of a scene move at constant velocities (``speed``:
    fraction of the side per frame, random directions) and bounce off the frame; the background,
    object looks and depth order stay fixed. Pixel shift knobs apply per frame (texture per clip)."""
    cfg = config or SceneConfig()
    _check_n(n)
    _check_seed(seed)
    if not (isinstance(frames, int) and 2 <= frames <= 64):
        raise ValueError(f"frames must be an integer in [2, 64], got {frames!r}")
    if not 0 <= speed[0] <= speed[1] <= 0.5:
        raise ValueError(f"speed must be (low, high) with 0 <= low <= high <= 0.5, got {speed}")
    if cfg.height or cfg.landslide:
        raise ValueError("clips have no height or landslide channel yet; use make_scenes for those")
    s, t = cfg.image_size, frames
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("frames", "semantic", "instance", "centres", "velocity", "bg")}
    objects: list[dict[str, np.ndarray]] = []
    for c, _, size in _chunks(n):
        layout = _scene_layout(_rng(seed, c, _LAYOUT), size, cfg)
        rng = _rng(seed, c, _MOTION)
        heading = rng.uniform(0, 2 * math.pi, layout.present.shape)
        pace = rng.uniform(*speed, layout.present.shape) * s
        velocity = (np.stack([np.cos(heading), np.sin(heading)], -1) * pace[..., None]).astype(np.float32)
        steps = np.arange(t, dtype=np.float32)[None, :, None, None]
        r = layout.radius[:, None, :, None]
        centres = _bounce(layout.centre[:, None] + velocity[:, None] * steps, r, s - r).astype(np.float32)
        moving = layout.repeat(t)
        moving.centre = centres.reshape(size * t, *centres.shape[2:])
        image, kind = _background(_rng(seed, c, _BACKGROUND), size, s, cfg.backgrounds)
        painted = _paint(moving, np.repeat(image, t, axis=0), cfg.shift.palette)
        pixels = _to_uint8(_apply_shift(painted.image, cfg.shift, seed, c, group=t))
        out["frames"].append(pixels.reshape(size, t, 3, s, s))
        out["semantic"].append(painted.semantic.reshape(size, t, s, s))
        out["instance"].append(painted.instance.reshape(size, t, s, s))
        out["centres"].append(np.where(layout.present[:, None, :, None], centres, 0))
        out["velocity"].append(np.where(layout.present[..., None], velocity, 0))
        out["bg"].append(kind)
        first = _Painted(painted.image[::t], painted.instance[::t], painted.semantic[::t], painted.amodal[::t])
        layout0 = replace(layout, centre=centres[:, 0])
        objects.append({k: v for k, v in _attributes(layout0, first, s).items() if k not in ("box", "visible")})

    def cat(key: str) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(np.concatenate(out[key])))

    return Clips(
        frames=cat("frames"),
        semantic=cat("semantic"),
        instance=cat("instance"),
        centres=cat("centres"),
        velocity=cat("velocity"),
        objects={k: torch.from_numpy(np.concatenate([o[k] for o in objects])) for k in objects[0]},
        background=cat("bg"),
        config=cfg,
    )


# --- the classification view -------------------------------------------------------------


@dataclass(frozen=True)
class ClassificationView:
    """The classification view: label = shape of the main object, everything else a nuisance.

    The main object (any of ``shapes``, radius ``scale`` × side, anywhere in the frame, any colour
    of SCENE_COLOURS, striped with probability ``striped``) is painted in front of
    ``clutter`` = (min, max) smaller distractors (radius ``clutter_scale`` × side, any shape and
    colour) over a background of any kind in ``backgrounds`` and any colour in ``background_value``.
    ``shift`` applies the domain-shift knobs on top. The defaults are the calibrated view of
    shared/data/SCENES.md (random ConvNet kNN ≈ 0.18, SimCLR after 20 CPU epochs ≈ 0.34, supervised ≈ 0.93).
    """

    shapes: tuple[str, ...] = SCENE_SHAPES
    scale: tuple[float, float] = (0.25, 0.45)
    clutter: tuple[int, int] = (0, 2)
    clutter_scale: tuple[float, float] = (0.06, 0.12)
    striped: float = 0.25
    backgrounds: tuple[str, ...] = BACKGROUNDS
    background_value: tuple[float, float] = (0.05, 0.8)
    shift: SceneShift = field(default_factory=SceneShift)

    def __post_init__(self) -> None:
        _check_names("shapes", self.shapes, SCENE_SHAPES)
        _check_names("backgrounds", self.backgrounds, BACKGROUNDS)
        if len(self.shapes) < 2:
            raise ValueError("a classification view needs at least two shapes")
        for name in ("scale", "clutter_scale", "background_value"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi <= (0.5 if name != "background_value" else 1.0):
                raise ValueError(f"{name} must be (low, high) with 0 < low <= high <= 0.5 (1 for values)")
        if not 0 <= self.clutter[0] <= self.clutter[1] <= MAX_OBJECTS - 1:
            raise ValueError(f"clutter must be (min, max) with 0 <= min <= max <= {MAX_OBJECTS - 1}")
        if not 0 <= self.striped <= 1:
            raise ValueError(f"striped must be a probability, got {self.striped}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ClassificationView:
        """From a plain mapping (a preset's ``scene_view``), lists read as tuples."""
        return _from_mapping(cls, values, "classification view")


def _classification_layout(rng: np.random.Generator, labels: np.ndarray, view: ClassificationView, s: int) -> _Layout:
    """Slots 0..M-2: distractors (present for the first ``k`` of them); slot M-1: the main object."""
    n, m = len(labels), view.clutter[1] + 1
    count = rng.integers(view.clutter[0], view.clutter[1] + 1, n)
    present = np.arange(m)[None] < count[:, None]
    present[:, -1] = True
    shape = rng.integers(0, len(SCENE_SHAPES), (n, m))
    shape[:, -1] = _indices(view.shapes, SCENE_SHAPES)[labels]
    colour = rng.integers(0, len(SCENE_COLOURS), (n, m))
    lo, hi = np.full((n, m), view.clutter_scale[0]), np.full((n, m), view.clutter_scale[1])
    lo[:, -1], hi[:, -1] = view.scale
    radius = ((lo + (hi - lo) * rng.random((n, m))) * s).astype(np.float32)
    frac = (radius / s - SIZE_RANGES[0][0]) / (SIZE_RANGES[-1][1] - SIZE_RANGES[0][0])
    size = np.clip((frac * 3).astype(np.int64), 0, 2)
    centre = (radius[..., None] + rng.random((n, m, 2)) * (s - 2 * radius[..., None])).astype(np.float32)
    pattern = (rng.random((n, m)) < view.striped).astype(np.int64)
    tint = rng.normal(0, 0.06, (n, m, 3)).astype(np.float32)
    light = rng.uniform(0, 2 * math.pi, (n, m)).astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi, (n, m)).astype(np.float32)
    return _Layout(present, shape, colour, size, radius, angle, centre, pattern, tint, light)


def make_scene_classification(
    n_per_class: int = 100,
    image_size: int = 32,
    seed: int = 0,
    view: ClassificationView | None = None,
    return_masks: bool = False,
) -> ImageArrays | tuple[ImageArrays, torch.Tensor]:
    """The classification view: ``n_per_class`` images per shape, uint8 (N, 3, S, S), labels = index
    of the main object's shape in ``view.shapes`` (classes named by shape). ``return_masks`` also
    returns the semantic masks (N, S, S) (1 + index into SCENE_SHAPES, clutter included)."""
    view = view or ClassificationView()
    _check_n(n_per_class, "n_per_class")
    _check_seed(seed)
    if not (isinstance(image_size, int) and 16 <= image_size <= 128):
        raise ValueError(f"image_size must be an integer in [16, 128], got {image_size!r}")
    k = len(view.shapes)
    labels = np.repeat(np.arange(k), n_per_class)
    _rng(seed, 0, _LABELS).shuffle(labels)
    images, masks = [], []
    for c, start, size in _chunks(len(labels)):
        layout = _classification_layout(_rng(seed, c, _LAYOUT), labels[start : start + size], view, image_size)
        background, _ = _background(
            _rng(seed, c, _BACKGROUND), size, image_size, view.backgrounds, view.background_value
        )
        painted = _paint(layout, background, view.shift.palette)
        images.append(_to_uint8(_apply_shift(painted.image, view.shift, seed, c)))
        masks.append(painted.semantic)
    arrays = ImageArrays(
        torch.from_numpy(np.concatenate(images)),
        torch.from_numpy(labels.astype(np.int64)),
        tuple(view.shapes),
        f"scenes{image_size}",
    )
    return (arrays, torch.from_numpy(np.concatenate(masks))) if return_masks else arrays


# --- the Hugging Face road ---------------------------------------------------------------


def hf_features(config: SceneConfig):
    """The ``datasets.Features`` of :func:`scenes_dataset` for ``config``."""
    from datasets import Array2D, ClassLabel, Features, Image, Sequence, Value

    obj = {
        "shape": ClassLabel(names=list(SCENE_SHAPES)),
        "colour": ClassLabel(names=list(SCENE_COLOURS)),
        "size": ClassLabel(names=list(SIZES)),
        "pattern": ClassLabel(names=list(PATTERNS)),
        "position": ClassLabel(names=list(POSITIONS)),
        "radius": Value("float32"),
        "angle": Value("float32"),
        "centre": Sequence(Value("float32"), length=2),
        "box": Sequence(Value("int64"), length=4),
        "area": Value("int64"),
        "visible": Value("int64"),
        "depth": Value("int64"),
    }
    features = {
        "image": Image(),
        "semantic": Image(),
        "instance": Image(),
        "objects": [obj],
        "counts": Sequence(Value("int64"), length=len(SCENE_SHAPES)),
        "background": ClassLabel(names=list(BACKGROUNDS)),
        "captions": Sequence(Value("string")),
        "caption_source": Value("int64"),
    }
    if config.height:
        features["height"] = Array2D(shape=(config.image_size, config.image_size), dtype="float32")
    if config.landslide:
        features["landslide"] = Image()
    return Features(features)


def _hf_rows(config: dict, n: int, seed: int) -> Iterator[dict[str, Any]]:
    """The rows of :func:`scenes_dataset`, chunk by chunk (the same chunks as :func:`make_scenes`)."""
    from PIL import Image as PILImage

    cfg = SceneConfig.from_dict(config)
    for c, _, size in _chunks(n):
        part = _scene_chunk(cfg, seed, c, size, amodal=False)
        obj = part["objects"]
        for i in range(size):
            row = {
                "image": PILImage.fromarray(part["images"][i].transpose(1, 2, 0)),
                "semantic": PILImage.fromarray(part["semantic"][i]),
                "instance": PILImage.fromarray(part["instance"][i]),
                "objects": [
                    {k: obj[k][i, j].tolist() for k in obj if k != "present"} for j in np.flatnonzero(obj["present"][i])
                ],
                "counts": part["counts"][i].tolist(),
                "background": int(part["background"][i]),
                "captions": part["captions"][i],
                "caption_source": int(part["caption_source"][i]),
            }
            if cfg.height:
                row["height"] = part["height"][i, 0]
            if cfg.landslide:
                row["landslide"] = PILImage.fromarray(part["landslide"][i].astype(np.uint8) * 255)
            yield row


def scenes_dataset(
    n: int, config: SceneConfig | None = None, seed: int = 0, cache_dir: str | os.PathLike | None = None
):
    """``n`` scenes as a Hugging Face ``datasets.Dataset`` (the way users load data).

    Columns: ``image`` (RGB), ``semantic`` and ``instance`` (8-bit masks, :class:`Scenes`'s ids),
    ``objects`` (a list of the present objects' attributes, names as ``ClassLabel``), ``counts``,
    ``background``, ``captions``, ``caption_source``, and ``height`` (float32 S×S) / ``landslide``
    (mask, 255 inside) when the config asks. Built with ``Dataset.from_generator`` from the same
    chunks as :func:`make_scenes` (so the pixels are identical), saved under
    ``<cache_dir or $REPRO_CACHE_DIR or ~/.cache/repro>/scenes/hf-<config hash>`` and loaded from
    there on later calls.
    """
    from datasets import Dataset

    cfg = config or SceneConfig()
    _check_n(n)
    _check_seed(seed)
    root = cache_root(cache_dir) / "scenes"
    target = root / f"hf-{config_key(cfg, n=n, seed=seed)}"
    if not (target / "dataset_info.json").is_file():
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=root, prefix=f".{target.name}.") as tmp:
            built = Dataset.from_generator(
                _hf_rows,
                features=hf_features(cfg),
                gen_kwargs={"config": asdict(cfg), "n": n, "seed": seed},
                cache_dir=os.path.join(tmp, "build"),
            )
            built.save_to_disk(os.path.join(tmp, "saved"))
            del built
            try:
                os.replace(os.path.join(tmp, "saved"), target)  # atomic: a reader never sees half a data set
            except OSError:
                if not (target / "dataset_info.json").is_file():  # not a concurrent writer that won the race
                    raise
    return Dataset.load_from_disk(str(target))


__all__ = [
    "BACKGROUNDS",
    "CHUNK",
    "PALETTES",
    "PATTERNS",
    "POSITIONS",
    "RELATIONS",
    "SCENE_COLOURS",
    "SCENE_SHAPES",
    "SIZES",
    "ClassificationView",
    "Clips",
    "SceneConfig",
    "SceneShift",
    "Scenes",
    "cache_root",
    "config_key",
    "hf_features",
    "make_clips",
    "make_scene_classification",
    "make_scenes",
    "palette_table",
    "scenes_dataset",
]
