"""DCL's presets: ``smoke`` (seconds), ``cpu`` (the claim at small scale), ``paper`` (ImageNet).

The claim (abstract): removing the positive from InfoNCE's denominator helps most when
the batch is small; SimCLR + DCL reaches 68.2% ImageNet linear top-1 at batch 256 and
200 epochs, +6.4 over SimCLR. At small scale we train SimCLR with InfoNCE, DCL and DCLW
at batch 32 and at batch 256 (the contrast) and compare kNN top-1 of the backbone.
"""

from __future__ import annotations

import json
from typing import Any

import torch

from methods.dcl.loss import DCLLoss, DCLWLoss
from shared.arms import Evaluator, hub_linear_evaluator, knn_evaluation, train_in_memory, train_on_hub
from shared.augment import AugmentConfig, BatchedSimCLRAugment
from shared.backbones import build_backbone
from shared.data.hub import IMAGENET_1K, IMAGENET_224
from shared.data.splits import FASHION_MNIST_28, SHAPES_RGB
from shared.engine import TrainConfig
from shared.experiment import ArmResult, ArmRun, Comparison, Experiment, run_key, with_floor
from shared.heads import mlp_head
from shared.losses import InfoNCELoss
from shared.results import RecordError
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
    """Train one (arm, seed) on in-memory data (paired seeds) and evaluate kNN top-1 on the test split."""
    return train_in_memory(run, lambda arm: build_model(arm.config), train_config, knn_evaluation(linear=False))


DERIVED = ("dcl_gain", "tau_range")


def derive(run: ArmRun) -> ArmResult:
    """A derived arm of the sweep: per seed, a number computed from other arms' finished runs of the same
    seed (no training). ``dcl_gain``: kNN top-1 of DCL minus InfoNCE (sources: the InfoNCE arm, then the
    DCL arm); ``tau_range``: max − min kNN top-1 over the sources (one loss at several τ). ``knn_top1`` is
    the sources' mean, which the floor judges (the derived number means something only if they trained).

    Each source's ``final.json`` must have been made with the source config the derived arm names, the
    same seed and ``--epochs`` (its run key), so a stale or foreign run is never read.
    """
    cfg = run.config
    overrides = {k: v for k, v in cfg.items() if k not in ("derived", "sources")}  # e.g. --precision, on every arm
    values = []
    for name, source in cfg["sources"].items():
        final = run.run_dir.parent.parent / name / f"seed{run.seed}" / "final.json"
        if not final.exists():
            raise RecordError(f"derived arm {run.arm!r} needs arm {name!r} of seed {run.seed}: run it first ({final})")
        saved = json.loads(final.read_text())
        if saved.get("run_key") != run_key({**source, **overrides}, run.seed, run.epochs):
            raise RecordError(f"{final} was made with other settings than arm {name!r} of this preset: rerun it")
        values.append(saved["metrics"]["knn_top1"])
    if cfg["derived"] == "dcl_gain":
        number = values[1] - values[0]
    elif cfg["derived"] == "tau_range":
        number = max(values) - min(values)
    else:
        raise ValueError(f"unknown derived metric {cfg['derived']!r}; choose from {DERIVED}")
    return ArmResult({"knn_top1": sum(values) / len(values), cfg["derived"]: number})


def train_sweep(run: ArmRun) -> ArmResult:
    return derive(run) if "derived" in run.config else train_small(run)


def paper_model(loss: str) -> TwoViewContrastive:
    """ResNet-50 + 2-layer 2048→2048→128 head, views made by DataLoader workers."""
    return build_model({**PAPER_ARM, "loss": loss, "batched_augment": False})


def paper_evaluator(cfg: dict[str, Any], train_ds, val_ds) -> Evaluator:
    """The paper's linear evaluation: frozen backbone, a linear classifier on every ImageNet train image
    (centre crops), top-1 on the validation split; kNN top-1 (1/``knn_bank_stride`` bank) as an extra metric."""
    return hub_linear_evaluator(cfg, IMAGENET_1K, train_ds, val_ds)


def train_paper(run: ArmRun) -> ArmResult:
    """SimCLR recipe on ImageNet-1k from the hub (needs GPUs; run under ``accelerate launch``)."""
    return train_on_hub(
        run,
        IMAGENET_1K,
        lambda arm: paper_model(arm.config["loss"]),
        train_config,
        lambda arm: paper_evaluator(arm.config, arm.train, arm.test),
        metrics=("linear_top1", "knn_top1"),
    )


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
    return with_floor(arms, f"infonce_b{min(plan)}")


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


# The spec's sweep, within 45 CPU minutes (see README "Batch and τ sweep"): the cpu arm on half the images
# (1000/class, same 6-epoch schedule) and one kNN evaluation at the end; InfoNCE vs DCL at batch 16/32/64/256
# (τ 0.1) and at τ 0.2/0.5 (batch 32), then derived arms for the two trend claims.
SWEEP_ARM = {**CPU_ARM, "train_per_class": 1000, "eval_every": 0}
SWEEP_BATCHES = (16, 32, 64, 256)
SWEEP_TAUS = {"t02": 0.2, "t05": 0.5}
SWEEP_TAU_BATCH = 32


def sweep_arms(base: dict) -> dict[str, dict]:
    trained = {f"{loss}_b{b}": {**base, "loss": loss, "batch_size": b} for b in SWEEP_BATCHES for loss in LOSSES[:2]}
    for tag, tau in SWEEP_TAUS.items():
        for loss in LOSSES[:2]:
            trained[f"{loss}_b{SWEEP_TAU_BATCH}_{tag}"] = {
                **base,
                "loss": loss,
                "batch_size": SWEEP_TAU_BATCH,
                "temperature": tau,
            }
    small, large = min(SWEEP_BATCHES), max(SWEEP_BATCHES)

    def derived(kind: str, sources: list[str]) -> dict:
        return {"derived": kind, "sources": {a: trained[a] for a in sources}}

    def tau_arms(loss: str) -> list[str]:
        return [f"{loss}_b{SWEEP_TAU_BATCH}"] + [f"{loss}_b{SWEEP_TAU_BATCH}_{t}" for t in SWEEP_TAUS]

    return {
        **with_floor(trained, f"infonce_b{small}"),
        f"gain_b{small}": derived("dcl_gain", [f"infonce_b{small}", f"dcl_b{small}"]),
        f"gain_b{large}": derived("dcl_gain", [f"infonce_b{large}", f"dcl_b{large}"]),
        "tau_infonce": derived("tau_range", tau_arms("infonce")),
        "tau_dcl": derived("tau_range", tau_arms("dcl")),
    }


def sweep_comparisons() -> list[Comparison]:
    small, large = min(SWEEP_BATCHES), max(SWEEP_BATCHES)
    out = [
        Comparison(f"DCL vs InfoNCE, batch {small}", f"infonce_b{small}", f"dcl_b{small}", "knn_top1", headline=True),
        Comparison(
            f"DCL's gain over InfoNCE larger at batch {small} than at {large}",
            f"gain_b{large}",
            f"gain_b{small}",
            "dcl_gain",
            headline=True,
        ),
        Comparison(
            f"DCL less sensitive to τ than InfoNCE (kNN range over τ 0.1/0.2/0.5, batch {SWEEP_TAU_BATCH})",
            "tau_infonce",
            "tau_dcl",
            "tau_range",
            direction="less",
            headline=True,
        ),
    ]
    out += [
        Comparison(f"DCL vs InfoNCE, batch {b}", f"infonce_b{b}", f"dcl_b{b}", "knn_top1") for b in SWEEP_BATCHES[1:]
    ]
    for tag, tau in SWEEP_TAUS.items():
        b = SWEEP_TAU_BATCH
        out.append(
            Comparison(f"DCL vs InfoNCE, τ {tau}, batch {b}", f"infonce_b{b}_{tag}", f"dcl_b{b}_{tag}", "knn_top1")
        )
    return out


SWEEP_CLAIM = (
    "DCL beats InfoNCE at a small batch, its gain is largest at the smallest batch, and it is less sensitive to τ."
)

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
    "cpu-sweep": Experiment(
        preset="cpu-sweep",
        description="the spec's sweep: Fashion-MNIST 10k, ConvNet, 6 epochs, InfoNCE/DCL at batch 16/32/64/256 "
        "(τ 0.1) and at τ 0.2/0.5 (batch 32), 3 seeds (≈ 35 min on 2 cores)",
        claim=SWEEP_CLAIM,
        arms=sweep_arms(SWEEP_ARM),
        comparisons=sweep_comparisons(),
        train_arm=train_sweep,
        setting={
            "summary": "Fashion-MNIST 10k train (1000/class), kNN bank 10k, 10k test; 4-layer ConvNet 28 px; SimCLR "
            "augmentations; SGD lr 0.3·B/256, 1 warmup epoch, cosine, 6 epochs; InfoNCE vs DCL at batch 16, 32, "
            "64, 256 (τ=0.1) and at τ=0.2, 0.5 (batch 32); bf16 CPU; kNN once at the end",
            "scale": "small (CPU)",
            "metric": "weighted kNN top-1 (k=200, T=0.1) of the backbone on the test split; derived per seed: "
            "dcl_gain = DCL − InfoNCE at one batch, tau_range = max − min over τ of one loss",
        },
        eval_metric="knn_top1",
    ),
}
