"""SmallAlexNet, the encoder of CACR's (and Wang & Isola's) small-scale experiments, 32 px input.

Five 3×3 conv–BN–ReLU blocks (96, 192, 384, 384, 192 channels; 3×3/2 max-pools after blocks 1, 2
and 5), then fc6 and fc7 (4096, BN, ReLU) and fc8 (4096 → 128) followed by L2 normalisation.
Here fc1–fc7 is the backbone (its 4096-d output is what the official linear evaluation reads,
``layer_index=-2``) and fc8 the projection head; the losses normalise the projection.
Weights are drawn from N(0, 0.02), BatchNorm at identity, as in the official ``init_weights_``.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv(c_in: int, c_out: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]
    if pool:
        layers.append(nn.MaxPool2d(3, 2))
    return nn.Sequential(*layers)


def init_weights(module: nn.Module) -> None:
    """N(0, 0.02) weights, zero biases, BatchNorm γ = 1, β = 0 (official ``init_weights_``)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.normal_(m.weight, 0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class SmallAlexNet(nn.Module):
    """conv1–conv5 + fc6 + fc7 of SmallAlexNet: (B, C, 32, 32) → (B, 4096)."""

    def __init__(self, in_channels: int = 3, image_size: int = 32, hidden: int = 4096) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv(in_channels, 96, True),
            _conv(96, 192, True),
            _conv(192, 384, False),
            _conv(384, 384, False),
            _conv(384, 192, True),
        )
        with torch.no_grad():
            flat = self.features(torch.zeros(1, in_channels, image_size, image_size)).numel()
        self.fc = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(True),
            nn.Linear(hidden, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(True),
        )
        self.out_dim = hidden
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def small_alexnet_head(in_dim: int = 4096, out_dim: int = 128) -> nn.Linear:
    """fc8: the linear projection to the 128-d embedding (normalised by the loss)."""
    head = nn.Linear(in_dim, out_dim)
    init_weights(head)
    return head
