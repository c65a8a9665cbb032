"""The heads compared by the paper: SimCLR's MLP projector, none, and the fixed re-weighting head.

Xue et al., "Investigating the Benefits of Projection Head for Representation Learning",
ICLR 2024. The theory says a trainable head helps because gradient descent weights
features progressively more unequally with depth (the pre-projection layer weights feature i
by ≈ √σ_i where the output weights it by σ_i). The paper's alternative makes that weighting
explicit and fixed: a non-trainable diagonal layer

    g(h) = diag(w) h,   w_i = κ^{−i},  i = 0 … d−1   (κ = 1.05 in the coauthor code),

applied to the encoder's output h ∈ R^d. The contrastive loss sees g(h); downstream tasks use
h (recoverable exactly, g is invertible: h = diag(κ^{i}) g(h)).
"""

from __future__ import annotations

import torch
from torch import nn

from shared.heads import mlp_head

HEADS = ("mlp", "reweight", "none")


def reweight_weights(dim: int, kappa: float) -> torch.Tensor:
    """``[1, κ^{-1}, κ^{-2}, …, κ^{-(d-1)}]`` in float32."""
    if dim < 1:
        raise ValueError(f"dim must be positive, got {dim}")
    if not kappa >= 1.0:
        raise ValueError(f"kappa must be >= 1 (1 = no re-weighting), got {kappa}")
    return torch.float_power(torch.tensor(float(kappa)), -torch.arange(dim, dtype=torch.float64)).float()


class ReweightHead(nn.Module):
    """Fixed diagonal re-weighting head ``z = h ⊙ [κ^{-i}]_i``: no trainable parameter.

    The weights are a buffer (they follow ``.to(device)`` and the checkpoint, never the
    optimiser). ``invert(z)`` recovers the pre-projection representation.

    Example:
        >>> head = ReweightHead(256, kappa=1.05)
        >>> z = head(torch.randn(8, 256))  # z[:, i] = h[:, i] / 1.05**i
    """

    def __init__(self, dim: int, kappa: float = 1.05) -> None:
        super().__init__()
        self.dim, self.kappa = dim, float(kappa)
        self.register_buffer("weights", reweight_weights(dim, kappa))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if h.ndim != 2 or h.shape[1] != self.dim:
            raise ValueError(f"expected (N, {self.dim}) features, got {tuple(h.shape)}")
        return h * self.weights.to(h.dtype)

    def invert(self, z: torch.Tensor) -> torch.Tensor:
        """The pre-projection representation ``h = z / w``."""
        return z / self.weights.to(z.dtype)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, kappa={self.kappa}"


def build_head(
    name: str, in_dim: int, hidden: int | None = None, out: int | None = None, kappa: float = 1.05
) -> nn.Module:
    """``mlp``: SimCLR's Linear–BN–ReLU–Linear (in → hidden → out, default 256 → 128); ``reweight``: the
    fixed diagonal head (out = in); ``none``: identity (the loss sees the encoder output).

    ``hidden`` and ``out`` size the MLP only: the other heads keep the encoder's dimension, so giving them
    is a ``ValueError`` rather than a silently ignored setting.
    """
    if name == "mlp":
        return mlp_head(in_dim, 256 if hidden is None else hidden, 128 if out is None else out, num_layers=2)
    if name in ("reweight", "none") and (hidden is not None or out is not None):
        raise ValueError(
            f"the {name!r} head keeps the encoder's dimension ({in_dim}); hidden and out size the 'mlp' head only, "
            f"got hidden={hidden}, out={out}"
        )
    if name == "reweight":
        return ReweightHead(in_dim, kappa)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"unknown head {name!r}; choose from {HEADS}")
