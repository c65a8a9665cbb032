"""OBoW's presets: ``smoke`` (seconds), ``cpu`` (the claim at small scale), ``paper`` (ImageNet-1k).

The claim (abstract, Tables 1–5): reconstructing an online bag of visual words of the full
image from perturbed crops learns better representations than contrastive instance
discrimination at the same budget (ImageNet linear 73.8% with ResNet-50 at 200 epochs).
At small scale we train OBoW (two BoW levels, 2 crops + 5 patches) and a SimCLR baseline
(InfoNCE, shared.ssl) with the same backbone, epochs and batch on Fashion-MNIST, and compare
kNN top-1 (headline) and linear-probe top-1 of the backbone on the test split, 3 paired seeds.
The paper's "vanilla" OBoW (one level, one crop, no patches) is the ablation arm.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from methods.obow.augment import HubOBoW, ImagePatches, obow_transform
from methods.obow.model import OBoW
from shared.arms import Evaluator, hub_linear_evaluator, knn_evaluation, train_in_memory, train_on_hub
from shared.augment import AugmentConfig, BatchedSimCLRAugment
from shared.backbones import build_backbone
from shared.data.hub import IMAGENET_1K, IMAGENET_224, HubDataset
from shared.data.splits import FASHION_MNIST_28, SHAPES_RGB
from shared.engine import TrainConfig
from shared.experiment import ArmResult, ArmRun, Comparison, Experiment, with_floor
from shared.heads import mlp_head
from shared.losses import InfoNCELoss
from shared.multicrop import MultiCropAugment, crop_groups
from shared.ssl import TwoViewContrastive

METHODS = ("obow", "simclr")


def crop_config(cfg: dict[str, Any]) -> AugmentConfig:
    """The student crops' distortion: jitter (0.4, 0.4, 0.4, 0.1) p 0.8, grayscale 0.2, blur, flip."""
    first = crop_groups(cfg["crops"])[0]
    return AugmentConfig(
        image_size=first.size,
        crop_scale=tuple(first.scale),
        jitter_strength=cfg["jitter_strength"],
        blur_p=cfg.get("blur_p", 0.0),
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
    )


def patch_config(cfg: dict[str, Any]) -> AugmentConfig:
    """The patch branch's pre-resize: random-resized crop to ``patch_resize`` px, colour distortion, no blur."""
    return AugmentConfig(
        image_size=cfg["patch_resize"],
        crop_scale=tuple(cfg["patch_resize_scale"]),
        jitter_strength=cfg["jitter_strength"],
        blur_p=0.0,
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
    )


def make_backbone(cfg: dict[str, Any]) -> nn.Module:
    return build_backbone(cfg["backbone"], cfg["channels"], cfg.get("widths"), cfg.get("num_pools"))


def build_model(cfg: dict[str, Any], total_steps: int = 1) -> nn.Module:
    """OBoW (``method="obow"``) or the SimCLR baseline (``method="simclr"``) with the same backbone."""
    method = cfg.get("method", "obow")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    backbone = make_backbone(cfg)
    batched = cfg.get("batched_augment", True)
    channels_last = cfg.get("channels_last", False)
    if method == "simclr":
        head = mlp_head(backbone.out_dim, cfg["head_hidden"], cfg["head_out"], num_layers=2)
        augment = None
        if batched:
            augment = BatchedSimCLRAugment(
                AugmentConfig(
                    image_size=cfg["image_size"],
                    crop_scale=tuple(cfg["crop_scale"]),
                    jitter_strength=cfg["jitter_strength"],
                    blur_p=cfg.get("blur_p", 0.0),
                    mean=tuple(cfg["mean"]),
                    std=tuple(cfg["std"]),
                )
            )
        return TwoViewContrastive(backbone, head, InfoNCELoss(cfg["temperature"]), augment, channels_last)
    crops = MultiCropAugment(crop_config(cfg), cfg["crops"]) if batched else None
    patches = None
    if batched and cfg.get("num_patches", 0) > 0:
        patches = ImagePatches(patch_config(cfg), cfg["patch_size"], cfg["patch_jitter"], cfg["num_patches"])
    return OBoW(
        backbone,
        levels=tuple(cfg["levels"]),
        num_words=cfg["num_words"],
        inv_delta=cfg["inv_delta"],
        kappa=cfg["kappa"],
        base_momentum=cfg["base_momentum"],
        total_steps=total_steps,
        crops=crops,
        patches=patches,
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        channels_last=channels_last,
        bow_pool=cfg.get("bow_pool", "max"),
        update_type=cfg.get("update_type", "local_average"),
    )


def train_config(cfg: dict[str, Any], seed: int, epochs: int | None, progress: bool) -> TrainConfig:
    """The arm's run config: SGD (momentum 0.9), the lr of the arm's own recipe as given."""
    return TrainConfig.from_arm(cfg, seed, epochs, progress, optimizer="sgd", momentum=0.9)


def train_small(run: ArmRun) -> ArmResult:
    """Train one (arm, seed) on in-memory data (paired seeds: the same backbone initialisation for every arm of
    a seed); kNN and linear-probe top-1 of the backbone on the test split."""
    return train_in_memory(
        run, lambda arm: build_model(arm.config, arm.total_steps), train_config, knn_evaluation(linear=True)
    )


def paper_model(cfg: dict[str, Any] | None = None, total_steps: int = 1) -> OBoW:
    """ResNet-50, BoW levels conv4/conv5, K = 8192, κ = 8, δ⁻¹ = 15; views made by DataLoader workers."""
    return build_model({**(cfg or PAPER_ARM), "batched_augment": False}, total_steps)


def paper_evaluator(cfg: dict[str, Any], train_ds, val_ds) -> Evaluator:
    """The paper's linear evaluation: frozen backbone (pooled conv5), a linear classifier on every ImageNet
    train image (centre crops), top-1 on the validation split; kNN top-1 (1/``knn_bank_stride`` bank) extra."""
    return hub_linear_evaluator(cfg, IMAGENET_1K, train_ds, val_ds)


def paper_views(cfg: dict[str, Any], data: HubDataset, train) -> HubOBoW:
    """Per image: the teacher's full view, the student's crops and patches, made by DataLoader workers."""
    transform = obow_transform(
        crop_config(cfg),
        cfg["crops"],
        patch_config(cfg),
        cfg["patch_size"],
        cfg["patch_jitter"],
        cfg["num_patches"],
    )
    return HubOBoW(train, transform)


def train_paper(run: ArmRun) -> ArmResult:
    """OBoW's 200-epoch ResNet-50 recipe on ImageNet-1k from the hub (GPUs; ``accelerate launch``)."""
    return train_on_hub(
        run,
        IMAGENET_1K,
        lambda arm: paper_model(arm.config, arm.total_steps),
        train_config,
        lambda arm: paper_evaluator(arm.config, arm.train, arm.test),
        views=paper_views,
        metrics=("linear_top1", "knn_top1"),
    )


# --- presets ---------------------------------------------------------------------------

# ImageNet-20% ResNet-18 ablation config (config/ImageNet20/ResNet18_OBoW_full.yaml): δ⁻¹ = 10, κ = 5,
# α_0 = 0.99 with the cosine schedule, SGD lr 0.05, wd 5e-4, batch 128, cosine lr, no warmup.
OBOW_R18 = dict(
    method="obow",
    levels=(-2, -1),
    inv_delta=10.0,
    kappa=5.0,
    base_momentum=0.99,
    jitter_strength=0.5,  # AugmentConfig's (0.8 s, 0.8 s, 0.8 s, 0.2 s) = (0.4, 0.4, 0.4, 0.1)
    blur_p=0.5,
    lr=0.05,
    weight_decay=5e-4,
    warmup_epochs=0,
)

SMOKE_BASE = dict(
    SHAPES_RGB,
    train_per_class=24,
    test_per_class=10,
    image_size=32,
    backbone="convnet",
    widths=(8, 16, 32, 32),
    num_pools=2,  # the last two blocks at 8×8: a 6×6 map after the border crop
    epochs=3,
    batch_size=32,
    knn_k=20,
    log_every=2,
    linear_probe=False,
)

SMOKE_ARMS = {
    "simclr": dict(
        SMOKE_BASE,
        method="simclr",
        crop_scale=(0.3, 1.0),
        jitter_strength=0.5,
        head_hidden=64,
        head_out=32,
        temperature=0.1,
        lr=0.3,
        weight_decay=5e-4,
    ),
    "obow": dict(
        SMOKE_BASE,
        **{**OBOW_R18, "lr": 0.1},  # a smoke run only has to learn something in 27 steps
        num_words=64,
        crops=((2, 24, (0.08, 0.6)),),
        patch_resize=32,
        patch_resize_scale=(0.6, 1.0),
        patch_size=12,
        patch_jitter=4,
        num_patches=3,
    ),
}

# Fashion-MNIST 28 px. The ConvNet pools after its first two blocks only, so the last two blocks
# (the BoW levels, 64 and 128 channels) both run at 7×7 — ResNet-50's conv5 geometry at 224 px:
# 5×5 after the border crop, 3×3 candidate words after the local average. Views scaled from the
# official 224 / 160 / 96 px: the teacher sees the full 28 px image, crops are 20 px, patches 12 px
# cut from a 32 px pre-resize (256 → 32) with a 3 px jitter (24 → 3).
CPU_BASE = dict(
    FASHION_MNIST_28,
    train_per_class=2000,
    bank_per_class=1000,
    backbone="convnet",
    widths=(16, 32, 64, 128),
    num_pools=2,
    epochs=5,
    batch_size=128,
    bf16=True,
    channels_last=True,
    eval_every=0,
)

CPU_OBOW = dict(
    CPU_BASE,
    **OBOW_R18,
    num_words=1024,  # K/B = 8 steps of history (official 8192 / 256 = 32)
    crops=((2, 20, (0.08, 0.6)),),
    patch_resize=32,
    patch_resize_scale=(0.6, 1.0),
    patch_size=12,
    patch_jitter=3,
    num_patches=5,
)

CPU_ARMS = {
    # SimCLR at the recipe of the project's other Fashion-MNIST baselines: InfoNCE τ = 0.1, 2 views
    # of 28 px (scale 0.2–1, jitter strength 0.5, no blur), head 128-256-128, lr 0.3·B/256, 1 warmup epoch
    "simclr": dict(
        CPU_BASE,
        method="simclr",
        crop_scale=(0.2, 1.0),
        jitter_strength=0.5,
        head_hidden=256,
        head_out=128,
        temperature=0.1,
        lr=0.3 * 128 / 256,
        weight_decay=5e-4,
        warmup_epochs=1,
    ),
    "obow": CPU_OBOW,
    # the paper's "vanilla" OBoW (Table 1): one BoW level (the last block), one crop, no patches
    "obow_vanilla": {**CPU_OBOW, "levels": (-1,), "crops": ((1, 20, (0.08, 0.6)),), "num_patches": 0},
}

PAPER_ARM = dict(
    IMAGENET_224,
    method="obow",
    backbone="imagenet_resnet50",
    levels=(-2, -1),  # conv4 ("block3") and conv5 ("block4")
    num_words=8192,
    inv_delta=15.0,
    kappa=8.0,
    base_momentum=0.99,
    crops=((2, 160, (0.08, 0.6)),),
    jitter_strength=0.5,
    blur_p=0.5,
    patch_resize=256,
    patch_resize_scale=(0.6, 1.0),
    patch_size=96,
    patch_jitter=24,
    num_patches=5,
    epochs=200,
    batch_size=256,
    lr=0.03,
    final_lr=3e-5,
    weight_decay=1e-4,
    warmup_epochs=10,
    bf16=True,
    sync_batchnorm=True,
    workers=16,
    knn_bank_stride=10,
)

CLAIM = "OBoW beats a contrastive baseline (SimCLR) in kNN top-1 with the same backbone, epochs and batch."


# The floor arm ``untrained`` is the headline baseline (SimCLR) never trained. Every arm builds the same backbone
# first from the seed, so this one initialisation is the start of all of them.
PRESETS = {
    "smoke": Experiment(
        preset="smoke",
        description="seconds: 3 epochs on 288 procedural shapes, ConvNet, batch 32, K=64, 1 seed",
        claim=CLAIM,
        arms=with_floor(SMOKE_ARMS, "simclr"),
        comparisons=[Comparison("OBoW vs SimCLR", "simclr", "obow", "knn_top1", headline=True)],
        train_arm=train_small,
        setting={
            "summary": "procedural shapes 32 px (288 train / 120 test), ConvNet 8-16-32-32, 3 epochs, batch 32, K=64",
            "scale": "smoke",
        },
        default_seeds=1,
        eval_metric="knn_top1",
    ),
    "cpu": Experiment(
        preset="cpu",
        description="Fashion-MNIST 20k, ConvNet, 5 epochs, batch 128: OBoW vs SimCLR (+ vanilla OBoW), 3 seeds",
        claim=CLAIM,
        arms=with_floor(CPU_ARMS, "simclr"),
        comparisons=[
            Comparison("OBoW vs SimCLR (kNN)", "simclr", "obow", "knn_top1", headline=True),
            Comparison("OBoW vs SimCLR (linear probe)", "simclr", "obow", "linear_top1"),
            Comparison("OBoW full vs vanilla (kNN)", "obow_vanilla", "obow", "knn_top1"),
        ],
        train_arm=train_small,
        setting={
            "summary": "Fashion-MNIST 20k train (2000/class), kNN bank / probe train 10k, 10k test; ConvNet "
            "16-32-64-128 pooled after blocks 1-2 (last two blocks at 7×7), 5 epochs, batch 128, bf16 CPU. "
            "OBoW: levels = last two blocks, K=1024, δ⁻¹=10, κ=5, α 0.99→1 cosine, teacher on the full "
            "28 px image, 2 crops 20 px (scale 0.08–0.6) + 5 patches 12 px, SGD lr 0.05 wd 5e-4 cosine. "
            "SimCLR: InfoNCE τ=0.1, 2 views 28 px, head 256-128, SGD lr 0.15 wd 5e-4, 1 warmup epoch.",
            "scale": "small (CPU)",
            "metric": "weighted kNN top-1 (k=200, T=0.1) and linear probe top-1 of the student backbone on the "
            "test split",
        },
        eval_metric="knn_top1",
    ),
    "paper": Experiment(
        preset="paper",
        description="ImageNet-1k (hub), ResNet-50, full (2×160 + 5×96) vs vanilla OBoW, batch 256, 200 epochs (GPUs)",
        claim="OBoW reaches 73.8% ImageNet linear top-1 (ResNet-50, 200 epochs, batch 256); "
        "the full model (2 levels, crops + patches) beats the vanilla one.",
        arms={
            "obow_vanilla": {**PAPER_ARM, "levels": (-1,), "crops": ((1, 160, (0.08, 0.6)),), "num_patches": 0},
            "obow": PAPER_ARM,
        },
        comparisons=[Comparison("OBoW full vs vanilla (linear probe)", "obow_vanilla", "obow", "linear_top1")],
        train_arm=train_paper,
        setting={
            "summary": "ImageNet-1k, ResNet-50, BoW levels conv4+conv5, K=8192, δ⁻¹=15, κ=8, α 0.99→1 cosine; "
            "teacher: Resize 256 → CenterCrop 224 → flip; 2×160 crops (0.08–0.6) + 5×96 patches; SGD lr 0.03 "
            "→ 3e-5 cosine, 10 warmup epochs, wd 1e-4, batch 256, 200 epochs, SyncBN; linear probe on the frozen "
            "backbone (every train image, centre crop; top-1 on val), kNN on a 1/10 train bank as an extra metric",
            "scale": "paper",
        },
        default_seeds=1,
        eval_metric="linear_top1",
    ),
}
