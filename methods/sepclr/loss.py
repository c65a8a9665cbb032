"""SepCLR's losses: common and salient InfoMax terms, the background regulariser and k-JEM.

Louiset et al., "Separating common from salient patterns with Contrastive Representation
Learning", ICLR 2024. With the Gaussian kernel ``K(a, b) = exp(−‖a − b‖² / (2τ))`` (τ = 0.5):

    align(X, Y) = (1/n) Σ_i ‖x_i − y_i‖² / (2τ)                      (τ = 0.5: mean squared distance)
    unif(X)     = log( 2/(N(N−1)) Σ_{i<j} K(x_i, x_j) )                (≤ 0; = 0 iff all x_i coincide)

Two views (1, 2) of a batch mixing background (y = 0) and target (y = 1) samples give the common
heads c^v (L2-normalised: ĉ^v) and the salient heads s^v (**not** normalised, so that the null
vector 0 is reachable). ``s'^v`` is s^v with the background rows replaced by the constant 0:

    L_C   = align(ĉ¹, ĉ²) + 2·½[unif(ĉ¹) + unif(ĉ²)]                       (all samples)
    L_S   = align(s¹_tgt, s²_tgt) + 2·½[unif(s'¹) + unif(s'²)]             ("s'-uniformity")
    L_reg = ½[align(0, s¹_bg) + align(0, s²_bg)]                          (information-less background)
    L_JEM = ½ Σ_v (1/N) Σ_i log( (1/N) Σ_j K(ĉ^v_i, ĉ^v_j) · K(s'^v_i, s'^v_j) )     (k-JEM, ≤ 0)
    L     = L_C + β_S·L_S + β_reg·L_reg + λ·L_JEM          (β_S = β_reg = 1000, λ = 10)

Minimising L_JEM maximises a kernel density estimate of the joint entropy H(c, s); with the
marginal entropies held high by the uniformity terms this minimises I(c; s) = H(c) + H(s) − H(c, s).
The sums over j in L_JEM include j = i (the official ``cdist`` matrix keeps its diagonal).

Distributed: every process gathers the embeddings and flags of the whole batch *with gradients*
and evaluates the whole-batch loss (O(N²·d), negligible next to the encoders).
``gather_with_grad``'s backward sums over ranks and keeps each rank's slice, so after DDP's
gradient averaging the gradients are exactly those of one process on the whole batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from shared.distributed import gather_no_grad, gather_with_grad, local_offset
from shared.losses import at_least_float32, check_temperature


def _check_embeddings(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (batch, dim), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")


def check_weight(value: float, name: str) -> float:
    """A loss weight: a finite number ≥ 0."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """‖a_i − b_j‖² for all (i, j), shape (len(a), len(b)), clamped at 0 (float rounding)."""
    sq = a.pow(2).sum(1)[:, None] + b.pow(2).sum(1)[None, :] - 2 * a @ b.T
    return sq.clamp_min(0)


def kernel_align(x: torch.Tensor, y: torch.Tensor, tau: float = 0.5) -> torch.Tensor:
    """align(X, Y) = (1/n) Σ_i ‖x_i − y_i‖² / (2τ); 0 for an empty batch (nothing to align).

    The official code takes the mean of an empty tensor (NaN) when a batch holds no sample of a
    group; we return 0, the value of an empty sum.
    """
    if x.shape != y.shape:
        raise ValueError(f"align needs equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[0] == 0:
        return x.new_zeros(())
    return (x - y).pow(2).sum(1).mean() / (2 * tau)


def kernel_uniformity(x: torch.Tensor, tau: float = 0.5) -> torch.Tensor:
    """unif(X) = log( 2/(N(N−1)) Σ_{i<j} exp(−‖x_i − x_j‖²/(2τ)) ), by a log-sum-exp (no underflow).

    The kernel matrix is symmetric, so the mean over i < j equals the mean over i ≠ j.
    """
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"uniformity needs at least 2 samples, got {n}")
    logk = -squared_distances(x, x) / (2 * tau)
    logk = logk.masked_fill(torch.eye(n, dtype=torch.bool, device=x.device), float("-inf"))
    return torch.logsumexp(logk.flatten(), 0) - math.log(n * (n - 1))


def kernel_joint_entropy(c: torch.Tensor, s: torch.Tensor, tau: float = 0.5) -> torch.Tensor:
    """k-JEM of one view: (1/N) Σ_i log( (1/N) Σ_j K(c_i, c_j)·K(s_i, s_j) ), j including i; ≤ 0."""
    if c.shape[0] != s.shape[0]:
        raise ValueError(f"c and s must hold the same samples, got {c.shape[0]} and {s.shape[0]} rows")
    n = c.shape[0]
    logk = -(squared_distances(c, c) + squared_distances(s, s)) / (2 * tau)
    return (torch.logsumexp(logk, dim=1) - math.log(n)).mean()


def null_background(s: torch.Tensor, is_target: torch.Tensor) -> torch.Tensor:
    """s' = s with background rows replaced by the constant null vector 0 (no gradient flows to them)."""
    return torch.where(is_target[:, None], s, torch.zeros((), dtype=s.dtype, device=s.device))


def common_loss(c1: torch.Tensor, c2: torch.Tensor, tau: float = 0.5) -> torch.Tensor:
    """L_C = align(ĉ¹, ĉ²) + 2·½[unif(ĉ¹) + unif(ĉ²)] on L2-normalised common heads, all samples."""
    c1, c2 = F.normalize(c1, dim=1), F.normalize(c2, dim=1)
    return kernel_align(c1, c2, tau) + kernel_uniformity(c1, tau) + kernel_uniformity(c2, tau)


def salient_loss(s1: torch.Tensor, s2: torch.Tensor, is_target: torch.Tensor, tau: float = 0.5) -> torch.Tensor:
    """L_S = align(s¹_tgt, s²_tgt) + 2·½[unif(s'¹) + unif(s'²)] on un-normalised salient heads."""
    align = kernel_align(s1[is_target], s2[is_target], tau)
    return (
        align
        + kernel_uniformity(null_background(s1, is_target), tau)
        + kernel_uniformity(null_background(s2, is_target), tau)
    )


def background_regulariser(
    s1: torch.Tensor, s2: torch.Tensor, is_target: torch.Tensor, tau: float = 0.5
) -> torch.Tensor:
    """L_reg = ½[align(0, s¹_bg) + align(0, s²_bg)]: pulls background salient embeddings onto 0."""
    bg = ~is_target
    return 0.5 * (
        kernel_align(torch.zeros_like(s1[bg]), s1[bg], tau) + kernel_align(torch.zeros_like(s2[bg]), s2[bg], tau)
    )


def joint_entropy_loss(
    c1: torch.Tensor, c2: torch.Tensor, s1: torch.Tensor, s2: torch.Tensor, is_target: torch.Tensor, tau: float = 0.5
) -> torch.Tensor:
    """L_JEM = ½ Σ_v kernel_joint_entropy(ĉ^v, s'^v): normalised common heads, null-background salient heads."""
    jem1 = kernel_joint_entropy(F.normalize(c1, dim=1), null_background(s1, is_target), tau)
    jem2 = kernel_joint_entropy(F.normalize(c2, dim=1), null_background(s2, is_target), tau)
    return 0.5 * (jem1 + jem2)


def _as_target_mask(labels: torch.Tensor, n: int) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels must be a torch.Tensor of 0 (background) / 1 (target), got {type(labels).__name__}")
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex():
        raise TypeError(f"labels must be integer or bool (0 background, 1 target), got {labels.dtype}")
    if labels.dtype != torch.bool and n and not bool(((labels == 0) | (labels == 1)).all()):
        raise ValueError("labels must be 0 (background) or 1 (target)")
    return labels.bool()


def sepclr_terms(
    c1: torch.Tensor,
    c2: torch.Tensor,
    s1: torch.Tensor,
    s2: torch.Tensor,
    labels: torch.Tensor,
    tau: float = 0.5,
    gather_distributed: bool = True,
) -> dict[str, torch.Tensor]:
    """The four terms ``{"common", "salient", "reg", "jem"}`` of the whole (gathered) batch, in float32."""
    check_temperature(tau, "tau")
    for x, name in ((c1, "c1"), (c2, "c2"), (s1, "s1"), (s2, "s2")):
        _check_embeddings(x, name)
    if c1.shape != c2.shape or s1.shape != s2.shape or c1.shape[0] != s1.shape[0]:
        raise ValueError(
            f"views must match: c1 {tuple(c1.shape)}, c2 {tuple(c2.shape)}, s1 {tuple(s1.shape)}, s2 {tuple(s2.shape)}"
        )
    is_target = _as_target_mask(labels, c1.shape[0])
    if gather_distributed:
        c1, c2, s1, s2 = (gather_with_grad(x) for x in (c1, c2, s1, s2))
        is_target = gather_no_grad(is_target.to(torch.uint8)).bool()
    if c1.shape[0] < 2:
        raise ValueError(f"SepCLR needs a batch of at least 2, got {c1.shape[0]}")
    c1, c2, s1, s2 = (at_least_float32(x) for x in (c1, c2, s1, s2))
    with torch.autocast(device_type=c1.device.type, enabled=False):
        return {
            "common": common_loss(c1, c2, tau),
            "salient": salient_loss(s1, s2, is_target, tau),
            "reg": background_regulariser(s1, s2, is_target, tau),
            "jem": joint_entropy_loss(c1, c2, s1, s2, is_target, tau),
        }


class SepCLRLoss(nn.Module):
    """L = L_C + β_S·L_S + β_reg·L_reg + λ·L_JEM (the official CIFAR-MNIST weights by default).

    Args:
        tau: kernel bandwidth τ > 0 of align / unif / k-JEM (0.5).
        beta_salient: β_S ≥ 0 (1000).
        beta_reg: β_reg ≥ 0 (1000).
        jem_lambda: λ ≥ 0 (10); 0 removes the mutual-information term.
        gather_distributed: evaluate the loss on the batch gathered from all processes.

    ``forward(c1, c2, s1, s2, labels)`` takes the common heads (any norm; normalised inside), the
    salient heads (used as they are) of two views, and ``labels`` 0 (background) / 1 (target);
    it returns ``{"loss", "common", "salient", "reg", "jem"}``.

    Example:
        >>> out = SepCLRLoss()(torch.randn(8, 4), torch.randn(8, 4), torch.randn(8, 4), torch.randn(8, 4),
        ...                    torch.tensor([0, 1] * 4))
        >>> out["loss"].backward()  # doctest: +SKIP
    """

    def __init__(
        self,
        tau: float = 0.5,
        beta_salient: float = 1000.0,
        beta_reg: float = 1000.0,
        jem_lambda: float = 10.0,
        gather_distributed: bool = True,
    ) -> None:
        super().__init__()
        self.tau = check_temperature(tau, "tau")
        self.beta_salient = check_weight(beta_salient, "beta_salient")
        self.beta_reg = check_weight(beta_reg, "beta_reg")
        self.jem_lambda = check_weight(jem_lambda, "jem_lambda")
        self.gather_distributed = gather_distributed

    def forward(
        self, c1: torch.Tensor, c2: torch.Tensor, s1: torch.Tensor, s2: torch.Tensor, labels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        t = sepclr_terms(c1, c2, s1, s2, labels, self.tau, self.gather_distributed)
        loss = t["common"] + self.beta_salient * t["salient"] + self.beta_reg * t["reg"] + self.jem_lambda * t["jem"]
        return {"loss": loss, **t}

    def extra_repr(self) -> str:
        return (
            f"tau={self.tau}, beta_salient={self.beta_salient}, beta_reg={self.beta_reg}, "
            f"jem_lambda={self.jem_lambda}, gather_distributed={self.gather_distributed}"
        )


class SepCLRPairLoss(SepCLRLoss):
    """SepCLR as a two-view loss ``(z1, z2) -> scalar``, for ``shared.testing.distributed_equivalence``.

    The first ``common_dim`` columns of each view are the common head, the rest the salient head;
    sample k of the (global) batch is a target when ``k % 3 != 0``, whatever the process split.
    """

    def __init__(self, common_dim: int = 2, **kwargs) -> None:
        super().__init__(**kwargs)
        self.common_dim = common_dim

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        k = torch.arange(z1.shape[0], device=z1.device)
        if self.gather_distributed:
            k = k + local_offset(z1.shape[0])
        labels = (k % 3 != 0).long()
        d = self.common_dim
        return super().forward(z1[:, :d], z2[:, :d], z1[:, d:], z2[:, d:], labels)["loss"]
