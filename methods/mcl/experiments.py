"""MCL's presets: ``smoke`` (seconds), ``cpu`` (feature suppression at small scale), ``paper`` (STL-10).

The claim (abstract, unimodal part): standard contrastive learning learns the easy feature and
suppresses others; MCL's later stages, trained with negatives from the anchor's own cluster,
learn the suppressed feature, and the integrated (concatenated) representation keeps both.
At small scale: Fashion-MNIST tinted with one of 8 colours (colour: easy, class: suppressed),
SimCLR on a small ConvNet; linear probes of every stage's features and of the concatenation
on both labels. Baseline: one-stage SimCLR trained for as many epochs as all MCL stages together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from methods.mcl.analysis import per_stage_analysis
from methods.mcl.data import ColourPreservingAugment, TwoFeatureSet, coloured_fashion_mnist
from methods.mcl.loss import ClusterInfoNCELoss
from methods.mcl.model import IntegratedEncoder, StageSimCLR
from methods.mcl.sampler import ClusterBatches, LoaderClusterBatches
from methods.mcl.stages import StagePlan, stage_seed, train_stages
from shared.augment import AugmentConfig, eval_transform, simclr_transform, to_model_input
from shared.backbones import build_backbone
from shared.data.hub import HubImages, HubViews, load_hub_split
from shared.engine import TrainConfig
from shared.evaluation import extract_features, linear_probe, loader_features
from shared.experiment import ArmResult, ArmRun, Comparison, Experiment, is_untrained, untrained_arm
from shared.heads import mlp_head

FEATURES = ("class", "colour")
# keys that change the pseudo-label rule or the bookkeeping, not what a stage trains on (the pseudo-labels are
# part of a stage's identity: an ensemble member and an MCL stage are the same stage only when both are stage 0)
_NOT_IN_STAGE_KEY = ("official_label_bug", "ensemble", "reuse_stages_from", "num_stages", "epochs")


def stage_plan(cfg: dict[str, Any]) -> StagePlan:
    return StagePlan(
        num_stages=cfg["num_stages"],
        num_clusters=cfg["num_clusters"],
        groups=cfg.get("groups", 1),
        official_label_bug=cfg.get("official_label_bug", False),
        ensemble=cfg.get("ensemble", False),
    )


def to_group_norm(module: nn.Module, groups: int = 8) -> nn.Module:
    """Replace every BatchNorm2d by GroupNorm (per-sample statistics: nothing cluster-specific)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, nn.GroupNorm(min(groups, child.num_features), child.num_features))
        else:
            to_group_norm(child, groups)
    return module


def build_stage_model(cfg: dict[str, Any]) -> StageSimCLR:
    """SimCLR for one stage: backbone (BatchNorm or, with ``norm="group"``, GroupNorm) → 2-layer head."""
    backbone = build_backbone(cfg["backbone"], cfg["channels"], cfg.get("widths"))
    norm = cfg.get("norm", "batch")
    if norm == "group":
        to_group_norm(backbone)
    elif norm != "batch":
        raise ValueError(f"norm must be 'batch' or 'group', got {norm!r}")
    head = mlp_head(backbone.out_dim, cfg["head_hidden"], cfg["head_out"], num_layers=2)
    augment = None
    if cfg.get("batched_augment", True):
        augment = ColourPreservingAugment(AugmentConfig.from_arm(cfg))
    loss = ClusterInfoNCELoss(cfg["temperature"])
    return StageSimCLR(backbone, head, loss, augment=augment, channels_last=cfg.get("channels_last", False))


def train_config(cfg: dict[str, Any], seed: int, epochs: int | None, progress: bool, stage: int) -> TrainConfig:
    """A stage's run: SimCLR's lr · B / 256; ``epochs`` per stage; seed :func:`stage_seed`."""
    return TrainConfig.from_arm(
        cfg, stage_seed(seed, stage), epochs, progress, lr=cfg["lr"] * cfg["batch_size"] / 256, sync_batchnorm=True
    )


def probe_all(
    encoder: IntegratedEncoder, bank: TwoFeatureSet, test: TwoFeatureSet, cfg: dict[str, Any], seed: int
) -> dict[str, float]:
    """Linear-probe top-1 on both labels: each stage alone (``<feature>_linear_s<s>``), the last stage
    (``<feature>_linear_last``) and the integrated representation (``<feature>_linear``)."""

    def preprocess(x: torch.Tensor) -> torch.Tensor:
        return to_model_input(x, cfg["image_size"], tuple(cfg["mean"]), tuple(cfg["std"]))

    device = next(encoder.parameters()).device
    ftr = extract_features(encoder, bank.data.images, preprocess, device=device)
    fte = extract_features(encoder, test.data.images, preprocess, device=device)
    epochs = cfg.get("probe_epochs", 100)
    out: dict[str, float] = {}
    views = {f"s{s}": encoder.stage_slice(s) for s in range(encoder.num_stages)}
    views["all"] = slice(None)
    for feature in FEATURES:
        ytr, k = bank.labels(feature)
        yte, _ = test.labels(feature)
        for name, cols in views.items():
            acc = linear_probe(ftr[:, cols], ytr, fte[:, cols], yte, k, epochs=epochs, seed=seed)
            out[f"{feature}_linear" if name == "all" else f"{feature}_linear_{name}"] = acc
        out[f"{feature}_linear_last"] = out[f"{feature}_linear_s{encoder.num_stages - 1}"]
    return out


def _nmi(a: torch.Tensor, b: torch.Tensor) -> float:
    from sklearn.metrics import normalized_mutual_info_score

    return float(normalized_mutual_info_score(a.numpy(), b.numpy()))


def untrained_encoder(cfg: dict[str, Any], seed: int) -> IntegratedEncoder:
    """Every stage's backbone at the initialisation :func:`train_stages` gives it (``seed + 1000·s``),
    untrained, on the device and in the memory format ``fit`` would give it: the floor arm's encoder."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    backbones = []
    for s in range(stage_plan(cfg).num_stages):
        torch.manual_seed(seed + 1000 * s)
        backbone = build_stage_model(cfg).backbone.to(device)
        if cfg.get("channels_last", False):
            backbone = backbone.to(memory_format=torch.channels_last)
        backbones.append(backbone)
    return IntegratedEncoder(backbones)


def train_small(run: ArmRun) -> ArmResult:
    """All stages of one (arm, seed) on tinted Fashion-MNIST, then the linear probes.

    An ``untrained`` arm (the floor) trains no stage and clusters nothing: its encoder is the stages'
    initialisation (:func:`untrained_encoder`), scored by the same probes.
    """
    cfg = run.config
    train, bank, test = coloured_fashion_mnist(cfg, run.data_dir)
    if is_untrained(cfg):
        metrics = probe_all(untrained_encoder(cfg, run.seed), bank, test, cfg, run.seed)
        return ArmResult(metrics, [], [], 0.0, {"untrained": True})
    plan = stage_plan(cfg)

    def preprocess(x: torch.Tensor) -> torch.Tensor:
        return to_model_input(x, cfg["image_size"], tuple(cfg["mean"]), tuple(cfg["std"]))

    reuse = cfg.get("reuse_stages_from")
    images = train.data.images

    def encode(backbone: nn.Module) -> torch.Tensor:
        return extract_features(backbone, images, preprocess, device=next(backbone.parameters()).device)

    mcl = train_stages(
        len(images),
        plan,
        build_model=lambda s: build_stage_model(cfg),
        train_config=lambda s: train_config(cfg, run.seed, run.epochs, run.progress, s),
        make_source=lambda pseudo, batch, groups: ClusterBatches(images, pseudo, batch, groups),
        encode=encode,
        run_dir=run.run_dir,
        seed=run.seed,
        resume=run.resume,
        key={**{k: v for k, v in cfg.items() if k not in _NOT_IN_STAGE_KEY}, "epochs": run.epochs or cfg["epochs"]},
        reuse_dir=Path(run.run_dir).parent.parent / reuse / Path(run.run_dir).name if reuse else None,
        desc=f"{run.arm} s{run.seed}",
    )
    encoder = IntegratedEncoder(mcl.backbones)
    metrics = probe_all(encoder, bank, test, cfg, run.seed)
    extras = {
        "stages": [
            {
                "steps_per_epoch": st.steps_per_epoch,
                "dropped_per_epoch": st.dropped_per_epoch,
                "pseudo_labels": int(st.pseudo_labels.unique().numel()),
                "cluster_nmi_colour": _nmi(st.clusters, train.colour),
                "cluster_nmi_class": _nmi(st.clusters, train.data.labels),
                "train_seconds": round(st.fit.wall_seconds, 1),
            }
            for st in mcl.stages
        ]
    }
    wall = sum(st.fit.wall_seconds for st in mcl.stages)
    return ArmResult(metrics, mcl.curve(), [], wall, extras)


def paper_model(cfg: dict[str, Any]) -> StageSimCLR:
    """ResNet-18 (ImageNet stem) + 2-layer 512→512→128 head, views made by DataLoader workers."""
    return build_stage_model({**cfg, "batched_augment": False})


STL10_OFFLINE = "no offline copy of STL-10 ships with the project; the paper preset needs the hub"


def train_paper(run: ArmRun) -> ArmResult:
    """The unimodal recipe at GPU scale: STL-10 from the hub, ResNet-18, every stage (``accelerate launch``)."""
    cfg = run.config
    ds = load_hub_split(cfg["hub_name"], "train", STL10_OFFLINE)
    test = load_hub_split(cfg["hub_name"], "test", STL10_OFFLINE)
    views = HubViews(ds, simclr_transform(AugmentConfig.from_arm(cfg)))
    eval_tf = eval_transform(cfg["image_size"], tuple(cfg["mean"]), tuple(cfg["std"]))

    def features(backbone: nn.Module, data) -> tuple[torch.Tensor, torch.Tensor]:
        device = next(backbone.parameters()).device
        return loader_features(backbone, HubImages(data, eval_tf), device=device, workers=cfg["workers"])

    mcl = train_stages(
        len(ds),
        stage_plan(cfg),
        build_model=lambda s: paper_model(cfg),
        train_config=lambda s: train_config(cfg, run.seed, run.epochs, run.progress, s),
        make_source=lambda y, batch, groups: LoaderClusterBatches(views, y, batch, groups, cfg["workers"]),
        encode=lambda backbone: features(backbone, ds)[0],
        run_dir=run.run_dir,
        seed=run.seed,
        resume=run.resume,
        desc=run.arm,
    )
    encoder = IntegratedEncoder(mcl.backbones)
    ftr, ytr = features(encoder, ds)
    fte, yte = features(encoder, test)
    metrics = {}
    for s in range(encoder.num_stages):
        cols = encoder.stage_slice(s)
        metrics[f"class_linear_s{s}"] = linear_probe(ftr[:, cols], ytr, fte[:, cols], yte, 10, seed=run.seed)
    metrics["class_linear"] = linear_probe(ftr, ytr, fte, yte, 10, seed=run.seed)
    wall = sum(st.fit.wall_seconds for st in mcl.stages)
    return ArmResult(metrics, mcl.curve(), [], wall)


# --- presets ---------------------------------------------------------------------------

SMOKE_ARM = dict(
    data="fashion_mnist+colour",
    num_colours=8,
    train_per_class=40,
    bank_per_class=20,
    test_per_class=20,
    image_size=28,
    channels=3,
    mean=(0.2, 0.2, 0.2),
    std=(0.3, 0.3, 0.3),
    crop_scale=(0.3, 1.0),
    jitter_strength=0.5,
    backbone="convnet",
    widths=(16, 32, 64),
    head_hidden=64,
    head_out=32,
    temperature=0.1,
    num_clusters=4,
    groups=2,
    epochs=2,
    batch_size=32,
    lr=0.3,
    optimizer="sgd",
    weight_decay=5e-4,
    probe_epochs=20,
    log_every=2,
)

CPU_ARM = dict(
    data="fashion_mnist+colour",
    num_colours=8,
    train_per_class=1500,
    bank_per_class=500,
    image_size=28,
    channels=3,
    mean=(0.2, 0.2, 0.2),
    std=(0.3, 0.3, 0.3),
    crop_scale=(0.2, 1.0),
    jitter_strength=0.5,
    backbone="convnet",
    widths=(16, 32, 64, 128),
    head_hidden=256,
    head_out=128,
    temperature=0.1,
    num_clusters=8,
    groups=4,
    epochs=4,
    batch_size=256,
    lr=0.3,
    optimizer="sgd",
    weight_decay=5e-4,
    warmup_epochs=1,
    bf16=True,
    channels_last=True,
    log_every=10,
)

PAPER_ARM = dict(
    data="stl10",
    hub_name="tanganke/stl10",  # (verify) a hub copy of STL-10 with train/test splits
    num_clusters=10,
    image_size=96,
    channels=3,
    mean=(0.4467, 0.4398, 0.4066),
    std=(0.2603, 0.2566, 0.2713),
    crop_scale=(0.08, 1.0),
    jitter_strength=1.0,
    grayscale_p=0.2,
    backbone="imagenet_resnet18",
    head_hidden=512,
    head_out=128,
    temperature=0.5,
    groups=4,
    epochs=100,
    batch_size=256,
    lr=0.3,
    optimizer="lars",
    weight_decay=1e-6,
    warmup_epochs=10,
    bf16=True,
    workers=16,
)

CLAIM = (
    "On data where an easy feature (colour) suppresses a harder one (class), MCL's integrated representation "
    "raises the linear-probe accuracy on the suppressed feature over an ensemble of as many SimCLR encoders, each "
    "trained as long as one MCL stage and concatenated the same way, keeping the easy one."
)


def _arms(base: dict, stages: int) -> dict[str, dict]:
    """``simclr``: one stage of ``stages × epochs``; ``mcl``: the paper; ``mcl_official``: the label bug;
    ``simclr_grey``: the baseline on the same images without colour (measures the suppression);
    ``simclr_ensemble``: ``stages`` SimCLR encoders, each ``epochs`` long with the seed of the MCL stage of the
    same index (:func:`methods.mcl.stages.stage_seed`), concatenated as MCL's stages (member 0 *is* MCL's stage 0,
    copied from the ``mcl`` run when it is there)."""
    return {
        "simclr": {**base, "num_stages": 1, "epochs": base["epochs"] * stages},
        "simclr_grey": {**base, "num_stages": 1, "epochs": base["epochs"] * stages, "tinted": False},
        "mcl": {**base, "num_stages": stages},
        "mcl_official": {**base, "num_stages": stages, "official_label_bug": True, "reuse_stages_from": "mcl"},
        "simclr_ensemble": {**base, "num_stages": stages, "ensemble": True, "reuse_stages_from": "mcl"},
    }


def _with_floors(arms: dict[str, dict]) -> dict[str, dict]:
    """The floor arms first: ``untrained`` (``simclr``, the one-stage encoder, at its seed's initialisation)
    and, when the preset has ``simclr_grey``, ``untrained_grey`` (the same on the grey images)."""
    floors = {"untrained": untrained_arm(arms["simclr"])}
    if "simclr_grey" in arms:
        floors["untrained_grey"] = untrained_arm(arms["simclr_grey"])
    return {**floors, **arms}


# simclr_grey trains on other images (no colour): its own floor, on the same metric
GREY_FLOOR = {
    "arm": "untrained_grey",
    "metric": "class_linear",
    "direction": "greater",
    "min_gain": 0.02,
    "arms": ["simclr_grey"],
}

# The headline controls for the size of the representation: MCL's S concatenated encoders against S concatenated
# SimCLR encoders of the same per-stage budget (the comparison with one SimCLR encoder of S× the epochs, and S×
# fewer dimensions, is kept as a secondary one).
COMPARISONS = [
    Comparison(
        "class (suppressed feature): MCL integrated vs SimCLR ensemble",
        "simclr_ensemble",
        "mcl",
        "class_linear",
        headline=True,
    ),
    Comparison("colour (easy feature): MCL integrated vs SimCLR ensemble", "simclr_ensemble", "mcl", "colour_linear"),
    Comparison("class (suppressed feature): MCL integrated vs SimCLR", "simclr", "mcl", "class_linear"),
    Comparison("colour (easy feature): MCL integrated vs SimCLR", "simclr", "mcl", "colour_linear"),
    Comparison("class: SimCLR ensemble vs one SimCLR trained as long", "simclr", "simclr_ensemble", "class_linear"),
    Comparison("class: MCL last stage alone vs SimCLR", "simclr", "mcl", "class_linear_last"),
    Comparison("class: MCL (paper labels) vs official cluster.py labels", "mcl_official", "mcl", "class_linear"),
    Comparison(
        "suppression: class accuracy of SimCLR with colour vs on grey images",
        "simclr_grey",
        "simclr",
        "class_linear",
        "less",
    ),
]

CPU_STAGES = 3

PRESETS = {
    "smoke": Experiment(
        preset="smoke",
        description="seconds: 2 stages × 2 epochs on 400 tinted Fashion-MNIST images, tiny ConvNet, 1 seed",
        claim=CLAIM,
        arms=_with_floors({k: v for k, v in _arms(SMOKE_ARM, 2).items() if k in ("simclr", "mcl", "simclr_ensemble")}),
        comparisons=[c for c in COMPARISONS if {c.baseline, c.method} <= {"simclr", "mcl", "simclr_ensemble"}],
        train_arm=train_small,
        setting={"summary": "tinted Fashion-MNIST 400 train / 200 bank / 200 test, 2 stages, K=4", "scale": "smoke"},
        default_seeds=1,
        analysis=per_stage_analysis,
    ),
    "cpu": Experiment(
        preset="cpu",
        description=f"tinted Fashion-MNIST 15k, ConvNet 16-128, {CPU_STAGES} stages × {CPU_ARM['epochs']} epochs "
        f"vs {CPU_STAGES} SimCLR encoders × {CPU_ARM['epochs']} epochs (and one SimCLR, "
        f"{CPU_STAGES * CPU_ARM['epochs']} epochs), K=8, 3 seeds",
        claim=CLAIM,
        arms=_with_floors(_arms(CPU_ARM, CPU_STAGES)),
        comparisons=COMPARISONS,
        extra_floors=[GREY_FLOOR],
        train_arm=train_small,
        setting={
            "summary": "Fashion-MNIST 15k train (1500/class) tinted with one of 8 colours independent of the class; "
            "probe bank 5k (500/class, a subset of train), 10k test (tinted with its own colours); 4-layer ConvNet "
            "16-32-64-128 at 28 px, BatchNorm; colour-preserving SimCLR views (crop (0.2,1), flip, brightness/"
            "contrast 0.4); SGD lr 0.3·B/256, wd 5e-4, 1 warmup epoch, cosine per stage; τ=0.1; batch 256 = "
            f"4 single-pseudo-label groups of 64; {CPU_STAGES} stages × {CPU_ARM['epochs']} epochs, K=8 (MiniBatch "
            f"K-means on normalised backbone features); SimCLR baseline {CPU_STAGES * CPU_ARM['epochs']} epochs; "
            f"SimCLR ensemble: {CPU_STAGES} SimCLR encoders × {CPU_ARM['epochs']} epochs (seeds of MCL's stages), "
            "features concatenated; bf16 CPU",
            "scale": "small (CPU)",
            "metric": "linear-probe top-1 (Adam, 100 epochs, standardised features) on the class and on the colour",
        },
        analysis=per_stage_analysis,
    ),
    "paper": Experiment(
        preset="paper",
        description="STL-10 (hub), ResNet-18, SimCLR, 3 stages × 100 epochs, K=10 (needs GPUs)",
        claim="MCL's integrated ResNet-18 representation beats SimCLR's in STL-10 linear top-1 (paper, (verify)).",
        arms={"simclr": {**PAPER_ARM, "num_stages": 1, "epochs": 300}, "mcl": {**PAPER_ARM, "num_stages": 3}},
        comparisons=[Comparison("MCL integrated vs SimCLR, STL-10", "simclr", "mcl", "class_linear")],
        train_arm=train_paper,
        setting={
            "summary": "STL-10 (hub), ResNet-18, SimCLR (LARS lr 0.3·B/256, τ=0.5), 3 stages × 100 epochs, K=10; "
            "recipe details (verify): the spec gives only the CLIP recipe",
            "scale": "paper",
        },
        default_seeds=1,
    ),
}

__all__ = [
    "CPU_ARM",
    "PAPER_ARM",
    "PRESETS",
    "build_stage_model",
    "paper_model",
    "probe_all",
    "stage_plan",
    "to_group_norm",
    "train_small",
    "untrained_encoder",
]
