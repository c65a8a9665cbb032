"""The baselines of the CACR comparison, on the same V views: SimCLR and alignment + uniformity.

CACR's small-scale tables compare methods at the same number of positives (its Ny = 4 views
per query). Both baselines take the same (V, N, d) views as CACR and average a two-view loss
over the V(V − 1)/2 view pairs:

    SimCLR (Chen et al., 2020):   L = mean_{x<y} NT-Xent_τ(z_x, z_y)    (as shared.losses.info_nce_loss, batched)
    Align + uniform (Wang & Isola, 2020, arXiv:2005.10242):
        L = mean_{x<y} E_i ‖z_{x,i} − z_{y,i}‖^α  +  λ · mean_v log E_{i≠j} exp(−t ‖z_{v,i} − z_{v,j}‖²)

with Wang & Isola's defaults α = 2, t = 2, λ = 1 (their loss is align + λ·(unif(x) + unif(y))/2;
averaged over pairs every view gets the same share, which is the mean over views above). With
V = 2 both reduce to the usual two-view losses.

Distributed: NT-Xent gathers the other processes' columns with gradients (shared.losses); the
uniformity term is a log of a mean over *all* pairs of the global batch, so it is computed on
the embeddings gathered with gradients (every rank computes the same value; the gather's
backward hands each rank its share, and DDP's averaging gives the single-process gradient).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from methods.cacr.loss import check_positive, check_views
from shared.distributed import gather_with_grad, local_offset
from shared.losses import alignment, at_least_float32, check_temperature, uniformity


def view_pairs(v: int) -> list[tuple[int, int]]:
    return [(x, y) for x in range(v) for y in range(x + 1, v)]


def multi_view_info_nce(views: torch.Tensor, temperature: float = 0.1, gather_distributed: bool = True) -> torch.Tensor:
    """mean_{x<y} NT-Xent(z_x, z_y), all P pairs in one batched product (same value as a loop of
    ``shared.losses.info_nce_loss``): for pair (x, y), anchors [z_x; z_y] (local) against candidates
    [z_x; z_y] (gathered), the anchor itself masked, its other view the target."""
    check_temperature(temperature)
    z = F.normalize(at_least_float32(check_views(views)), dim=-1)
    v, n = z.shape[:2]
    if gather_distributed:
        full, offset = gather_with_grad(z.transpose(0, 1).contiguous()).transpose(0, 1), local_offset(n)
    else:
        full, offset = z, 0
    big_n = full.shape[1]
    xs, ys = torch.triu_indices(v, v, offset=1, device=z.device)
    anchors = torch.cat([z[xs], z[ys]], dim=1)  # (P, 2n, d)
    candidates = torch.cat([full[xs], full[ys]], dim=1)  # (P, 2N, d)
    logits = anchors @ candidates.transpose(1, 2) / temperature  # (P, 2n, 2N)
    rows = torch.arange(n, device=z.device) + offset
    self_index, positive = torch.cat([rows, rows + big_n]), torch.cat([rows + big_n, rows])
    logits[:, torch.arange(2 * n, device=z.device), self_index] = float("-inf")
    targets = positive.expand(len(xs), -1)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


class MultiViewInfoNCE(nn.Module):
    """SimCLR's NT-Xent averaged over all pairs of V views: ``loss(views) -> {"loss"}``."""

    def __init__(self, temperature: float = 0.1, gather_distributed: bool = True) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)
        self.gather_distributed = gather_distributed

    def forward(self, views: torch.Tensor | Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"loss": multi_view_info_nce(views, self.temperature, self.gather_distributed)}

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


class MultiViewAlignUniform(nn.Module):
    """Wang & Isola's alignment + λ·uniformity over V views: ``loss(views) -> {"loss", "align", "uniform"}``."""

    def __init__(
        self, align_alpha: float = 2.0, unif_t: float = 2.0, lam: float = 1.0, gather_distributed: bool = True
    ) -> None:
        super().__init__()
        self.align_alpha = check_positive(align_alpha, "align_alpha")
        self.unif_t = check_positive(unif_t, "unif_t")
        self.lam = check_positive(lam, "lam")
        self.gather_distributed = gather_distributed

    def forward(self, views: torch.Tensor | Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        z = check_views(views)
        pairs = view_pairs(z.shape[0])
        align = sum(alignment(z[x], z[y], self.align_alpha) for x, y in pairs) / len(pairs)
        full = gather_with_grad(z.transpose(0, 1).contiguous()).transpose(0, 1) if self.gather_distributed else z
        unif = sum(uniformity(full[v], self.unif_t) for v in range(z.shape[0])) / z.shape[0]
        return {"loss": align + self.lam * unif, "align": align.detach(), "uniform": unif.detach()}

    def extra_repr(self) -> str:
        return f"align_alpha={self.align_alpha}, unif_t={self.unif_t}, lam={self.lam}"
