"""DCL's presets: ``smoke`` (seconds), ``cpu`` (the claim at small scale), ``paper`` (ImageNet).

The claim (abstract): removing the positive from InfoNCE's denominator helps most when
the batch is small; SimCLR + DCL reaches 68.2% ImageNet linear top-1 at batch 256 and
200 epochs, +6.4 over SimCLR. At small scale we train SimCLR with InfoNCE, DCL and DCLW
at batch 32 and at batch 256 (the contrast) and compare kNN top-1 of the backbone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from methods.dcl.loss import DCLLoss, DCLWLoss
from shared.augment import AugmentConfig, BatchedSimCLRAugment, eval_transform, simclr_transform, to_model_input
from shared.backbones import build_backbone
from shared.data.hub import IMAGENET, IMAGENET_224, IMAGENET_OFFLINE, HubImages, HubViews, load_hub_split
from shared.data.splits import FASHION_MNIST_28, SHAPES_RGB, small_image_splits
from shared.engine import InMemoryBatches, LoaderBatches, TrainConfig, fit
from shared.evaluation import knn_evaluator, loader_evaluator
from shared.experiment import ArmResult, ArmRun, Comparison, Experiment, untrained_arm
from shared.heads import mlp_head
from shared.losses import InfoNCELoss
from shared.ssl import TwoViewContrastive

LOSSES = ("infonce", "dcl", "dclw")


def make_loss(name: str, temperature: float, sigma: float = 0.5) -> torch.nn.Module:
    """The contrastive loss of an arm: ``infonce`` (SimCLR), ``dcl`` or ``dclw``."""
    if name == "infonce":
        return InfoNCELoss(temperature)
    if name == "dcl":
        return DCLLoss(temperature)
    if name == "dclw":
        return DCLWLoss(temperature, sigma)
    raise ValueError(f"unknown loss {name!r}; choose from {LOSSES}")


def build_model(cfg: dict[str, Any]) -> TwoViewContrastive:
    """SimCLR with the arm's loss: backbone → MLP head (hidden, out) → loss(z1, z2)."""
    backbone = build_backbone(cfg["backbone"], cfg["channels"], cfg.get("widths"))
    head = mlp_head(backbone.out_dim, cfg["head_hidden"], cfg["head_out"], num_layers=2)
    augment = None
    if cfg.get("batched_augment", True):
        augment = BatchedSimCLRAugment(AugmentConfig.from_arm(cfg))
    loss = make_loss(cfg["loss"], cfg["temperature"], cfg.get("sigma", 0.5))
    return TwoViewContrastive(backbone, head, loss, augment, channels_last=cfg.get("channels_last", False))


def train_config(cfg: dict[str, Any], seed: int, epochs: int | None, progress: bool) -> TrainConfig:
    """The arm's run config; lr follows SimCLR's linear scaling rule, lr · B / 256."""
    return TrainConfig.from_arm(cfg, seed, epochs, progress, lr=cfg["lr"] * cfg["batch_size"] / 256)


def train_small(run: ArmRun) -> ArmResult:
    """Train one (arm, seed) on in-memory data and evaluate kNN top-1 on the test split."""
    cfg = run.config
    train, bank, test = small_image_splits(cfg, run.data_dir)
    torch.manual_seed(run.seed)  # paired seeds: same initialisation for every arm of a seed
    model = build_model(cfg)

    def preprocess(x: torch.Tensor) -> torch.Tensor:
        return to_model_input(x, cfg["image_size"], tuple(cfg["mean"]), tuple(cfg["std"]))

    evaluate = knn_evaluator(
        bank, test, preprocess, k=cfg.get("knn_k", 200), temperature=0.1, linear=cfg.get("linear_probe", False)
    )
    tc = train_config(cfg, run.seed, run.epochs, run.progress)
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
    return ArmResult(metrics, result.history, result.evaluations, result.wall_seconds)


def paper_model(loss: str) -> TwoViewContrastive:
    """ResNet-50 + 2-layer 2048→2048→128 head, views made by DataLoader workers."""
    return build_model({**PAPER_ARM, "loss": loss, "batched_augment": False})


def paper_evaluator(cfg: dict[str, Any], train_ds, val_ds) -> Callable[[torch.nn.Module], dict[str, float]]:
    """The paper's linear evaluation: frozen backbone, a linear classifier on every ImageNet train image
    (centre crops), top-1 on the validation split; kNN top-1 (1/``knn_bank_stride`` bank) as an extra metric."""
    tf = eval_transform(cfg["image_size"], tuple(cfg["mean"]), tuple(cfg["std"]))
    return loader_evaluator(
        HubImages(train_ds, tf),
        HubImages(val_ds, tf),
        1000,
        knn_bank_stride=cfg["knn_bank_stride"],
        workers=cfg["workers"],
    )


def train_paper(run: ArmRun) -> ArmResult:
    """SimCLR recipe on ImageNet-1k from the hub (needs GPUs; run under ``accelerate launch``)."""
    cfg = run.config
    ds = load_hub_split(IMAGENET, "train", IMAGENET_OFFLINE)
    val = load_hub_split(IMAGENET, "validation", IMAGENET_OFFLINE)
    views = HubViews(ds, simclr_transform(AugmentConfig.from_arm(cfg)))
    model = paper_model(cfg["loss"])
    tc = train_config(cfg, run.seed, run.epochs, run.progress)
    result = fit(
        model,
        LoaderBatches(views, tc.batch_size, cfg["workers"]),
        tc,
        run.run_dir,
        resume=run.resume,
        evaluate=paper_evaluator(cfg, ds, val),
        desc=run.arm,
    )
    final = result.evaluations[-1]
    metrics = {k: final[k] for k in ("linear_top1", "knn_top1")}
    return ArmResult(metrics, result.history, result.evaluations, result.wall_seconds)


# --- presets ---------------------------------------------------------------------------

SMOKE_ARM = dict(
    SHAPES_RGB,
    train_per_class=24,
    test_per_class=10,
    image_size=32,
    crop_scale=(0.3, 1.0),
    jitter_strength=0.5,
    backbone="convnet",
    widths=(16, 32, 64),
    head_hidden=64,
    head_out=32,
    temperature=0.1,
    epochs=2,
    batch_size=32,
    lr=0.3,
    optimizer="sgd",
    weight_decay=5e-4,
    knn_k=20,
    log_every=2,
)

CPU_ARM = dict(
    FASHION_MNIST_28,
    train_per_class=2000,
    bank_per_class=1000,
    crop_scale=(0.2, 1.0),
    jitter_strength=0.5,
    backbone="convnet",
    head_hidden=256,
    head_out=128,
    temperature=0.1,
    epochs=6,
    lr=0.3,
    optimizer="sgd",
    weight_decay=5e-4,
    warmup_epochs=1,
    bf16=True,
    channels_last=True,
    eval_every=2,
)

PAPER_ARM = dict(
    IMAGENET_224,
    crop_scale=(0.08, 1.0),
    jitter_strength=1.0,
    blur_p=0.5,
    backbone="imagenet_resnet50",
    head_hidden=2048,
    head_out=128,
    temperature=0.1,
    epochs=200,
    batch_size=256,
    lr=0.3,
    optimizer="lars",
    weight_decay=1e-6,
    warmup_epochs=10,
    bf16=True,
    workers=16,
    knn_bank_stride=10,
)

CLAIM = "DCL (no positive in the denominator) beats InfoNCE in kNN top-1 at a small batch (32)."


def _arms(base: dict, plan: dict[int, tuple[str, ...]]) -> dict[str, dict]:
    """``{batch: losses}`` → the floor arm ``untrained`` (the headline baseline, InfoNCE at the smallest
    batch, never trained), then arms named ``<loss>_b<batch>``."""
    arms = {f"{loss}_b{b}": {**base, "loss": loss, "batch_size": b} for b, losses in plan.items() for loss in losses}
    return {"untrained": untrained_arm(arms[f"infonce_b{min(plan)}"]), **arms}


def _comparisons(plan: dict[int, tuple[str, ...]]) -> list[Comparison]:
    """``<loss>`` vs InfoNCE at every batch; the claim (headline) is DCL vs InfoNCE at the smallest batch."""
    out = []
    for b, losses in plan.items():
        for loss in losses[1:]:
            headline = loss == "dcl" and b == min(plan)
            label = f"{loss.upper()} vs InfoNCE, batch {b}"
            out.append(Comparison(label, f"infonce_b{b}", f"{loss}_b{b}", "knn_top1", headline=headline))
    return out


# The claim is about the small batch: all three losses at 32; InfoNCE vs DCL at 256 as the
# contrast (DCLW at 256 is left out to keep the comparison within ~45 CPU minutes).
CPU_PLAN = {32: LOSSES, 256: ("infonce", "dcl")}


PRESETS = {
    "smoke": Experiment(
        preset="smoke",
        description="seconds: 2 epochs on 288 procedural shapes, ConvNet, batch 32, 1 seed",
        claim=CLAIM,
        arms=_arms(SMOKE_ARM, {32: LOSSES}),
        comparisons=_comparisons({32: LOSSES}),
        train_arm=train_small,
        setting={
            "summary": "procedural shapes 32 px (288 train / 120 test), ConvNet, 2 epochs, batch 32",
            "scale": "smoke",
        },
        default_seeds=1,
        eval_metric="knn_top1",
    ),
    "cpu": Experiment(
        preset="cpu",
        description="Fashion-MNIST 20k, ConvNet, 6 epochs, InfoNCE/DCL/DCLW at batch 32, InfoNCE/DCL at 256, 3 seeds",
        claim=CLAIM,
        arms=_arms(CPU_ARM, CPU_PLAN),
        comparisons=_comparisons(CPU_PLAN),
        train_arm=train_small,
        setting={
            "summary": "Fashion-MNIST 20k train (2000/class), kNN bank 10k, 10k test; 4-layer ConvNet 28 px; "
            "SimCLR augmentations; SGD lr 0.3·B/256, 1 warmup epoch, cosine, 6 epochs; τ=0.1; bf16 CPU",
            "scale": "small (CPU)",
            "metric": "weighted kNN top-1 (k=200, T=0.1) of the backbone features on the test split",
        },
        eval_metric="knn_top1",
    ),
    "paper": Experiment(
        preset="paper",
        description="ImageNet-1k (hub), ResNet-50, batch 256, 200 epochs, LARS, τ=0.1 (needs GPUs)",
        claim="SimCLR+DCL beats SimCLR at batch 256 on ImageNet-1k (paper: 68.2 vs 61.8 linear top-1).",
        arms={"infonce_b256": {**PAPER_ARM, "loss": "infonce"}, "dcl_b256": {**PAPER_ARM, "loss": "dcl"}},
        comparisons=[Comparison("DCL vs InfoNCE, batch 256", "infonce_b256", "dcl_b256", "linear_top1")],
        train_arm=train_paper,
        setting={
            "summary": "ImageNet-1k, ResNet-50, SimCLR recipe (LARS lr 0.3·B/256, wd 1e-6, 10 warmup "
            "epochs, cosine), batch 256, 200 epochs, τ=0.1; linear probe on the frozen backbone (every train "
            "image, centre crop; top-1 on val), kNN on a 1/10 train bank as an extra metric",
            "scale": "paper",
        },
        default_seeds=1,
        eval_metric="linear_top1",
    ),
}
