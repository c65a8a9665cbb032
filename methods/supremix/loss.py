"""SupReMix: supervised contrastive regression with mixup hard pairs.

Wu et al., "Mixup Your Own Pairs" (SupReMix), arXiv:2309.16633. Two views of N samples give
2N L2-normalised embeddings z with continuous labels y (each view carries its sample's label).
Every embedding z_i is an anchor; its candidates are the other 2N − 1 embeddings plus two kinds
of *mixtures* made from the batch:

* **anchor-exclusive hard positives**: for every pair (j, k) with y_j < y_i < y_k,
  y_i − y_j < n and y_k − y_i < n (window n = 5),

      m_ijk = α z_j + (1 − α) z_k,   α = (y_k − y_i) / (y_k − y_j) ∈ (0, 1),

  whose label α y_j + (1 − α) y_k equals y_i exactly, so m_ijk is a positive of i;
* **anchor-inclusive hard negatives**: for every k with y_k ≠ y_i,

      m_ik = α z_i + (1 − α) z_k,   α ~ Beta(2, 8),

  with label α y_i + (1 − α) y_k ≠ y_i, a negative of i.

With logits ℓ_ic = z_i·c/τ over all candidates c (batch items and mixtures, mixtures not
re-normalised) and label-distance weights w_ic = |y_i − y_c| + 1 (``distance="L1_inv"``: far
negatives push harder; w_ic = 1 for every candidate with the anchor's label),

    L_i = −(τ/τ_b) · 1/|P_i| · Σ_{p ∈ P_i} [ ℓ_ip − log Σ_{c ≠ i} w_ic e^{ℓ_ic} ],

where P_i = {batch items with y_c = y_i, c ≠ i} ∪ {positive mixtures of i}; the loss is the mean
over the 2N anchors. Without mixtures and with w ≡ 1 this is SupCon (Khosla et al., 2020) with
exact-label positives.

Because a mixture is a linear combination of two embeddings, its logit is the same combination
of two entries of the similarity matrix: z_i·m_ijk = α s_ij + (1 − α) s_ik. The mixtures are
therefore never materialised (the official code builds an O((2N)³·d) tensor on the CPU); the
positive mixtures are gathered as sparse (anchor, j, k) triples (only pairs inside the label
window exist), found from an O(chunk·(2N)²) boolean mask per chunk of anchors; chunking over
anchors gives the same numbers as the full computation. As in the official code the mixtures are constants
(``detach_mixtures=True``): the gradient of a mixture logit flows into the anchor only.

Official-code behaviours that differ from the paper's equation are behind flags, off by default:
``official_positive_count`` (divide by |P_i| + 1) and ``official_l2_inv`` (mixture weight
(y_i − y_c + 1)² + 1 instead of (y_i − y_c)² + 1 for ``distance="L2_inv"``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from shared.distributed import gather_no_grad, gather_with_grad, local_offset
from shared.losses import at_least_float32, check_pair, check_temperature

DISTANCES = ("L1", "L2", "L1_inv", "L2_inv")


def label_weight(diff: torch.Tensor, distance: str = "L1_inv", official_l2_inv: bool = False) -> torch.Tensor:
    """The weight of a candidate whose label differs from the anchor's by ``diff`` = y_i − y_c.

    ``L1_inv``: |d| + 1; ``L2_inv``: d² + 1 (official mixtures: (d + 1)² + 1); ``L1``: 1/(|d| + 1);
    ``L2``: 1/(d² + 1). The ``_inv`` weights are ≥ 1 with equality iff d = 0.
    """
    if distance == "L1_inv":
        return diff.abs() + 1
    if distance == "L2_inv":
        return (diff + 1).pow(2) + 1 if official_l2_inv else diff.pow(2) + 1
    if distance == "L1":
        return (diff.abs() + 1).reciprocal()
    if distance == "L2":
        return (diff.pow(2) + 1).reciprocal()
    raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")


def positive_mixtures(
    y_anchor: torch.Tensor, y: torch.Tensor, window: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The positive mixtures of each anchor as index triples and their α.

    ``y_anchor``: (A,), ``y``: (C,) candidate labels. A triple (a, j, k) is a positive mixture of
    anchor a iff y_j < y_a < y_k, y_a − y_j < window and y_k − y_a < window; its
    α = (y_k − y_a)/(y_k − y_j) ∈ (0, 1) makes the mixture label α y_j + (1 − α) y_k equal y_a.
    Returns (anchor, j, k, alpha), each (T,), in row-major (a, j, k) order.
    """
    gap_below = y_anchor[:, None] - y[None, :]  # y_a − y_j
    below = (gap_below > 0) & (gap_below < window)
    above = (-gap_below > 0) & (-gap_below < window)  # y_k − y_a in (0, window)
    a, j, k = (below[:, :, None] & above[:, None, :]).nonzero(as_tuple=True)
    alpha = ((y[k] - y_anchor[a]) / (y[k] - y[j])).clamp(0, 1)
    return a, j, k, alpha


def negative_mixture_mask(y_anchor: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(A, C) bool: candidate k makes a negative mixture α z_i + (1 − α) z_k with anchor i iff y_k ≠ y_i."""
    return y_anchor[:, None] != y[None, :]


@dataclass(frozen=True)
class SupReMixConfig:
    """Hyperparameters of :func:`supremix_loss` (defaults: the official training script)."""

    temperature: float = 0.3
    base_temperature: float = 0.3
    window: float = 5.0
    mix_pos: bool = True
    mix_neg: bool = True
    use_weight: bool = True
    distance: str = "L1_inv"
    neg_beta: tuple[float, float] = (2.0, 8.0)
    neg_alpha: float | None = None
    detach_mixtures: bool = True
    official_positive_count: bool = False
    official_l2_inv: bool = False
    max_elements: int = 1 << 22

    def __post_init__(self) -> None:
        check_temperature(self.temperature)
        check_temperature(self.base_temperature, "base_temperature")
        if not (isinstance(self.window, (int, float)) and self.window > 0):
            raise ValueError(f"window must be a positive number, got {self.window!r}")
        if self.distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}, got {self.distance!r}")
        if len(self.neg_beta) != 2 or not all(isinstance(b, (int, float)) and b > 0 for b in self.neg_beta):
            raise ValueError(f"neg_beta must be two positive numbers (a, b) of Beta(a, b), got {self.neg_beta!r}")
        if self.neg_alpha is not None and not 0 <= self.neg_alpha <= 1:
            raise ValueError(f"neg_alpha must be in [0, 1] or None, got {self.neg_alpha!r}")
        if not (isinstance(self.max_elements, int) and self.max_elements >= 1):
            raise ValueError(f"max_elements must be a positive integer, got {self.max_elements!r}")


def check_labels(labels: torch.Tensor, n: int) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), one per sample, got {tuple(labels.shape)}")
    if labels.is_complex():
        raise TypeError(f"labels must be real numbers, got {labels.dtype}")
    labels = labels.double() if labels.dtype == torch.float64 else labels.float()
    if not torch.isfinite(labels).all():
        raise ValueError("labels must be finite")
    return labels


def sample_negative_alpha(shape: tuple[int, int], cfg: SupReMixConfig, device: torch.device, dtype: torch.dtype):
    """α of the negative mixtures: ``neg_alpha`` if fixed, else Beta(a, b) draws (global RNG)."""
    if cfg.neg_alpha is not None:
        return torch.full(shape, float(cfg.neg_alpha), device=device, dtype=dtype)
    a, b = cfg.neg_beta
    beta = torch.distributions.Beta(torch.tensor(float(a)), torch.tensor(float(b)))
    return beta.sample(shape).to(device=device, dtype=dtype)


def _chunk_terms(
    s: torch.Tensor,
    s_mix: torch.Tensor,
    y_anchor: torch.Tensor,
    y: torch.Tensor,
    self_index: torch.Tensor,
    neg_alpha: torch.Tensor | None,
    cfg: SupReMixConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per anchor of a chunk: (log-sum-exp of the weighted denominator, Σ positive logits, |P|).

    ``s`` (A, C): similarities with gradients to both sides; ``s_mix``: the same with the
    candidates detached when the mixtures are constants.
    """
    tau = cfg.temperature
    rows = torch.arange(len(s), device=s.device)
    not_self = torch.ones_like(s, dtype=torch.bool)
    not_self[rows, self_index] = False

    def log_w(diff: torch.Tensor, mixture: bool) -> torch.Tensor:
        if not cfg.use_weight:
            return torch.zeros_like(diff)
        return label_weight(diff, cfg.distance, mixture and cfg.official_l2_inv).log()

    logits = s / tau
    pos_mask = (y_anchor[:, None] == y[None, :]) & not_self
    den = [(logits + log_w(y_anchor[:, None] - y[None, :], False)).masked_fill(~not_self, float("-inf"))]
    pos_sum = torch.where(pos_mask, logits, torch.zeros_like(logits)).sum(1)
    count = pos_mask.sum(1).to(s.dtype)
    if neg_alpha is not None:  # α z_i + (1 − α) z_k, label α y_i + (1 − α) y_k
        valid = negative_mixture_mask(y_anchor, y)
        s_self = s_mix[rows, self_index][:, None]
        neg_logits = (neg_alpha * s_self + (1 - neg_alpha) * s_mix) / tau
        diff = (1 - neg_alpha) * (y_anchor[:, None] - y[None, :])
        den.append((neg_logits + log_w(diff, True)).masked_fill(~valid, float("-inf")))
    dense = torch.cat(den, dim=1)
    shift = dense.detach().max(1).values  # finite: the other view is always a candidate
    extra = torch.zeros_like(shift)
    if cfg.mix_pos:  # α z_j + (1 − α) z_k with label exactly y_i: sparse triples, never (A, C, C) floats
        a, j, k, alpha = positive_mixtures(y_anchor, y, cfg.window)
        alpha = alpha.to(s.dtype)
        mix_logits = (alpha * s_mix[a, j] + (1 - alpha) * s_mix[a, k]) / tau
        den_terms = mix_logits + log_w(torch.zeros_like(mix_logits), True)  # mixture label − anchor label = 0
        if len(a):
            top = torch.full_like(shift, float("-inf")).scatter_reduce(0, a, den_terms.detach(), "amax")
            shift = torch.maximum(shift, top)
        extra = extra.index_add(0, a, (den_terms - shift[a]).exp())
        pos_sum = pos_sum + torch.zeros_like(pos_sum).index_add(0, a, mix_logits)
        count = count + torch.bincount(a, minlength=len(s)).to(s.dtype)
    lse = shift + ((dense - shift[:, None]).exp().sum(1) + extra).log()
    return lse, pos_sum, count


def supremix_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    labels: torch.Tensor,
    cfg: SupReMixConfig | None = None,
    gather_distributed: bool = True,
    reduction: str = "mean",
) -> torch.Tensor:
    """SupReMix over the 2N anchors of two views ``z1``, ``z2`` (N, d) with labels (N,) (module docstring).

    Each process computes the loss of its own 2n anchors against the 2N embeddings and labels of
    the whole (gathered) batch; the mixtures are built from the whole batch. Anchors are processed
    in chunks of at most ``cfg.max_elements // (2N)²`` rows (exactly the full computation).
    ``reduction``: ``"mean"`` (scalar) or ``"none"`` (the (2n,) per-anchor losses, view 1 then view 2).
    """
    cfg = cfg or SupReMixConfig()
    check_pair(z1, z2)
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    n = z1.shape[0]
    y_local = check_labels(labels, n).to(z1.device)
    z1 = F.normalize(at_least_float32(z1), dim=1)
    z2 = F.normalize(at_least_float32(z2), dim=1)
    y_local = y_local.to(torch.float64 if z1.dtype == torch.float64 else y_local.dtype)
    if gather_distributed:
        all1, all2, y_all, offset = gather_with_grad(z1), gather_with_grad(z2), gather_no_grad(y_local), local_offset(n)
    else:
        all1, all2, y_all, offset = z1, z2, y_local, 0
    big_n = all1.shape[0]
    anchors = torch.cat([z1, z2])
    candidates = torch.cat([all1, all2])
    y_cand = torch.cat([y_all, y_all])
    y_anchor = torch.cat([y_local, y_local])
    rows = torch.arange(n, device=z1.device) + offset
    self_index = torch.cat([rows, rows + big_n])
    neg_alpha = None
    if cfg.mix_neg:  # drawn once for all anchors, so chunking does not change the draws
        neg_alpha = sample_negative_alpha((2 * n, 2 * big_n), cfg, z1.device, anchors.dtype)
    chunk = max(1, cfg.max_elements // (2 * big_n) ** 2) if cfg.mix_pos else 2 * n
    cand_mix = candidates.detach() if cfg.detach_mixtures else candidates
    losses = []
    with torch.autocast(device_type=anchors.device.type, enabled=False):
        for start in range(0, 2 * n, chunk):
            part = slice(start, start + chunk)
            s = anchors[part] @ candidates.T
            s_mix = anchors[part] @ cand_mix.T if cfg.detach_mixtures else s
            na = None if neg_alpha is None else neg_alpha[part]
            lse, pos_sum, count = _chunk_terms(s, s_mix, y_anchor[part], y_cand, self_index[part], na, cfg)
            denom = count + 1.0 if cfg.official_positive_count else count
            mean_log_prob_pos = (pos_sum - count * lse) / denom
            losses.append(-(cfg.temperature / cfg.base_temperature) * mean_log_prob_pos)
    per_anchor = torch.cat(losses)
    return per_anchor if reduction == "none" else per_anchor.mean()


class SupReMixLoss(nn.Module):
    """SupReMix loss ``loss(z1, z2, labels)``; see the module docstring for the equation.

    Args:
        temperature, base_temperature: τ and τ_b (official 0.3 and 0.3).
        window: n, the label window of the positive mixtures (official 5, in label units).
        mix_pos, mix_neg: build the hard positive / negative mixtures.
        use_weight, distance: weight w_ic of every denominator term (official ``L1_inv``).
        neg_beta: Beta(a, b) of the negative mixtures' α (official code (2, 8); its help text says (5, 5)).
        neg_alpha: a fixed α for every negative mixture instead (tests, ablations).
        detach_mixtures: mixtures are constants, as in the official code.
        official_positive_count: divide by |P_i| + 1 as the official code does.
        official_l2_inv: the official misplaced ``+1`` in the mixtures' ``L2_inv`` weight.
        max_elements: anchors are processed in chunks of ≤ max_elements/(2N)² rows.
        gather_distributed: gather other ranks' embeddings (with gradients) and labels.

    Example:
        >>> loss = SupReMixLoss()(torch.randn(8, 16), torch.randn(8, 16), torch.arange(8.0))
    """

    def __init__(self, gather_distributed: bool = True, **kwargs) -> None:
        super().__init__()
        self.cfg = SupReMixConfig(**kwargs)
        self.gather_distributed = gather_distributed

    def forward(self, z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return supremix_loss(z1, z2, labels, self.cfg, self.gather_distributed)

    def extra_repr(self) -> str:
        c = self.cfg
        return (
            f"temperature={c.temperature}, window={c.window}, mix_pos={c.mix_pos}, mix_neg={c.mix_neg}, "
            f"use_weight={c.use_weight}, distance={c.distance}"
        )


class SupConRegressionLoss(SupReMixLoss):
    """SupCon with exact-label positives (the baseline): SupReMix without mixtures (and, by default, weights).

    ``use_weight=True`` is the official training script's SupCon baseline: its ``--use_weight`` flag
    defaults to True and, declared with ``type=bool``, cannot be turned off from the command line
    (``bool("False")`` is True), so the baseline's denominator carries the label-distance weights
    w_ic (``distance``, official ``L1_inv``: |y_i − y_c| + 1):

        L_i = −(τ/τ_b) · 1/|P_i| · Σ_{p ∈ P_i} [ ℓ_ip − log Σ_{c ≠ i} w_ic e^{ℓ_ic} ].

    Example:
        >>> loss = SupConRegressionLoss(temperature=0.3)(torch.randn(8, 16), torch.randn(8, 16), torch.arange(8.0))
        >>> official = SupConRegressionLoss(use_weight=True)(torch.randn(8, 16), torch.randn(8, 16), torch.arange(8.0))
    """

    def __init__(
        self,
        temperature: float = 0.3,
        base_temperature: float | None = None,
        gather_distributed: bool = True,
        official_positive_count: bool = False,
        use_weight: bool = False,
        distance: str = "L1_inv",
    ) -> None:
        super().__init__(
            gather_distributed,
            temperature=temperature,
            base_temperature=temperature if base_temperature is None else base_temperature,
            mix_pos=False,
            mix_neg=False,
            use_weight=use_weight,
            distance=distance,
            official_positive_count=official_positive_count,
        )
