"""SimCLR-style augmentations, in two equivalent forms.

* :func:`simclr_transform` — the per-image ``torchvision.transforms.v2`` pipeline of
  SimCLR (random resized crop, horizontal flip, colour jitter, grayscale, optional blur),
  sized by image size. Used with DataLoader workers (the hub data sets, paper presets).
* :class:`BatchedSimCLRAugment` — the same family of operations applied to a whole
  uint8 batch at once with tensor ops (``grid_sample`` crops, vectorised jitter). On a
  2-core CPU per-image transforms cost as much as the ConvNet step; the batched form is
  ~10× faster. Differences to torchvision, by design: the crop box is clamped to the
  image instead of re-sampled up to 10 times, and the jitter operations run in a fixed
  order (brightness, contrast, saturation, hue) instead of a random one.

SimCLR's defaults (Chen et al., 2020): crop scale (0.08, 1), ratio (3/4, 4/3), flip 0.5,
colour jitter (0.8·s, 0.8·s, 0.8·s, 0.2·s) with strength s (s = 0.5 for CIFAR, 1 for
ImageNet) applied with p = 0.8, grayscale p = 0.2, Gaussian blur p = 0.5 with a kernel of
10% of the image side (ImageNet only).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import v2


@dataclass(frozen=True)
class AugmentConfig:
    """Parameters of a SimCLR view; defaults follow SimCLR's CIFAR setting."""

    image_size: int = 32
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_strength: float = 0.5
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    blur_p: float = 0.0
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)

    def __post_init__(self) -> None:
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
        for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be a probability, got {getattr(self, name)}")
        if self.image_size < 1:
            raise ValueError(f"image_size must be positive, got {self.image_size}")

    @classmethod
    def from_arm(cls, cfg: Mapping[str, Any]) -> AugmentConfig:
        """From an arm's config: ``image_size``, ``crop_scale``, ``jitter_strength``, ``mean`` and ``std``
        are required; ``flip_p``, ``jitter_p``, ``grayscale_p`` and ``blur_p`` keep the defaults above
        unless the arm sets them."""
        optional = {k: cfg[k] for k in ("flip_p", "jitter_p", "grayscale_p", "blur_p") if k in cfg}
        return cls(
            image_size=cfg["image_size"],
            crop_scale=tuple(cfg["crop_scale"]),
            jitter_strength=cfg["jitter_strength"],
            mean=tuple(cfg["mean"]),
            std=tuple(cfg["std"]),
            **optional,
        )

    @property
    def jitter(self) -> tuple[float, float, float, float]:
        s = self.jitter_strength
        return (0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)

    @property
    def blur_kernel(self) -> int:
        k = max(3, int(0.1 * self.image_size))
        return k if k % 2 == 1 else k + 1


def simclr_transform(cfg: AugmentConfig) -> v2.Compose:
    """Per-image SimCLR view (PIL image or uint8 tensor in, normalised float tensor out)."""
    b, c, s, h = cfg.jitter
    ops: list[nn.Module] = [
        v2.ToImage(),
        v2.RandomResizedCrop(cfg.image_size, scale=cfg.crop_scale, ratio=cfg.crop_ratio, antialias=True),
        v2.RandomHorizontalFlip(cfg.flip_p),
        v2.RandomApply([v2.ColorJitter(b, c, s, h)], p=cfg.jitter_p),
        v2.RandomGrayscale(cfg.grayscale_p),
    ]
    if cfg.blur_p > 0:
        ops.append(v2.RandomApply([v2.GaussianBlur(cfg.blur_kernel, sigma=(0.1, 2.0))], p=cfg.blur_p))
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(cfg.mean, cfg.std)]
    return v2.Compose(ops)


def eval_transform(image_size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> v2.Compose:
    """Resize (for larger inputs) + normalise, for feature extraction."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(image_size, antialias=True),
            v2.CenterCrop(image_size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
        ]
    )


def _grey(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    w = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def _rgb_to_yiq_rotation(angle: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) matrices that rotate the hue of RGB colours by ``angle`` radians (YIQ)."""
    to_yiq = torch.tensor(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
        dtype=angle.dtype,
        device=angle.device,
    )
    to_rgb = torch.linalg.inv(to_yiq)
    cos, sin = angle.cos(), angle.sin()
    rot = torch.zeros(len(angle), 3, 3, dtype=angle.dtype, device=angle.device)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    return to_rgb @ rot @ to_yiq


class BatchedSimCLRAugment(nn.Module):
    """One random SimCLR view of every image of a uint8 (B, C, H, W) batch, in one go.

    Output: float32 (B, C, S, S), normalised with ``cfg.mean``/``cfg.std``. Randomness is
    drawn from ``generator`` (or the global RNG), so a seeded step is reproducible.
    """

    def __init__(self, cfg: AugmentConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def _rand(self, n: int, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
        return torch.rand(n, generator=generator, device="cpu").to(device)

    def crop_and_flip(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        cfg, n = self.cfg, x.shape[0]
        area = cfg.crop_scale[0] + (cfg.crop_scale[1] - cfg.crop_scale[0]) * self._rand(n, x.device, generator)
        log_lo, log_hi = math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1])
        ratio = torch.exp(log_lo + (log_hi - log_lo) * self._rand(n, x.device, generator))
        w = torch.sqrt(area * ratio).clamp(max=1.0)  # fraction of the width
        h = torch.sqrt(area / ratio).clamp(max=1.0)
        cx = (2 * self._rand(n, x.device, generator) - 1) * (1 - w)
        cy = (2 * self._rand(n, x.device, generator) - 1) * (1 - h)
        flip = torch.where(self._rand(n, x.device, generator) < cfg.flip_p, -1.0, 1.0).to(x.device)
        theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
        theta[:, 0, 0], theta[:, 0, 2] = w * flip, cx
        theta[:, 1, 1], theta[:, 1, 2] = h, cy
        size = (n, x.shape[1], cfg.image_size, cfg.image_size)
        grid = F.affine_grid(theta, size, align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    def color_jitter(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        cfg, n, dev = self.cfg, x.shape[0], x.device
        b, c, s, h = cfg.jitter
        apply = (self._rand(n, dev, generator) < cfg.jitter_p).view(n, 1, 1, 1)

        def factor(strength: float) -> torch.Tensor:
            f = 1 + strength * (2 * self._rand(n, dev, generator) - 1)
            return f.view(n, 1, 1, 1)

        y = (x * factor(b)).clamp(0, 1)
        mean = _grey(y).mean(dim=(1, 2, 3), keepdim=True)
        y = ((y - mean) * factor(c) + mean).clamp(0, 1)
        if x.shape[1] == 3:
            g = _grey(y)
            y = ((y - g) * factor(s) + g).clamp(0, 1)
            angle = (2 * self._rand(n, dev, generator) - 1) * h * 2 * math.pi
            y = torch.einsum("bij,bjhw->bihw", _rgb_to_yiq_rotation(angle).to(y.dtype), y).clamp(0, 1)
        return torch.where(apply, y, x)

    def grayscale(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if x.shape[1] == 1 or self.cfg.grayscale_p == 0:
            return x
        apply = (self._rand(x.shape[0], x.device, generator) < self.cfg.grayscale_p).view(-1, 1, 1, 1)
        return torch.where(apply, _grey(x).expand_as(x), x)

    def blur(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if self.cfg.blur_p == 0:
            return x
        n, ch, k = x.shape[0], x.shape[1], self.cfg.blur_kernel
        sigma = 0.1 + 1.9 * self._rand(n, x.device, generator)
        apply = self._rand(n, x.device, generator) < self.cfg.blur_p
        t = torch.arange(k, device=x.device, dtype=x.dtype) - k // 2
        kern = torch.exp(-(t[None] ** 2) / (2 * sigma[:, None] ** 2))
        kern = kern / kern.sum(1, keepdim=True)
        kern = torch.where(apply[:, None], kern, (t == 0).to(x.dtype)[None].expand_as(kern))
        # separable blur as grouped convolutions, one kernel per image
        y = x.reshape(1, n * ch, *x.shape[2:])
        kx = kern.repeat_interleave(ch, 0).view(n * ch, 1, 1, k)
        y = F.conv2d(F.pad(y, (k // 2, k // 2, 0, 0), mode="reflect"), kx, groups=n * ch)
        y = F.conv2d(F.pad(y, (0, 0, k // 2, k // 2), mode="reflect"), kx.transpose(2, 3), groups=n * ch)
        return y.view_as(x)

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"expected a uint8 (B, C, H, W) batch, got {images.dtype} {tuple(images.shape)}")
        x = images.float().div_(255)
        x = self.crop_and_flip(x, generator)
        x = self.color_jitter(x, generator)
        x = self.grayscale(x, generator)
        x = self.blur(x, generator)
        return normalize(x, self.cfg.mean, self.cfg.std)


def normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - m) / s


def to_model_input(
    images: torch.Tensor, image_size: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """Un-augmented uint8 batch → normalised float, resized to ``image_size`` if needed."""
    x = images.float().div(255)
    if x.shape[-1] != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    return normalize(x, mean, std)
