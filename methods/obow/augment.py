"""OBoW's three inputs per image (official ``obow/datasets.py``):

* the teacher's view: the *full* image (ImageNet: Resize 256 → CenterCrop 224), random
  horizontal flip, no colour distortion;
* ``n`` crops (2 × 160 px from scale (0.08, 0.6)) with colour jitter (0.4, 0.4, 0.4, 0.1)
  p 0.8, grayscale 0.2, blur p 0.5 and flip — :class:`shared.multicrop.MultiCropAugment`;
* patches: the image is random-resized-cropped to S px (256, scale (0.6, 1)) with jitter,
  grayscale and flip (no blur), then a 3×3 grid of overlapping P-px patches (96) is cut, each
  shifted by a random 0..J px (24), and ``m`` of the 9 (5) are kept at random.

Batched tensor forms (whole uint8 batch, no per-image loop) for the in-memory presets, and a
per-image form (:func:`obow_transform`, :class:`HubOBoW`) for DataLoader workers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import torch
from torch import nn
from torchvision.transforms import v2

from shared.augment import AugmentConfig, BatchedSimCLRAugment, normalize, simclr_transform
from shared.multicrop import multicrop_transform


def teacher_view(
    images: torch.Tensor, mean: Sequence[float], std: Sequence[float], flip_p: float = 0.5
) -> torch.Tensor:
    """uint8 (B, C, H, W) → normalised float, each image flipped horizontally with probability ``flip_p``."""
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"expected a uint8 (B, C, H, W) batch, got {images.dtype} {tuple(images.shape)}")
    x = images.float().div_(255)
    flip = (torch.rand(len(x)) < flip_p).to(x.device).view(-1, 1, 1, 1)
    return normalize(torch.where(flip, x.flip(-1), x), tuple(mean), tuple(std))


def patch_grid_offsets(image_size: int, patch_size: int, jitter: int, per_side: int = 3) -> int:
    """The grid step ``(S − P − J) // (n − 1)`` of the official ``CropImagePatches``."""
    if per_side < 2:
        raise ValueError(f"the patch grid needs at least 2 patches per side, got {per_side}")
    step = (image_size - patch_size - jitter) // (per_side - 1)
    if patch_size < 1 or jitter < 0 or step < 0:
        raise ValueError(f"patches of {patch_size} px with jitter {jitter} do not fit a {image_size} px image")
    return step


def cut_patches(
    x: torch.Tensor, patch_size: int, jitter: int, num_patches: int, per_side: int = 3
) -> list[torch.Tensor]:
    """``num_patches`` jittered grid patches of every image of a float (B, C, S, S) batch: a list of (B, C, P, P).

    Image b's patches come from ``num_patches`` distinct random cells of the ``per_side²`` grid,
    cell (i, j) at top-left (i·step + U{0..J}, j·step + U{0..J}).
    """
    b, _, h, w = x.shape
    if h != w:
        raise ValueError(f"patches are cut from square images, got {h}×{w}")
    if not 1 <= num_patches <= per_side**2:
        raise ValueError(f"num_patches must lie in [1, {per_side**2}], got {num_patches}")
    step = patch_grid_offsets(h, patch_size, jitter, per_side)
    cells = torch.rand(b, per_side**2).argsort(dim=1)[:, :num_patches]  # (B, m) distinct cells
    top = (cells // per_side) * step + torch.randint(0, jitter + 1, (b, num_patches))
    left = (cells % per_side) * step + torch.randint(0, jitter + 1, (b, num_patches))
    r = torch.arange(patch_size)
    rows = (top[..., None] + r).to(x.device)  # (B, m, P)
    cols = (left[..., None] + r).to(x.device)
    batch = torch.arange(b, device=x.device).view(b, 1, 1, 1)
    patches = x[batch, :, rows[..., :, None], cols[..., None, :]]  # (B, m, P, P, C)
    return list(patches.permute(1, 0, 4, 2, 3).contiguous().unbind(0))


class ImagePatches(nn.Module):
    """Batched patch branch: random-resized crop to ``base.image_size`` with the colour distortion
    of ``base`` (the official patches have no blur), then :func:`cut_patches`."""

    def __init__(self, base: AugmentConfig, patch_size: int, jitter: int, num_patches: int = 5) -> None:
        super().__init__()
        patch_grid_offsets(base.image_size, patch_size, jitter)
        if not 1 <= num_patches <= 9:
            raise ValueError(f"num_patches must lie in [1, 9], got {num_patches}")
        self.augment = BatchedSimCLRAugment(replace(base, blur_p=0.0))
        self.patch_size, self.jitter, self.num_patches = patch_size, jitter, num_patches

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return cut_patches(self.augment(images), self.patch_size, self.jitter, self.num_patches)


def obow_transform(
    crop_base: AugmentConfig,
    crops: Sequence,
    patch_base: AugmentConfig | None,
    patch_size: int,
    patch_jitter: int,
    num_patches: int,
    teacher_resize: int = 256,
    teacher_size: int = 224,
) -> Callable:
    """Per-image form: ``image -> {"teacher": t, "crops": [..], "patches": [..]}`` (DataLoader workers)."""
    teacher = v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(teacher_resize, antialias=True),
            v2.CenterCrop(teacher_size),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(crop_base.mean, crop_base.std),
        ]
    )
    make_crops = multicrop_transform(crop_base, crops)
    patch_view = simclr_transform(replace(patch_base, blur_p=0.0)) if patch_base is not None else None

    def apply(image) -> dict:
        out = {"teacher": teacher(image), "crops": make_crops(image), "patches": []}
        if patch_view is not None and num_patches > 0:
            x = patch_view(image).unsqueeze(0)
            out["patches"] = [p[0] for p in cut_patches(x, patch_size, patch_jitter, num_patches)]
        return out

    return apply


class HubOBoW(torch.utils.data.Dataset):
    """``{"teacher", "crops", "patches", "labels"}`` per item of a hub image data set (default collate batches them)."""

    def __init__(self, hf_dataset, transform: Callable, image_key: str = "image", label_key: str = "label") -> None:
        self.ds, self.transform = hf_dataset, transform
        self.image_key, self.label_key = image_key, label_key

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict:
        item = self.ds[int(i)]
        return {**self.transform(item[self.image_key].convert("RGB")), "labels": item[self.label_key]}
