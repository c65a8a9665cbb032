"""Models of the arms: contrastive pretraining with labels (SupReMix, SupCon, SimCLR) and L1 from scratch.

Each is a *method* for ``shared.engine.fit``: ``forward(batch)`` takes ``{"inputs", "targets"}``
(:class:`methods.supremix.data.TensorBatches`) and returns ``{"loss": ...}``. The encoder is what the
linear regression probe reads afterwards.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from shared.augment import normalize


class ImageRegressionAugment(nn.Module):
    """A random view of a uint8 (B, C, H, W) batch that keeps the image's angle and content scale.

    Translation by up to ``shift`` of the width, isotropic zoom in [1 − zoom, 1 + zoom] (no rotation,
    no flip, no aspect change: they would change the regression target), then brightness and contrast
    factors in [1 − jitter, 1 + jitter]; normalised with ``mean``/``std``.
    """

    def __init__(
        self,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        shift: float = 0.1,
        zoom: float = 0.1,
        jitter: float = 0.4,
    ) -> None:
        super().__init__()
        if not (0 <= shift < 1 and 0 <= zoom < 1 and 0 <= jitter < 1):
            raise ValueError(f"shift, zoom and jitter must be in [0, 1), got {shift}, {zoom}, {jitter}")
        self.mean, self.std = tuple(mean), tuple(std)
        self.shift, self.zoom, self.jitter = shift, zoom, jitter

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"expected a uint8 (B, C, H, W) batch, got {images.dtype} {tuple(images.shape)}")
        n, dev = images.shape[0], images.device
        x = images.float().div_(255)

        def uniform(spread: float) -> torch.Tensor:
            return (2 * torch.rand(n) - 1).mul_(spread).to(dev)

        scale = 1 + uniform(self.zoom)
        theta = torch.zeros(n, 2, 3, device=dev)
        theta[:, 0, 0] = theta[:, 1, 1] = scale
        theta[:, 0, 2], theta[:, 1, 2] = 2 * uniform(self.shift), 2 * uniform(self.shift)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        x = (x * (1 + uniform(self.jitter)).view(n, 1, 1, 1)).clamp(0, 1)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - mean) * (1 + uniform(self.jitter)).view(n, 1, 1, 1) + mean).clamp(0, 1)
        return normalize(x, self.mean, self.std)


class FeatureNoise(nn.Module):
    """A random view of standardised tabular features: x + σ·ε, ε ~ N(0, I)."""

    def __init__(self, std: float = 0.1) -> None:
        super().__init__()
        if not std >= 0:
            raise ValueError(f"noise std must be non-negative, got {std}")
        self.std = std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.std * torch.randn(x.shape).to(x.device, x.dtype)


def mlp_encoder(in_dim: int, widths: tuple[int, ...]) -> nn.Sequential:
    """Linear → BN → ReLU blocks; ``out_dim`` is the last width."""
    layers: list[nn.Module] = []
    d = in_dim
    for w in widths:
        layers += [nn.Linear(d, w, bias=False), nn.BatchNorm1d(w), nn.ReLU(inplace=True)]
        d = w
    net = nn.Sequential(*layers)
    net.out_dim = d  # type: ignore[attr-defined]
    return net


class ContrastiveRegression(nn.Module):
    """Two views → encoder → head → ``loss(z1, z2, labels)`` (or ``loss(z1, z2)`` when ``uses_labels`` is False).

    The batch holds ``inputs`` (views made here by ``augment``) or ``views`` (made by DataLoader
    workers), and ``targets``.

    The loss sees ``round(target / label_unit)``: labels in the units of the paper's window n and
    weights (integer ages there; integer degrees, or diabetes progression in units of 4, here).
    """

    def __init__(
        self,
        encoder: nn.Module,
        head: nn.Module,
        loss: Callable[..., torch.Tensor],
        augment: nn.Module | None,
        uses_labels: bool = True,
        label_unit: float = 1.0,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if not label_unit > 0:
            raise ValueError(f"label_unit must be positive, got {label_unit}")
        self.encoder, self.head, self.loss, self.augment = encoder, head, loss, augment
        self.uses_labels, self.label_unit, self.channels_last = uses_labels, label_unit, channels_last

    def loss_labels(self, targets: torch.Tensor) -> torch.Tensor:
        return torch.round(targets.float() / self.label_unit)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        if "views" in batch:  # views made by DataLoader workers (paper scale)
            x = torch.cat(list(batch["views"]))
        else:
            inputs = batch["inputs"]
            with torch.autocast(inputs.device.type, enabled=False):
                x = torch.cat([self.augment(inputs), self.augment(inputs)])
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        z1, z2 = self.head(self.encoder(x)).chunk(2)
        if self.uses_labels:
            return {"loss": self.loss(z1, z2, self.loss_labels(batch["targets"]))}
        return {"loss": self.loss(z1, z2)}


class DirectRegression(nn.Module):
    """L1 from scratch: one augmented view → encoder → linear → ŷ, trained on |ŷ − (y − μ)/σ|.

    μ, σ are the training targets' mean and std (the head predicts standardised targets).
    """

    def __init__(
        self, encoder: nn.Module, augment: nn.Module, target_mean: float, target_std: float, channels_last: bool = False
    ) -> None:
        super().__init__()
        if not target_std > 0:
            raise ValueError(f"target_std must be positive, got {target_std}")
        self.encoder, self.augment = encoder, augment
        self.regressor = nn.Linear(encoder.out_dim, 1)
        self.target_mean, self.target_std, self.channels_last = float(target_mean), float(target_std), channels_last

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Predictions in data units for already preprocessed inputs."""
        return self.regressor(self.encoder(x)).squeeze(1).float() * self.target_std + self.target_mean

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        inputs = batch["inputs"]
        with torch.autocast(inputs.device.type, enabled=False):
            x = self.augment(inputs)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        pred = self.regressor(self.encoder(x)).squeeze(1).float()
        target = (batch["targets"].float() - self.target_mean) / self.target_std
        return {"loss": F.l1_loss(pred, target)}
