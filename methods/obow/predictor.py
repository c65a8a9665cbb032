"""The student side of OBoW: a dynamic BoW prediction head (§3.3 of the paper).

The classifier over the K words is *generated* from the current vocabulary, so it follows the
online-updated words. For each BoW level l with words v_k ∈ R^{C_l} and the student's globally
average-pooled feature s(x̃) ∈ R^C of a perturbed crop x̃:

    w_k    = L2norm( Linear_{2C→C}( ReLU( BN( Linear_{C_l→2C, no bias}( L2norm(v_k) ) ) ) ) )
    q(x̃)  = softmax_k( κ · s(x̃)ᵀ w_k )

The generated weights are unit vectors (the authors: normalising them matters, as word
frequencies are unbalanced); s(x̃) is *not* normalised (normalising it cost a little), so the
head is a cosine classifier only on the weight side, with scale κ (5 for ResNet-18, 8 for
ResNet-50). The BatchNorm of the generator sees the K words as its batch. The generator runs
once per training step, whatever the number of crop types (official ``BoWPredictor.forward``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class L2Normalize(nn.Module):
    """Rows to unit L2 norm."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1)


def weight_generator(word_dim: int, feature_dim: int, hidden_dim: int | None = None) -> nn.Sequential:
    """``L2norm → Linear(C_l, 2C, no bias) → BN → ReLU → Linear(2C, C) → L2norm``: words (K, C_l) → weights (K, C)."""
    hidden = 2 * feature_dim if hidden_dim is None else hidden_dim
    for name, value in (("word_dim", word_dim), ("feature_dim", feature_dim), ("hidden_dim", hidden)):
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return nn.Sequential(
        L2Normalize(),
        nn.Linear(word_dim, hidden, bias=False),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, feature_dim),
        L2Normalize(),
    )


class BoWPredictor(nn.Module):
    """One weight generator per BoW level; ``forward(features, vocabularies)`` → logits per level.

    Args:
        word_dims: C_l of each level's words (e.g. (1024, 2048) for ResNet-50 conv4/conv5).
        feature_dim: C, the student's pooled feature size (the weights' size).
        kappa: κ > 0, the fixed scale of the logits.
        hidden_dim: the generator's hidden size (official: 2C).

    Example:
        >>> head = BoWPredictor((64, 128), feature_dim=128, kappa=5.0)
        >>> logits = head(torch.randn(8, 128), [torch.rand(256, 64), torch.rand(256, 128)])  # [(8, 256)] * 2
    """

    def __init__(
        self, word_dims: Sequence[int], feature_dim: int, kappa: float = 8.0, hidden_dim: int | None = None
    ) -> None:
        super().__init__()
        if not word_dims:
            raise ValueError("the predictor needs at least one BoW level")
        if not (isinstance(kappa, (int, float)) and kappa > 0):
            raise ValueError(f"kappa must be a positive number, got {kappa!r}")
        self.generators = nn.ModuleList(weight_generator(int(d), feature_dim, hidden_dim) for d in word_dims)
        self.feature_dim, self.kappa = feature_dim, float(kappa)

    def weights(self, vocabularies: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The unit classifier weights (K_l, C) of each level, generated from the words."""
        if len(vocabularies) != len(self.generators):
            raise ValueError(f"expected {len(self.generators)} vocabularies, got {len(vocabularies)}")
        return [gen(v.detach()) for gen, v in zip(self.generators, vocabularies, strict=True)]

    def logits(self, features: torch.Tensor, weights: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """``κ · s wᵀ`` per level, (N, K_l) in at least float32, for features (N, C) and generated ``weights``.

        The training step generates the weights once (:meth:`weights`) and scores every crop type
        with them, as the official ``BoWPredictor.forward`` does for its list of features.
        """
        if features.ndim != 2 or features.shape[1] != self.feature_dim:
            raise ValueError(f"features must be (N, {self.feature_dim}), got {tuple(features.shape)}")
        if len(weights) != len(self.generators):
            raise ValueError(f"expected {len(self.generators)} weight matrices, got {len(weights)}")
        dtype = torch.float64 if features.dtype == torch.float64 else torch.float32
        with torch.autocast(features.device.type, enabled=False):
            s = features.to(dtype)
            return [self.kappa * (s @ w.to(dtype).T) for w in weights]

    def forward(self, features: torch.Tensor, vocabularies: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """:meth:`logits` of ``features`` with weights generated from ``vocabularies`` (one generator pass)."""
        if features.ndim != 2 or features.shape[1] != self.feature_dim:
            raise ValueError(f"features must be (N, {self.feature_dim}), got {tuple(features.shape)}")
        return self.logits(features, self.weights(vocabularies))

    def extra_repr(self) -> str:
        return f"kappa={self.kappa}"
