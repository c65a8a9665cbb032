"""The paper's tractable model: a two-layer linear network trained with the spectral contrastive loss.

Xue et al. (ICLR 2024), Sections 3–4. The network is f(x) = W₂W₁x with pre-projection
representation h = W₁x, trained on two augmented views by gradient descent on

    L = −2 E[f(x)ᵀ f(x⁺)] + E[(f(x)ᵀ f(x'))²]

(HaoChen et al., 2021): x, x⁺ two views of one sample, x, x' views of independent samples.
On a batch of N pairs the first expectation is the mean over the N positive pairs, the second
the mean over the N(N−1) pairs (f(x_i), f(x⁺_j)), j ≠ i.

Gradient flow conserves W₁W₁ᵀ − W₂ᵀW₂ (both layers receive the same "signal"), so from a small
initialisation the layers stay balanced and, feature by feature, the pre-projection layer
weights feature i by ≈ √σ_i where the output weights it by σ_i: a weak feature (small σ_i)
is relatively stronger in h than in f(x) — the paper's "progressive feature weighting".

Synthetic data (the spec's CPU experiment 1): x = Σ_k σ_k a_k μ_k + ξ with orthonormal
directions μ_k (the first K coordinate axes), a_k = ±1, isotropic noise ξ; an augmentation
drops feature k from a view with probability p_k.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from shared.distributed import gather_with_grad, local_offset
from shared.losses import at_least_float32, check_pair


def spectral_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor, gather_distributed: bool = True) -> torch.Tensor:
    """``−2·mean_i z1_i·z2_i + mean_{i≠j} (z1_i·z2_j)²`` over the (gathered) batch; no normalisation.

    With several processes each computes its rows against the gathered columns (with
    gradients); the mean of the per-process losses is the loss of the whole batch.
    """
    check_pair(z1, z2)
    n = z1.shape[0]
    z1, z2 = at_least_float32(z1), at_least_float32(z2)
    columns = gather_with_grad(z2) if gather_distributed else z2
    start = local_offset(n) if gather_distributed else 0
    positive = (z1 * z2).sum(1).mean()
    sq = (z1 @ columns.T).square()
    own = sq[torch.arange(n), start + torch.arange(n)]
    negative = (sq.sum(1) - own).mean() / (columns.shape[0] - 1)
    return -2 * positive + negative


class SpectralContrastiveLoss(nn.Module):
    """Module form of :func:`spectral_contrastive_loss`.

    Example:
        >>> loss = SpectralContrastiveLoss()(torch.randn(16, 4), torch.randn(16, 4))
    """

    def __init__(self, gather_distributed: bool = True) -> None:
        super().__init__()
        self.gather_distributed = gather_distributed

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return spectral_contrastive_loss(z1, z2, self.gather_distributed)


class TwoLayerLinear(nn.Module):
    """f(x) = W₂W₁x with W₁: d_in → d_hidden, W₂: d_hidden → d_out (float64).

    Gaussian entries N(0, init_scale²), or with ``balanced=True`` scaled orthogonal layers
    (W₁W₁ᵀ = W₂ᵀW₂ = init_scale²·I; needs d_hidden ≤ min(d_in, d_out)).
    """

    def __init__(
        self, d_in: int, d_hidden: int, d_out: int, init_scale: float = 1e-3, seed: int = 0, balanced: bool = False
    ) -> None:
        super().__init__()
        if min(d_in, d_hidden, d_out) < 1 or init_scale <= 0:
            raise ValueError("dimensions must be positive and init_scale > 0")
        g = torch.Generator().manual_seed(seed)
        w1 = torch.randn(d_hidden, d_in, generator=g, dtype=torch.float64)
        w2 = torch.randn(d_out, d_hidden, generator=g, dtype=torch.float64)
        if balanced:
            if d_hidden > min(d_in, d_out):
                raise ValueError("a balanced orthogonal start needs d_hidden <= min(d_in, d_out)")
            w1 = torch.linalg.qr(w1.T).Q.T  # orthonormal rows
            w2 = torch.linalg.qr(w2).Q  # orthonormal columns
        self.w1 = nn.Parameter(w1 * init_scale)
        self.w2 = nn.Parameter(w2 * init_scale)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(h, z) = (W₁x, W₂W₁x) for a batch of rows x."""
        h = x @ self.w1.T
        return h, h @ self.w2.T

    def imbalance(self) -> torch.Tensor:
        """The conserved quantity W₁W₁ᵀ − W₂ᵀW₂ (d_hidden × d_hidden)."""
        return self.w1 @ self.w1.T - self.w2.T @ self.w2


@dataclass(frozen=True)
class SyntheticFeatures:
    """x = Σ_k strengths[k]·a_k·e_k + noise·ξ in R^dim; a view drops feature k w.p. drop_p[k]."""

    strengths: tuple[float, ...]
    drop_p: tuple[float, ...]
    dim: int = 20
    noise: float = 0.1

    def __post_init__(self) -> None:
        if len(self.strengths) != len(self.drop_p) or len(self.strengths) > self.dim:
            raise ValueError("need one drop probability per feature and at most dim features")
        if not all(0 <= p <= 1 for p in self.drop_p) or min(self.strengths) < 0:
            raise ValueError("drop probabilities must lie in [0, 1] and strengths be non-negative")

    def latents(self, n: int, g: torch.Generator) -> torch.Tensor:
        """Feature signs a ∈ {±1}^(n, K): the downstream labels of each feature."""
        return torch.randint(0, 2, (n, len(self.strengths)), generator=g, dtype=torch.float64) * 2 - 1

    def inputs(self, a: torch.Tensor, g: torch.Generator, augment: bool) -> torch.Tensor:
        k = len(self.strengths)
        keep = torch.ones_like(a)
        if augment:
            keep = (torch.rand(a.shape, generator=g, dtype=torch.float64) >= torch.tensor(self.drop_p)).double()
        x = torch.randn(len(a), self.dim, generator=g, dtype=torch.float64) * self.noise
        x[:, :k] += keep * a * torch.tensor(self.strengths, dtype=torch.float64)
        return x

    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(Σ⁺, Σ) = (E[x x⁺ᵀ], E[x xᵀ]) of augmented views: the population loss needs nothing else.

        Σ⁺ = diag(σ_k²(1−p_k)²) on the features (both views keep feature k), 0 on the noise;
        Σ  = diag(σ_k²(1−p_k)) + noise²·I.
        """
        s2 = torch.tensor(self.strengths, dtype=torch.float64) ** 2
        keep = 1 - torch.tensor(self.drop_p, dtype=torch.float64)
        k = len(self.strengths)
        pos = torch.zeros(self.dim, self.dim, dtype=torch.float64)
        pos[range(k), range(k)] = s2 * keep**2
        cov = torch.eye(self.dim, dtype=torch.float64) * self.noise**2
        cov[range(k), range(k)] += s2 * keep
        return pos, cov


def population_spectral_loss(w: torch.Tensor, pos: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """E over the data of the spectral loss of the linear map W: −2 tr(W Σ⁺ Wᵀ) + tr((W Σ Wᵀ)²).

    (x, x' independent views: E[(Wx)ᵀ(Wx')]² = tr(E[Wx xᵀWᵀ] E[Wx' x'ᵀWᵀ]).)
    """
    m = w @ cov @ w.T
    return -2 * torch.trace(w @ pos @ w.T) + (m * m.T).sum()


def population_spectral_grad(w: torch.Tensor, pos: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """∂L/∂W of :func:`population_spectral_loss` (Σ⁺, Σ symmetric): −4 W Σ⁺ + 4 (W Σ Wᵀ) W Σ."""
    return -4 * w @ pos + 4 * (w @ cov @ w.T) @ w @ cov


@torch.no_grad()
def train_two_layer(
    data: SyntheticFeatures,
    d_hidden: int = 20,
    d_out: int = 20,
    steps: int = 3000,
    lr: float = 0.05,
    init_scale: float = 0.3,
    balanced: bool = True,
    seed: int = 0,
) -> TwoLayerLinear:
    """Gradient descent (step ``lr``) on the population spectral loss of W = W₂W₁.

    ``balanced=True`` starts from scaled orthogonal layers, W₁W₁ᵀ = W₂ᵀW₂ = init_scale²·I, the
    exactly balanced start that a vanishing Gaussian initialisation approximates; the
    conservation law then keeps the layers balanced at any scale. (From a Gaussian 1e-3 start,
    as the spec suggests, the saddle at zero — ‖∇L‖ ∝ ‖θ‖³ — takes ~10⁷ steps at lr 1e-2 to
    leave, feature by feature.)
    """
    net = TwoLayerLinear(data.dim, d_hidden, d_out, init_scale, seed, balanced)
    pos, cov = data.moments()
    w1, w2 = net.w1.data, net.w2.data
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # thousands of 20×20 matmuls: thread hand-offs cost more than the arithmetic
    try:
        for _ in range(steps):
            g = population_spectral_grad(w2 @ w1, pos, cov)
            g1, g2 = w2.T @ g, g @ w1.T
            w1 -= lr * g1
            w2 -= lr * g2
    finally:
        torch.set_num_threads(threads)
    return net


@torch.no_grad()
def feature_weights(net: TwoLayerLinear, num_features: int) -> dict[str, list[float]]:
    """How strongly each feature direction e_k is represented: ‖W₁e_k‖ (pre) and ‖W₂W₁e_k‖ (post)."""
    eye = torch.eye(net.w1.shape[1], dtype=net.w1.dtype)[:num_features]
    h, z = net(eye)
    return {"pre": h.norm(dim=1).tolist(), "post": z.norm(dim=1).tolist()}


# --- the non-linear case: a diagonal ReLU network (spec, CPU experiment 2) ---------------------


@dataclass(frozen=True)
class SignMagnitudeFeatures:
    """K features, x_k = a_k · m_k · σ_k + view noise: a sign a_k = ±1 and a magnitude m_k ∈ {low, high},
    both shared by the two views of a sample; each view adds its own N(0, noise²) (the augmentation).

    The sign is odd in x_k, the magnitude even (|x_k|): a linear map of x keeps the sign but cannot
    expose the magnitude linearly; a ReLU pair ReLU(u x_k), ReLU(−v x_k) holds both.
    """

    strengths: tuple[float, ...] = (1.0, 0.8, 0.6, 0.4)
    magnitudes: tuple[float, float] = (0.5, 1.5)
    noise: float = 0.1

    def __post_init__(self) -> None:
        if not self.strengths or min(self.strengths) <= 0:
            raise ValueError("need at least one feature, every strength positive")
        if not 0 < self.magnitudes[0] < self.magnitudes[1]:
            raise ValueError("magnitudes must be (low, high) with 0 < low < high")

    @property
    def k(self) -> int:
        return len(self.strengths)

    def latents(self, n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(signs a ∈ {±1}, is_high ∈ {0, 1}), each (n, K): the two downstream labels of every feature."""
        a = torch.randint(0, 2, (n, self.k), generator=g, dtype=torch.float64) * 2 - 1
        high = torch.randint(0, 2, (n, self.k), generator=g, dtype=torch.float64)
        return a, high

    def view(self, a: torch.Tensor, high: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        lo, hi = self.magnitudes
        m = lo + (hi - lo) * high
        x = a * m * torch.tensor(self.strengths, dtype=torch.float64)
        return x + self.noise * torch.randn(x.shape, generator=g, dtype=torch.float64)


class DiagonalReLUNet(nn.Module):
    """h = [ReLU(u ⊙ x), ReLU(−v ⊙ x)] (a diagonal first layer: one ± pair of units per input coordinate),
    z = W₂ h (float64). Starts balanced per unit: u_k = v_k = init_scale, each column of W₂ of norm
    init_scale (random direction), so ‖first-layer weight‖² − ‖W₂ column‖² = 0 for every unit, the
    quantity gradient flow conserves for a ReLU unit (positive homogeneity)."""

    def __init__(self, k: int, d_out: int, init_scale: float = 0.1, seed: int = 0) -> None:
        super().__init__()
        if k < 1 or d_out < 1 or init_scale <= 0:
            raise ValueError("dimensions must be positive and init_scale > 0")
        g = torch.Generator().manual_seed(seed)
        w2 = torch.randn(d_out, 2 * k, generator=g, dtype=torch.float64)
        self.u = nn.Parameter(torch.full((k,), init_scale, dtype=torch.float64))
        self.v = nn.Parameter(torch.full((k,), init_scale, dtype=torch.float64))
        self.w2 = nn.Parameter(w2 / w2.norm(dim=0, keepdim=True) * init_scale)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.cat([torch.relu(self.u * x), torch.relu(-self.v * x)], dim=1)
        return h, h @ self.w2.T

    def unit_imbalance(self) -> torch.Tensor:
        """Per hidden unit: (first-layer weight)² − ‖its W₂ column‖², conserved by gradient flow."""
        return torch.cat([self.u, self.v]) ** 2 - self.w2.square().sum(0)


def train_diagonal_relu(
    data: SignMagnitudeFeatures,
    d_out: int | None = None,
    steps: int = 2000,
    lr: float = 0.05,
    batch: int = 256,
    init_scale: float = 0.1,
    seed: int = 0,
) -> DiagonalReLUNet:
    """SGD on the spectral contrastive loss of two views per sample (``d_out`` defaults to K: one output
    dimension per feature, so the output has room for each sign but not for each magnitude as well)."""
    net = DiagonalReLUNet(data.k, d_out or data.k, init_scale, seed)
    g = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(steps):
            a, high = data.latents(batch, g)
            z1, z2 = net(data.view(a, high, g))[1], net(data.view(a, high, g))[1]
            loss = spectral_contrastive_loss(z1, z2, gather_distributed=False)
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return net


@torch.no_grad()
def heldout_spectral_loss(net: DiagonalReLUNet, data: SignMagnitudeFeatures, n: int = 4096, seed: int = 0) -> float:
    """The spectral loss on ``n`` fresh pairs drawn from a fixed ``seed`` (the same pairs for every network)."""
    g = torch.Generator().manual_seed(seed)
    a, high = data.latents(n, g)
    return spectral_contrastive_loss(net(data.view(a, high, g))[1], net(data.view(a, high, g))[1], False).item()
