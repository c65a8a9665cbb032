"""Hydra's class-pair gate (the "feature filter"): which coordinates of the embedding a class pair uses.

For a pair of labels (y1, y2) the gate is a vector in (0, 1)^d over the d embedding coordinates:

    g(y1, y2) = σ( MLP( (E[y1] + E[y2]) / 2 ) )               fused gate (official default, ``fuse=True``)
    g(y1, y2) = σ(MLP(E[y1])) ⊙ σ(MLP(E[y2]))                 unfused variant (``fuse=False``)

with E an ``nn.Embedding(C, in_dim)`` (512 in the paper) and MLP = ReLU–BN–Linear(in_dim→mlp_dim)–ReLU–BN–
Linear(mlp_dim→d) (official ``BasicGate``; mlp_dim 1024). Both forms are symmetric in (y1, y2). ``OpenGate``
is the all-ones gate: with it and y2 = y1 the disparate loss becomes a multi-positive SupCon-style loss.

The gate needs class labels: Hydra is a *supervised* method (labels choose the pairs), whatever the
"contrastive SSL" framing.
"""

from __future__ import annotations

import torch
from torch import nn

from shared.losses import at_least_float32


def check_labels(y: torch.Tensor, num_classes: int | None = None, name: str = "labels") -> None:
    """Raise a clear error unless ``y`` is a 1-D integer tensor of class ids in [0, num_classes)."""
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of class ids, got {type(y).__name__}")
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D (batch,), got shape {tuple(y.shape)}")
    if y.is_floating_point() or y.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer class ids, got {y.dtype}")
    if num_classes is not None and len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"{name} must lie in [0, {num_classes}), got min {int(y.min())} max {int(y.max())}")


class OpenGate(nn.Module):
    """The all-ones gate (no filtering): ``forward(y1, y2) -> ones (B, d)``."""

    def __init__(self, embed_dim: int, num_classes: int | None = None) -> None:
        super().__init__()
        if not (isinstance(embed_dim, int) and embed_dim >= 1):
            raise ValueError(f"embed_dim must be a positive integer, got {embed_dim!r}")
        self.embed_dim, self.num_classes = embed_dim, num_classes

    def forward(self, y1: torch.Tensor, y2: torch.Tensor | None = None) -> torch.Tensor:
        check_labels(y1, self.num_classes, "y1")
        return torch.ones(len(y1), self.embed_dim, device=y1.device)


class BasicGate(OpenGate):
    """σ(MLP(label embedding of the pair)) ∈ (0, 1)^d, the official ``BasicGate``.

    Args:
        embed_dim: d, the dimension of the embeddings it gates (the projector's output, 256).
        num_classes: C, the number of labels.
        in_dim: dimension of the label embedding E (512).
        mlp_dim: hidden width of the gate MLP (1024).
        fuse: average the two label embeddings before the MLP (default) or multiply two class gates.

    The MLP's BatchNorm layers normalise over the batch of pairs in training mode (as the official code).

    Example:
        >>> gate = BasicGate(embed_dim=128, num_classes=10, in_dim=64, mlp_dim=128)
        >>> g = gate(torch.tensor([3, 5]), torch.tensor([5, 8]))    # (2, 128), entries in (0, 1)
    """

    def __init__(
        self, embed_dim: int, num_classes: int, in_dim: int = 512, mlp_dim: int = 1024, fuse: bool = True
    ) -> None:
        super().__init__(embed_dim, num_classes)
        for name, value in (("num_classes", num_classes), ("in_dim", in_dim), ("mlp_dim", mlp_dim)):
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.label_embedding = nn.Embedding(num_classes, in_dim)
        self.mlp = nn.Sequential(
            nn.ReLU(),
            nn.BatchNorm1d(in_dim),
            nn.Linear(in_dim, mlp_dim),
            nn.ReLU(),
            nn.BatchNorm1d(mlp_dim),
            nn.Linear(mlp_dim, embed_dim),
        )
        self.fuse = fuse

    def logits(self, y1: torch.Tensor, y2: torch.Tensor | None = None) -> torch.Tensor:
        """Pre-sigmoid gate logits of the fused gate (y2 = None: the class gate of y1 alone)."""
        e = self.label_embedding(y1)
        if y2 is not None:
            e = (e + self.label_embedding(y2)) / 2
        return self.mlp(e)

    def forward(self, y1: torch.Tensor, y2: torch.Tensor | None = None) -> torch.Tensor:
        check_labels(y1, self.num_classes, "y1")
        if y2 is not None:
            check_labels(y2, self.num_classes, "y2")
            if y2.shape != y1.shape:
                raise ValueError(f"y1 and y2 must have the same shape, got {tuple(y1.shape)} and {tuple(y2.shape)}")
        if self.fuse or y2 is None:
            return torch.sigmoid(at_least_float32(self.logits(y1, y2)))
        return torch.sigmoid(at_least_float32(self.logits(y1))) * torch.sigmoid(at_least_float32(self.logits(y2)))

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_classes={self.num_classes}, fuse={self.fuse}"


@torch.no_grad()
def pair_gates(gate: OpenGate, num_classes: int) -> torch.Tensor:
    """All pair gates g(a, b), shape (C, C, d), computed in eval mode (BatchNorm running statistics)."""
    was_training = gate.training
    gate.eval()
    device = next(gate.parameters()).device if any(True for _ in gate.parameters()) else torch.device("cpu")
    a, b = torch.meshgrid(torch.arange(num_classes), torch.arange(num_classes), indexing="ij")
    g = gate(a.reshape(-1).to(device), b.reshape(-1).to(device))
    gate.train(was_training)
    return g.float().cpu().view(num_classes, num_classes, -1)


def soft_jaccard(gates: torch.Tensor) -> torch.Tensor:
    """Overlap of gates, ``O[a, b] = Σ_j min(g_a, g_b) / Σ_j max(g_a, g_b)`` ∈ [0, 1], for gates (C, d)."""
    if gates.ndim != 2:
        raise ValueError(f"gates must have shape (classes, dim), got {tuple(gates.shape)}")
    lo = torch.minimum(gates[:, None], gates[None]).sum(-1)
    hi = torch.maximum(gates[:, None], gates[None]).sum(-1)
    return lo / hi.clamp_min(1e-12)
