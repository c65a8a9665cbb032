"""CACR's presets: ``smoke`` (seconds), ``cpu`` (the balanced / long-tailed claim), ``paper`` (CIFAR-10).

The claim (small-scale tables): with the same number of positives, CACR is at least as good as
SimCLR's InfoNCE and Wang & Isola's alignment + uniformity on balanced data, and its margin is
larger on class-imbalanced (long-tailed) data. At small scale all arms train the same ConvNet on
the same 2 global + 3 local crops of Fashion-MNIST, balanced and long-tailed (imbalance ratio 0.1),
with the same epochs and batch, and are compared by kNN top-1 on the balanced test set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torchvision.transforms import v2

from methods.cacr.baselines import MultiViewAlignUniform, MultiViewInfoNCE
from methods.cacr.encoder import SmallAlexNet, small_alexnet_head
from methods.cacr.loss import CACRLoss
from methods.cacr.model import MultiViewContrastive
from shared.augment import AugmentConfig, eval_transform, to_model_input
from shared.backbones import build_backbone
from shared.data.arrays import ImageArrays
from shared.data.hub import HubImages, load_hub_split
from shared.data.splits import FASHION_MNIST_28, SHAPES_RGB, small_image_splits
from shared.engine import InMemoryBatches, LoaderBatches, TrainConfig, fit
from shared.evaluation import extract_features, knn_predict, linear_probe, loader_evaluator
from shared.experiment import ArmResult, ArmRun, Comparison, Experiment, untrained_arm
from shared.heads import mlp_head
from shared.multicrop import HubMultiCrop, MultiCropAugment, crop_groups

LOSSES = ("cacr", "simclr", "align_uniform")


def make_loss(cfg: dict[str, Any]) -> torch.nn.Module:
    """The arm's loss on (V, B, d) views: ``cacr``, ``simclr`` (multi-view InfoNCE) or ``align_uniform``."""
    name = cfg["loss"]
    if name == "cacr":
        return CACRLoss(cfg["alpha"], cfg["beta"], cfg["tau_pos"], cfg["tau_neg"], cfg.get("tau_plus"))
    if name == "simclr":
        return MultiViewInfoNCE(cfg["temperature"])
    if name == "align_uniform":
        return MultiViewAlignUniform(cfg.get("align_alpha", 2.0), cfg.get("unif_t", 2.0), cfg.get("lam", 1.0))
    raise ValueError(f"unknown loss {name!r}; choose from {LOSSES}")


def augment_config(cfg: dict[str, Any]) -> AugmentConfig:
    """The distortion shared by every crop (crop size and scale come from the crop groups)."""
    first = crop_groups(cfg["crops"])[0]
    return AugmentConfig(
        image_size=first.size,
        crop_scale=tuple(first.scale),
        jitter_strength=cfg["jitter_strength"],
        jitter_p=cfg.get("jitter_p", 0.8),
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
    )


def build_model(cfg: dict[str, Any]) -> MultiViewContrastive:
    """Backbone → head → the arm's loss on the preset's crops (made in-batch unless ``batched_augment`` is off)."""
    if cfg["backbone"] == "small_alexnet":
        backbone = SmallAlexNet(cfg["channels"], cfg["image_size"])
        head = small_alexnet_head(backbone.out_dim, cfg["head_out"])
    else:
        backbone = build_backbone(cfg["backbone"], cfg["channels"], cfg.get("widths"))
        head = mlp_head(backbone.out_dim, cfg["head_hidden"], cfg["head_out"], num_layers=2)
    augment = MultiCropAugment(augment_config(cfg), cfg["crops"]) if cfg.get("batched_augment", True) else None
    return MultiViewContrastive(backbone, head, make_loss(cfg), augment, cfg.get("channels_last", False))


def train_config(cfg: dict[str, Any], seed: int, epochs: int | None, progress: bool) -> TrainConfig:
    """The arm's run config; the official linear scaling rule lr = lr_256 · B / 256 (0.12 per 256)."""
    return TrainConfig.from_arm(cfg, seed, epochs, progress, lr=cfg["lr"] * cfg["batch_size"] / 256)


def tail_classes(train: ImageArrays, num_classes: int) -> list[int]:
    """The half of the classes with the fewest training images (classes 5–9 for the long-tailed profile)."""
    counts = torch.bincount(train.labels, minlength=num_classes)
    order = sorted(range(num_classes), key=lambda c: (int(counts[c]), c))
    return sorted(order[: num_classes // 2])


def small_evaluator(cfg: dict[str, Any], train: ImageArrays, bank: ImageArrays, test: ImageArrays):
    """kNN top-1 on the whole balanced test set and on its tail classes; optional linear probe."""
    tail = torch.tensor(tail_classes(train, bank.num_classes)) if cfg.get("imbalance_ratio", 1.0) < 1 else None
    tail = tail if tail is not None else torch.arange(bank.num_classes // 2, bank.num_classes)
    in_tail = torch.isin(test.labels, tail)

    def preprocess(x: torch.Tensor) -> torch.Tensor:
        return to_model_input(x, cfg["image_size"], tuple(cfg["mean"]), tuple(cfg["std"]))

    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        ftr = extract_features(model.backbone, bank.images, preprocess)
        fte = extract_features(model.backbone, test.images, preprocess)
        scores = knn_predict(ftr, bank.labels, fte, bank.num_classes, cfg.get("knn_k", 200), 0.1)
        hit = (scores.argmax(1) == test.labels).float()
        out = {"knn_top1": hit.mean().item(), "knn_top1_tail": hit[in_tail].mean().item()}
        if cfg.get("linear_probe", False):
            out["linear_top1"] = linear_probe(ftr, bank.labels, fte, test.labels, bank.num_classes)
        return out

    return evaluate


def train_small(run: ArmRun) -> ArmResult:
    """Train one (arm, seed) on in-memory data; evaluate on the balanced test split."""
    cfg = run.config
    train, bank, test = small_image_splits(cfg, run.data_dir)
    torch.manual_seed(run.seed)  # paired seeds: the same initialisation for every arm of a seed
    model = build_model(cfg)
    tc = train_config(cfg, run.seed, run.epochs, run.progress)
    evaluate = small_evaluator(cfg, train, bank, test)
    result = fit(
        model,
        InMemoryBatches(train, tc.batch_size),
        tc,
        run.run_dir,
        resume=run.resume,
        evaluate=evaluate,
        desc=f"{run.arm} s{run.seed}",
    )
    metrics = result.final_metrics()
    extras = {"train_size": len(train), "train_counts": torch.bincount(train.labels).tolist()}
    return ArmResult(metrics, result.history, result.evaluations, result.wall_seconds, extras)


# --- paper scale: CIFAR-10, SmallAlexNet, 5 views, 200 epochs (the official small-scale recipe) ---

CIFAR10 = "uoft-cs/cifar10"
CIFAR10_OFFLINE = "no offline copy of CIFAR-10 ships with the project; the paper preset needs the hub"


def official_view_transform(cfg: dict[str, Any]) -> v2.Compose:
    """The official small-scale view: RRC(32, (0.2, 1)), flip, ColorJitter(0.4, 0.4, 0.4, 0.4) always, grey 0.2."""
    group = crop_groups(cfg["crops"])[0]
    return v2.Compose(
        [
            v2.ToImage(),
            v2.RandomResizedCrop(group.size, scale=tuple(group.scale), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(0.4, 0.4, 0.4, 0.4),
            v2.RandomGrayscale(0.2),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(cfg["mean"], cfg["std"]),
        ]
    )


class RepeatedView:
    """``image -> [t(image) for each of the views]``: the official ``MultiAugUnsupervisedDataset`` (picklable)."""

    def __init__(self, transform: v2.Compose, views: int) -> None:
        self.transform, self.views = transform, views

    def __call__(self, image) -> list[torch.Tensor]:
        return [self.transform(image) for _ in range(self.views)]


def paper_model(cfg: dict[str, Any] | None = None) -> MultiViewContrastive:
    """SmallAlexNet + fc8 (128-d) + CACR; views made by DataLoader workers."""
    return build_model({**(cfg or PAPER_ARM), "batched_augment": False})


def paper_evaluator(cfg: dict[str, Any], train_ds, test_ds) -> Callable[[torch.nn.Module], dict[str, float]]:
    """The paper's linear evaluation: frozen backbone (fc7), a linear classifier on every CIFAR-10 train
    image, top-1 on the test split; kNN top-1 (the whole train split as bank) as an extra metric."""
    tf = eval_transform(cfg["image_size"], tuple(cfg["mean"]), tuple(cfg["std"]))
    return loader_evaluator(
        HubImages(train_ds, tf, image_key="img"), HubImages(test_ds, tf, image_key="img"), 10, workers=cfg["workers"]
    )


def train_paper(run: ArmRun) -> ArmResult:
    """The official CIFAR-10 recipe from the hub (a GPU; ``accelerate launch`` for several)."""
    cfg = run.config
    ds = load_hub_split(CIFAR10, "train", CIFAR10_OFFLINE)
    val = load_hub_split(CIFAR10, "test", CIFAR10_OFFLINE)
    views = sum(g.count for g in crop_groups(cfg["crops"]))
    crops = HubMultiCrop(ds, RepeatedView(official_view_transform(cfg), views), image_key="img")
    model = paper_model(cfg)
    tc = train_config(cfg, run.seed, run.epochs, run.progress)
    source = LoaderBatches(crops, tc.batch_size, cfg["workers"])
    evaluate = paper_evaluator(cfg, ds, val)
    result = fit(model, source, tc, run.run_dir, resume=run.resume, evaluate=evaluate, desc=run.arm)
    metrics = result.final_metrics()
    return ArmResult(metrics, result.history, result.evaluations, result.wall_seconds)


# --- presets ---------------------------------------------------------------------------

# Official small-scale defaults (CIFAR-10): α = β = 1, τ⁺ = 1, τ⁻ = 0.9; SGD 0.12·B/256, m 0.9, wd 1e-4.
CACR_DEFAULTS = dict(alpha=1.0, beta=1.0, tau_pos=1.0, tau_neg=0.9, tau_plus=None)
BASELINE_DEFAULTS = dict(temperature=0.2, align_alpha=2.0, unif_t=2.0, lam=1.0)

SMOKE_ARM = dict(
    CACR_DEFAULTS,
    **SHAPES_RGB,
    **BASELINE_DEFAULTS,
    train_per_class=16,
    test_per_class=10,
    image_size=24,
    crops=((2, 24, (0.3, 1.0)), (2, 12, (0.1, 0.4))),
    jitter_strength=0.5,
    backbone="convnet",
    widths=(16, 32, 64),
    head_hidden=64,
    head_out=32,
    epochs=3,
    batch_size=32,
    lr=0.5,
    optimizer="sgd",
    weight_decay=1e-4,
    knn_k=20,
    log_every=2,
)

GLOBAL_CROPS = (2, 28, (0.2, 1.0))  # the official small-scale crop scale (0.2, 1)
LOCAL_CROPS = (3, 14, (0.05, 0.4))  # the ImageNet code's local scale (0.05, 0.4), half size; 2 + 3 = Ny + 1 = 5 views

CPU_ARM = dict(
    CACR_DEFAULTS,
    **FASHION_MNIST_28,
    **BASELINE_DEFAULTS,
    train_per_class=1000,
    bank_per_class=500,
    crops=(GLOBAL_CROPS, LOCAL_CROPS),
    jitter_strength=0.5,
    backbone="convnet",
    head_hidden=256,
    head_out=128,
    epochs=12,  # 936 steps; at 3 epochs × batch 256 (117 steps) every arm sat on the untrained floor
    batch_size=128,  # the official small-scale batch
    lr=0.12,
    optimizer="sgd",
    weight_decay=1e-4,
    warmup_epochs=0.5,
    bf16=True,
    channels_last=True,
    linear_probe=True,
)

# Long-tailed: class c keeps n_max · 0.1^(c/9) images; n_max = 2450 keeps the total (~10k) and so the
# number of steps equal to the balanced split's.
LT_ARM = {**CPU_ARM, "train_per_class": 2450, "imbalance_ratio": 0.1}


def _arms(base: dict, suffix: str) -> dict[str, dict]:
    return {f"{loss}_{suffix}": {**base, "loss": loss} for loss in LOSSES}


# The floor: the headline baseline's network at its seed's initialisation. Its kNN bank, test split and tail
# classes (5–9) are the balanced arms' too, so the same untrained arm is the floor of both splits.
CPU_ARMS = {"untrained": untrained_arm(LT_ARM | {"loss": "simclr"}), **_arms(LT_ARM, "lt")}
BALANCED_ARMS = {"untrained": CPU_ARMS["untrained"], **_arms(CPU_ARM, "bal")}
SMOKE_ARMS = _arms(SMOKE_ARM, "bal")
SMOKE_ARMS = {"untrained": untrained_arm(SMOKE_ARMS["simclr_bal"]), **SMOKE_ARMS}

PAPER_ARM = dict(
    CACR_DEFAULTS,
    **BASELINE_DEFAULTS,
    data="cifar10",
    image_size=32,
    channels=3,
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2023, 0.1994, 0.2010),
    loss="cacr",
    crops=((5, 32, (0.2, 1.0)),),  # Ny + 1 = 5 views
    backbone="small_alexnet",
    head_out=128,
    epochs=200,
    batch_size=128,
    lr=0.12,
    optimizer="sgd",
    weight_decay=1e-4,
    bf16=True,
    workers=6,
)

CLAIM = (
    "With the same positives, CACR beats SimCLR (and alignment+uniformity) in kNN top-1, "
    "with a larger margin when the training set is long-tailed."
)


def cpu_summary(train: str) -> str:
    return (
        f"Fashion-MNIST: {train} train; kNN bank 5k balanced (500/class), the 10k test split; 4-layer ConvNet, "
        "head 256-256-128; crops 2×28 px (scale 0.2–1) + 3×14 px (0.05–0.4) (5 views, Ny = 4 positives), "
        "jitter 0.5 p 0.8; CACR α=β=1, τ⁺=1, τ⁻=0.9; SimCLR NT-Xent τ=0.2 and align+uniform (α=2, t=2, λ=1) "
        "averaged over the 10 view pairs; SGD lr 0.12·B/256, m 0.9, wd 1e-4, 0.5 warmup epoch, cosine, "
        "12 epochs, batch 128 (official); bf16 CPU"
    )


CPU_SETTING = {
    "scale": "small (CPU)",
    "metric": "weighted kNN top-1 (k=200, T=0.1) of the backbone features on the balanced test split; "
    "also on its 5 tail classes, and a linear probe (Adam, 100 epochs) trained on the bank",
}

PRESETS = {
    "smoke": Experiment(
        preset="smoke",
        description="seconds: 3 epochs on 192 procedural shapes (24 px), ConvNet, 2×24 + 2×12 crops, batch 32, 1 seed",
        claim=CLAIM,
        arms=SMOKE_ARMS,
        comparisons=[
            Comparison("CACR vs SimCLR", "simclr_bal", "cacr_bal", "knn_top1", headline=True),
            Comparison("CACR vs align+uniform", "align_uniform_bal", "cacr_bal", "knn_top1"),
        ],
        train_arm=train_small,
        setting={"summary": "procedural shapes 24 px (192 train / 120 test), ConvNet, 3 epochs", "scale": "smoke"},
        default_seeds=1,
        eval_metric="knn_top1",
    ),
    "cpu": Experiment(
        preset="cpu",
        description="Fashion-MNIST ~10k long-tailed (ρ=0.1), ConvNet, 2×28+3×14 crops, "
        "CACR vs SimCLR vs align+uniform, 12 epochs, batch 128, 3 seeds",
        claim=CLAIM,
        arms=CPU_ARMS,
        comparisons=[
            Comparison("CACR vs SimCLR, long-tailed", "simclr_lt", "cacr_lt", "knn_top1", headline=True),
            Comparison("CACR vs align+uniform, long-tailed", "align_uniform_lt", "cacr_lt", "knn_top1", headline=True),
            Comparison("CACR vs SimCLR, long-tailed, tail classes", "simclr_lt", "cacr_lt", "knn_top1_tail"),
            Comparison("CACR vs SimCLR, long-tailed, linear probe", "simclr_lt", "cacr_lt", "linear_top1"),
        ],
        train_arm=train_small,
        setting={"summary": cpu_summary("long-tailed (class c: 2450·0.1^(c/9), 9.9k)"), **CPU_SETTING},
        eval_metric="knn_top1",
    ),
    "cpu-balanced": Experiment(
        preset="cpu-balanced",
        description="the cpu setting on the balanced 10k split (the claim's 'larger margin when long-tailed' "
        "compares the two records), 3 seeds",
        claim=CLAIM,
        arms=BALANCED_ARMS,
        comparisons=[
            Comparison("CACR vs SimCLR, balanced", "simclr_bal", "cacr_bal", "knn_top1", headline=True),
            Comparison("CACR vs align+uniform, balanced", "align_uniform_bal", "cacr_bal", "knn_top1", headline=True),
            Comparison("CACR vs SimCLR, balanced, linear probe", "simclr_bal", "cacr_bal", "linear_top1"),
        ],
        train_arm=train_small,
        setting={"summary": cpu_summary("balanced 10k (1000/class)"), **CPU_SETTING},
        eval_metric="knn_top1",
    ),
    "paper": Experiment(
        preset="paper",
        description="CIFAR-10 (hub), SmallAlexNet, Ny+1 = 5 views, batch 128, 200 epochs (a GPU)",
        claim="CACR beats alignment+uniform with the same 4 positives on CIFAR-10 (official small-scale recipe).",
        arms={
            "align_uniform_cifar10": {**PAPER_ARM, "loss": "align_uniform"},
            "cacr_cifar10": {**PAPER_ARM, "loss": "cacr"},
        },
        comparisons=[Comparison("CACR vs align+uniform", "align_uniform_cifar10", "cacr_cifar10", "linear_top1")],
        train_arm=train_paper,
        setting={
            "summary": "CIFAR-10, SmallAlexNet (fc7 4096-d features, fc8 128-d embedding), 5 views "
            "RRC(0.2,1)+flip+jitter 0.4 (p=1)+grey 0.2; CACR α=β=1, τ⁺=1, τ⁻=0.9; SGD lr 0.12·128/256, "
            "m 0.9, wd 1e-4, cosine (official: ×0.1 at 155/170/185), 200 epochs, batch 128; linear probe on the "
            "frozen fc7 features (every train image; top-1 on test), kNN as an extra metric",
            "scale": "paper",
        },
        default_seeds=1,
        eval_metric="linear_top1",
    ),
}
