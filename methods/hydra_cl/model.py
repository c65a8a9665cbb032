"""Hydra-MoCo: MoCo v3 (base + momentum encoder, projector, predictor) plus the gated disparate loss.

    q_v = h(g(f(x_v)))                       base encoder f, projector g (3 layers, last LayerNorm), predictor h
    k_v = g_m(f_m(x_v))                      momentum encoder, no gradient; θ_m ← m θ_m + (1 − m) θ
    y2  = y[perm]                            labels of a random permutation of the batch (arbitrary pairs)
    L   = ( ½[ctr(q1,k2) + ctr(q2,k1)] + β ½[L_dis(q1,k2,y,y2) + L_dis(q2,k1,y,y2)] + α L_cls ) / (1 + α + β)

During the first ``dis_warmup_steps`` the queries are detached inside L_dis and L_cls (only the gate and
the scale learn), as the official ``warmup`` epochs. The momentum m follows MoCo v3's cosine schedule from
m₀ to 1 over ``total_steps``. β = 0 and α = 0 is plain MoCo v3 (the baseline; it needs no labels).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from methods.hydra_cl.gate import OpenGate, check_labels
from methods.hydra_cl.loss import DisparateLoss, instance_loss
from shared.augment import BatchedSimCLRAugment
from shared.losses import check_temperature
from shared.momentum import check_momentum, ema_update, momentum_copy


def build_mlp(num_layers: int, in_dim: int, hidden_dim: int, out_dim: int, last_norm: str = "none") -> nn.Sequential:
    """MoCo v3's MLP: (Linear–BN–ReLU) × (num_layers − 1), Linear, then ``last_norm`` ∈ {bn, ln, none}.

    Hydra uses ``ln`` after the projector ("BN prevents the gate from closing") and ``none`` after the
    predictor (official default ``norm='ln-none'``); MoCo v3 itself uses an affine-free BN on both.
    """
    if num_layers < 1:
        raise ValueError(f"num_layers must be at least 1, got {num_layers}")
    layers: list[nn.Module] = []
    for i in range(num_layers):
        d_in = in_dim if i == 0 else hidden_dim
        d_out = out_dim if i == num_layers - 1 else hidden_dim
        layers.append(nn.Linear(d_in, d_out, bias=False))
        if i < num_layers - 1:
            layers += [nn.BatchNorm1d(d_out), nn.ReLU(inplace=True)]
    if last_norm == "bn":
        layers.append(nn.BatchNorm1d(out_dim, affine=False))
    elif last_norm == "ln":
        layers.append(nn.LayerNorm(out_dim))
    elif last_norm != "none":
        raise ValueError(f"last_norm must be 'bn', 'ln' or 'none', got {last_norm!r}")
    return nn.Sequential(*layers)


def cosine_momentum(step: int, total_steps: int | None, base: float) -> float:
    """MoCo v3: m = 1 − ½(1 + cos(π t / T))(1 − m₀), from m₀ at t = 0 to 1 at t = T (constant without T)."""
    if total_steps is None:
        return base
    t = min(step, total_steps) / max(total_steps, 1)
    return 1.0 - 0.5 * (1.0 + math.cos(math.pi * t)) * (1.0 - base)


class HydraMoCo(nn.Module):
    """MoCo v3 with Hydra's class-pair disparate loss.

    Args:
        backbone, projector, predictor: f, g (→ d), h (d → d).
        gate: the class-pair gate (``BasicGate``; ``OpenGate`` for no filtering); None when β = α = 0.
        temperature: T of the instance loss (official ResNet: 1.0).
        beta, alpha: weights of L_dis and L_cls (paper: β = 1, α = 0).
        momentum: m₀ of the momentum encoder (0.99), cosine to 1 over ``total_steps``.
        dis_warmup_steps: steps during which the queries are detached inside L_dis / L_cls.
        scale_init: initial logit scale s of the disparate loss (20).
        learn_scale: learn s (official) or keep it fixed at ``scale_init``.

    ``forward(batch)`` takes ``{"images": uint8, "labels": (B,)}`` (views made here) or
    ``{"views": (x1, x2), "labels": (B,)}``; labels are required when β or α > 0.
    """

    steps: torch.Tensor

    def __init__(
        self,
        backbone: nn.Module,
        projector: nn.Module,
        predictor: nn.Module,
        gate: OpenGate | None = None,
        temperature: float = 1.0,
        beta: float = 1.0,
        alpha: float = 0.0,
        momentum: float = 0.99,
        total_steps: int | None = None,
        dis_warmup_steps: int = 0,
        scale_init: float = 20.0,
        learn_scale: bool = True,
        augment: BatchedSimCLRAugment | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)
        self.momentum = check_momentum(momentum)
        for name, value in (("beta", beta), ("alpha", alpha)):
            if not (isinstance(value, (int, float)) and value >= 0):
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")
        if (beta > 0 or alpha > 0) and gate is None:
            raise ValueError("beta or alpha > 0 needs a gate (BasicGate, or OpenGate for no filtering)")
        if total_steps is not None and not (isinstance(total_steps, int) and total_steps >= 1):
            raise ValueError(f"total_steps must be a positive integer or None, got {total_steps!r}")
        if not (isinstance(dis_warmup_steps, int) and dis_warmup_steps >= 0):
            raise ValueError(f"dis_warmup_steps must be a non-negative integer, got {dis_warmup_steps!r}")
        self.beta, self.alpha = float(beta), float(alpha)
        self.total_steps, self.dis_warmup_steps = total_steps, dis_warmup_steps
        self.backbone, self.projector, self.predictor = backbone, projector, predictor
        self.key_backbone, self.key_projector = momentum_copy(backbone), momentum_copy(projector)
        self.disparate = DisparateLoss(gate, scale_init, learn_scale) if gate is not None else None
        self.augment, self.channels_last = augment, channels_last
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    @property
    def uses_labels(self) -> bool:
        return self.beta > 0 or self.alpha > 0

    def views(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        if "views" in batch:
            x1, x2 = batch["views"]
        elif self.augment is not None:
            with torch.autocast(batch["images"].device.type, enabled=False):
                x1, x2 = self.augment(batch["images"]), self.augment(batch["images"])
        else:
            raise ValueError("batch has no 'views' and the model has no augmentation for 'images'")
        if self.channels_last:
            x1, x2 = x1.contiguous(memory_format=torch.channels_last), x2.contiguous(memory_format=torch.channels_last)
        return x1, x2

    def labels(self, batch: dict) -> torch.Tensor:
        if "labels" not in batch:
            raise ValueError(
                "Hydra's disparate loss needs class labels (batch['labels']): the method is supervised; "
                "set beta = alpha = 0 for the label-free MoCo v3 baseline"
            )
        y = batch["labels"]
        num_classes = self.disparate.gate.num_classes if self.disparate is not None else None
        check_labels(y, num_classes, "batch['labels']")
        return y

    def current_momentum(self) -> float:
        return cosine_momentum(int(self.steps), self.total_steps, self.momentum)

    @torch.no_grad()
    def update_key_encoder(self) -> None:
        m = self.current_momentum()
        ema_update(self.key_backbone, self.backbone, m)
        ema_update(self.key_projector, self.projector, m)

    def query(self, x: torch.Tensor) -> torch.Tensor:
        return self.predictor(self.projector(self.backbone(x)))

    @torch.no_grad()
    def key(self, x: torch.Tensor) -> torch.Tensor:
        return self.key_projector(self.key_backbone(x))

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        y = self.labels(batch) if self.uses_labels else None
        x1, x2 = self.views(batch)
        q1, q2 = self.query(x1), self.query(x2)
        if self.training:
            self.update_key_encoder()  # the official order: momentum update, then the keys
        k1, k2 = self.key(x1).detach(), self.key(x2).detach()
        l_ins = (instance_loss(q1, k2, self.temperature) + instance_loss(q2, k1, self.temperature)) / 2
        out = {"ins": l_ins.detach()}
        loss = l_ins
        if self.uses_labels:
            assert y is not None and self.disparate is not None
            d1, d2 = (q1.detach(), q2.detach()) if int(self.steps) < self.dis_warmup_steps else (q1, q2)
            if self.beta > 0:
                y2 = y[torch.randperm(len(y), device=y.device)]
                l_dis = (self.disparate(d1, k2, y, y2) + self.disparate(d2, k1, y, y2)) / 2
                loss = loss + self.beta * l_dis
                out["dis"] = l_dis.detach()
            if self.alpha > 0:
                l_cls = (self.disparate(d1, k2, y, y) + self.disparate(d2, k1, y, y)) / 2
                loss = loss + self.alpha * l_cls
                out["cls"] = l_cls.detach()
            with torch.no_grad():
                out["scale"] = self.disparate.scale.detach()
        loss = loss / (1 + self.alpha + self.beta)
        if self.training:
            self.steps += 1
        return {"loss": loss, **out}
