"""CL-Behaviour's presets: ``smoke`` (seconds), ``cpu`` (the τ sweep at small scale), ``paper`` (CIFAR-100).

The claim: a smaller τ makes the embedding more uniform but less tolerant to semantically similar
samples, so downstream accuracy peaks at a moderate τ (the uniformity–tolerance dilemma); the hard
contrastive loss at a large τ regains uniformity. Every arm is SimCLR
(:class:`shared.ssl.TwoViewContrastive`) with the paper's loss at one τ, plain or with explicit
hard negatives; seed s of every arm shares initialisation and data order (paired seeds). After
training, the test split's normalised 128-d embeddings give L_uniformity and tolerance, and the
backbone gives weighted-kNN top-1.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from methods.clbehaviour.analysis import analyse_sweep
from methods.clbehaviour.loss import ContrastiveLoss
from methods.clbehaviour.metrics import similarity_histograms, tolerance, uniformity_loss
from shared.arms import (
    Evaluator,
    HubArm,
    InMemoryArm,
    Splits,
    preprocess_for,
    small_splits,
    train_in_memory,
    train_on_hub,
)
from shared.augment import AugmentConfig, BatchedSimCLRAugment
from shared.backbones import build_backbone
from shared.data.arrays import ImageArrays, subset_per_class
from shared.data.hub import CIFAR100
from shared.data.splits import FASHION_MNIST_28, SHAPES_RGB
from shared.engine import TrainConfig
from shared.evaluation import extract_features, knn_accuracy, loader_features
from shared.experiment import ArmResult, ArmRun, Comparison, Experiment, with_floor
from shared.heads import mlp_head
from shared.ssl import TwoViewContrastive


def make_loss(cfg: dict[str, Any]) -> ContrastiveLoss:
    """The arm's loss: ``loss="plain"`` (all negatives) or ``"hard"`` (the ``hard_k`` most similar)."""
    if cfg["loss"] == "plain":
        return ContrastiveLoss(cfg["temperature"])
    if cfg["loss"] == "hard":
        return ContrastiveLoss(cfg["temperature"], hard_negatives=cfg["hard_k"])
    raise ValueError(f"unknown loss {cfg['loss']!r}; choose 'plain' or 'hard'")


def build_model(cfg: dict[str, Any]) -> TwoViewContrastive:
    """SimCLR: backbone → 2-layer MLP head (hidden, out) → the arm's contrastive loss."""
    backbone = build_backbone(cfg["backbone"], cfg["channels"], cfg.get("widths"))
    head = mlp_head(backbone.out_dim, cfg["head_hidden"], cfg["head_out"], num_layers=2)
    augment = BatchedSimCLRAugment(AugmentConfig.from_arm(cfg)) if cfg.get("batched_augment", True) else None
    return TwoViewContrastive(backbone, head, make_loss(cfg), augment, channels_last=cfg.get("channels_last", False))


def train_config(cfg: dict[str, Any], seed: int, epochs: int | None, progress: bool) -> TrainConfig:
    """The arm's run config; lr follows SimCLR's linear scaling rule, lr · B / 256."""
    return TrainConfig.from_arm(cfg, seed, epochs, progress, lr=cfg["lr"] * cfg["batch_size"] / 256)


def embedding_metrics(h: torch.Tensor, z: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """L_uniformity (t = 2) and tolerance of the projection z (what the loss shapes) and of the backbone h."""
    return {
        "l_unif": uniformity_loss(z, t=2.0),
        "tolerance": tolerance(z, labels),
        "l_unif_backbone": uniformity_loss(h, t=2.0),
        "tolerance_backbone": tolerance(h, labels),
    }


class SmallEvaluator:
    """``evaluate(model)`` → kNN top-1 of the backbone + the embedding metrics on the test split.

    Keeps the last test embeddings (``self.last``) for the similarity histograms.
    """

    def __init__(self, cfg: dict[str, Any], bank: ImageArrays, test: ImageArrays) -> None:
        self.cfg, self.bank, self.test = cfg, bank, test
        self.last: tuple[torch.Tensor, torch.Tensor] | None = None
        self.preprocess = preprocess_for(cfg)

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> dict[str, float]:
        device = next(model.parameters()).device
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.cfg.get("bf16", False)):
            ftr = extract_features(model.backbone, self.bank.images, self.preprocess, device=device)
            fte = extract_features(model.backbone, self.test.images, self.preprocess, device=device)
            was_training = model.projector.training
            model.projector.eval()
            z = torch.cat([model.projector(chunk.to(device)).float().cpu() for chunk in fte.split(2048)])
            model.projector.train(was_training)
        self.last = (z, self.test.labels)
        knn = knn_accuracy(ftr, self.bank.labels, fte, self.test.labels, self.bank.num_classes, self.cfg["knn_k"], 0.1)
        return {"knn_top1": knn, **embedding_metrics(fte, z, self.test.labels)}


def subset_test_splits(run: ArmRun) -> Splits:
    """The small splits; on Fashion-MNIST the test split is cut to ``test_per_class`` images per class."""
    splits, cfg = small_splits(run), run.config
    if cfg.get("test_per_class") and cfg["data"] == "fashion_mnist":
        return replace(splits, test=subset_per_class(splits.test, cfg["test_per_class"]))
    return splits


def histogram_extras(arm: InMemoryArm, model: nn.Module, evaluate: SmallEvaluator) -> dict[str, Any]:
    """The similarity histograms of the last test embeddings (none when a resumed run had nothing left to
    evaluate)."""
    return {} if evaluate.last is None else {"similarity_histograms": similarity_histograms(*evaluate.last)}


def train_small(run: ArmRun) -> ArmResult:
    """Train one (arm, seed) on in-memory data, paired seeds; kNN top-1, L_uniformity and tolerance on the test
    split, similarity histograms as extras."""
    return train_in_memory(
        run,
        lambda arm: build_model(arm.config),
        train_config,
        lambda arm: SmallEvaluator(arm.config, arm.bank, arm.test),
        splits=subset_test_splits,
        extras=histogram_extras,
    )


# --- paper scale ---------------------------------------------------------------------------


def paper_model(loss: str = "plain", temperature: float = 0.2) -> TwoViewContrastive:
    """CIFAR ResNet-18 + 2-layer 512→512→128 head; views made by DataLoader workers."""
    return build_model({**PAPER_ARM, "loss": loss, "temperature": temperature, "batched_augment": False})


def paper_evaluator(arm: HubArm) -> Evaluator:
    """kNN top-1 of the backbone (the train split as bank) + the embedding metrics on the test split."""
    bank, test = arm.images(arm.train), arm.images(arm.test)

    def evaluate(m: nn.Module) -> dict[str, float]:
        device = next(m.parameters()).device
        ftr, ytr = loader_features(m.backbone, bank, device=device)
        fte, yte = loader_features(m.backbone, test, device=device)
        z, _ = loader_features(nn.Sequential(m.backbone, m.projector), test, device=device)
        knn = knn_accuracy(ftr, ytr, fte, yte, arm.data.num_classes, k=200, temperature=0.1)
        return {"knn_top1": knn, **embedding_metrics(fte, z, yte)}

    return evaluate


def train_paper(run: ArmRun) -> ArmResult:
    """SimCLR with the arm's loss on CIFAR-100 from the hub (needs GPUs; run under ``accelerate launch``)."""
    return train_on_hub(
        run, CIFAR100, lambda arm: build_model({**arm.config, "batched_augment": False}), train_config, paper_evaluator
    )


# --- presets ---------------------------------------------------------------------------

SMOKE_ARM = dict(
    SHAPES_RGB,
    train_per_class=24,
    test_per_class=10,
    image_size=16,
    crop_scale=(0.3, 1.0),
    jitter_strength=0.5,
    backbone="convnet",
    widths=(8, 16, 32),
    head_hidden=64,
    head_out=32,
    hard_k=8,
    epochs=1,
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
    bank_per_class=500,
    test_per_class=500,
    crop_scale=(0.2, 1.0),
    jitter_strength=0.5,
    backbone="convnet",
    widths=(16, 32, 64, 128),
    head_hidden=256,
    head_out=128,
    hard_k=32,
    epochs=3,
    batch_size=128,
    lr=0.3,
    optimizer="sgd",
    weight_decay=5e-4,
    warmup_epochs=0.5,
    bf16=True,
    channels_last=True,
    knn_k=200,
)

PAPER_ARM = dict(
    data="cifar100",
    image_size=32,
    channels=3,
    mean=(0.5071, 0.4865, 0.4409),
    std=(0.2673, 0.2564, 0.2762),
    crop_scale=(0.08, 1.0),
    jitter_strength=0.5,
    backbone="resnet18",
    head_hidden=512,
    head_out=128,
    hard_k=128,  # a quarter of the 510 in-batch negatives, the paper's 4095 of 16,384
    epochs=200,
    batch_size=256,
    lr=0.3,
    optimizer="sgd",
    weight_decay=5e-4,
    warmup_epochs=10,
    bf16=True,
    workers=8,
)

CLAIM = (
    "Uniformity–tolerance dilemma: a moderate τ (0.2) beats a very small τ (0.05) in kNN top-1 "
    "(and a large τ, 1.0); smaller τ gives more uniform but less tolerant embeddings; "
    "the hard contrastive loss at a large τ regains uniformity."
)


def arm_name(loss: str, tau: float) -> str:
    return f"{loss}_tau{tau:g}"


def sweep_arms(base: dict, plain: tuple[float, ...], hard: tuple[float, ...]) -> dict[str, dict]:
    """One arm per (loss, τ): ``plain_tau0.2``, ``hard_tau1``, ..."""
    arms = {arm_name("plain", t): {**base, "loss": "plain", "temperature": t} for t in plain}
    arms.update({arm_name("hard", t): {**base, "loss": "hard", "temperature": t} for t in hard})
    return arms


def sweep_comparisons(plain: tuple[float, ...], hard: tuple[float, ...], moderate: float) -> list[Comparison]:
    """The claim as paired comparisons, its parts marked ``headline`` (the first is moderate vs smallest τ, kNN).

    Monotone trends are tested step by step: each adjacent pair of the τ grid is its own paired
    comparison (a monotone trend needs every step reproduced, not only the end points). The headline
    is the CLAIM sentence: the moderate τ beats the smallest and the largest in kNN; every step of the
    two trends (smaller τ: more uniform, less tolerant); the hard loss at the largest τ lowers L_unif.
    The end points and the hard loss's kNN (and its other τ) are secondary.
    """
    p = {t: arm_name("plain", t) for t in plain}
    lo, hi = min(plain), max(plain)
    out = [
        Comparison(
            f"kNN: τ={moderate:g} beats τ={lo:g} (too little tolerance)", p[lo], p[moderate], "knn_top1", headline=True
        ),
        Comparison(
            f"kNN: τ={moderate:g} beats τ={hi:g} (too little uniformity)", p[hi], p[moderate], "knn_top1", headline=True
        ),
        Comparison(f"L_unif rises from τ={lo:g} to τ={hi:g} (less uniform)", p[lo], p[hi], "l_unif"),
        Comparison(f"tolerance rises from τ={lo:g} to τ={hi:g}", p[lo], p[hi], "tolerance"),
    ]
    grid = sorted(plain)
    for a, b in itertools.pairwise(grid):
        out.append(Comparison(f"step: L_unif rises from τ={a:g} to τ={b:g}", p[a], p[b], "l_unif", headline=True))
    for a, b in itertools.pairwise(grid):
        out.append(Comparison(f"step: tolerance rises from τ={a:g} to τ={b:g}", p[a], p[b], "tolerance", headline=True))
    largest = max((t for t in hard if t in p), default=None)
    for t in sorted(hard, reverse=True):
        if t in p:
            h = arm_name("hard", t)
            label = f"hard vs plain at τ={t:g}: lower L_unif (regains uniformity)"
            out.append(Comparison(label, p[t], h, "l_unif", "less", headline=t == largest))
            out.append(Comparison(f"hard vs plain at τ={t:g}: kNN", p[t], h, "knn_top1"))
    return out


CPU_PLAIN = (0.05, 0.1, 0.2, 0.5, 1.0)
CPU_HARD = (0.5, 1.0)
PAPER_GRID = (0.07, 0.2, 0.3, 0.7, 1.0)


PRESETS = {
    "smoke": Experiment(
        preset="smoke",
        description="seconds: 1 epoch on 288 procedural shapes (16 px), batch 32, plain τ ∈ {0.1, 1}, hard τ=1 (K=8)",
        claim=CLAIM,
        arms=with_floor(sweep_arms(SMOKE_ARM, (0.1, 1.0), (1.0,)), "plain_tau0.1"),
        comparisons=sweep_comparisons((0.1, 1.0), (1.0,), 0.1)[2:],
        train_arm=train_small,
        setting={
            "summary": "procedural shapes 16 px (288 train / 120 test), ConvNet 8-16-32, 1 epoch, batch 32",
            "scale": "smoke",
        },
        default_seeds=1,
        eval_metric="knn_top1",
        analysis=analyse_sweep,
        floor_metric="knn_top1",  # the smoke headline is on L_unif/tolerance; the floor is still kNN
    ),
    "cpu": Experiment(
        preset="cpu",
        description="Fashion-MNIST 20k, ConvNet 16-32-64-128, 3 epochs, batch 128; plain τ ∈ {0.05, 0.1, 0.2, 0.5, 1}, "
        "hard (K=32) τ ∈ {0.5, 1}; 3 seeds",
        claim=CLAIM,
        arms=with_floor(sweep_arms(CPU_ARM, CPU_PLAIN, CPU_HARD), "plain_tau0.05"),
        comparisons=sweep_comparisons(CPU_PLAIN, CPU_HARD, 0.2),
        train_arm=train_small,
        setting={
            "summary": "Fashion-MNIST 20k train (2000/class), kNN bank 5k, 5k test (500/class each); 4-layer "
            "ConvNet (16-32-64-128) 28 px; SimCLR augmentations; batch 128 (254 in-batch negatives per anchor); "
            "SGD lr 0.3·B/256, 0.5 warmup epoch, cosine, 3 epochs; "
            "hard contrastive loss keeps the K=32 most similar negatives; bf16 CPU",
            "scale": "small (CPU)",
            "metric": "weighted kNN top-1 (k=200, T=0.1) of the backbone on the test subset; L_uniformity (t=2, "
            "lower = more uniform) and tolerance (mean cosine similarity of same-class pairs) of the normalised "
            "128-d projections of the test subset",
        },
        eval_metric="knn_top1",
        analysis=analyse_sweep,
        floor_metric="knn_top1",
    ),
    "paper": Experiment(
        preset="paper",
        description="CIFAR-100 (hub), ResNet-18, batch 256, 200 epochs, plain and hard (K=128) τ ∈ "
        "{0.07, 0.2, 0.3, 0.7, 1} (needs GPUs)",
        claim=CLAIM.replace("0.05", "0.07"),
        arms=sweep_arms(PAPER_ARM, PAPER_GRID, PAPER_GRID),
        comparisons=sweep_comparisons(PAPER_GRID, PAPER_GRID, 0.2),
        train_arm=train_paper,
        setting={
            "summary": "CIFAR-100, CIFAR ResNet-18, SimCLR (SGD lr 0.3·B/256, wd 5e-4, 10 warmup epochs, cosine), "
            "batch 256 in-batch negatives instead of the paper's 16,384-entry memory bank, 200 epochs; "
            "hard loss K=128 (a quarter of the negatives, as the paper's 4095/16,384); kNN on the train split",
            "scale": "paper",
        },
        default_seeds=1,
        eval_metric="knn_top1",
        analysis=analyse_sweep,
    ),
}
