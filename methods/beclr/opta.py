"""OpTA: Optimal-Transport-based distribution Alignment of support prototypes to the queries.

BECLR §3.2 (official ``utils/optimal_transport.py``, ``utils/sinkhorn.py``, ``evaluate.py``).
At few-shot inference, the N support prototypes μ (class means of support features) are biased
by the few samples they come from. OpTA transports them onto the M unlabelled query features Q:

    C_ij = ‖μ_i − q_j‖² / max_ij ‖μ_i − q_j‖²                                (cost, normalised)
    π    = argmin_{π ∈ 𝒰(1/N, 1/M)} ⟨π, C⟩ − ε H(π),   ε = 0.05               (entropic OT, uniform marginals)
    μ'   = diag(π 1)^{-1} π Q                                               (row-normalised plan × queries)

solved by log-domain Sinkhorn (≤ 1000 iterations, stop when Σ|Δu| < 1e-4). Each μ' is a convex
combination of queries. BECLR repeats the transport 5 times in 1-shot and once in 5-shot, where it
then mixes μ ← 0.7 μ' + 0.3 μ; a logistic regression is fitted on the prototypes.

:class:`OpTA` is an ``adapt(prototypes, queries)`` hook of :func:`shared.fewshot.evaluate_fewshot`
and works on a batch of episodes at once: prototypes (E, N, d), queries (E, M, d).
"""

from __future__ import annotations

import math

import torch


@torch.no_grad()
def sinkhorn_plan(
    x: torch.Tensor, y: torch.Tensor, epsilon: float = 0.05, max_iter: int = 1000, threshold: float = 1e-4
) -> tuple[torch.Tensor, int]:
    """Entropic OT plan (E, N, M) between point sets x (E, N, d) and y (E, M, d), uniform marginals.

    The cost is the squared Euclidean distance divided by its per-episode maximum. Iterates the
    official log-domain updates u ← ε(log a − LSE((−C + u + v)/ε)) + u (and likewise v) until every
    episode's Σ_i |Δu_i| < ``threshold`` or ``max_iter``; returns the plan and the iterations run.
    """
    if x.ndim == 2:
        plan, it = sinkhorn_plan(x[None], y[None], epsilon, max_iter, threshold)
        return plan[0], it
    if x.ndim != 3 or y.ndim != 3 or x.shape[0] != y.shape[0] or x.shape[2] != y.shape[2]:
        raise ValueError(f"expected x (E, N, d) and y (E, M, d), got {tuple(x.shape)} and {tuple(y.shape)}")
    if not (isinstance(epsilon, (int, float)) and epsilon > 0):
        raise ValueError(f"epsilon must be a positive number, got {epsilon!r}")
    if not (isinstance(max_iter, int) and max_iter >= 1):
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    x64, y64 = x.double(), y.double()
    cost = ((x64[:, :, None] - y64[:, None]) ** 2).sum(-1)
    cost = cost / cost.amax(dim=(1, 2), keepdim=True).clamp_min(1e-30)
    e, n, m = cost.shape
    log_a, log_b = -math.log(n), -math.log(m)
    u = cost.new_zeros(e, n)
    v = cost.new_zeros(e, m)

    def kernel() -> torch.Tensor:
        return (-cost + u[:, :, None] + v[:, None, :]) / epsilon

    iterations = 0
    for iterations in range(1, max_iter + 1):  # noqa: B007 (the count is returned)
        u_prev = u
        u = epsilon * (log_a - torch.logsumexp(kernel(), dim=2)) + u
        v = epsilon * (log_b - torch.logsumexp(kernel(), dim=1)) + v
        if (u - u_prev).abs().sum(1).max() < threshold:
            break
    return torch.exp(kernel()).to(x.dtype), iterations


def transport_prototypes(
    prototypes: torch.Tensor,
    queries: torch.Tensor,
    epsilon: float = 0.05,
    max_iter: int = 1000,
    threshold: float = 1e-4,
) -> torch.Tensor:
    """One OpTA pass: μ' = diag(π1)^{-1} π Q, (E, N, d)."""
    plan, _ = sinkhorn_plan(prototypes, queries, epsilon, max_iter, threshold)
    return (plan / plan.sum(-1, keepdim=True)) @ queries.to(plan.dtype)


class OpTA:
    """The OpTA adapt hook: ``passes`` transports, then ``μ ← ratio·μ' + (1 − ratio)·μ`` if ``ratio`` is set.

    Use :func:`opta_for_shots` for BECLR's settings (1-shot: 5 passes, no mixing; else 1 pass, ratio 0.7).

    Example:
        >>> adapt = opta_for_shots(1)
        >>> moved = adapt(prototypes, queries)   # (E, N, d), (E, M, d) -> (E, N, d)
    """

    def __init__(
        self,
        epsilon: float = 0.05,
        passes: int = 1,
        ratio: float | None = None,
        max_iter: int = 1000,
        threshold: float = 1e-4,
    ) -> None:
        if not (isinstance(passes, int) and passes >= 1):
            raise ValueError(f"passes must be a positive integer, got {passes!r}")
        if ratio is not None and not 0 <= ratio <= 1:
            raise ValueError(f"ratio must be in [0, 1] or None, got {ratio!r}")
        if not (isinstance(epsilon, (int, float)) and epsilon > 0):
            raise ValueError(f"epsilon must be a positive number, got {epsilon!r}")
        self.epsilon, self.passes, self.ratio = float(epsilon), passes, ratio
        self.max_iter, self.threshold = max_iter, threshold

    def __call__(self, prototypes: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        moved = prototypes
        for _ in range(self.passes):
            moved = transport_prototypes(moved, queries, self.epsilon, self.max_iter, self.threshold)
        if self.ratio is not None:
            moved = self.ratio * moved + (1 - self.ratio) * prototypes
        return moved

    def __repr__(self) -> str:
        return f"OpTA(epsilon={self.epsilon}, passes={self.passes}, ratio={self.ratio})"


def opta_for_shots(k_shot: int, epsilon: float = 0.05, ratio: float = 0.7) -> OpTA:
    """BECLR's evaluation: 5 passes in 1-shot; 1 pass mixed with ratio 0.7 otherwise."""
    if k_shot == 1:
        return OpTA(epsilon, passes=5)
    return OpTA(epsilon, passes=1, ratio=ratio)
