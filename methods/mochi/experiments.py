"""MoCHi's presets: ``smoke`` (seconds), ``cpu`` (the claim at small scale), ``paper`` (ImageNet-1k).

The claim (Sec. 5): MoCo v2 + hard negative mixing beats MoCo v2 at equal epochs (larger gains
for short schedules), and the learned embedding is more uniform (Wang & Isola). At small
scale we train MoCo v2 and MoCHi(N, s, s′) on Fashion-MNIST with the same budget, paired
seeds, and compare the kNN top-1 of the backbone on the test split and the uniformity of
the test embeddings (lower = more uniform).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from methods.mochi.model import MoCHi
from shared.arms import Evaluator, hub_knn_evaluation, preprocess_for, simclr_views, train_in_memory, train_on_hub
from shared.augment import AugmentConfig, BatchedSimCLRAugment
from shared.backbones import build_backbone
from shared.data.arrays import ImageArrays
from shared.data.hub import IMAGENET_1K, IMAGENET_224
from shared.data.splits import FASHION_MNIST_28, SHAPES_RGB
from shared.engine import TrainConfig
from shared.evaluation import extract_features, knn_evaluator
from shared.experiment import ArmResult, ArmRun, Comparison, Experiment, with_floor
from shared.heads import mlp_head
from shared.losses import uniformity
from shared.moco import MoCo, moco_v2_augment_config


def augment_config(cfg: dict[str, Any]) -> AugmentConfig:
    """MoCo v2's augmentations at the preset's image size (blur as the preset says)."""
    return moco_v2_augment_config(
        cfg["image_size"], tuple(cfg["mean"]), tuple(cfg["std"]), cfg.get("blur_p", 0.5), tuple(cfg["crop_scale"])
    )


def mixing_options(cfg: dict[str, Any], steps_per_epoch: int = 1) -> dict[str, Any] | None:
    """MoCHi(N, s, s′)'s keyword arguments from the arm's config, None for MoCo v2 (s = s′ = 0)."""
    s, s_prime = cfg.get("s", 0), cfg.get("s_prime", 0)
    if s + s_prime == 0:
        return None
    n_hard = cfg["n_hard"]
    if n_hard > cfg["queue_size"]:
        raise ValueError(f"n_hard (N={n_hard}) cannot exceed the queue size K={cfg['queue_size']}")
    warmup = round(cfg.get("mix_warmup_epochs", 0) * steps_per_epoch)
    return dict(n_hard=n_hard, s=s, s_prime=s_prime, beta_max=cfg.get("beta_max", 0.5), warmup_steps=warmup)


def build_model(cfg: dict[str, Any], steps_per_epoch: int = 1) -> MoCo:
    """MoCo v2 (backbone → 2-layer MLP head without BN → 128-d); :class:`MoCHi` when s + s′ > 0."""
    if "batch_size" in cfg and cfg["queue_size"] % cfg["batch_size"]:
        raise ValueError(f"queue_size {cfg['queue_size']} must be a multiple of batch_size {cfg['batch_size']}")
    backbone = build_backbone(cfg["backbone"], cfg["channels"], cfg.get("widths"))
    head = mlp_head(backbone.out_dim, backbone.out_dim, cfg["head_out"], num_layers=2, batch_norm=False)
    augment = BatchedSimCLRAugment(augment_config(cfg)) if cfg.get("batched_augment", True) else None
    moco = dict(
        temperature=cfg["temperature"],
        queue_size=cfg["queue_size"],
        momentum=cfg["momentum"],
        augment=augment,
        channels_last=cfg.get("channels_last", False),
        bn_splits=cfg.get("bn_splits", 1),
    )
    mixing = mixing_options(cfg, steps_per_epoch)
    return MoCo(backbone, head, **moco) if mixing is None else MoCHi(backbone, head, **mixing, **moco)


def train_config(cfg: dict[str, Any], seed: int, epochs: int | None, progress: bool) -> TrainConfig:
    """The arm's run config: MoCo v2's SGD (momentum 0.9), lr 0.03 · B / 256."""
    return TrainConfig.from_arm(
        cfg, seed, epochs, progress, lr=cfg["lr"] * cfg["batch_size"] / 256, optimizer="sgd", momentum=0.9
    )


def small_evaluator(cfg: dict[str, Any], bank: ImageArrays, test: ImageArrays) -> Evaluator:
    """kNN top-1 of the backbone, and uniformity of the normalised 128-d test embeddings."""
    preprocess = preprocess_for(cfg)
    knn = knn_evaluator(bank, test, preprocess, k=cfg.get("knn_k", 200), temperature=0.1)
    n_uniform = min(len(test), cfg.get("uniformity_samples", 5000))

    def evaluate(model: nn.Module) -> dict[str, float]:
        out = knn(model)
        embed = nn.Sequential(model.backbone, model.projector)
        device = next(model.parameters()).device
        z = extract_features(embed, test.images[:n_uniform], preprocess, device=device)
        out["uniformity"] = uniformity(z).item()
        return out

    return evaluate


def train_small(run: ArmRun) -> ArmResult:
    """Train one (arm, seed) on in-memory data (paired seeds: same initialisation and first queue for every
    arm of a seed); kNN top-1 and uniformity on the test split."""
    return train_in_memory(
        run,
        lambda arm: build_model(arm.config, arm.steps_per_epoch),
        train_config,
        lambda arm: small_evaluator(arm.config, arm.bank, arm.test),
    )


def paper_model(arm: dict[str, Any], steps_per_epoch: int = 5004) -> MoCo:
    """ResNet-50 + 2048→2048→128 head, K = 65536; views made by DataLoader workers."""
    return build_model({**arm, "batched_augment": False}, steps_per_epoch)


def train_paper(run: ArmRun) -> ArmResult:
    """MoCo v2 recipe on ImageNet-1k from the hub (needs GPUs; run under ``accelerate launch``); kNN top-1 on the
    validation split with every ``knn_bank_stride``-th train image as the bank."""
    return train_on_hub(
        run,
        IMAGENET_1K,
        lambda arm: paper_model(arm.config, arm.steps_per_epoch),
        train_config,
        hub_knn_evaluation,
        views=simclr_views(augment_config),
        metrics=("knn_top1",),
    )


# --- presets ---------------------------------------------------------------------------

MOCO_V2 = dict(temperature=0.2, lr=0.03, weight_decay=1e-4, head_out=128)

SMOKE_ARM = dict(
    MOCO_V2,
    **SHAPES_RGB,
    train_per_class=24,
    test_per_class=10,
    image_size=32,
    crop_scale=(0.2, 1.0),
    blur_p=0.0,
    backbone="convnet",
    widths=(16, 32, 64),
    head_out=32,
    queue_size=128,
    momentum=0.99,
    bn_splits=2,
    n_hard=64,
    epochs=2,
    batch_size=32,
    lr=0.24,  # 0.03·32/256 would barely move in 18 steps; a smoke run only has to learn something
    knn_k=20,
    log_every=2,
    uniformity_samples=120,
)

CPU_ARM = dict(
    MOCO_V2,
    **FASHION_MNIST_28,
    train_per_class=2000,
    bank_per_class=1000,
    crop_scale=(0.2, 1.0),
    blur_p=0.0,
    backbone="convnet",
    queue_size=4096,
    momentum=0.99,
    bn_splits=4,
    n_hard=256,
    mix_warmup_epochs=1,
    epochs=10,
    batch_size=128,
    warmup_epochs=0,
    bf16=True,
    channels_last=True,
    eval_every=5,
)

PAPER_ARM = dict(
    MOCO_V2,
    **IMAGENET_224,
    crop_scale=(0.2, 1.0),
    blur_p=0.5,
    backbone="imagenet_resnet50",
    queue_size=65536,
    momentum=0.999,
    bn_splits=1,  # shuffled BN across the GPUs of the run
    n_hard=1024,
    mix_warmup_epochs=1,  # ≈ 5000 steps at batch 256, the unofficial re-implementation's default
    epochs=200,
    batch_size=256,
    bf16=True,
    workers=16,
    knn_bank_stride=10,
)

CLAIM = (
    "MoCHi (MoCo v2 + synthetic hard negatives) beats MoCo v2 at equal epochs in kNN top-1, "
    "and its test embeddings are more uniform."
)


def _arms(base: dict, mochi: tuple[int, int], floor: bool = True) -> dict[str, dict]:
    """MoCo v2 and MoCHi(N, s, s′); with ``floor``, first the floor arm ``untrained`` (MoCo v2 never trained)."""
    s, s_prime = mochi
    arms = {"moco_v2": {**base, "s": 0, "s_prime": 0}, "mochi": {**base, "s": s, "s_prime": s_prime}}
    return with_floor(arms, "moco_v2") if floor else arms


def _comparisons() -> list[Comparison]:
    """Both are the claim (headline): MoCHi is ahead in kNN top-1 *and* more uniform."""
    return [
        Comparison("MoCHi vs MoCo v2, kNN top-1", "moco_v2", "mochi", "knn_top1", headline=True),
        Comparison(
            "MoCHi vs MoCo v2, uniformity (lower = more uniform)",
            "moco_v2",
            "mochi",
            "uniformity",
            "less",
            headline=True,
        ),
    ]


PRESETS = {
    "smoke": Experiment(
        preset="smoke",
        description="seconds: 2 epochs on 288 procedural shapes, ConvNet, batch 32, K=128, MoCHi(64, 16, 8), 1 seed",
        claim=CLAIM,
        arms=_arms(SMOKE_ARM, (16, 8)),
        comparisons=_comparisons(),
        train_arm=train_small,
        setting={
            "summary": "procedural shapes 32 px (288 train / 120 test), ConvNet, 2 epochs, batch 32, K=128",
            "scale": "smoke",
        },
        default_seeds=1,
        eval_metric="knn_top1",
    ),
    "cpu": Experiment(
        preset="cpu",
        description="Fashion-MNIST 20k, ConvNet, 10 epochs, batch 128, K=4096, MoCo v2 vs MoCHi(256, 64, 64), 3 seeds",
        claim=CLAIM,
        arms=_arms(CPU_ARM, (64, 64)),
        comparisons=_comparisons(),
        train_arm=train_small,
        setting={
            "summary": "Fashion-MNIST 20k train (2000/class), kNN bank 10k, 10k test; 4-layer ConvNet 28 px; "
            "MoCo v2 augmentations without blur; SGD lr 0.03·B/256, wd 1e-4, cosine, 10 epochs, batch 128; "
            "τ=0.2, K=4096, m=0.99, shuffled BN over 4 simulated devices; MoCHi(256, 64, 64) after 1 epoch; bf16 CPU",
            "scale": "small (CPU)",
            "metric": "weighted kNN top-1 (k=200, T=0.1) of the backbone on the test split; uniformity "
            "(Wang & Isola, t=2) of the normalised 128-d embeddings of 5000 test images",
        },
        eval_metric="knn_top1",
    ),
    "paper": Experiment(
        preset="paper",
        description="ImageNet-1k (hub), ResNet-50, batch 256, 200 epochs, MoCo v2 vs MoCHi(1024, 512, 256), needs GPUs",
        claim="MoCHi(1024, 512, 256) beats MoCo v2 on ImageNet-1k at 200 epochs (paper: linear top-1, verify).",
        arms=_arms(PAPER_ARM, (512, 256), floor=False),
        comparisons=_comparisons()[:1],
        train_arm=train_paper,
        setting={
            "summary": "ImageNet-1k, ResNet-50, MoCo v2 recipe (SGD lr 0.03·B/256, wd 1e-4, cosine), batch 256, "
            "200 epochs, τ=0.2, K=65536, m=0.999; MoCHi(1024, 512, 256) (verify) after 1 epoch; kNN on a 1/10 bank",
            "scale": "paper",
        },
        default_seeds=1,
        eval_metric="knn_top1",
    ),
}
