"""BECLR's paper-scale views (official ``transform/build_transform.py``) and patch masking.

Each of the two views of an image (same distribution for both; the official second view's
solarisation is commented out) is

    RandomResizedCrop(224, scale (0.2, 1)) → ColorJitter(0.4, 0.4, 0.2, 0.1) with p = 0.8
    → grey p = 0.2 → Gaussian blur σ ∈ [0.1, 2] with p = 0.5 → RandAugment (2 ops, magnitude 10
    of 10) → horizontal flip 0.5 → vertical flip 0.5 → normalise.

Masked-image augmentation (official ``ImageFolderMask`` + ``apply_mask_resnet``): for each view a
BEiT-style block mask on the 16 px patch grid covers a fraction r ~ U(0.15 − 0.1, 0.15 + 0.1) of the
patches with rectangles of aspect ratio in (0.3, 1/0.3); the masked patches of the *student's* input
are set to zero (after normalisation); the teacher sees the whole view.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import torch
from torchvision.transforms import v2

from shared.data.hub import HubViews


def blur_kernel(sigma_max: float) -> int:
    """An odd kernel wide enough (±3σ) for the largest σ of the blur."""
    return 2 * math.ceil(3 * sigma_max) + 1


def view_transform(cfg: dict[str, Any]) -> v2.Compose:
    """One official BECLR view (PIL image or uint8 tensor in, normalised float tensor out).

    RandAugment runs on the 0–10 magnitude scale of the official (timm) version: 11 bins, so that
    ``randaug_magnitude = 10`` is the strongest setting (rotation 30°, translation 0.45 of the side).
    """
    mean, std = tuple(cfg["mean"]), tuple(cfg["std"])
    fill = [round(255 * m) for m in mean]  # the official fills geometric ops with the mean colour
    return v2.Compose(
        [
            v2.ToImage(),
            v2.RandomResizedCrop(cfg["image_size"], scale=tuple(cfg["crop_scale"]), antialias=True),
            v2.RandomApply([v2.ColorJitter(*cfg["jitter"])], p=cfg["jitter_p"]),
            v2.RandomGrayscale(cfg["grayscale_p"]),
            v2.RandomApply([v2.GaussianBlur(blur_kernel(2.0), sigma=(0.1, 2.0))], p=cfg["blur_p"]),
            v2.RandAugment(
                num_ops=cfg["randaug_ops"],
                magnitude=cfg["randaug_magnitude"],
                num_magnitude_bins=11,
                interpolation=v2.InterpolationMode.BILINEAR,
                fill=fill,
            ),
            v2.RandomHorizontalFlip(0.5),
            v2.RandomVerticalFlip(cfg["vflip_p"]),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
        ]
    )


def block_mask(
    grid: tuple[int, int],
    ratio: float,
    rng: random.Random | None = None,
    aspect: tuple[float, float] = (0.3, 1 / 0.3),
    attempts: int = 10,
) -> torch.Tensor:
    """Boolean (h, w) mask of about ``ratio · h · w`` patches made of random rectangles (BEiT-style).

    Rectangles of area ≥ (min(h, w) // 3)² (or what is left of the budget) and aspect ratio drawn
    log-uniformly in ``aspect`` are added while they cover new patches without exceeding the budget;
    it stops when ``attempts`` draws in a row add nothing.
    """
    if not 0 <= ratio < 1:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio}")
    rng = rng or random
    h, w = grid
    mask = torch.zeros(h, w, dtype=torch.bool)
    target = ratio * h * w
    low = (min(h, w) // 3) ** 2
    log_lo, log_hi = math.log(aspect[0]), math.log(aspect[1])
    covered = 0
    while covered < target:
        budget = target - covered
        added = 0
        for _ in range(attempts):
            area = rng.uniform(low, budget)
            shape = math.exp(rng.uniform(log_lo, log_hi))
            bh, bw = round(math.sqrt(area * shape)), round(math.sqrt(area / shape))
            if not (0 < bh < h and 0 < bw < w):
                continue
            top, left = rng.randint(0, h - bh), rng.randint(0, w - bw)
            new = int((~mask[top : top + bh, left : left + bw]).sum())
            if 0 < new <= budget:
                mask[top : top + bh, left : left + bw] = True
                added = new
                break
        if added == 0:
            break
        covered += added
    return mask


def mask_patches(x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``x`` (N, C, H, W) with the patches where ``masks`` (N, h, w) is True set to zero (patch H/h × W/w)."""
    (n, _, height, width), (m, h, w) = x.shape, masks.shape
    if n != m or height % h or width % w:
        raise ValueError(f"masks {tuple(masks.shape)} do not tile images {tuple(x.shape)} into whole patches")
    pixels = masks.repeat_interleave(height // h, 1).repeat_interleave(width // w, 2)
    return x.masked_fill(pixels.unsqueeze(1), 0.0)


class MaskedHubViews(HubViews):
    """``{"views": (v1, v2), "masks": (m1, m2), "labels": y}``: official BECLR views with a block mask each."""

    def __init__(
        self,
        hf_dataset,
        transform: Callable,
        grid: tuple[int, int],
        ratio: float,
        ratio_var: float,
        image_key: str = "image",
        label_key: str = "label",
    ) -> None:
        super().__init__(hf_dataset, transform, image_key, label_key)
        if not 0 <= ratio_var <= ratio:
            raise ValueError(f"mask ratio variation must be in [0, ratio], got {ratio_var} for ratio {ratio}")
        self.grid, self.ratio, self.ratio_var = grid, ratio, ratio_var

    def __getitem__(self, i: int) -> dict:
        item = super().__getitem__(i)
        lo, hi = self.ratio - self.ratio_var, self.ratio + self.ratio_var
        item["masks"] = tuple(block_mask(self.grid, random.uniform(lo, hi)) for _ in item["views"])
        return item
