"""The Hallucinator: a differentiable generator of extra positives in feature space.

Wu, Hobbs, Hovakimyan, "Hallucination Improves the Performance of Unsupervised Visual
Representation Learning", ICCV 2023 (arXiv:2307.12168). Given the query projection q of one
view (unnormalised) and the key k of the other view of the same images:

1. asymmetric extrapolation, pushing q away from k (to "reduce the mutual information" of
   the hallucinated pair), with one λ ~ U(0, 0.1) per training step:

       u = (1 + λ) q − λ k          ⇔   u − k = (1 + λ)(q − k)

   so u lies on the ray from k through q, beyond q (‖u − k‖ = (1 + λ)‖q − k‖);
2. non-linear smoothing by a 3-layer MLP on the concatenation [q ; u] (2d → 2d → 2d → d,
   ReLU between the layers; 256 → 256 → 256 → 128 for d = 128):

       q' = MLP([q ; u])

The base loss then sees the 2B queries [q ; q'] against the keys duplicated, [k ; k]: (q', k)
is one more positive pair per image. The generator has no loss of its own; it is trained by
the base loss through q'.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from shared.distributed import is_distributed


def check_lambda_range(lambda_range: tuple[float, float]) -> tuple[float, float]:
    """Raise ``ValueError`` unless ``lambda_range`` is (lo, hi) with 0 ≤ lo ≤ hi."""
    try:
        lo, hi = (float(v) for v in lambda_range)
    except (TypeError, ValueError):
        raise ValueError(f"lambda_range must be a pair (lo, hi) of numbers, got {lambda_range!r}") from None
    if not (0.0 <= lo <= hi < float("inf")):
        raise ValueError(f"lambda_range must satisfy 0 <= lo <= hi < inf, got {lambda_range!r}")
    return lo, hi


def check_query_key(q: torch.Tensor, k: torch.Tensor) -> None:
    """Raise a clear error unless q and k are (B, d) floating-point tensors of the same shape."""
    for name, z in (("q", q), ("k", k)):
        if not isinstance(z, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(z).__name__}")
        if z.ndim != 2:
            raise ValueError(f"{name} must have shape (batch, dim), got {tuple(z.shape)}")
        if not z.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {z.dtype}")
    if q.shape != k.shape:
        raise ValueError(f"q and k must have the same shape, got {tuple(q.shape)} and {tuple(k.shape)}")


def extrapolate(q: torch.Tensor, k: torch.Tensor, lam: float) -> torch.Tensor:
    """Asymmetric extrapolation ``u = (1 + λ) q − λ k``: q pushed away from k by a factor 1 + λ."""
    check_query_key(q, k)
    return (1.0 + lam) * q - lam * k


class Hallucinator(nn.Module):
    """Extrapolate q away from k, then smooth: ``q' = MLP([q ; (1 + λ) q − λ k])``.

    Args:
        dim: d, the dimension of q and k (the projection, 128 in the paper).
        hidden_dim: width of the MLP's two hidden layers (default 2d, the official 256 for d = 128).
        lambda_range: λ ~ U(lo, hi), drawn once per training step (official: (0, 0.1)).
        seed: initialise the MLP from this seed instead of the global RNG.
        dtype: parameter dtype (float32 by default; float64 for exact tests).

    ``forward(q, k, lam=None)`` returns q' of shape (B, d); λ is drawn when ``lam`` is None,
    the same on every process (broadcast from rank 0). The last λ drawn is ``last_lambda``.

    Example:
        >>> g = Hallucinator(128)
        >>> q_h = g(q, k)                      # (B, 128)
        >>> queries, keys = torch.cat([q, q_h]), torch.cat([k, k])
    """

    def __init__(
        self,
        dim: int = 128,
        hidden_dim: int | None = None,
        lambda_range: tuple[float, float] = (0.0, 0.1),
        seed: int | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not (isinstance(dim, int) and dim >= 1):
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        hidden = 2 * dim if hidden_dim is None else hidden_dim
        if not (isinstance(hidden, int) and hidden >= 1):
            raise ValueError(f"hidden_dim must be a positive integer, got {hidden_dim!r}")
        self.dim, self.hidden_dim = dim, hidden
        self.lambda_range = check_lambda_range(lambda_range)
        with torch.random.fork_rng(enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            self.mlp = nn.Sequential(
                nn.Linear(2 * dim, hidden, dtype=dtype),
                nn.ReLU(inplace=True),
                nn.Linear(hidden, hidden, dtype=dtype),
                nn.ReLU(inplace=True),
                nn.Linear(hidden, dim, dtype=dtype),
            )
        self.last_lambda = 0.0

    def sample_lambda(self) -> float:
        """λ ~ U(lo, hi) from the global RNG, broadcast from rank 0 so all processes agree."""
        lo, hi = self.lambda_range
        if lo == hi:
            return lo
        u = torch.rand(1, dtype=torch.float64)
        if is_distributed():
            dist.broadcast(u, src=0)
        return lo + (hi - lo) * float(u)

    def forward(self, q: torch.Tensor, k: torch.Tensor, lam: float | None = None) -> torch.Tensor:
        check_query_key(q, k)
        if q.shape[1] != self.dim:
            raise ValueError(f"q has dim {q.shape[1]}, the generator expects {self.dim}")
        lam = self.sample_lambda() if lam is None else float(lam)
        if not lam >= 0.0:
            raise ValueError(f"lambda must be non-negative, got {lam!r}")
        self.last_lambda = lam
        u = extrapolate(q, k, lam)
        x = torch.cat([q, u.to(q.dtype)], dim=1)
        weight = next(self.mlp.parameters(), None)
        if weight is not None and not torch.is_autocast_enabled(x.device.type) and x.dtype != weight.dtype:
            x = x.to(weight.dtype)
        return self.mlp(x)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, hidden_dim={self.hidden_dim}, lambda_range={self.lambda_range}"


def duplicate_pairs(q: torch.Tensor, q_h: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The base loss's inputs: queries ``[q ; q']`` (2B rows) and keys duplicated, ``[k ; k]``."""
    check_query_key(q, k)
    check_query_key(q_h, k)
    return torch.cat([q, q_h.to(q.dtype)]), torch.cat([k, k])
