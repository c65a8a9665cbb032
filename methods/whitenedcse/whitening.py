"""Shuffled Group Whitening (SGW) of WhitenedCSE (Zhuo et al., ACL 2023).

For one view X ∈ R^{N×D} (N sentences): draw a channel permutation π, split the permuted
channels into G groups of c = D/G, and whiten each group with ZCA over the batch:

    X̄_g = X_g − 1 μ_g^T,   Σ_g = X̄_g^T X̄_g / N,   Σ_g = U_g Λ_g U_g^T,
    W_g = U_g (Λ_g + ε)^{-1/2} U_g^T,   X̂_g = X̄_g W_g,

then undo π. Every view gets its own π, so the m views of a sentence are whitened
differently: the "distortion" that adds positive diversity. With ε = 0 and N > c, each
group of the output has zero mean and identity covariance (1/N convention).

The official code builds W from a detached copy of Σ (``torch.tensor(covs, requires_grad=True)``
makes a new leaf), so no gradient flows through the eigendecomposition; gradients flow
through the centring and the product X̄_g W_g. ``whitening_grad=False`` (default) keeps
that behaviour; ``True`` backpropagates through ``eigh`` as well.
"""

from __future__ import annotations

import torch
from torch import nn

GROUPINGS = ("per_view", "official")


def group_whiten(
    x: torch.Tensor,
    groups: int,
    perm: torch.Tensor | None = None,
    eps: float = 0.0,
    whitening_grad: bool = False,
) -> torch.Tensor:
    """ZCA-whiten each of ``groups`` channel groups of ``x`` (N, D) over the batch; ``perm`` shuffles channels."""
    if x.ndim != 2:
        raise ValueError(f"x must have shape (batch, channels), got {tuple(x.shape)}")
    n, d = x.shape
    if groups < 1 or d % groups:
        raise ValueError(f"groups must divide the {d} channels, got {groups}")
    if n < 2:
        raise ValueError(f"whitening needs a batch of at least 2, got {n}")
    if eps < 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    dtype = x.dtype
    x = x if x.dtype in (torch.float32, torch.float64) else x.float()
    if perm is not None:
        x = x[:, perm]
    with torch.autocast(device_type=x.device.type, enabled=False):
        xg = x.view(n, groups, d // groups).transpose(0, 1)  # (G, N, c)
        xg = xg - xg.mean(dim=1, keepdim=True)
        cov = xg.transpose(1, 2) @ xg / n  # (G, c, c), 1/N as the paper
        if not whitening_grad:
            cov = cov.detach()
        evals, evecs = torch.linalg.eigh(cov)
        w = evecs @ torch.diag_embed((evals.clamp_min(0) + eps).rsqrt()) @ evecs.transpose(1, 2)
        out = (xg @ w).transpose(0, 1).reshape(n, d)
    if perm is not None:
        out = out[:, torch.argsort(perm)]
    return out.to(dtype)


class ShuffledGroupWhitening(nn.Module):
    """SGW over m views: input and output (m, N, D); a fresh permutation per view and call.

    Args:
        dim: D, the channel count.
        groups: G (official 128 for D = 768, i.e. 6 channels per group).
        shuffle: a random channel permutation per view (False: fixed channel order).
        eps: ε added to the eigenvalues (the official code has none; small batches need it).
        whitening_grad: backpropagate through the eigendecomposition (official: no).
        grouping: ``"per_view"`` whitens each view (the paper); ``"official"`` reproduces the
            released code, which flattens (N, m, D) sentence-major and whitens contiguous
            thirds of the rows, which are not the views.
    """

    def __init__(
        self,
        dim: int,
        groups: int = 128,
        shuffle: bool = True,
        eps: float = 1e-5,
        whitening_grad: bool = False,
        grouping: str = "per_view",
    ) -> None:
        super().__init__()
        if groups < 1 or dim % groups:
            raise ValueError(f"groups ({groups}) must divide dim ({dim})")
        if grouping not in GROUPINGS:
            raise ValueError(f"unknown grouping {grouping!r}; choose from {GROUPINGS}")
        if eps < 0:
            raise ValueError(f"eps must be non-negative, got {eps}")
        self.dim, self.groups, self.shuffle = dim, groups, shuffle and groups > 1
        self.eps, self.whitening_grad, self.grouping = eps, whitening_grad, grouping

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if h.ndim != 3 or h.shape[-1] != self.dim:
            raise ValueError(f"expected (views, batch, {self.dim}), got {tuple(h.shape)}")
        m, n, d = h.shape
        blocks = h if self.grouping == "per_view" else h.transpose(0, 1).reshape(m, n, d)
        out = torch.stack([self._whiten(b) for b in blocks])
        return out if self.grouping == "per_view" else out.reshape(n, m, d).transpose(0, 1)

    def _whiten(self, x: torch.Tensor) -> torch.Tensor:
        perm = torch.randperm(self.dim, device=x.device) if self.shuffle else None
        return group_whiten(x, self.groups, perm, self.eps, self.whitening_grad)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, groups={self.groups}, shuffle={self.shuffle}, eps={self.eps}, "
            f"whitening_grad={self.whitening_grad}, grouping={self.grouping!r}"
        )
