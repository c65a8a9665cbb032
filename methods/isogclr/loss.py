"""SogCLR's global contrastive loss and iSogCLR's robust version with per-sample temperatures.

Yuan et al., "Provable Stochastic Optimization for Global Contrastive Learning" (SogCLR), ICML 2022;
Qiu et al., "Not All Semantics are Created Equal: Contrastive Self-supervised Learning with Automatic
Temperature Individualization" (iSogCLR), ICML 2023, arXiv:2305.11965.

For anchor i (one of the 2B views) with positive x_i⁺ and negatives S_i (the other 2B − 2 views),
``sim`` = cosine similarity and ``h_i(z) = sim(x_i, z) − sim(x_i, x_i⁺)``. The robust global
contrastive loss (RGCL) is, per anchor, the KL-DRO value over the negatives

    F_i(w, τ_i) = τ_i log( (1/|S_i|) Σ_{z∈S_i} exp(h_i(z)/τ_i) ) + τ_i ρ,   τ_i ∈ [τ_min, τ_max],

minimised over the network w and every τ_i. SogCLR is the same objective with one fixed τ (no ρ).
The batch mean inside the log is biased; both methods keep a moving average per sample, indexed by
the sample's position in the data set:

    g_i = (1/|S|) Σ_j exp(sim_ij/τ_i)                   (τ_i detached, batch estimate)
    s_i ← (1 − γ) s_i + γ g_i                           (first visit: s_i = g_i; γ = 0.8)

(each view's estimate uses the stored s_i; their mean is stored back). The gradient of F w.r.t. w is
that of the surrogate (weights detached; the positive enters linearly)

    ℓ_i = (1/|S|) Σ_j [exp(sim_ij/τ_i) / s_i] · sim_ij − sim_i⁺.

iSogCLR moves τ_i along its own stochastic gradient, clipped to [−3, 3], with momentum:

    ∇τ_i = log s_i + ρ − (1/|S|) Σ_j [exp(sim_ij/τ_i) / s_i] · sim_ij/τ_i     (mean of the two views)
    u_i ← (1 − β_u) u_i + β_u ∇τ_i,     τ_i ← clip(τ_i − η u_i, τ_min, τ_max).

Writing ``sim`` for ``h`` in ∇τ is exact: the positive's terms cancel. The states live in buffers
of the loss module (``log_s`` and ``visited``, and for iSogCLR ``tau`` and ``tau_momentum``), so
checkpoints carry them. ``s`` is kept as its logarithm, which stays finite for any τ; the bool
``visited`` marks the samples seen so far (``log_s`` is 0 before, and unused). A stored −inf as "not
yet visited" would be refused by the engine's check that a checkpoint holds no NaN/Inf: with the
last partial batch of an epoch dropped, some samples are still unvisited when it is saved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from shared.distributed import gather_no_grad
from shared.losses import check_pair, check_temperature, two_view_logits


@dataclass
class AnchorSims:
    """Cosine similarities of this rank's 2n anchors (``[view 1; view 2]``) to the 2N gathered views."""

    sim: torch.Tensor  # (2n, 2N) float32, with gradients
    positive: torch.Tensor  # (2n,) sim to the positive, with gradients
    negative: torch.Tensor  # (2n, 2N) bool: candidate is a negative (neither the anchor nor its positive)

    @property
    def num_negatives(self) -> int:
        return self.sim.shape[1] - 2


def anchor_similarities(z1: torch.Tensor, z2: torch.Tensor, gather_distributed: bool = True) -> AnchorSims:
    """Normalise, gather the other ranks' views with gradients, and split positives from negatives."""
    tv = two_view_logits(z1, z2, 1.0, gather_distributed)
    rows = torch.arange(len(tv.logits), device=tv.logits.device)
    negative = torch.ones_like(tv.logits, dtype=torch.bool)
    negative[rows, tv.self_index] = False
    negative[rows, tv.positive] = False
    return AnchorSims(tv.logits, tv.positive_logits(), negative)


def _negative_logits(sims: AnchorSims, tau: torch.Tensor) -> torch.Tensor:
    """``sim_ij / τ_i`` on the negatives, −inf elsewhere (no gradient)."""
    return (sims.sim.detach() / tau[:, None]).masked_fill(~sims.negative, float("-inf"))


@torch.no_grad()
def batch_log_g(sims: AnchorSims, tau: torch.Tensor) -> torch.Tensor:
    """``log g_i = log (1/|S|) Σ_j exp(sim_ij/τ_i)`` per anchor, shape (2n,)."""
    return torch.logsumexp(_negative_logits(sims, tau), dim=1) - math.log(sims.num_negatives)


@torch.no_grad()
def moving_average(log_s: torch.Tensor, log_g: torch.Tensor, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``s ← (1 − γ) s + γ g`` for both views in log space.

    ``log_s``: the stored (n,) states (−inf where never visited: then s = g); ``log_g``: (2n,) batch
    estimates ``[view 1; view 2]``. Returns the (2n,) per-view estimates used in this step and the
    (n,) value to store, the mean of the two views' estimates.
    """
    old = log_s.repeat(2)
    if gamma == 1.0:  # no memory (log(1 − γ) would be −inf)
        return log_g.clone(), torch.logaddexp(*log_g.chunk(2)) - math.log(2.0)
    per_view = torch.logaddexp(old + math.log(1.0 - gamma), log_g + math.log(gamma))
    per_view = torch.where(torch.isneginf(old), log_g, per_view)
    v1, v2 = per_view.chunk(2)
    return per_view, torch.logaddexp(v1, v2) - math.log(2.0)


def surrogate_terms(sims: AnchorSims, tau: torch.Tensor, log_s: torch.Tensor) -> torch.Tensor:
    """Per-anchor ``ℓ_i = mean_j [exp(sim_ij/τ_i)/s_i] · sim_ij − sim_i⁺`` (weights detached), (2n,)."""
    with torch.no_grad():
        weights = torch.exp(_negative_logits(sims, tau) - log_s[:, None])
    return (weights * sims.sim).sum(dim=1) / sims.num_negatives - sims.positive


@torch.no_grad()
def temperature_gradient(sims: AnchorSims, tau: torch.Tensor, log_s: torch.Tensor, rho: float) -> torch.Tensor:
    """Per-anchor ``∇τ_i = log s_i + ρ − mean_j [exp(sim_ij/τ_i)/s_i] · sim_ij/τ_i``, (2n,)."""
    logits = _negative_logits(sims, tau)
    weights = torch.exp(logits - log_s[:, None])
    weighted = (weights * logits.masked_fill(~sims.negative, 0.0)).sum(dim=1) / sims.num_negatives
    return log_s + rho - weighted


def _check_fraction(value: float, name: str) -> float:
    if not (isinstance(value, (int, float)) and 0 < value <= 1):
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")
    return float(value)


class SogCLRLoss(nn.Module):
    """SogCLR: the global contrastive loss with a per-sample moving-average estimator, fixed τ.

    Args:
        num_samples: size N of the training set; the batch's ``index`` addresses the (N,) state.
        temperature: τ > 0 (0.1 in the official code).
        gamma: moving-average weight γ in (0, 1] of the new batch estimate (0.8); γ = 1 keeps no memory.
        loss_scale: the returned objective is multiplied by this. The official objective is
            τ·log(...) (scale 1), trained with LARS; 1/τ gives the gradient scale of InfoNCE under SGD.
        gather_distributed: negatives from every process (gathered with gradients); each process
            computes the states of its own samples and all processes store every update.

    ``forward(z1, z2, index)`` takes the (n, d) projections of two views and the (n,) data-set
    indices of the samples, updates the per-sample states and returns a scalar whose value is the
    batch estimate of the objective, ``mean_i scale·(τ_i log g_i − sim_i⁺)``, and whose gradient is the
    surrogate's (the moving-average estimate of ∇F).

    Example:
        >>> loss_fn = SogCLRLoss(num_samples=1000, temperature=0.1)
        >>> loss = loss_fn(torch.randn(32, 128), torch.randn(32, 128), torch.arange(32))
    """

    def __init__(
        self,
        num_samples: int,
        temperature: float = 0.1,
        gamma: float = 0.8,
        loss_scale: float = 1.0,
        gather_distributed: bool = True,
    ) -> None:
        super().__init__()
        if not (isinstance(num_samples, int) and num_samples >= 2):
            raise ValueError(f"num_samples must be an integer >= 2 (the training set size), got {num_samples!r}")
        self.num_samples = num_samples
        self.temperature = check_temperature(temperature)
        self.gamma = _check_fraction(gamma, "gamma")
        self.loss_scale = check_temperature(loss_scale, "loss_scale")
        self.gather_distributed = gather_distributed
        self.register_buffer("log_s", torch.zeros(num_samples))
        self.register_buffer("visited", torch.zeros(num_samples, dtype=torch.bool))

    def log_state(self, index: torch.Tensor | None = None) -> torch.Tensor:
        """``log s`` of the samples ``index`` (all when None), −inf where never visited."""
        log_s, visited = (self.log_s, self.visited) if index is None else (self.log_s[index], self.visited[index])
        return log_s.masked_fill(~visited, float("-inf"))

    def anchor_temperatures(self, index: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """τ of every anchor ``[view 1; view 2]``, shape (2n,)."""
        return torch.full((2 * len(index),), self.temperature, device=index.device, dtype=dtype)

    def check_index(self, index: torch.Tensor, n: int) -> torch.Tensor:
        if not isinstance(index, torch.Tensor) or index.dtype not in (torch.int32, torch.int64):
            raise TypeError("index must be an integer tensor of data-set indices (the batch's 'index')")
        if index.shape != (n,):
            raise ValueError(f"index must have shape ({n},), one data-set index per sample, got {tuple(index.shape)}")
        if n and (int(index.min()) < 0 or int(index.max()) >= self.num_samples):
            raise ValueError(f"index out of range [0, {self.num_samples}): the state is sized for num_samples")
        return index.to(self.log_s.device).long()

    def forward(self, z1: torch.Tensor, z2: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        check_pair(z1, z2)
        index = self.check_index(index, z1.shape[0])
        sims = anchor_similarities(z1, z2, self.gather_distributed)
        tau = self.anchor_temperatures(index, sims.sim.dtype)
        log_g = batch_log_g(sims, tau)
        per_view, stored = moving_average(self.log_state(index), log_g, self.gamma)
        surrogate = surrogate_terms(sims, tau, per_view).mean()
        self.update_state(index, stored, sims, tau, per_view)
        with torch.no_grad():
            value = (tau * log_g - sims.positive).mean()
        return self.loss_scale * (surrogate + (value - surrogate).detach())

    @torch.no_grad()
    def update_state(
        self, index: torch.Tensor, stored: torch.Tensor, sims: AnchorSims, tau: torch.Tensor, per_view: torch.Tensor
    ) -> None:
        """Write this batch's states; under several processes every process writes every sample's."""
        all_index = gather_no_grad(index) if self.gather_distributed else index
        all_stored = gather_no_grad(stored) if self.gather_distributed else stored
        self.log_s[all_index] = all_stored.to(self.log_s.dtype)
        self.visited[all_index] = True

    def extra_repr(self) -> str:
        return (
            f"num_samples={self.num_samples}, temperature={self.temperature}, gamma={self.gamma}, "
            f"loss_scale={self.loss_scale}"
        )


class ISogCLRLoss(SogCLRLoss):
    """iSogCLR: the robust global contrastive loss with a learned temperature τ_i per sample.

    Args (defaults: the official unimodal README's CIFAR recipe; the loss class defaults differ,
    ρ = 6.0, β_u = 0.9, η = 1e-3, see README):
        num_samples: size N of the training set.
        tau_init: initial τ_i (0.1).
        tau_min, tau_max: bounds of τ_i (0.05, 1.0).
        rho: KL budget ρ ≥ 0 of the DRO over negatives (0.4).
        gamma: moving-average weight γ of s_i (0.8).
        beta_u: momentum weight β_u of the τ-gradient (0.5).
        eta: step size η of τ (0.03, constant); 0 freezes τ.
        grad_clip: ∇τ_i is clipped to [−grad_clip, grad_clip] (3.0).
        loss_scale, gather_distributed: as :class:`SogCLRLoss` (1/τ_init matches InfoNCE's scale).

    Example:
        >>> loss_fn = ISogCLRLoss(num_samples=1000)
        >>> loss = loss_fn(torch.randn(32, 128), torch.randn(32, 128), torch.arange(32))
        >>> loss_fn.tau[:32]  # the updated temperatures of these samples
    """

    def __init__(
        self,
        num_samples: int,
        tau_init: float = 0.1,
        tau_min: float = 0.05,
        tau_max: float = 1.0,
        rho: float = 0.4,
        gamma: float = 0.8,
        beta_u: float = 0.5,
        eta: float = 0.03,
        grad_clip: float = 3.0,
        loss_scale: float = 1.0,
        gather_distributed: bool = True,
    ) -> None:
        super().__init__(num_samples, tau_init, gamma, loss_scale, gather_distributed)
        check_temperature(tau_min, "tau_min")
        check_temperature(tau_max, "tau_max")
        if not tau_min <= tau_init <= tau_max:
            raise ValueError(f"need tau_min <= tau_init <= tau_max, got {tau_min}, {tau_init}, {tau_max}")
        for name, value in (("rho", rho), ("eta", eta)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")
        self.tau_min, self.tau_max = float(tau_min), float(tau_max)
        self.rho, self.eta = float(rho), float(eta)
        self.beta_u = _check_fraction(beta_u, "beta_u")
        self.grad_clip = check_temperature(grad_clip, "grad_clip")
        self.register_buffer("tau", torch.full((num_samples,), float(tau_init)))
        self.register_buffer("tau_momentum", torch.zeros(num_samples))

    def anchor_temperatures(self, index: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return self.tau[index].repeat(2).to(dtype)

    @torch.no_grad()
    def update_state(
        self, index: torch.Tensor, stored: torch.Tensor, sims: AnchorSims, tau: torch.Tensor, per_view: torch.Tensor
    ) -> None:
        g1, g2 = temperature_gradient(sims, tau, per_view, self.rho).chunk(2)
        grad = ((g1 + g2) / 2).clamp(-self.grad_clip, self.grad_clip)
        u = (1 - self.beta_u) * self.tau_momentum[index] + self.beta_u * grad
        new_tau = (self.tau[index] - self.eta * u).clamp(self.tau_min, self.tau_max)
        values = torch.stack([stored.to(self.tau.dtype), u.to(self.tau.dtype), new_tau.to(self.tau.dtype)])
        if self.gather_distributed:
            index, values = gather_no_grad(index), gather_no_grad(values.T.contiguous()).T
        self.log_s[index], self.tau_momentum[index], self.tau[index] = values[0], values[1], values[2]
        self.visited[index] = True

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, tau_min={self.tau_min}, tau_max={self.tau_max}, rho={self.rho}, "
            f"beta_u={self.beta_u}, eta={self.eta}, grad_clip={self.grad_clip}"
        )
