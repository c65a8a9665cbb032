"""AdaInf's presets: ``smoke`` (seconds), ``cpu`` (the claim at small scale), ``paper`` (CIFAR-10).

The claim (ICLR 2024, Table/README): inflating the training set with generated images does not
always help contrastive learning — vanilla inflation (N = 1, |G| = 20·|R|) with the default strong
augmentation can hurt — while AdaInf (real data re-weighted N = 10 : 1 and weaker augmentation)
helps: SimCLR on CIFAR-10, 91.56 (none) / 91.38 (vanilla) / 93.42 (AdaInf) linear top-1.

At small scale: SimCLR (InfoNCE, τ = 0.2) with a ConvNet on 2,000 real Fashion-MNIST images and
40,000 images of a PCA + Gaussian-mixture generator fitted on them (the same 20 : 1 ratio as
CIFAR-10's 50k vs 1M), the grid {no inflation, vanilla N = 1, AdaInf N = 10} × {strong, weak}
augmentation, every arm the same number of steps, linear-probe and kNN top-1 on the test split.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from methods.adainf.augment import STRENGTHS, strength
from methods.adainf.generator import GeneratorConfig, check_generated_npz, generated_set, load_generated_npz
from methods.adainf.inflation import InflatedBatches, InflatedData
from shared.arms import Evaluator, InMemoryArm, Splits, preprocess_for, train_in_memory
from shared.augment import BatchedSimCLRAugment
from shared.backbones import build_backbone
from shared.data.arrays import ImageArrays
from shared.data.hub import CIFAR10
from shared.data.splits import small_image_splits
from shared.engine import TrainConfig
from shared.evaluation import extract_features, knn_accuracy, linear_probe
from shared.experiment import ArmResult, ArmRun, Comparison, Experiment, is_untrained, with_floor
from shared.heads import mlp_head
from shared.losses import InfoNCELoss
from shared.ssl import TwoViewContrastive

INFLATIONS = {"none": 0, "vanilla": 1, "adainf": 10}
"""Inflation name → copies N of the real set (0: no generated data, D = R)."""


def inflation_copies(name: str) -> int:
    if name not in INFLATIONS:
        raise ValueError(f"unknown inflation {name!r}; choose from {tuple(INFLATIONS)}")
    return INFLATIONS[name]


def build_model(cfg: dict[str, Any]) -> TwoViewContrastive:
    """SimCLR: backbone → 2-layer MLP projector → InfoNCE(τ); views by the arm's augmentation strength."""
    backbone = build_backbone(cfg["backbone"], cfg["channels"], cfg.get("widths"))
    head = mlp_head(backbone.out_dim, cfg["head_hidden"], cfg["head_out"], num_layers=2)
    augment = None
    if cfg.get("batched_augment", True):
        aug = strength(cfg["augmentation"]).to_config(cfg["image_size"], tuple(cfg["mean"]), tuple(cfg["std"]))
        augment = BatchedSimCLRAugment(aug)
    loss = InfoNCELoss(cfg["temperature"])
    return TwoViewContrastive(backbone, head, loss, augment, channels_last=cfg.get("channels_last", False))


def inflated_data(cfg: dict[str, Any], real: ImageArrays) -> tuple[InflatedData, dict[str, Any]]:
    """D for the arm's inflation, with the generator fitted on ``real`` (or loaded from its cache)."""
    copies = inflation_copies(cfg["inflation"])
    if copies == 0:
        return InflatedData(real), {"generator": None}
    gen = generated_set(
        real,
        GeneratorConfig.from_arm(cfg),
        cfg["n_generated"],
        cfg.get("generator_sample_seed", 0),
        cfg.get("generator_cache"),
    )
    info = {
        "generator": {
            "path": str(gen.path),
            "from_cache": gen.from_cache,
            "seconds": round(gen.fit_seconds, 2),
        }
    }
    return InflatedData(real, gen.data, copies), info


def real_only_evaluator(bank: ImageArrays, test: ImageArrays, cfg: dict[str, Any]) -> Evaluator:
    """kNN top-1 (k = 200, T = 0.1) and a linear probe on frozen backbone features, on real labelled
    images only: generated images (label −1) never enter the evaluation."""
    for split in (bank, test):
        if bool((split.labels < 0).any()):
            raise ValueError(f"{split.name} holds generated images (label -1); evaluation uses real data only")

    preprocess = preprocess_for(cfg)

    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        net = model.backbone
        device = next(net.parameters()).device
        ftr = extract_features(net, bank.images, preprocess, device=device)
        fte = extract_features(net, test.images, preprocess, device=device)
        k = cfg.get("knn_k", 200)
        out = {"knn_top1": knn_accuracy(ftr, bank.labels, fte, test.labels, bank.num_classes, k, 0.1)}
        if cfg.get("linear_probe", True):
            epochs = cfg.get("probe_epochs", 100)
            out["linear_top1"] = linear_probe(ftr, bank.labels, fte, test.labels, bank.num_classes, epochs=epochs)
        return out

    return evaluate


def train_config(cfg: dict[str, Any], seed: int, epochs: int | None, progress: bool) -> TrainConfig:
    return TrainConfig.from_arm(cfg, seed, epochs, progress)


def inflated_splits(run: ArmRun) -> Splits:
    """The small splits with D, the arm's inflation of the real training set, to train on (the generator's
    fit in the extras). The ``untrained`` floor fits no generator."""
    cfg = run.config
    real, bank, test = small_image_splits(cfg, run.data_dir)
    if is_untrained(cfg):
        return Splits(InflatedData(real), bank, test, {"generator": None})
    data, info = inflated_data(cfg, real)
    return Splits(data, bank, test, info)


def real_only_evaluation(arm: InMemoryArm) -> Evaluator:
    return real_only_evaluator(arm.bank, arm.test, arm.config)


def inflation_extras(arm: InMemoryArm, model: torch.nn.Module, evaluate: Evaluator) -> dict[str, Any]:
    """The sizes of D and the real share of its draws: expected, and as drawn by the run."""
    data, source = arm.train, arm.source
    return {
        "copies": data.copies,
        "num_real": data.num_real,
        "num_generated": data.num_generated,
        "len_D": len(data),
        "real_fraction": data.real_fraction(),
        "real_image_probability": data.real_image_probability(),
        "drawn": source.drawn,
        "drawn_real": source.drawn_real,
    }


def train_small(run: ArmRun) -> ArmResult:
    """One (arm, seed): fit/load the generator, inflate, train SimCLR a fixed number of steps, evaluate.

    The ``untrained`` floor fits no generator and takes no step (``fit`` with 0 epochs only evaluates):
    the same network at its seed's initialisation (paired seeds), scored by the same evaluation.
    """
    return train_in_memory(
        run,
        lambda arm: build_model(arm.config),
        train_config,
        real_only_evaluation,
        splits=inflated_splits,
        batches=InflatedBatches,
        extras=inflation_extras,
    )


# --- paper scale -----------------------------------------------------------------------


def generated_npz_path(cfg: dict[str, Any]) -> str | None:
    return cfg.get("generated_npz") or os.environ.get("ADAINF_GENERATED_NPZ")


def paper_model(augmentation: str = "weak") -> TwoViewContrastive:
    """CIFAR ResNet-18 + 512→2048→256 projector, InfoNCE τ = 0.2 (solo-learn ``simclr.yaml``)."""
    return build_model({**PAPER_ARM, "augmentation": augmentation})


def check_generated_data(arms: dict[str, dict[str, Any]]) -> None:
    """Every inflating arm's generated .npz exists and is a readable uint8 image array (header only).

    Raises ``FileNotFoundError`` / ``ValueError`` naming the arm and the file, in seconds.
    """
    for arm, cfg in arms.items():
        if inflation_copies(cfg["inflation"]) == 0:
            continue
        path = generated_npz_path(cfg)
        if path is None:
            raise FileNotFoundError(
                f"arm {arm!r} inflates with generated data: set the arm's 'generated_npz' or "
                "$ADAINF_GENERATED_NPZ to the paper's generated CIFAR-10 .npz (see methods/adainf/README.md)"
            )
        try:
            check_generated_npz(path)
        except (FileNotFoundError, ValueError) as exc:
            raise type(exc)(f"arm {arm!r}: {exc}") from exc


def cifar10_inflated_splits(run: ArmRun) -> Splits:
    """CIFAR-10 from the hub in memory, the real training set inflated with the arm's generated .npz."""
    cfg = run.config
    copies = inflation_copies(cfg["inflation"])
    generated = load_generated_npz(generated_npz_path(cfg), CIFAR10.classes) if copies > 0 else None
    real, test = CIFAR10.arrays("train"), CIFAR10.arrays("test")
    return Splits(InflatedData(real, generated, max(1, copies)), real, test)


def train_paper(run: ArmRun) -> ArmResult:
    """CIFAR-10 (hub) inflated with a user-supplied generated .npz; needs a GPU (``accelerate launch``).

    Every arm first checks the generated file of *every* inflating arm of the paper preset (this arm's
    config first), before any download or training: a missing or unreadable file stops the first arm
    (the no-inflation baseline) instead of the second, after a full baseline run.
    """
    check_generated_data({run.arm: run.config, **{a: c for a, c in PRESETS["paper"].arms.items() if a != run.arm}})
    return train_in_memory(
        run,
        lambda arm: build_model(arm.config),
        train_config,
        real_only_evaluation,
        splits=cifar10_inflated_splits,
        batches=InflatedBatches,
    )


# --- analysis ------------------------------------------------------------------------------


def grid_analysis(record: dict, results: dict[str, list[ArmResult]], out_prefix: Path) -> dict[str, Any]:
    """The (inflation × augmentation) table of means, the best strength per inflation, the real share
    of the draws, and a figure of real vs generated images (``<prefix>_samples.png``)."""
    grid = {a: m for a, m in record["arms"].items() if not is_untrained(record["setting"]["arms"][a])}
    metric = "linear_top1" if all("linear_top1" in m for m in grid.values()) else "knn_top1"
    table: dict[str, dict[str, float]] = {}
    for arm, metrics in grid.items():
        infl, aug = arm.rsplit("_", 1)
        table.setdefault(infl, {})[aug] = float(np.mean(metrics[metric]))
    best = {infl: max(row, key=row.get) for infl, row in table.items() if len(row) > 1}
    weak_minus_strong = {infl: row["weak"] - row["strong"] for infl, row in table.items() if len(row) > 1}
    shares = {
        arm: {
            "expected": rs[0].extras.get("real_fraction"),
            "observed": (rs[0].extras["drawn_real"] / rs[0].extras["drawn"]) if rs[0].extras.get("drawn") else None,
        }
        for arm, rs in results.items()
        if rs[0].extras and arm in grid
    }
    generators = [r.extras.get("generator") for rs in results.values() for r in rs if r.extras.get("generator")]
    out = {
        "metric": metric,
        "mean_by_inflation_and_augmentation": table,
        "best_augmentation": best,
        "weak_minus_strong": weak_minus_strong,
        "real_share_of_draws": shares,
        "generator_fit_seconds": max((g["seconds"] for g in generators if not g["from_cache"]), default=0.0),
    }
    if generators:
        _plot_samples(generators[0]["path"], record, out_prefix)
    return out


def _plot_samples(path: str, record: dict, out_prefix: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = next(iter(record["setting"]["arms"].values()))
    real, _, _ = small_image_splits(cfg, None)
    with np.load(path) as f:
        fake = f["images"][:32]
    fig, axes = plt.subplots(2, 1, figsize=(8, 2.6))
    for ax, images, title in ((axes[0], real.images[:32].numpy(), "real"), (axes[1], fake, "generated")):
        c, h, w = images.shape[1:]
        grid = images[:, :, :, :].transpose(0, 2, 3, 1).reshape(2, 16, h, w, c).transpose(0, 2, 1, 3, 4)
        grid = grid.reshape(2 * h, 16 * w, c)
        ax.imshow(grid.squeeze(-1) if c == 1 else grid, cmap="gray" if c == 1 else None)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(f"{out_prefix}_samples.png", dpi=90)
    plt.close(fig)


# --- presets ---------------------------------------------------------------------------

SMOKE_ARM = dict(
    data="shapes",
    train_per_class=24,
    test_per_class=10,
    image_size=32,
    channels=3,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    generator=dict(pca_dim=8, n_components=4, covariance="full", max_iter=20),
    n_generated=2 * 288,
    backbone="convnet",
    widths=(16, 32, 64),
    head_hidden=64,
    head_out=32,
    temperature=0.2,
    epochs=3,
    batch_size=32,
    lr=0.3,
    optimizer="sgd",
    weight_decay=5e-4,
    knn_k=20,
    linear_probe=False,
    log_every=2,
)

CPU_ARM = dict(
    data="fashion_mnist",
    train_per_class=200,  # |R| = 2,000 unlabelled real training images
    bank_per_class=1000,  # evaluation: kNN bank and probe training set, 10,000 labelled real images
    image_size=28,
    channels=1,
    mean=(0.2860,),
    std=(0.3530,),
    generator=dict(pca_dim=30, n_components=20, covariance="full", max_iter=100),
    n_generated=40_000,  # |G| = 20·|R|, as CIFAR-10's 50k real vs 1M generated
    backbone="convnet",
    widths=(16, 32, 64, 128),  # half-width ConvNet: 18 runs of 280 steps fit ~10 CPU minutes
    head_hidden=256,
    head_out=128,
    temperature=0.2,
    epochs=40,  # 40 × (|R| // B) = 280 steps for every arm: 36 passes over R without inflation
    batch_size=256,
    lr=0.3,
    optimizer="sgd",
    weight_decay=5e-4,
    warmup_epochs=4,
    bf16=True,
    channels_last=True,
    linear_probe=True,
)

PAPER_ARM = dict(
    data="cifar10",
    image_size=32,
    channels=3,
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
    generated_npz=None,  # the paper's 1M generated images; user-supplied (see README)
    backbone="resnet18",
    head_hidden=2048,
    head_out=256,
    temperature=0.2,
    epochs=512,  # 512 × 195 steps ≈ the official max_steps 100k at batch 256
    batch_size=256,
    lr=0.2,
    optimizer="lars",
    weight_decay=1e-4,
    warmup_epochs=10,
    bf16=True,
    sync_batchnorm=True,
    linear_probe=True,
    knn_k=200,
)

CLAIM = (
    "AdaInf (real data re-weighted 10:1 and weaker augmentation) beats no inflation in linear top-1, "
    "while vanilla inflation (N=1) with the default strong augmentation does not help (it can hurt)."
)


def _arm(base: dict, inflation: str, augmentation: str) -> tuple[str, dict]:
    return f"{inflation}_{augmentation}", {**base, "inflation": inflation, "augmentation": augmentation}


def _grid(base: dict, cells: list[tuple[str, str]]) -> dict[str, dict]:
    return dict(_arm(base, i, a) for i, a in cells)


FULL_GRID = [(i, a) for a in STRENGTHS for i in INFLATIONS]


def comparisons(metric: str) -> list[Comparison]:
    """The claim's two parts first (the headline): AdaInf beats no inflation (each with its paper augmentation),
    and vanilla inflation with the strong augmentation falls below no inflation; the rest are secondary."""
    return [
        Comparison(
            "AdaInf (N=10, weak aug) vs no inflation (strong aug)", "none_strong", "adainf_weak", metric, headline=True
        ),
        Comparison(
            "vanilla inflation vs none, strong aug (paper: hurts)",
            "none_strong",
            "vanilla_strong",
            metric,
            "less",
            headline=True,
        ),
        Comparison("AdaInf vs vanilla inflation (strong aug)", "vanilla_strong", "adainf_weak", metric),
        Comparison("weak vs strong aug, vanilla inflation", "vanilla_strong", "vanilla_weak", metric),
        Comparison("weak vs strong aug, AdaInf inflation N=10", "adainf_strong", "adainf_weak", metric),
        Comparison("weak vs strong aug, no inflation (control)", "none_strong", "none_weak", metric),
        Comparison("AdaInf N=10 vs none, both weak aug (the data's share)", "none_weak", "adainf_weak", metric),
    ]


PRESETS = {
    "smoke": Experiment(
        preset="smoke",
        description="seconds: shapes 32 px, PCA+GMM generator, none vs AdaInf, 3 epochs, 1 seed",
        claim=CLAIM,
        arms=with_floor(_grid(SMOKE_ARM, [("none", "strong"), ("adainf", "weak")]), "none_strong"),
        comparisons=comparisons("knn_top1")[:1],
        train_arm=train_small,
        setting={
            "summary": "procedural shapes (288 train / 120 test), 576 generated, ConvNet, 3 epochs",
            "scale": "smoke",
        },
        default_seeds=1,
        eval_metric="knn_top1",
        analysis=grid_analysis,
    ),
    "cpu": Experiment(
        preset="cpu",
        description="Fashion-MNIST 2k real + 40k PCA+GMM generated, {none, vanilla, AdaInf} × {strong, weak}, 3 seeds",
        claim=CLAIM,
        arms=with_floor(_grid(CPU_ARM, FULL_GRID), "none_strong"),
        comparisons=comparisons("linear_top1"),
        train_arm=train_small,
        setting={
            "summary": "Fashion-MNIST: |R| = 2,000 real (200/class), |G| = 40,000 from a PCA-30 + 20-component "
            "full-covariance Gaussian mixture fitted on R (cached); D = [R]×N + [G], N ∈ {1 without G, 1, 10}; "
            "4-layer ConvNet (16-32-64-128) 28 px, SimCLR InfoNCE τ=0.2, 128→256→128 head; solo-learn "
            "symmetric (strong) vs symmetric_adainf (weak) augmentation; SGD lr 0.3, wd 5e-4, batch 256, "
            "4 warmup epochs, cosine, 40 × 7 = 280 steps per arm; bf16 CPU",
            "scale": "small (CPU)",
            "metric": "linear-probe top-1 (Adam, 100 epochs) and weighted kNN top-1 (k=200, T=0.1), both trained "
            "on 10,000 labelled real training images (1000/class), tested on the 10k test split",
        },
        eval_metric="linear_top1",
        analysis=grid_analysis,
    ),
    "paper": Experiment(
        preset="paper",
        description="CIFAR-10 (hub) + user-supplied 1M generated .npz, ResNet-18 SimCLR, 100k steps (needs GPUs)",
        claim="SimCLR CIFAR-10 linear top-1: no inflation 91.56, vanilla 91.38, AdaInf 93.42 (official README).",
        arms=_grid(PAPER_ARM, [("none", "strong"), ("vanilla", "strong"), ("adainf", "weak")]),
        comparisons=comparisons("linear_top1")[:3],
        train_arm=train_paper,
        setting={
            "summary": "CIFAR-10 50k real + 1M generated (STF, user-supplied .npz), ResNet-18 CIFAR stem, "
            "projector 2048→256, τ=0.2, LARS lr 0.2 wd 1e-4, batch 256, ~100k steps, warmup-cosine",
            "scale": "paper",
        },
        default_seeds=1,
        eval_metric="linear_top1",
    ),
}
