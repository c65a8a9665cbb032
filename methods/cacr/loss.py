"""CACR: contrastive attraction (CA) + contrastive repulsion (CR), the small-scale Euclidean form.

Zheng et al., "Contrastive Attraction and Contrastive Repulsion for Representation Learning",
TMLR 2023, arXiv:2105.03746 (official code: JegZheng/CACR-SSL, ``small_scale_experiments/losses``).

Each image i of a batch of N gives V views with L2-normalised embeddings z_{v,i}. With the
squared Euclidean distance d(a, b) = ‖a − b‖² (= 2 − 2 cos on the unit sphere, in [0, 4]):

Contrastive attraction — every view x is a query, the other V − 1 views of its image are its
positives; farther positives weigh more (a conditional distribution over positives):

    c⁺_{x,y,i} = α · d(z_{x,i}, z_{y,i}),      π⁺_{x,·,i} = softmax_{y ≠ x}( τ⁺ · d(z_{x,i}, z_{y,i}) )
    L_CA = 1/V Σ_x  1/N Σ_i  Σ_{y ≠ x} π⁺_{x,y,i} · c⁺_{x,y,i}

Contrastive repulsion — for every pair of views x < y, the query z_{x,i} is pushed from the
other images' views z_{y,j}, j ≠ i; closer negatives weigh more:

    c⁻_{i,j} = −β · d(z_{x,i}, z_{y,j}),       π⁻_{i,·} = softmax_{j ≠ i}( −τ⁻ · d(z_{x,i}, z_{y,j}) )
    L_CR = 1/#pairs Σ_{x<y}  1/N Σ_i  Σ_{j ≠ i} π⁻_{i,j} · c⁻_{i,j}

    L = L_CA + L_CR

Defaults α = β = 1, τ⁺ = 1, τ⁻ = 0.9 (CIFAR-10; 2.0 on CIFAR-100 / STL-10). The conditional
weights are *not* detached (gradients flow through π, as in the official small-scale code).
τ = 0 gives uniform weights (the official ``choice="none"`` ablation). The optional debiased
variant (``tau_plus``) replaces the CR term of query i by (−τ_plus · d(z_{x,i}, z_{y,i}) + Σ_j π⁻c⁻)
/ (1 − τ_plus), as the official ``with_debiased`` switch does.

Distributed: CA is per image (no communication). In CR each process scores its own queries
against the candidates z_{y,·} gathered from every process with gradients, the self index
shifted by the rank's offset, so the loss equals that of one process on the whole batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from shared.distributed import gather_with_grad, local_offset
from shared.losses import at_least_float32


def check_views(views: torch.Tensor | Sequence[torch.Tensor], min_views: int = 2, min_batch: int = 2) -> torch.Tensor:
    """Stack a list of (N, d) view embeddings to (V, N, d), with clear errors for bad input."""
    if not isinstance(views, torch.Tensor):
        views = list(views)
        for v in views:
            if not isinstance(v, torch.Tensor):
                raise TypeError(f"views must be tensors, got {type(v).__name__}")
        shapes = {tuple(v.shape) for v in views}
        if len(shapes) > 1:
            raise ValueError(f"every view must have the same shape (N, d), got {sorted(shapes)}")
        if not views:
            raise ValueError("no views given")
        views = torch.stack(views)
    if views.ndim != 3:
        raise ValueError(f"views must have shape (views, batch, dim), got {tuple(views.shape)}")
    if not views.is_floating_point():
        raise TypeError(f"views must be floating-point, got {views.dtype}")
    if views.shape[0] < min_views:
        raise ValueError(f"CACR needs at least {min_views} views per image, got {views.shape[0]}")
    if views.shape[1] < min_batch:
        raise ValueError(f"a contrastive loss needs a batch of at least {min_batch}, got {views.shape[1]}")
    return views


def check_nonnegative(value: float, name: str) -> float:
    if not (isinstance(value, (int, float)) and value >= 0 and value == value and value != float("inf")):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_positive(value: float, name: str) -> float:
    if not (isinstance(value, (int, float)) and value > 0 and value != float("inf")):
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    return float(value)


def check_hyperparameters(
    alpha: float, beta: float, tau_pos: float, tau_neg: float, tau_plus: float | None = None
) -> None:
    """α, β > 0; τ⁺, τ⁻ ≥ 0 (finite); τ_plus None or in [0, 1); ``ValueError`` naming the bad one."""
    check_positive(alpha, "alpha"), check_positive(beta, "beta")
    check_nonnegative(tau_pos, "tau_pos"), check_nonnegative(tau_neg, "tau_neg")
    if tau_plus is not None and not (isinstance(tau_plus, (int, float)) and 0 <= tau_plus < 1):
        raise ValueError(f"tau_plus must be None or a number in [0, 1), got {tau_plus!r}")


def _normalise(views: torch.Tensor) -> torch.Tensor:
    return F.normalize(at_least_float32(views), dim=-1)


def _sq_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """‖a − b‖² = 2 − 2 a·bᵀ for unit vectors, batched over leading dims, in float32 or wider."""
    with torch.autocast(device_type=a.device.type, enabled=False):
        return (2 - 2 * a @ b.transpose(-1, -2)).clamp_min(0)


def contrastive_attraction(views: torch.Tensor, alpha: float = 1.0, tau_pos: float = 1.0) -> torch.Tensor:
    """L_CA of (V, N, d) views (normalised inside): Σ_y π⁺ c⁺ averaged over queries x and images i."""
    z = _normalise(check_views(views, min_batch=1)).transpose(0, 1)  # (N, V, d): CA needs no negatives
    sq = _sq_dist(z, z)  # (N, V, V): d(z_x, z_y) per image
    eye = torch.eye(z.shape[1], dtype=torch.bool, device=z.device)
    weights = torch.softmax((tau_pos * sq).masked_fill(eye, float("-inf")), dim=-1)
    return (weights * alpha * sq).sum(-1).mean()


def contrastive_repulsion(
    views: torch.Tensor,
    beta: float = 1.0,
    tau_neg: float = 0.9,
    tau_plus: float | None = None,
    gather_distributed: bool = True,
) -> torch.Tensor:
    """L_CR of (V, n, d) views: Σ_{j≠i} π⁻ c⁻ averaged over view pairs x < y and this rank's queries i."""
    z = _normalise(check_views(views))
    v, n = z.shape[0], z.shape[1]
    if gather_distributed:
        candidates = gather_with_grad(z.transpose(0, 1).contiguous()).transpose(0, 1)  # (V, N, d)
        offset = local_offset(n)
    else:
        candidates, offset = z, 0
    xs, ys = torch.triu_indices(v, v, offset=1, device=z.device)
    sq = _sq_dist(z[xs], candidates[ys])  # (P, n, N): d(z_{x,i}, z_{y,j})
    rows = torch.arange(n, device=z.device)
    self_mask = torch.zeros(sq.shape[1:], dtype=torch.bool, device=z.device)
    self_mask[rows, rows + offset] = True
    weights = torch.softmax((-tau_neg * sq).masked_fill(self_mask, float("-inf")), dim=-1)
    repulsion = (weights * (-beta) * sq).sum(-1)  # (P, n); the masked self pair has weight 0
    if tau_plus is not None:
        positive = sq[:, rows, rows + offset]
        repulsion = (-tau_plus * positive + repulsion) / (1 - tau_plus)
    return repulsion.mean()


def cacr_loss(
    views: torch.Tensor | Sequence[torch.Tensor],
    alpha: float = 1.0,
    beta: float = 1.0,
    tau_pos: float = 1.0,
    tau_neg: float = 0.9,
    tau_plus: float | None = None,
    gather_distributed: bool = True,
) -> dict[str, torch.Tensor]:
    """``{"loss": L_CA + L_CR, "ca": L_CA, "cr": L_CR}`` of V ≥ 2 views of a batch (see module docstring)."""
    check_hyperparameters(alpha, beta, tau_pos, tau_neg, tau_plus)
    z = check_views(views)
    ca = contrastive_attraction(z, alpha, tau_pos)
    cr = contrastive_repulsion(z, beta, tau_neg, tau_plus, gather_distributed)
    return {"loss": ca + cr, "ca": ca.detach(), "cr": cr.detach()}


class CACRLoss(nn.Module):
    """CACR's doubly contrastive loss on V ≥ 2 views: ``loss(views) -> {"loss", "ca", "cr"}``.

    Args:
        alpha, beta: scales of the attraction and repulsion costs (> 0; official 1, 1).
        tau_pos: τ⁺ ≥ 0 of the positive weights softmax(τ⁺‖z_x − z⁺‖²) (official 1; 0: uniform).
        tau_neg: τ⁻ ≥ 0 of the negative weights softmax(−τ⁻‖z_x − z⁻‖²) (0.9 CIFAR-10, 2.0 CIFAR-100/STL-10).
        tau_plus: None (default) or the class prior of the debiased variant, in [0, 1).
        gather_distributed: gather the other processes' candidates (with gradients) for CR.

    ``views``: a (V, N, d) tensor or a list of V (N, d) tensors; L2-normalised inside.

    Example:
        >>> out = CACRLoss(tau_neg=0.9)(torch.randn(5, 32, 128))
        >>> out["loss"].backward()  # doctest: +SKIP
    """

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 1.0,
        tau_pos: float = 1.0,
        tau_neg: float = 0.9,
        tau_plus: float | None = None,
        gather_distributed: bool = True,
    ) -> None:
        super().__init__()
        check_hyperparameters(alpha, beta, tau_pos, tau_neg, tau_plus)
        self.alpha, self.beta, self.tau_pos, self.tau_neg = float(alpha), float(beta), float(tau_pos), float(tau_neg)
        self.tau_plus = tau_plus
        self.gather_distributed = gather_distributed

    def forward(self, views: torch.Tensor | Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        return cacr_loss(
            views, self.alpha, self.beta, self.tau_pos, self.tau_neg, self.tau_plus, self.gather_distributed
        )

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, beta={self.beta}, tau_pos={self.tau_pos}, tau_neg={self.tau_neg}, "
            f"tau_plus={self.tau_plus}, gather_distributed={self.gather_distributed}"
        )
