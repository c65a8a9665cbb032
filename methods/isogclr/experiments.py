"""SogCLR / iSogCLR presets: ``smoke`` (seconds), ``cpu`` (the claim at small scale), ``paper`` (CIFAR-100).

The claim (abstract): iSogCLR, which learns a temperature per sample by DRO, outperforms SimCLR, with
larger gains on imbalanced data; frequent semantics get large τ, rare ones small τ. At small scale
we train SimCLR (τ = 0.1, 0.3, 0.5), SogCLR (τ = 0.1) and iSogCLR on a long-tailed Fashion-MNIST
split (imbalance ratio 0.1) and compare kNN top-1 on the balanced test set; an analysis relates
the learned τ_i to the frequency of the sample's class.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import nn

from methods.isogclr.analysis import tau_frequency_analysis, tau_statistics
from methods.isogclr.loss import ISogCLRLoss, SogCLRLoss
from methods.isogclr.model import IndexedTwoViewContrastive
from shared.arms import InMemoryArm, Splits, preprocess_for, small_splits, train_in_memory
from shared.augment import AugmentConfig, BatchedSimCLRAugment
from shared.backbones import build_backbone
from shared.data.arrays import ImageArrays, long_tailed_subset
from shared.data.fashion_mnist import load_fashion_mnist
from shared.data.hub import CIFAR100
from shared.data.splits import FASHION_MNIST_28, SHAPES_RGB
from shared.engine import TrainConfig
from shared.evaluation import extract_features, knn_predict
from shared.experiment import ArmResult, ArmRun, Comparison, Experiment, with_floor
from shared.heads import mlp_head
from shared.losses import InfoNCELoss
from shared.ssl import TwoViewContrastive

LOSSES = ("simclr", "sogclr", "isogclr")
ISOGCLR_KEYS = ("tau_min", "tau_max", "rho", "beta_u", "eta", "grad_clip")


def make_loss(cfg: dict[str, Any], num_samples: int) -> nn.Module:
    """The arm's loss: ``simclr`` (InfoNCE), ``sogclr`` (fixed τ) or ``isogclr`` (τ_i learned from ``temperature``).

    ``scale_to_infonce`` multiplies the SogCLR/iSogCLR objective (τ·log ...) by 1/τ (1/τ_init), so
    that under SGD its gradient has InfoNCE's scale at the same lr (the official code uses LARS).
    """
    name, tau = cfg["loss"], cfg["temperature"]
    scale = 1.0 / tau if cfg.get("scale_to_infonce", False) else 1.0
    if name == "simclr":
        return InfoNCELoss(tau)
    if name == "sogclr":
        return SogCLRLoss(num_samples, tau, cfg.get("gamma", 0.8), loss_scale=scale)
    if name == "isogclr":
        extra = {k: cfg[k] for k in ISOGCLR_KEYS if k in cfg}
        return ISogCLRLoss(num_samples, tau, gamma=cfg.get("gamma", 0.8), loss_scale=scale, **extra)
    raise ValueError(f"unknown loss {name!r}; choose from {LOSSES}")


def build_model(cfg: dict[str, Any], num_samples: int) -> TwoViewContrastive:
    """backbone → 2-layer MLP head → the arm's loss; SogCLR/iSogCLR read the batch's indices."""
    backbone = build_backbone(cfg["backbone"], cfg["channels"], cfg.get("widths"))
    head = mlp_head(backbone.out_dim, cfg["head_hidden"], cfg["head_out"], num_layers=2)
    augment = BatchedSimCLRAugment(AugmentConfig.from_arm(cfg)) if cfg.get("batched_augment", True) else None
    loss = make_loss(cfg, num_samples)
    cls = TwoViewContrastive if isinstance(loss, InfoNCELoss) else IndexedTwoViewContrastive
    return cls(backbone, head, loss, augment, channels_last=cfg.get("channels_last", False))


def train_config(cfg: dict[str, Any], seed: int, epochs: int | None, progress: bool) -> TrainConfig:
    """The arm's run config; lr follows the linear scaling rule lr · B / 256."""
    return TrainConfig.from_arm(cfg, seed, epochs, progress, lr=cfg["lr"] * cfg["batch_size"] / 256)


class KnnReport:
    """``report(model)`` → kNN top-1 on the balanced test set, and on its tail half of the classes.

    The tail is the half of the classes with the fewest training images. :meth:`final_per_class`
    gives the last evaluation's per-class accuracies, for the run's extras (the engine keeps scalars).
    """

    def __init__(self, cfg: dict[str, Any], bank: ImageArrays, test: ImageArrays, train_counts: torch.Tensor) -> None:
        self.cfg, self.bank, self.test = cfg, bank, test
        self.tail = train_counts.argsort()[: len(train_counts) // 2]
        self.preprocess = preprocess_for(cfg)
        self.last: torch.Tensor | None = None

    def per_class(self, model: nn.Module) -> torch.Tensor:
        bank, test = self.bank, self.test
        device = next(model.backbone.parameters()).device
        ftr = extract_features(model.backbone, bank.images, self.preprocess, device=device)
        fte = extract_features(model.backbone, test.images, self.preprocess, device=device)
        pred = knn_predict(ftr, bank.labels, fte, bank.num_classes, self.cfg.get("knn_k", 200), 0.1).argmax(1)
        correct = (pred == test.labels).float()
        return torch.zeros(bank.num_classes).index_add_(0, test.labels, correct) / torch.bincount(
            test.labels, minlength=bank.num_classes
        ).clamp(min=1)

    def __call__(self, model: nn.Module) -> dict[str, float]:
        acc = self.last = self.per_class(model)
        weights = torch.bincount(self.test.labels, minlength=self.bank.num_classes).float()
        tail = self.tail
        return {
            "knn_top1": float((acc * weights).sum() / weights.sum()),
            "knn_top1_tail": float((acc[tail] * weights[tail]).sum() / weights[tail].sum()),
        }

    def final_per_class(self, model: nn.Module) -> torch.Tensor:
        """The per-class accuracies of the last evaluation (computed again after a resume)."""
        return self.last if self.last is not None else self.per_class(model)


def knn_report(cfg: dict[str, Any], bank: ImageArrays, test: ImageArrays, train_counts: torch.Tensor):
    """(``evaluate``, ``final_per_class``) of a :class:`KnnReport`."""
    report = KnnReport(cfg, bank, test, train_counts)
    return report, report.final_per_class


def class_counts(train: ImageArrays) -> torch.Tensor:
    return torch.bincount(train.labels, minlength=train.num_classes)


def reversed_long_tail(cfg: dict[str, Any], data_dir: str | None = None) -> ImageArrays:
    """The long-tailed Fashion-MNIST split with the class order reversed: class C−1 is the head.

    The control for the τ-vs-frequency analysis: the same profile of counts, now on other classes,
    so a τ that follows the class's frequency moves with it, a τ that follows its semantics does not.
    """
    full = load_fashion_mnist("train", data_dir)
    top = full.num_classes - 1
    flipped = ImageArrays(full.images, top - full.labels, full.classes, full.name)
    subset = long_tailed_subset(flipped, cfg["train_per_class"], cfg["imbalance_ratio"])
    return ImageArrays(subset.images, top - subset.labels, full.classes, full.name)


def long_tail_splits(run: ArmRun) -> Splits:
    """The (long-tailed) small splits; the control arm (``reverse_long_tail``) trains on the reversed tail."""
    splits = small_splits(run)
    if run.config.get("reverse_long_tail", False):
        return replace(splits, train=reversed_long_tail(run.config, run.data_dir))
    return splits


def small_evaluator(arm: InMemoryArm) -> KnnReport:
    return KnnReport(arm.config, arm.bank, arm.test, class_counts(arm.train))


def tau_extras(arm: InMemoryArm, model: nn.Module, report: KnnReport) -> dict[str, Any]:
    """Class counts, the last per-class kNN accuracies, and iSogCLR's learned τ_i per sample and class."""
    extras: dict[str, Any] = {
        "class_counts": class_counts(arm.train).tolist(),
        "knn_per_class": report.final_per_class(model).tolist(),
    }
    if isinstance(model.loss, ISogCLRLoss):
        extras.update(tau_statistics(model.loss.tau.cpu(), arm.train.labels, model.loss.log_state().cpu()))
    return extras


def train_small(run: ArmRun) -> ArmResult:
    """Train one (arm, seed) on the (long-tailed) in-memory split, paired seeds; kNN top-1 on the balanced
    test set, τ statistics as extras."""
    return train_in_memory(
        run,
        lambda arm: build_model(arm.config, len(arm.train)),
        train_config,
        small_evaluator,
        splits=long_tail_splits,
        extras=tau_extras,
    )


# --- paper scale -----------------------------------------------------------------------


def paper_model(loss: str, num_samples: int = 50_000) -> TwoViewContrastive:
    """CIFAR ResNet-18 + 2-layer 512→512→128 head with the arm's loss (official unimodal recipe)."""
    return build_model({**PAPER_ARM, "loss": loss}, num_samples)


def cifar100_splits(run: ArmRun) -> Splits:
    """CIFAR-100 from the hub, held in memory; the kNN bank is the training set."""
    train = CIFAR100.arrays("train")
    return Splits(train, train, CIFAR100.arrays("test"))


def train_paper(run: ArmRun) -> ArmResult:
    """The official unimodal recipe on CIFAR-100 from the hub (needs a GPU; run under ``accelerate launch``)."""
    return train_in_memory(
        run,
        lambda arm: build_model(arm.config, len(arm.train)),
        train_config,
        small_evaluator,
        splits=cifar100_splits,
        metrics=("knn_top1",),
    )


# --- presets ---------------------------------------------------------------------------

# iSogCLR's hyperparameters from the official unimodal README (CIFAR-100 command line).
ISOGCLR_README = dict(tau_min=0.05, tau_max=1.0, rho=0.4, gamma=0.8, beta_u=0.5, eta=0.03, grad_clip=3.0)

SMOKE_ARM = dict(
    train_per_class=16,
    test_per_class=10,
    image_size=24,
    crop_scale=(0.3, 1.0),
    jitter_strength=0.5,
    backbone="convnet",
    widths=(8, 16, 32),
    head_hidden=64,
    head_out=32,
    temperature=0.1,
    scale_to_infonce=True,
    epochs=2,
    batch_size=32,
    lr=0.3,
    optimizer="sgd",
    weight_decay=5e-4,
    knn_k=20,
    log_every=2,
    **ISOGCLR_README,
    **SHAPES_RGB,
)

CPU_ARM = dict(
    train_per_class=2500,
    imbalance_ratio=0.1,
    bank_per_class=500,
    crop_scale=(0.2, 1.0),
    jitter_strength=0.5,
    backbone="convnet",
    head_hidden=256,
    head_out=128,
    temperature=0.1,
    scale_to_infonce=True,
    epochs=4,
    batch_size=128,
    lr=0.3,
    optimizer="sgd",
    weight_decay=5e-4,
    warmup_epochs=0.5,
    bf16=True,
    channels_last=True,
    **ISOGCLR_README,
    **FASHION_MNIST_28,
)

PAPER_ARM = dict(
    data="cifar100",
    image_size=32,
    channels=3,
    mean=(0.5071, 0.4865, 0.4409),
    std=(0.2673, 0.2564, 0.2762),
    # official main_supcon.py: RRC (0.2, 1), ColorJitter(0.4, 0.4, 0.4, 0.1) with p 0.8 (jitter_strength 0.5:
    # (0.8 s, 0.8 s, 0.8 s, 0.2 s)), grey 0.2, Gaussian blur σ ∈ [0.1, 2] with p 0.5, flip
    crop_scale=(0.2, 1.0),
    jitter_strength=0.5,
    jitter_p=0.8,
    blur_p=0.5,
    backbone="resnet18",
    head_hidden=512,
    head_out=128,
    temperature=0.1,
    scale_to_infonce=False,
    epochs=400,
    batch_size=128,
    lr=0.8 * 256 / 128,  # the official lr 0.8 at batch 128 (lr · B / 256 gives 0.8)
    optimizer="lars",
    weight_decay=5e-4,
    warmup_epochs=10,
    bf16=True,
    **ISOGCLR_README,
)

CLAIM = (
    "iSogCLR (learned per-sample τ) beats SimCLR at its default τ = 0.1 in kNN top-1 on the balanced test set "
    "after self-supervised training on long-tailed data."
)


def _arms(base: dict) -> dict[str, dict]:
    arms = {f"simclr_t{t}": {**base, "loss": "simclr", "temperature": t} for t in (0.1, 0.3, 0.5)}
    arms["sogclr_t0.1"] = {**base, "loss": "sogclr", "temperature": 0.1}
    arms["isogclr"] = {**base, "loss": "isogclr", "temperature": 0.1}  # τ_init = 0.1
    return arms


# The control for the τ analysis: iSogCLR on the long tail with the class order reversed (no comparison:
# its training set differs; the analysis correlates its per-class τ with the forward arm's).
CPU_CONTROL = {"isogclr_reversed": {**CPU_ARM, "loss": "isogclr", "temperature": 0.1, "reverse_long_tail": True}}


def _comparisons(arms: dict[str, dict]) -> list[Comparison]:
    out = [Comparison("iSogCLR vs SimCLR τ=0.1", "simclr_t0.1", "isogclr", "knn_top1", headline=True)]
    out += [Comparison(f"iSogCLR vs SimCLR τ={t}", f"simclr_t{t}", "isogclr", "knn_top1") for t in (0.3, 0.5)]
    out.append(Comparison("SogCLR vs SimCLR τ=0.1", "simclr_t0.1", "sogclr_t0.1", "knn_top1"))
    out.append(Comparison("iSogCLR vs SimCLR τ=0.1, tail classes", "simclr_t0.1", "isogclr", "knn_top1_tail"))
    return [c for c in out if c.baseline in arms and c.method in arms]


# The floor arm first: the headline baseline (SimCLR τ = 0.1) at its seed's initialisation.
SMOKE_ARMS = with_floor(
    {k: v for k, v in _arms(SMOKE_ARM).items() if k in ("simclr_t0.1", "sogclr_t0.1", "isogclr")}, "simclr_t0.1"
)
CPU_ARMS = with_floor({**_arms(CPU_ARM), **CPU_CONTROL}, "simclr_t0.1")
PAPER_ARMS = {k: v for k, v in _arms(PAPER_ARM).items() if k in ("simclr_t0.1", "sogclr_t0.1", "isogclr")}

PRESETS = {
    "smoke": Experiment(
        preset="smoke",
        description="seconds: 2 epochs on 192 procedural shapes, ConvNet, batch 32, SimCLR/SogCLR/iSogCLR, 1 seed",
        claim=CLAIM,
        arms=SMOKE_ARMS,
        comparisons=_comparisons(SMOKE_ARMS),
        train_arm=train_small,
        setting={
            "summary": "procedural shapes 24 px (192 train / 120 test), ConvNet (8-16-32), 2 epochs",
            "scale": "smoke",
        },
        default_seeds=1,
        eval_metric="knn_top1",
        analysis=tau_frequency_analysis,
    ),
    "cpu": Experiment(
        preset="cpu",
        description="long-tailed Fashion-MNIST (ρ=0.1, 10.2k), ConvNet, 4 epochs, SimCLR τ∈{0.1,0.3,0.5}, "
        "SogCLR τ=0.1, iSogCLR (+ iSogCLR on the reversed long tail, control of the τ analysis), 3 seeds",
        claim=CLAIM,
        arms=CPU_ARMS,
        comparisons=_comparisons(CPU_ARMS),
        train_arm=train_small,
        setting={
            "summary": "Fashion-MNIST long-tailed train split (class c keeps 2500·0.1^(c/9) images, 10.2k), "
            "balanced kNN bank 5k (500/class) and the 10k test split; 4-layer ConvNet 28 px; SimCLR "
            "augmentations; SGD lr 0.3·B/256, batch 128, 0.5 warmup epoch, cosine, 4 epochs; SogCLR/iSogCLR "
            "objective scaled by 1/τ (1/τ_init); iSogCLR README hyperparameters; bf16 CPU",
            "scale": "small (CPU)",
            "metric": "weighted kNN top-1 (k=200, T=0.1) of the backbone features on the balanced test split",
        },
        eval_metric="knn_top1",
        analysis=tau_frequency_analysis,
    ),
    "paper": Experiment(
        preset="paper",
        description="CIFAR-100 (hub), ResNet-18, batch 128, 400 epochs, LARS lr 0.8 (needs a GPU)",
        claim="iSogCLR beats SimCLR and SogCLR on CIFAR-100 (paper tables; ResNet-18, 400 epochs).",
        arms=PAPER_ARMS,
        comparisons=_comparisons(PAPER_ARMS),
        train_arm=train_paper,
        setting={
            "summary": "CIFAR-100, ResNet-18 (CIFAR stem), official unimodal README recipe: batch 128, LARS lr 0.8, "
            "wd 5e-4, warmup + cosine, 400 epochs, τ_init 0.1, γ 0.8, ρ 0.4, β_u 0.5, η 0.03; views RRC (0.2-1), "
            "jitter (0.4, 0.4, 0.4, 0.1) p 0.8, grey 0.2, blur p 0.5, flip; kNN on the train set",
            "scale": "paper",
        },
        default_seeds=1,
        eval_metric="knn_top1",
        analysis=tau_frequency_analysis,
    ),
}
