"""Hydra's losses: the MoCo v3 instance loss and the gated *disparate* loss over arbitrary class pairs.

Instance loss (MoCo v3, Chen et al. 2021; as the official Hydra code, without MoCo v3's factor 2T):

    ctr(q, k) = CE(q̂·k̂ᵀ / T, i)        q̂, k̂ L2-normalised; keys of the global batch, no gradient
    L_ins     = ½ [ctr(q1, k2) + ctr(q2, k1)]

Disparate loss. Each query q_i (predictor output, label y1_i) is paired with a label y2_i (the label of
a random permutation of the batch: an *arbitrary* class pair, y2_i = y1_i allowed). With the pair's gate
g_i = g(y1_i, y2_i) ∈ (0, 1)^d, both the query and *every* key are gated by it and re-normalised:

    q̃_i = norm(q_i ⊙ g_i),   k̃_in = norm(k_n ⊙ g_i),   l_in = s · q̃_i · k̃_in,   s = exp(scale_logit)

Positives P_i = {n : y_n = y2_i}; keys with label y1_i or y2_i are *excluded* from the negatives (a key
sharing y1 but not y2 is neither positive nor negative). Then ``multipos_ce``:

    L_dis = Σ_i Σ_{p∈P_i} [ log( e^{l_ip} + Σ_{n ∉ P_i ∪ Y1_i} e^{l_in} ) − l_ip ] / Σ_i |P_i|

each positive contrasted against the negatives only (not against the other positives), normalised by
the number of positive pairs in the (global) batch. Total ``L = (L_ins + β L_dis + α L_cls) / (1 + α + β)``
with L_cls the same loss at y2 = y1 (α = 0 in the paper).

Memory: the official code builds the gated keys k̃ as a B×N×d tensor. Here the logits come from two
B×N matmuls, never materialising it:

    q̃_i·k̃_in = Σ_j q_ij g_ij² k_nj / ( ‖q_i ⊙ g_i‖ · sqrt(Σ_j g_ij² k_nj²) )
              = [(q ⊙ g²) kᵀ]_in / ( ‖q_i ⊙ g_i‖ · sqrt([g² (k²)ᵀ]_in) )

(:func:`gated_logits`; :func:`gated_logits_materialised` is the official form, kept for tests).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from methods.hydra_cl.gate import BasicGate, OpenGate, check_labels
from shared.distributed import all_reduce_sum, gather_no_grad, gather_with_grad, get_world_size, local_offset
from shared.losses import at_least_float32, check_temperature

EPS = 1e-12  # F.normalize's eps: norms below it are clamped


def _check_embeddings(q: torch.Tensor, k: torch.Tensor) -> None:
    for name, z in (("q", q), ("k", k)):
        if not isinstance(z, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(z).__name__}")
        if z.ndim != 2:
            raise ValueError(f"{name} must have shape (batch, dim), got {tuple(z.shape)}")
        if not z.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {z.dtype}")
    if q.shape[1] != k.shape[1]:
        raise ValueError(f"q and k must have the same dim, got {q.shape[1]} and {k.shape[1]}")


def _check_gate(gate: torch.Tensor, q: torch.Tensor) -> None:
    if not isinstance(gate, torch.Tensor) or gate.shape != q.shape:
        shape = tuple(gate.shape) if isinstance(gate, torch.Tensor) else type(gate).__name__
        raise ValueError(f"gate must have the queries' shape {tuple(q.shape)}, got {shape}")


def gated_vectors(x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """``norm(x ⊙ g)`` row by row: unit vectors in the gate's sub-space (x, g of shape (B, d))."""
    return F.normalize(at_least_float32(x) * gate.to(at_least_float32(x).dtype), dim=-1)


def gated_logits_materialised(q: torch.Tensor, k: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """The official form: k̃ = norm(k_n ⊙ g_i) as a (B, N, d) tensor, logits q̃_i·k̃_in (B, N), no scale."""
    _check_embeddings(q, k)
    _check_gate(gate, q)
    q_t = gated_vectors(q, gate)
    k_t = F.normalize(at_least_float32(k)[None] * gate.to(q_t.dtype)[:, None], dim=-1)
    return torch.einsum("bd,bnd->bn", q_t, k_t)


def gated_logits(q: torch.Tensor, k: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """Cosine of q_i and k_n in the sub-space of gate g_i, (B, N), in float32 without a B×N×d tensor."""
    _check_embeddings(q, k)
    _check_gate(gate, q)
    q, k = at_least_float32(q), at_least_float32(k)
    g = gate.to(q.dtype)
    with torch.autocast(device_type=q.device.type, enabled=False):
        g2 = g * g
        num = (q * g2) @ k.T
        q_norm = (q * g).norm(dim=1, keepdim=True).clamp_min(EPS)
        k_norm = (g2 @ (k * k).T).clamp_min(EPS * EPS).sqrt()  # ‖k_n ⊙ g_i‖, clamped like F.normalize
        return num / (q_norm * k_norm)


def multipos_ce(
    logits: torch.Tensor, pos_mask: torch.Tensor, exclude_mask: torch.Tensor | None = None, global_count: bool = True
) -> torch.Tensor:
    """``Σ_{(i,p) ∈ P} [log(e^{l_ip} + Σ_{n ∉ P_i ∪ X_i} e^{l_in}) − l_ip] / |P|`` (official ``multipos_ce_loss``).

    ``pos_mask`` (B, N) marks the positives P, ``exclude_mask`` (B, N) the keys that are neither positive
    nor negative (None: only the positives are left out of the negatives). Invariant to adding a constant
    to a row (the official code subtracts the row mean; here the log-sum-exp is stable as it is). A row
    without negatives contributes 0 per positive. With ``global_count`` the count |P| is summed over
    processes and the local sum scaled by the world size, so that the mean over processes (DDP) is the
    single-process loss of the whole batch.
    """
    if logits.ndim != 2 or pos_mask.shape != logits.shape:
        shapes = f"{tuple(logits.shape)}, {tuple(pos_mask.shape)}"
        raise ValueError(f"logits and pos_mask must be 2-D of one shape, got {shapes}")
    if pos_mask.dtype != torch.bool or (exclude_mask is not None and exclude_mask.dtype != torch.bool):
        raise TypeError("pos_mask and exclude_mask must be boolean tensors")
    if exclude_mask is not None and exclude_mask.shape != logits.shape:
        raise ValueError(f"exclude_mask must have shape {tuple(logits.shape)}, got {tuple(exclude_mask.shape)}")
    logits = at_least_float32(logits)
    negative = ~pos_mask if exclude_mask is None else ~(pos_mask | exclude_mask)
    has_negative = negative.any(dim=1, keepdim=True)
    masked = logits.masked_fill(~negative, float("-inf")).masked_fill(~has_negative, 0.0)
    lse_neg = torch.logsumexp(masked, dim=1, keepdim=True)
    lse_neg = lse_neg.masked_fill(~has_negative, float("-inf"))
    terms = torch.logaddexp(logits, lse_neg) - logits
    total = torch.where(pos_mask, terms, torch.zeros_like(terms)).sum()
    count = pos_mask.sum().to(total.dtype).detach()
    if global_count:
        count = all_reduce_sum(count.clone())
        total = total * get_world_size()
    if count.item() == 0:
        raise ValueError("multipos_ce needs at least one positive (pos_mask is all False)")
    return total / count


def _gather_keys(k: torch.Tensor) -> torch.Tensor:
    return gather_with_grad(k) if k.requires_grad else gather_no_grad(k)


def instance_loss(q: torch.Tensor, k: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """MoCo v3's ``ctr(q, k) = CE(q̂·k̂ᵀ/T, i)`` against the keys of the global batch, in float32."""
    check_temperature(temperature)
    _check_embeddings(q, k)
    if q.shape != k.shape:
        raise ValueError(f"q and k must have the same shape, got {tuple(q.shape)} and {tuple(k.shape)}")
    q = F.normalize(at_least_float32(q), dim=1)
    keys = _gather_keys(F.normalize(at_least_float32(k), dim=1))
    with torch.autocast(device_type=q.device.type, enabled=False):
        logits = q @ keys.T / temperature
    labels = torch.arange(len(q), device=q.device) + local_offset(len(q))
    return F.cross_entropy(logits, labels)


def pair_masks(y1: torch.Tensor, y2: torch.Tensor, key_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(positives, excluded) of the disparate loss: keys of label y2_i; keys of label y1_i or y2_i."""
    pos = y2[:, None] == key_labels[None]
    return pos, pos | (y1[:, None] == key_labels[None])


def disparate_loss(
    q: torch.Tensor,
    k: torch.Tensor,
    y1: torch.Tensor,
    y2: torch.Tensor,
    gate: torch.Tensor,
    scale: torch.Tensor | float,
    materialise: bool = False,
) -> torch.Tensor:
    """L_dis of this process's queries (B, d) against the keys of the global batch (see the module docs).

    ``y1`` are the labels of the queries *and* of the keys (each process's keys are its own samples),
    ``y2`` the paired labels, ``gate`` (B, d) the gates g(y1_i, y2_i), ``scale`` the logit scale s.
    ``materialise`` builds the official B×N×d gated keys (same value, more memory).
    """
    _check_embeddings(q, k)
    check_labels(y1, name="y1")
    check_labels(y2, name="y2")
    if not (len(y1) == len(y2) == len(q) == len(k)):
        raise ValueError(f"q, k, y1, y2 must share the batch size, got {len(q)}, {len(k)}, {len(y1)}, {len(y2)}")
    keys = _gather_keys(at_least_float32(k))
    key_labels = gather_no_grad(y1)
    cos = (gated_logits_materialised if materialise else gated_logits)(q, keys, gate)
    pos, excluded = pair_masks(y1, y2, key_labels)
    return multipos_ce(scale * cos, pos, excluded)


class DisparateLoss(nn.Module):
    """Hydra's disparate loss with its gate and learnable logit scale s = exp(scale_logit) (init 20).

    ``forward(q, k, y1, y2)``: queries (B, d) with labels y1, keys (B, d) of the same samples (momentum
    encoder, other view), paired labels y2 (None: y2 = y1, the class loss L_cls).

    Example:
        >>> loss_fn = DisparateLoss(BasicGate(embed_dim=128, num_classes=10, in_dim=64, mlp_dim=128))
        >>> y = torch.randint(0, 10, (32,))
        >>> loss = loss_fn(torch.randn(32, 128), torch.randn(32, 128), y, y[torch.randperm(32)])
    """

    def __init__(self, gate: OpenGate, scale_init: float = 20.0, learn_scale: bool = True) -> None:
        super().__init__()
        if not isinstance(gate, OpenGate):
            raise TypeError(f"gate must be an OpenGate or BasicGate, got {type(gate).__name__}")
        if not (isinstance(scale_init, (int, float)) and scale_init > 0):
            raise ValueError(f"scale_init must be a positive number, got {scale_init!r}")
        self.gate = gate
        self.scale_logit = nn.Parameter(torch.tensor(float(scale_init)).log(), requires_grad=learn_scale)

    @property
    def scale(self) -> torch.Tensor:
        return self.scale_logit.exp()

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, y1: torch.Tensor, y2: torch.Tensor | None = None
    ) -> torch.Tensor:
        y2 = y1 if y2 is None else y2
        return disparate_loss(q, k, y1, y2, self.gate(y1, y2), self.scale)


__all__ = [
    "BasicGate",
    "DisparateLoss",
    "OpenGate",
    "disparate_loss",
    "gated_logits",
    "gated_logits_materialised",
    "gated_vectors",
    "instance_loss",
    "multipos_ce",
    "pair_masks",
]
