"""SwAV's presets: ``smoke`` (seconds), ``cpu`` (the multi-crop ablation at small scale), ``paper``.

The claim (§4, Fig. 3 and the README's "2×224 only" row): multi-crop — two global crops plus
several small low-resolution crops — improves SwAV at the same number of epochs (ImageNet
linear top-1 70.1 with 2×224 vs 74.6 with 2×224 + 6×96 at 400 epochs). At small scale we
train SwAV with 2 global crops and with 2 global + 4 local crops on Fashion-MNIST, and
SimCLR (InfoNCE) on the same 2 global crops as a sanity arm, and compare kNN top-1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs

from methods.swav.loss import SwAVLoss
from methods.swav.model import SwAV
from shared.augment import AugmentConfig, BatchedSimCLRAugment, eval_transform, to_model_input
from shared.backbones import build_backbone
from shared.data.hub import IMAGENET, IMAGENET_224, IMAGENET_OFFLINE, HubImages, load_hub_split
from shared.data.splits import FASHION_MNIST_28, SHAPES_RGB, small_image_splits
from shared.engine import InMemoryBatches, LoaderBatches, TrainConfig, fit
from shared.evaluation import knn_evaluator, loader_evaluator
from shared.experiment import ArmResult, ArmRun, Comparison, Experiment, untrained_arm
from shared.heads import mlp_head
from shared.losses import InfoNCELoss
from shared.multicrop import HubMultiCrop, MultiCropAugment, crop_groups, multicrop_transform
from shared.prototypes import Prototypes
from shared.ssl import TwoViewContrastive

METHODS = ("swav", "simclr")


def augment_config(cfg: dict[str, Any]) -> AugmentConfig:
    """The SimCLR-style distortion shared by every crop (size and scale come from the crop group)."""
    first = crop_groups(cfg["crops"])[0]
    return AugmentConfig(
        image_size=first.size,
        crop_scale=tuple(first.scale),
        jitter_strength=cfg["jitter_strength"],
        blur_p=cfg.get("blur_p", 0.0),
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
    )


def build_model(cfg: dict[str, Any], steps_per_epoch: int = 1) -> torch.nn.Module:
    """SwAV (``method="swav"``) or the SimCLR sanity arm (``method="simclr"``) from a preset config."""
    method = cfg.get("method", "swav")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    backbone = build_backbone(cfg["backbone"], cfg["channels"], cfg.get("widths"))
    head = mlp_head(backbone.out_dim, cfg["head_hidden"], cfg["head_out"], num_layers=2)
    batched = cfg.get("batched_augment", True)
    channels_last = cfg.get("channels_last", False)
    if method == "simclr":
        groups = crop_groups(cfg["crops"])
        if len(groups) != 1 or groups[0].count != 2:
            raise ValueError("the SimCLR arm takes exactly two crops of one size")
        augment = BatchedSimCLRAugment(augment_config(cfg)) if batched else None
        return TwoViewContrastive(backbone, head, InfoNCELoss(cfg["temperature"]), augment, channels_last)
    prototypes = Prototypes(cfg["head_out"], cfg["num_prototypes"], freeze_iters=cfg["freeze_prototypes_iters"])
    loss = SwAVLoss(cfg["temperature"], cfg["epsilon"], cfg["sinkhorn_iterations"], cfg.get("crops_for_assign", (0, 1)))
    augment = MultiCropAugment(augment_config(cfg), cfg["crops"]) if batched else None
    return SwAV(
        backbone,
        head,
        prototypes,
        loss,
        augment,
        queue_length=cfg.get("queue_length", 0),
        queue_start_iter=cfg.get("queue_start_epoch", 0) * steps_per_epoch,
        channels_last=channels_last,
    )


def train_config(cfg: dict[str, Any], seed: int, epochs: int | None, progress: bool) -> TrainConfig:
    """The arm's run config; SwAV's scripts give the lr of their batch size directly (no scaling)."""
    return TrainConfig.from_arm(cfg, seed, epochs, progress)


def train_small(run: ArmRun) -> ArmResult:
    """Train one (arm, seed) on in-memory data and evaluate kNN top-1 on the test split."""
    cfg = run.config
    train, bank, test = small_image_splits(cfg, run.data_dir)
    source = InMemoryBatches(train, cfg["batch_size"])
    torch.manual_seed(run.seed)  # paired seeds: same initialisation of the shared parts for every arm
    model = build_model(cfg, source.steps_per_epoch(1))

    def preprocess(x: torch.Tensor) -> torch.Tensor:
        return to_model_input(x, cfg["image_size"], tuple(cfg["mean"]), tuple(cfg["std"]))

    evaluate = knn_evaluator(bank, test, preprocess, k=cfg.get("knn_k", 200), temperature=0.1)
    tc = train_config(cfg, run.seed, run.epochs, run.progress)
    result = fit(model, source, tc, run.run_dir, resume=run.resume, evaluate=evaluate, desc=f"{run.arm} s{run.seed}")
    metrics = result.final_metrics()
    return ArmResult(metrics, result.history, result.evaluations, result.wall_seconds)


def paper_model(cfg: dict[str, Any] | None = None, steps_per_epoch: int = 1) -> SwAV:
    """ResNet-50 + 2048→2048→128 head + 3000 prototypes; crops made by DataLoader workers."""
    return build_model({**(cfg or PAPER_ARM), "batched_augment": False}, steps_per_epoch)


def paper_evaluator(cfg: dict[str, Any], train_ds, val_ds) -> Callable[[torch.nn.Module], dict[str, float]]:
    """The paper's linear evaluation: frozen backbone, a linear classifier on every ImageNet train image
    (centre crops), top-1 on the validation split; kNN top-1 (1/``knn_bank_stride`` bank) as an extra metric."""
    tf = eval_transform(224, tuple(cfg["mean"]), tuple(cfg["std"]))
    return loader_evaluator(
        HubImages(train_ds, tf),
        HubImages(val_ds, tf),
        1000,
        knn_bank_stride=cfg["knn_bank_stride"],
        workers=cfg["workers"],
    )


def train_paper(run: ArmRun) -> ArmResult:
    """SwAV's 400-epoch recipe on ImageNet-1k from the hub (GPUs; run under ``accelerate launch``)."""
    cfg = run.config
    ds = load_hub_split(IMAGENET, "train", IMAGENET_OFFLINE)
    val = load_hub_split(IMAGENET, "validation", IMAGENET_OFFLINE)
    crops = HubMultiCrop(ds, multicrop_transform(augment_config(cfg), cfg["crops"]))
    source = LoaderBatches(crops, cfg["batch_size"], cfg["workers"])
    # a frozen-prototype step leaves the prototypes unused: DDP must allow it (official: True as well)
    accelerator = Accelerator(kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    model = paper_model(cfg, source.steps_per_epoch(accelerator.num_processes))
    if accelerator.num_processes > 1:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # SwAV uses (apex) SyncBN
    evaluate = paper_evaluator(cfg, ds, val)
    tc = train_config(cfg, run.seed, run.epochs, run.progress)
    result = fit(model, source, tc, run.run_dir, run.resume, evaluate, accelerator=accelerator, desc=run.arm)
    final = result.evaluations[-1]
    metrics = {k: final[k] for k in ("linear_top1", "knn_top1")}
    return ArmResult(metrics, result.history, result.evaluations, result.wall_seconds)


# --- presets ---------------------------------------------------------------------------

SWAV_DEFAULTS = dict(
    method="swav",
    temperature=0.1,
    epsilon=0.05,
    sinkhorn_iterations=3,
    crops_for_assign=(0, 1),
    queue_length=0,
    queue_start_epoch=0,
)

SMOKE_ARM = dict(
    SWAV_DEFAULTS,
    **SHAPES_RGB,
    train_per_class=24,
    test_per_class=10,
    image_size=32,
    crops=((2, 32, (0.3, 1.0)),),
    jitter_strength=0.5,
    backbone="convnet",
    widths=(16, 32, 64),
    head_hidden=64,
    head_out=32,
    num_prototypes=30,
    freeze_prototypes_iters=4,
    epochs=3,
    batch_size=32,
    lr=0.1,
    optimizer="sgd",
    weight_decay=1e-6,
    knn_k=20,
    log_every=2,
)

SMOKE_MULTICROP = ((2, 32, (0.3, 1.0)), (2, 16, (0.1, 0.3)))
SMOKE_ARMS = {
    "untrained": untrained_arm(SMOKE_ARM),  # the floor: the headline baseline (2 crops) never trained
    "swav_2crop": SMOKE_ARM,
    "swav_multicrop": {**SMOKE_ARM, "crops": SMOKE_MULTICROP},
    "swav_queue": {**SMOKE_ARM, "queue_length": 64, "queue_start_epoch": 1},
}

GLOBAL_CROPS = (2, 28, (0.14, 1.0))
LOCAL_CROPS = (4, 14, (0.05, 0.14))  # the paper's ranges: 2 global crops of scale 0.14–1, small ones of 0.05–0.14
WIDE_LOCAL_CROPS = (4, 14, (0.05, 0.4))  # exploratory: DINO's local range, more of a 28 px image per small crop

CPU_ARM = dict(
    SWAV_DEFAULTS,
    **FASHION_MNIST_28,
    train_per_class=1200,
    bank_per_class=1000,
    crops=(GLOBAL_CROPS,),
    jitter_strength=0.5,
    backbone="convnet",
    head_hidden=256,
    head_out=128,
    num_prototypes=50,
    freeze_prototypes_iters=46,  # one epoch (12k images, batch 256), as the official 313 at 4096 / 5005 at 256
    epochs=8,
    batch_size=256,
    lr=0.3,
    optimizer="sgd",
    weight_decay=1e-6,
    warmup_epochs=1,
    bf16=True,
    channels_last=True,
    eval_every=4,
)

CPU_ARMS = {
    "untrained": untrained_arm(CPU_ARM),  # the floor: the headline baseline (SwAV 2×28) never trained
    "simclr_2x28": {**CPU_ARM, "method": "simclr"},
    "swav_2x28": CPU_ARM,
    "swav_2x28_4x14": {**CPU_ARM, "crops": (GLOBAL_CROPS, LOCAL_CROPS)},
    "swav_2x28_4x14_wide": {**CPU_ARM, "crops": (GLOBAL_CROPS, WIDE_LOCAL_CROPS)},
}

PAPER_ARM = dict(
    SWAV_DEFAULTS,
    **IMAGENET_224,
    crops=((2, 224, (0.14, 1.0)), (6, 96, (0.05, 0.14))),
    jitter_strength=1.0,
    blur_p=0.5,
    backbone="imagenet_resnet50",
    head_hidden=2048,
    head_out=128,
    num_prototypes=3000,
    freeze_prototypes_iters=313,
    epochs=400,  # the epochs of the two reported numbers it is compared with (74.6 and 70.1)
    batch_size=4096,
    lr=4.8,
    final_lr=0.0048,
    optimizer="lars",
    weight_decay=1e-6,
    warmup_epochs=10,
    bf16=True,
    workers=10,
    knn_bank_stride=10,
)

PAPER_2X224 = {**PAPER_ARM, "crops": ((2, 224, (0.08, 1.0)),)}
"""The 2×224 arm: with no small crops the official script draws the global crops from scale 0.08–1."""

CLAIM = "Multi-crop (2 global + 4 small crops) beats 2 global crops for SwAV in kNN top-1 at equal epochs."

PRESETS = {
    "smoke": Experiment(
        preset="smoke",
        description="seconds: 3 epochs on 288 procedural shapes, ConvNet, batch 32, 30 prototypes, 1 seed",
        claim=CLAIM,
        arms=SMOKE_ARMS,
        comparisons=[
            Comparison("multi-crop vs 2 crops", "swav_2crop", "swav_multicrop", "knn_top1", headline=True),
            Comparison("queue vs no queue", "swav_2crop", "swav_queue", "knn_top1"),
        ],
        train_arm=train_small,
        setting={
            "summary": "procedural shapes 32 px (288 train / 120 test), ConvNet, 3 epochs, batch 32, K=30",
            "scale": "smoke",
        },
        default_seeds=1,
        eval_metric="knn_top1",
    ),
    "cpu": Experiment(
        preset="cpu",
        description="Fashion-MNIST 12k, ConvNet, 8 epochs, batch 256: SwAV 2×28 vs 2×28+4×14, SimCLR 2×28, 3 seeds",
        claim=CLAIM,
        arms=CPU_ARMS,
        comparisons=[
            Comparison("SwAV multi-crop vs 2 crops", "swav_2x28", "swav_2x28_4x14", "knn_top1", headline=True),
            Comparison("SwAV 2 crops vs SimCLR 2 crops", "simclr_2x28", "swav_2x28", "knn_top1"),
            Comparison("SwAV multi-crop vs SimCLR 2 crops", "simclr_2x28", "swav_2x28_4x14", "knn_top1"),
            Comparison(
                "SwAV multi-crop, local scale 0.05–0.4 vs 2 crops", "swav_2x28", "swav_2x28_4x14_wide", "knn_top1"
            ),
        ],
        train_arm=train_small,
        setting={
            "summary": "Fashion-MNIST 12k train (1200/class), kNN bank 10k, 10k test; 4-layer ConvNet 28 px; "
            "SwAV K=50 prototypes (frozen for the first epoch), τ=0.1, ε=0.05, 3 Sinkhorn iterations, no queue; "
            "crops 2×28 px (scale 0.14–1) [+ 4×14 px (scale 0.05–0.14, the paper's; or 0.05–0.4, exploratory)]; "
            "SimCLR arm: InfoNCE τ=0.1 on the same 2 global crops; SGD lr 0.3, wd 1e-6, 1 warmup epoch, "
            "cosine, 8 epochs, batch 256; bf16 CPU",
            "scale": "small (CPU)",
            "metric": "weighted kNN top-1 (k=200, T=0.1) of the backbone features on the test split",
        },
        eval_metric="knn_top1",
    ),
    "paper": Experiment(
        preset="paper",
        description="ImageNet-1k (hub), ResNet-50, 2×224 vs 2×224+6×96 crops, batch 4096, 400 epochs, LARS "
        "(needs GPUs)",
        claim="At 400 epochs (batch 4096), multi-crop (2×224 + 6×96) beats 2×224 crops in ImageNet linear top-1 "
        "(official README: 74.6% vs 70.1%).",
        arms={"swav_2x224": PAPER_2X224, "swav_2x224_6x96": PAPER_ARM},
        comparisons=[Comparison("multi-crop vs 2×224", "swav_2x224", "swav_2x224_6x96", "linear_top1")],
        train_arm=train_paper,
        setting={
            "summary": "ImageNet-1k, ResNet-50, head 2048-2048-128, K=3000, τ=0.1, ε=0.05, crops 2×224 (0.14–1) "
            "+ 6×96 (0.05–0.14), or 2×224 (0.08–1) alone (official swav_400ep_2x224_pretrain.sh); "
            "LARS (η=0.001) lr 4.8 → 0.0048 cosine, 10 warmup epochs, wd 1e-6, batch 4096, "
            "400 epochs, prototypes frozen 313 iterations, no queue, bf16, SyncBN; linear probe on the frozen "
            "backbone (every train image, centre crop; top-1 on val), kNN on a 1/10 train bank as an extra metric",
            "scale": "paper",
        },
        default_seeds=1,
        eval_metric="linear_top1",
    ),
}
