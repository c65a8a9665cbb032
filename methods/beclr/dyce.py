"""DyCE: the Dynamic Clustered mEmory that enhances each batch with its nearest memory neighbours.

BECLR §3.1 (official ``dyce.py``). A FIFO memory M of past embeddings is partitioned into K
clusters with prototypes γ_1..γ_K:

1. **Initialisation.** When the memory first fills, k-means (n_init 10) on the L2-normalised
   memory gives the prototypes and a label per memory entry.
2. **Memory update (Path II), every step.** The batch is assigned to prototypes by an
   equipartitioned optimal transport (Sinkhorn) on the Euclidean distances between the
   normalised batch and the normalised prototypes,

       Q = argmin_{Q ∈ 𝒰(1/B, 1/K)} ⟨Q, D⟩ − ε H(Q)   ⇒   Q ∝ exp(−D / ε),  rows/columns balanced,

   each sample takes the prototype of its largest Q entry, the batch replaces the oldest memory
   entries with these labels, and the prototypes become the means of their memory members:
   γ ← m·γ_old + (1 − m)·mean(cluster) (m = 0 in the official training; empty clusters keep γ_old).
3. **Batch enhancement (Path I).** Each embedding z_i finds its nearest prototype, takes the
   top-k most similar memory entries *of that cluster* (the whole memory if the cluster has ≤ k
   members) and appends them: B rows become B(1 + k). Appended rows are detached memory entries.

The official code computes ``Q = exp(+D/ε)``: distances used as *scores*, which favours distant
prototypes, and with ε = 1e-5 this overflows; its retry loop then raises ε by 0.1 until Q is
finite. ``official_sign=True`` reproduces that behaviour (and reports the effective ε); the
default follows the paper (costs, ``exp(−D/ε)``, computed in the log domain so that ε = 1e-5
is exact and finite).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shared.distributed import gather_no_grad


def _check_cost(cost: torch.Tensor) -> torch.Tensor:
    if not isinstance(cost, torch.Tensor) or cost.ndim != 2 or not cost.is_floating_point():
        raise ValueError(
            f"cost must be a floating-point (batch, prototypes) tensor, got {getattr(cost, 'shape', cost)}"
        )
    return cost


@torch.no_grad()
def sinkhorn_codes(cost: torch.Tensor, epsilon: float = 1e-5, iterations: int = 10) -> torch.Tensor:
    """Equipartitioned soft assignment (B, K) ∝ exp(−cost/ε), rows summing to 1 (the paper's DyCE).

    Log-domain Sinkhorn-Knopp: every prototype receives mass 1/K, every sample 1/B; exact for
    any ε > 0 (no overflow).
    """
    cost = _check_cost(cost)
    if not (isinstance(epsilon, (int, float)) and epsilon > 0):
        raise ValueError(f"epsilon must be a positive number, got {epsilon!r}")
    if not (isinstance(iterations, int) and iterations >= 1):
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    b, k = cost.shape
    log_q = -cost.double() / epsilon
    log_q = log_q - torch.logsumexp(log_q.flatten(), 0)
    for _ in range(iterations):
        log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) - math.log(k)  # prototypes: 1/K each
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - math.log(b)  # samples: 1/B each
    return torch.exp(log_q + math.log(b)).to(cost.dtype)


@torch.no_grad()
def official_sinkhorn_codes(
    distances: torch.Tensor, epsilon: float = 1e-5, iterations: int = 10
) -> tuple[torch.Tensor, float]:
    """The official ``distributed_sinkhorn`` fed with distances: ``Q = exp(+D/ε)`` in float32.

    While Q overflows (NaN after normalising), ε is raised by 0.1, as the official retry loop
    does. Returns the codes (B, K) and the ε actually used.
    """
    q_in = _check_cost(distances).float()
    eps = float(epsilon)
    while True:
        q = torch.exp(q_in / eps).T
        q = q / q.sum()
        if not torch.isnan(q).any():
            break
        eps += 0.1
    k, b = q.shape
    for _ in range(iterations):
        q = q / q.sum(dim=1, keepdim=True) / k
        q = q / q.sum(dim=0, keepdim=True) / b
    return (q * b).T, eps


@dataclass(frozen=True)
class DyCEConfig:
    """DyCE's hyperparameters (official mini-ImageNet R18 values as defaults)."""

    size: int = 8192
    num_clusters: int = 200
    topk: int = 5
    epsilon: float = 1e-5
    sinkhorn_iterations: int = 10
    prototype_momentum: float = 0.0
    official_sign: bool = False
    kmeans_init: int = 10

    def __post_init__(self) -> None:
        for name in ("size", "num_clusters", "topk", "sinkhorn_iterations", "kmeans_init"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.num_clusters > self.size:
            raise ValueError(f"num_clusters ({self.num_clusters}) cannot exceed the memory size ({self.size})")
        if not self.epsilon > 0:
            raise ValueError(f"epsilon must be positive, got {self.epsilon}")
        if not 0 <= self.prototype_momentum <= 1:
            raise ValueError(f"prototype_momentum must be in [0, 1], got {self.prototype_momentum}")


def memory_size(memory_scale: int, num_clusters: int, batch_size: int) -> int:
    """Official sizing ``(scale·K // 2B + 1)·2B`` (without its trailing +1): a multiple of the 2B rows per step."""
    rows = 2 * batch_size
    return (memory_scale * num_clusters // rows + 1) * rows


class DyCE(nn.Module):
    """One clustered memory of ``dim``-dimensional embeddings (BECLR keeps three: z̄, p, z).

    Call :meth:`update` with the (detached) embeddings of a step (every rank's are gathered, view by view),
    then :meth:`enhance` to append each row's top-k in-cluster neighbours.

    Example:
        >>> mem = DyCE(128, DyCEConfig(size=2048, num_clusters=20, topk=3))
        >>> mem.update(z.detach())
        >>> z_enhanced = mem.enhance(z, views=2)    # (2B(1+k), d) once the memory is clustered
    """

    bank: torch.Tensor
    labels: torch.Tensor
    prototypes: torch.Tensor
    ptr: torch.Tensor
    count: torch.Tensor
    clustered: torch.Tensor

    def __init__(self, dim: int, config: DyCEConfig, seed: int = 0) -> None:
        super().__init__()
        if not (isinstance(dim, int) and dim >= 1):
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        self.dim, self.config, self.seed = dim, config, seed
        self.register_buffer("bank", torch.zeros(config.size, dim))
        self.register_buffer("labels", torch.full((config.size,), -1, dtype=torch.long))
        self.register_buffer("prototypes", torch.zeros(config.num_clusters, dim))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))
        self.register_buffer("clustered", torch.zeros((), dtype=torch.bool))
        self.last_epsilon = config.epsilon

    @property
    def ready(self) -> bool:
        """True once the memory has filled and been clustered."""
        return bool(self.clustered)

    @torch.no_grad()
    def cluster(self) -> None:
        """k-means (``n_init``) on the normalised memory → prototypes and memory labels."""
        from sklearn.cluster import KMeans

        x = F.normalize(self.bank.float(), dim=1).cpu().numpy().astype(np.float64)
        km = KMeans(self.config.num_clusters, n_init=self.config.kmeans_init, random_state=self.seed).fit(x)
        self.prototypes.copy_(torch.from_numpy(km.cluster_centers_).to(self.prototypes))
        self.labels.copy_(torch.from_numpy(km.labels_.astype(np.int64)).to(self.labels.device))
        self.clustered.fill_(True)

    @torch.no_grad()
    def assign(self, z: torch.Tensor) -> torch.Tensor:
        """Cluster labels (B,) of z by the equipartitioned OT (paper's or official sign)."""
        d = torch.cdist(F.normalize(z.float(), dim=1), F.normalize(self.prototypes.float(), dim=1))
        cfg = self.config
        if cfg.official_sign:
            codes, self.last_epsilon = official_sinkhorn_codes(d, cfg.epsilon, cfg.sinkhorn_iterations)
        else:
            codes = sinkhorn_codes(d, cfg.epsilon, cfg.sinkhorn_iterations)
        return codes.argmax(1)

    @torch.no_grad()
    def _enqueue(self, z: torch.Tensor, labels: torch.Tensor) -> None:
        n, size = z.shape[0], self.config.size
        if size % n:
            raise ValueError(f"memory size {size} must be a multiple of the rows enqueued per step ({n})")
        start = int(self.ptr)
        self.bank[start : start + n] = z.to(self.bank.dtype)
        self.labels[start : start + n] = labels
        self.ptr.fill_((start + n) % size)
        self.count.fill_(min(int(self.count) + n, size))

    @torch.no_grad()
    def update_prototypes(self) -> None:
        """γ ← m·γ_old + (1 − m)·mean of each cluster's memory entries; empty clusters keep γ_old."""
        k = self.config.num_clusters
        sums = torch.zeros_like(self.prototypes).index_add_(0, self.labels, self.bank.to(self.prototypes.dtype))
        sizes = torch.bincount(self.labels, minlength=k).to(self.prototypes.dtype)
        means = sums / sizes.clamp_min(1)[:, None]
        m = self.config.prototype_momentum
        new = m * self.prototypes + (1 - m) * means
        self.prototypes.copy_(torch.where(sizes[:, None] > 0, new, self.prototypes))

    @torch.no_grad()
    def update(self, z: torch.Tensor, gather: bool = True, views: int = 2) -> None:
        """Path II: enqueue this step's embeddings (with OT labels once clustered); cluster when first full.

        ``z`` stacks ``views`` equal blocks ``[v_1; v_2; …]``. With ``gather`` each view is gathered
        separately, so the memory receives ``[v_1 of every rank; v_2 of every rank; …]``: the layout of
        one process holding the whole batch (k-means's initialisation depends on the order of the rows).
        """
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise ValueError(f"embeddings must have shape (rows, {self.dim}), got {tuple(z.shape)}")
        z = z.detach()
        if gather:
            if z.shape[0] % views:
                raise ValueError(f"{z.shape[0]} rows cannot be split into {views} views")
            z = torch.cat([gather_no_grad(v) for v in z.chunk(views)])
        if not self.ready and int(self.count) >= self.config.size:
            self.cluster()
        if self.ready:
            self._enqueue(z, self.assign(z))
            self.update_prototypes()
        else:
            self._enqueue(z, torch.full((z.shape[0],), -1, dtype=torch.long, device=z.device))

    @torch.no_grad()
    def neighbours(self, z: torch.Tensor) -> torch.Tensor:
        """Indices (rows, k) of each row's top-k memory entries within its nearest prototype's cluster."""
        k = self.config.topk
        zn = F.normalize(z.detach().float(), dim=1)
        bank = F.normalize(self.bank.float(), dim=1)
        nearest = (zn @ F.normalize(self.prototypes.float(), dim=1).T).argmax(1)
        sims = zn @ bank.T
        in_cluster = self.labels[None, :] == nearest[:, None]
        sizes = torch.bincount(self.labels.clamp_min(0), minlength=self.config.num_clusters)[nearest]
        use_cluster = (sizes > k)[:, None]  # official falls back to the whole memory for small clusters
        masked = torch.where(in_cluster | ~use_cluster, sims, torch.full_like(sims, float("-inf")))
        return masked.topk(k, dim=1).indices

    def enhance(self, z: torch.Tensor, views: int = 2) -> torch.Tensor:
        """Path I: ``[v_1; v_1's neighbours; v_2; v_2's neighbours; …]``, (views·B(1+k), d).

        Neighbours of row i are at rows B + i·k .. B + i·k + k − 1 of its view's block, so
        neighbour j of view 1 pairs with neighbour j of view 2 in the loss. Appended rows are
        detached memory entries; the original rows keep their gradient.
        """
        if not self.ready:
            raise RuntimeError("DyCE.enhance called before the memory was filled and clustered")
        if z.shape[0] % views:
            raise ValueError(f"{z.shape[0]} rows cannot be split into {views} views")
        idx = self.neighbours(z)
        appended = self.bank[idx].detach().to(z.dtype)  # (rows, k, d)
        blocks = []
        for v, zv in enumerate(z.chunk(views)):
            blocks += [zv, appended.chunk(views)[v].flatten(0, 1)]
        return torch.cat(blocks)

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"dim={self.dim}, size={c.size}, clusters={c.num_clusters}, topk={c.topk}, official_sign={c.official_sign}"
        )
