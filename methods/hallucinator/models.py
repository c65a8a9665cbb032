"""The Hallucinator plugged into SimCLR (NT-Xent) and MoCo v2 (queue), the paper's two contrastive hosts.

SimCLR + Hallucinator (official ``models/simclr_generator.py``): with z1 = q and z2 = k the
projections of the two views (both with gradient, as in SimCLR),

    q' = G(q, k, λ),    L = NT-Xent( [q ; q'], [k ; k] )   (mean over the 4B anchors),

i.e. SimCLR's loss on 2B "pairs" (q_i, k_i) and (q'_i, k_i). In the official code the duplicate
key and the twin query of the same image count as negatives of each other (for the anchor k_i
its own copy is a "negative" with similarity 1; for q_i the copy of its positive is one).
By default (``same_image_negatives=False``) those same-image copies are left out of every
denominator, as in the SimCLR baseline, where the only same-image candidate is the positive:

    L_a = −s(a, a⁺)/τ + log Σ_{c : img(c) ≠ img(a) or c = a⁺} e^{s(a, c)/τ},   mean over the 4B anchors a.

MoCo v2 + Hallucinator (official ``models/moco.py``): q is the query projection with
gradient, k the L2-normalised key of the momentum encoder (no gradient),

    q' = G(q, k, λ),    L = 1/(2B) Σ_{r ∈ [q ; q']} CE( [r̂·k̂, r̂·Q_1, …, r̂·Q_K] / τ, 0 ),

then the queue is updated. The official code enqueues the duplicated keys [k ; k] (2B per
step, half the queue entries exact duplicates); here each key is enqueued once by default
(``enqueue_duplicates=False``) and the official behaviour is a flag.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from methods.hallucinator.generator import Hallucinator, duplicate_pairs
from shared.distributed import local_offset
from shared.losses import (
    TwoViewLogits,
    at_least_float32,
    check_pair,
    check_temperature,
    info_nce_loss,
    two_view_logits,
)
from shared.moco import MoCo, moco_logits


def same_image_mask(tv: TwoViewLogits, n: int, offset: int) -> torch.Tensor:
    """True where a candidate shows the anchor's image but is not its positive (self included).

    Anchors are this rank's ``[q ; q' ; k ; k]`` (4n rows, image ``offset + a mod n``); candidates
    are the gathered ``[q ; q']`` and ``[k ; k]`` of every rank (2n rows per rank and side).
    """
    half = tv.logits.shape[1] // 2
    c = torch.arange(tv.logits.shape[1], device=tv.logits.device) % half
    candidate_image = (c // (2 * n)) * n + c % n
    anchor_image = offset + torch.arange(len(tv.logits), device=tv.logits.device) % n
    mask = anchor_image[:, None] == candidate_image[None, :]
    mask[torch.arange(len(mask), device=mask.device), tv.positive] = False
    return mask


def hallucinated_info_nce(
    q: torch.Tensor,
    k: torch.Tensor,
    generator: Hallucinator,
    temperature: float = 0.1,
    lam: float | None = None,
    gather_distributed: bool = True,
    same_image_negatives: bool = False,
    detach_key: bool = False,
) -> torch.Tensor:
    """NT-Xent over the 4B anchors of ``[q ; q']`` and ``[k ; k]`` with ``q' = G(q, k, λ)``.

    ``detach_key=True`` stops the gradient of the extrapolation's k (an ablation: the official code
    lets it flow, so the encoder also learns through the key side of the generator's input).

    ``same_image_negatives=True`` is the official loss (plain NT-Xent on the doubled batch: the
    twin query and the duplicate key of the anchor's image are negatives); False (default) leaves
    them out of the denominators, so the positive is the only same-image candidate.
    """
    check_temperature(temperature)
    check_pair(q, k)
    queries, keys = duplicate_pairs(q, generator(q, k.detach() if detach_key else k, lam), k)
    if same_image_negatives:
        return info_nce_loss(queries, keys, temperature, gather_distributed)
    tv = two_view_logits(queries, keys, temperature, gather_distributed)
    offset = local_offset(len(q)) if gather_distributed else 0
    logits = tv.logits.masked_fill(same_image_mask(tv, len(q), offset), float("-inf"))
    return F.cross_entropy(logits, tv.positive)


class HallucinatedInfoNCE(nn.Module):
    """SimCLR's NT-Xent with a Hallucinator: the loss of ``TwoViewContrastive`` for SimCLR + Hallucinator.

    Args:
        dim: projection dimension d (the generator's input/output).
        temperature: τ of NT-Xent.
        hidden_dim, lambda_range, seed, dtype: of the :class:`Hallucinator` (its parameters are
            this module's, so the optimiser of a model holding the loss trains them).
        gather_distributed: gather the other ranks' [q ; q'] and [k ; k] with gradients.
        same_image_negatives: the official loss, where the twin query and the duplicate key of the
            anchor's image are negatives (default False: left out, see the module docs).
        detach_key: no gradient through the k fed to the generator (ablation; official: False).

    Example:
        >>> loss_fn = HallucinatedInfoNCE(dim=128, temperature=0.1)
        >>> loss = loss_fn(torch.randn(32, 128), torch.randn(32, 128))
    """

    def __init__(
        self,
        dim: int = 128,
        temperature: float = 0.1,
        hidden_dim: int | None = None,
        lambda_range: tuple[float, float] = (0.0, 0.1),
        gather_distributed: bool = True,
        seed: int | None = None,
        dtype: torch.dtype | None = None,
        same_image_negatives: bool = False,
        detach_key: bool = False,
    ) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)
        self.gather_distributed = gather_distributed
        self.same_image_negatives = bool(same_image_negatives)
        self.detach_key = bool(detach_key)
        self.generator = Hallucinator(dim, hidden_dim, lambda_range, seed=seed, dtype=dtype)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return hallucinated_info_nce(
            z1,
            z2,
            self.generator,
            self.temperature,
            None,
            self.gather_distributed,
            self.same_image_negatives,
            self.detach_key,
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, gather_distributed={self.gather_distributed}, "
            f"same_image_negatives={self.same_image_negatives}, detach_key={self.detach_key}"
        )


class HallucinatedMoCo(MoCo):
    """MoCo v2 (``shared.moco.MoCo``) whose 2B queries are [q ; q'] against the keys [k ; k].

    Args:
        backbone, projector, **moco_kwargs: as :class:`shared.moco.MoCo` (no ``extra_negatives``).
        hidden_dim, lambda_range: of the :class:`Hallucinator` (built after the MoCo parts, so the
            backbone, head and first queue are those of a plain MoCo built from the same seed).
        enqueue_duplicates: enqueue [k ; k] as the official code does (the pointer moves by
            2B·W per step and K must be a multiple of 2B·W); default False enqueues each key
            once (B·W per step, K a multiple of B·W), so the queue holds K distinct negatives.

    ``forward(batch)`` returns ``{"loss", "proxy_acc", "pos_rank", "hallucinated_acc", "lambda"}``
    (proxy accuracy and positive rank of the real queries, proxy accuracy of the hallucinated ones).
    """

    def __init__(
        self,
        backbone: nn.Module,
        projector: nn.Module,
        hidden_dim: int | None = None,
        lambda_range: tuple[float, float] = (0.0, 0.1),
        enqueue_duplicates: bool = False,
        **moco_kwargs: Any,
    ) -> None:
        if moco_kwargs.get("extra_negatives") is not None:
            raise ValueError("HallucinatedMoCo does not take extra_negatives")
        super().__init__(backbone, projector, **moco_kwargs)
        self.generator = Hallucinator(self.queue.dim, hidden_dim, lambda_range)
        self.enqueue_duplicates = bool(enqueue_duplicates)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        x_q, x_k = self.views(batch)
        q = self.encode_query(x_q)
        if self.training:
            self.update_key_encoder()  # MoCo's order: momentum update, then the keys
        k = F.normalize(at_least_float32(self.encode_key(x_k).detach()), dim=1)
        q_h = self.generator(q, k.to(q.dtype))  # official: normalised key, unnormalised query
        queries, keys = duplicate_pairs(q, q_h, k)  # keys stay float32 (moco_logits upcasts the queries)
        queue = self.queue.snapshot()
        logits = moco_logits(queries, keys, queue, self.temperature)
        loss = F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))
        if self.training:
            self.queue.enqueue(torch.cat([k, k]) if self.enqueue_duplicates else k)
            self.steps += 1
        with torch.no_grad():
            rank = (logits[:, 1:] > logits[:, :1]).sum(dim=1).float()
            real, hallucinated = rank.chunk(2)
        return {
            "loss": loss,
            "proxy_acc": (real == 0).float().mean(),
            "pos_rank": real.mean(),
            "hallucinated_acc": (hallucinated == 0).float().mean(),
            "lambda": torch.tensor(self.generator.last_lambda),
        }

    def extra_repr(self) -> str:
        return f"enqueue_duplicates={self.enqueue_duplicates}"
