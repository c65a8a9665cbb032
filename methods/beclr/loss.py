"""BECLR's contrastive loss: a BYOL-style positive term plus a uniformity-style negative term.

Poulakakis-Daktylidis & Jamali-Rad, "BECLR: Batch Enhanced Contrastive Few-Shot Learning",
ICLR 2024 (official ``BECLRLoss``). With student predictions p, student projections z and
teacher projections z̄ (stop-gradient) of two views, n rows per view:

    L_pos = −½ [ cos(p_1, z̄_2) + cos(p_2, z̄_1) ]                                   (mean over rows)
    L_neg = log( (1/2n) Σ_i (1/n_neg) Σ_{j ∉ {i, pos(i)}} exp(ẑ_i · ẑ_j / T) ),   n_neg = 2n − 2
    L     = L_pos + λ_neg · L_neg,      λ_neg = 0.1,  T = 2.0

where ẑ are the L2-normalised *student* projections of both views (the "SS" configuration),
i over all 2n rows, pos(i) the other view of row i. L_neg is the log of the mean exponentiated
similarity over negatives (not a mean of logs). After DyCE has enhanced the batch, n = B(1 + k):
the appended memory rows enter both terms as ordinary (detached) rows.

Distributed: L_neg is the log of a *global* mean, not a mean of per-rank terms. Each rank
computes the log-sum of its own anchors against the candidates gathered from all ranks (with
gradients); the ranks exchange these sums (no gradient), and each rank returns a loss whose value
is the global L_neg and whose gradient, averaged over ranks by DDP, is that of the global L_neg:

    loss_r = L_neg + W · (S_r − sg(S_r)) / S,    S_r = Σ_{i ∈ rank r} Σ_j e^{ẑ_i·ẑ_j/T},  S = Σ_r S_r.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from shared.distributed import gather_with_grad, get_world_size, is_distributed, local_offset
from shared.losses import at_least_float32, check_pair, check_temperature


def _check_rows(*tensors: torch.Tensor) -> int:
    """All (2n, d) with the same shape; returns n (rows per view)."""
    for t in tensors:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"embeddings must be torch.Tensors, got {type(t).__name__}")
        if t.ndim != 2 or not t.is_floating_point():
            raise ValueError(f"embeddings must be floating-point (2·n, d) tensors, got {t.dtype} {tuple(t.shape)}")
    if len({tuple(t.shape) for t in tensors}) != 1:
        raise ValueError(f"embeddings must share one shape, got {[tuple(t.shape) for t in tensors]}")
    rows = tensors[0].shape[0]
    if rows % 2:
        raise ValueError(f"embeddings must stack two views of equal size (2·n rows), got {rows} rows")
    return rows // 2


def positive_term(p: torch.Tensor, z_teacher: torch.Tensor) -> torch.Tensor:
    """L_pos = −½[cos(p_1, z̄_2) + cos(p_2, z̄_1)], mean over rows; z̄ is detached."""
    n = _check_rows(p, z_teacher)
    p = F.normalize(at_least_float32(p), dim=1)
    z = F.normalize(at_least_float32(z_teacher.detach()), dim=1)
    p1, p2 = p[:n], p[n:]
    z1, z2 = z[:n], z[n:]
    return -0.5 * ((p1 * z2).sum(1).mean() + (p2 * z1).sum(1).mean())


def negative_term(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float = 2.0, gather_distributed: bool = True
) -> torch.Tensor:
    """L_neg over the 2N rows of both views (N = global rows per view); see the module docs."""
    check_temperature(temperature)
    check_pair(z1, z2)
    z1 = F.normalize(at_least_float32(z1), dim=1)
    z2 = F.normalize(at_least_float32(z2), dim=1)
    n = z1.shape[0]
    if gather_distributed:
        all1, all2, offset = gather_with_grad(z1), gather_with_grad(z2), local_offset(n)
    else:
        all1, all2, offset = z1, z2, 0
    big_n = all1.shape[0]
    anchors, candidates = torch.cat([z1, z2]), torch.cat([all1, all2])
    with torch.autocast(device_type=anchors.device.type, enabled=False):
        logits = anchors @ candidates.T / temperature
    rows = torch.arange(n, device=z1.device) + offset
    own = torch.arange(2 * n, device=z1.device)
    mask = torch.zeros_like(logits, dtype=torch.bool)
    mask[own, torch.cat([rows, rows + big_n])] = True  # self
    mask[own, torch.cat([rows + big_n, rows])] = True  # positive
    local_lse = torch.logsumexp(logits.masked_fill(mask, float("-inf")).flatten(), 0)
    log_count = math.log(2 * big_n) + math.log(2 * big_n - 2)
    if not (gather_distributed and is_distributed()):
        return local_lse - log_count
    parts = [torch.empty_like(local_lse) for _ in range(get_world_size())]
    dist.all_gather(parts, local_lse.detach().contiguous())
    global_lse = torch.logsumexp(torch.stack(parts), 0)
    share = torch.exp(local_lse - global_lse)  # S_r / S, with gradient through S_r only
    return global_lse - log_count + get_world_size() * (share - share.detach())


def beclr_loss(
    z_teacher: torch.Tensor,
    p: torch.Tensor,
    z_student: torch.Tensor,
    lamb_neg: float = 0.1,
    temperature: float = 2.0,
    gather_distributed: bool = True,
) -> dict[str, torch.Tensor]:
    """``{"loss", "loss_pos", "loss_neg"}`` for (2n, d) embeddings stacked [view 1; view 2]."""
    n = _check_rows(z_teacher, p, z_student)
    if n < 2:
        raise ValueError(f"L_neg needs at least 2 rows per view (n_neg = 2n − 2 > 0), got n = {n}")
    if not (isinstance(lamb_neg, (int, float)) and lamb_neg >= 0):
        raise ValueError(f"lamb_neg must be a non-negative number, got {lamb_neg!r}")
    loss_pos = positive_term(p, z_teacher)
    loss_neg = negative_term(z_student[:n], z_student[n:], temperature, gather_distributed)
    return {"loss": loss_pos + lamb_neg * loss_neg, "loss_pos": loss_pos.detach(), "loss_neg": loss_neg.detach()}


class BECLRLoss(nn.Module):
    """L = L_pos + λ_neg·L_neg on (z_teacher, p, z_student), each (2n, d) = [view 1; view 2].

    Example:
        >>> out = BECLRLoss()(z_teacher, p, z_student)   # out["loss"] is the scalar to minimise
    """

    def __init__(self, lamb_neg: float = 0.1, temperature: float = 2.0, gather_distributed: bool = True) -> None:
        super().__init__()
        if not (isinstance(lamb_neg, (int, float)) and lamb_neg >= 0):
            raise ValueError(f"lamb_neg must be a non-negative number, got {lamb_neg!r}")
        self.lamb_neg, self.temperature = float(lamb_neg), check_temperature(temperature)
        self.gather_distributed = gather_distributed

    def forward(self, z_teacher: torch.Tensor, p: torch.Tensor, z_student: torch.Tensor) -> dict[str, torch.Tensor]:
        return beclr_loss(z_teacher, p, z_student, self.lamb_neg, self.temperature, self.gather_distributed)

    def extra_repr(self) -> str:
        return f"lamb_neg={self.lamb_neg}, temperature={self.temperature}"


class NegativeTermLoss(nn.Module):
    """L_neg alone as a two-view loss ``(z1, z2) -> scalar`` (for the distributed-equivalence test)."""

    def __init__(self, temperature: float = 2.0, gather_distributed: bool = True) -> None:
        super().__init__()
        self.temperature, self.gather_distributed = check_temperature(temperature), gather_distributed

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return negative_term(z1, z2, self.temperature, self.gather_distributed)


class PairBECLRLoss(nn.Module):
    """The full loss on two views with p = z_student = z and z̄ = sg(z): a test harness for DDP."""

    def __init__(self, lamb_neg: float = 0.1, temperature: float = 2.0, gather_distributed: bool = True) -> None:
        super().__init__()
        self.inner = BECLRLoss(lamb_neg, temperature, gather_distributed)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        z = torch.cat([z1, z2])
        return self.inner(z.detach(), z, z)["loss"]
