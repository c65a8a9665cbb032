"""BECLR's presets: ``smoke`` (seconds), ``cpu`` (the claims at small scale), ``paper`` (mini-ImageNet).

Claim (abstract, Tables 1–2): DyCE-enhanced contrastive pre-training beats the same pipeline
without memory in 5-way 1-shot (and 5-shot), and OpTA adds accuracy at inference, most in
1-shot. Small scale: unsupervised pre-training on the *base* classes 0–4 of Fashion-MNIST
(labels unused), 5-way episodes on its *novel* classes 5–9 (in-domain, the mini-ImageNet
analogue) and on the novel classes 5–9 of Animal-MNIST (cross-domain, the CDFSL analogue).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from methods.beclr.augment import MaskedHubViews, view_transform
from methods.beclr.dyce import DyCEConfig, memory_size
from methods.beclr.mini_imagenet import load_mini_imagenet
from methods.beclr.model import BECLR
from methods.beclr.opta import opta_for_shots
from shared.augment import AugmentConfig, BatchedSimCLRAugment, eval_transform, to_model_input
from shared.backbones import build_backbone
from shared.data.animal_mnist import load_animal_mnist
from shared.data.arrays import ImageArrays, subset_per_class
from shared.data.fashion_mnist import load_fashion_mnist
from shared.data.hub import HubImages, load_hub_split
from shared.data.shapes import make_shapes
from shared.data.splits import FASHION_MNIST_28, SHAPES_RGB
from shared.engine import InMemoryBatches, LoaderBatches, TrainConfig, fit
from shared.evaluation import extract_features, loader_features
from shared.experiment import ArmResult, ArmRun, Comparison, Experiment, untrained_arm
from shared.fewshot import evaluate_fewshot
from shared.results import mean_std, paired_verdict

SHOTS = (1, 5)


def classes_subset(data: ImageArrays, classes: tuple[int, ...], per_class: int | None = None) -> ImageArrays:
    """The images of ``classes`` only (optionally ``per_class`` of each, deterministic)."""
    if per_class:
        data = subset_per_class(data, per_class)
    keep = torch.isin(data.labels, torch.tensor(classes))
    return data.take(keep.nonzero().squeeze(1))


def pretrain_data(cfg: dict[str, Any], data_dir: str | None) -> ImageArrays:
    """Unlabelled pre-training images: the base classes of the pre-training data set."""
    if cfg["data"] == "shapes":
        return classes_subset(make_shapes(cfg["train_per_class"], cfg["image_size"], seed=0), cfg["base_classes"])
    if cfg["data"] == "fashion_mnist":
        full = load_fashion_mnist("train", data_dir)
        return classes_subset(full, cfg["base_classes"], cfg.get("train_per_class"))
    raise ValueError(f"unknown data {cfg['data']!r}; choose 'shapes' or 'fashion_mnist'")


def novel_sets(cfg: dict[str, Any], data_dir: str | None) -> dict[str, ImageArrays]:
    """The few-shot evaluation sets (novel classes), the first one being the headline."""
    out = {}
    for name in cfg["eval_sets"]:
        if name == "shapes":
            out[name] = classes_subset(
                make_shapes(cfg["test_per_class"], cfg["image_size"], seed=1), cfg["novel_classes"]
            )
        elif name == "fashion_mnist":
            out[name] = classes_subset(load_fashion_mnist("test", data_dir), cfg["novel_classes"])
        elif name == "animal_mnist":
            out[name] = classes_subset(load_animal_mnist(data_dir), cfg["novel_classes"])
        else:
            raise ValueError(f"unknown evaluation set {name!r}")
    return out


def dyce_config(cfg: dict[str, Any]) -> DyCEConfig | None:
    """The arm's memory, or None for the no-memory baseline."""
    if not cfg["dyce"]:
        return None
    size = cfg.get("memory_size") or memory_size(cfg["memory_scale"], cfg["num_clusters"], cfg["batch_size"])
    return DyCEConfig(
        size=size,
        num_clusters=cfg["num_clusters"],
        topk=cfg["topk"],
        epsilon=cfg["epsilon"],
        sinkhorn_iterations=cfg.get("sinkhorn_iterations", 10),
        prototype_momentum=cfg.get("memory_momentum", 0.0),
        official_sign=cfg.get("official_sign", False),
    )


def build_model(cfg: dict[str, Any], steps_per_epoch: int, epochs: int, seed: int = 0) -> BECLR:
    """BECLR (``dyce: True``) or the same network without memory (``dyce: False``)."""
    backbone = build_backbone(cfg["backbone"], cfg["channels"], cfg.get("widths"))
    augment = BatchedSimCLRAugment(AugmentConfig.from_arm(cfg)) if cfg.get("batched_augment", True) else None
    return BECLR(
        backbone,
        out_dim=cfg["out_dim"],
        augment=augment,
        lamb_neg=cfg["lamb_neg"],
        temperature=cfg["temperature"],
        momentum=cfg["teacher_momentum"],
        total_steps=steps_per_epoch * epochs,
        dyce=dyce_config(cfg),
        enhance_from_step=cfg.get("memory_start_epoch", 0) * steps_per_epoch,
        channels_last=cfg.get("channels_last", False),
        seed=seed,
    )


def fewshot_evaluator(
    cfg: dict[str, Any],
    sets: dict[str, ImageArrays],
    shots: tuple[int, ...] = SHOTS,
    opta_modes: tuple[bool, ...] = (False, True),
):
    """``evaluate(model)`` → accuracies and CIs of 5-way {1,5}-shot, with and without OpTA, per set
    (``shots`` and ``opta_modes`` pick a part of it)."""

    def preprocess(x: torch.Tensor) -> torch.Tensor:
        return to_model_input(x, cfg["image_size"], tuple(cfg["mean"]), tuple(cfg["std"]))

    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        device = next(model.backbone.parameters()).device
        out: dict[str, float] = {}
        for i, (name, data) in enumerate(sets.items()):
            feats = extract_features(model.backbone, data.images, preprocess, device=device)
            prefix = "" if i == 0 else f"{name}_"
            for k in shots:
                for opta in opta_modes:
                    res = evaluate_fewshot(
                        feats,
                        data.labels,
                        cfg["novel_classes"],
                        n_way=cfg["n_way"],
                        k_shot=k,
                        n_query=cfg["n_query"],
                        episodes=cfg["episodes"],
                        classifier=cfg.get("classifier", "logistic"),
                        fit_on="prototypes",
                        adapt=opta_for_shots(k) if opta else None,
                        normalize=cfg.get("feature_norm", "standardize"),
                    )
                    key = f"{prefix}acc_{k}shot{'_opta' if opta else ''}"
                    out[key], out[f"{key}_ci95"] = res.accuracy, res.ci95
        return out

    return evaluate


def train_config(cfg: dict[str, Any], seed: int, epochs: int | None, progress: bool) -> TrainConfig:
    """lr scales linearly with the batch, lr · B / 256 (official SGD lr 0.3 at B = 256)."""
    return TrainConfig.from_arm(cfg, seed, epochs, progress, lr=cfg["lr"] * cfg["batch_size"] / 256)


def train_small(run: ArmRun) -> ArmResult:
    """Pre-train one (arm, seed) on the base classes, then evaluate few-shot on the novel classes.

    The ``untrained`` arm gets zero epochs (``TrainConfig.from_arm``): ``fit`` only scores the initialisation.
    """
    cfg = run.config
    train = pretrain_data(cfg, run.data_dir)
    sets = novel_sets(cfg, run.data_dir)
    tc = train_config(cfg, run.seed, run.epochs, run.progress)
    source = InMemoryBatches(train, tc.batch_size)
    torch.manual_seed(run.seed)  # paired seeds: same initialisation for every arm of a seed
    model = build_model(cfg, source.steps_per_epoch(1), tc.epochs, run.seed)
    result = fit(model, source, tc, run.run_dir, resume=run.resume, evaluate=fewshot_evaluator(cfg, sets), desc=run.arm)
    final = result.final_metrics()
    metrics = {k: v for k, v in final.items() if not k.endswith("_ci95")}
    for prefix in [""] + [f"{n}_" for n in list(sets)[1:]]:
        for k in SHOTS:
            metrics[f"{prefix}opta_gain_{k}shot"] = (
                metrics[f"{prefix}acc_{k}shot_opta"] - metrics[f"{prefix}acc_{k}shot"]
            )
    extras = {"ci95": {k: v for k, v in final.items() if k.endswith("_ci95")}, "enhanced_steps": _enhanced(result)}
    return ArmResult(metrics, result.history, result.evaluations, result.wall_seconds, extras)


def _enhanced(result: Any) -> int:
    return sum(1 for h in result.history if h.get("enhanced", 0) > 0)


def opta_analysis(record: dict, results: dict[str, list[ArmResult]], out_prefix: Any) -> dict[str, Any]:
    """OpTA vs no OpTA within each arm (paired over seeds), for every shot and evaluation set; mean CIs."""
    out: dict[str, Any] = {}
    for arm, runs in results.items():
        metrics = runs[0].metrics
        for key in metrics:
            if "opta_gain" not in key:
                continue
            base_key = key.replace("opta_gain_", "acc_")
            base = [r.metrics[base_key] for r in runs]
            with_opta = [r.metrics[f"{base_key}_opta"] for r in runs]
            verdict = paired_verdict(base, with_opta, "greater")
            mu, sd = mean_std([r.metrics[key] for r in runs])
            out[f"{arm}: OpTA vs none, {base_key}"] = {**verdict, "gain_mean": mu, "gain_std": sd}
        cis = [r.extras.get("ci95", {}) for r in runs]
        if all(cis):  # the episodes' 95 % CI half-width of each accuracy, mean over seeds
            out[f"{arm}: mean ci95"] = {k: mean_std([c[k] for c in cis])[0] for k in cis[0]}
    return out


def paper_model() -> BECLR:
    """ResNet-18 (ImageNet stem) + 512-d projector, DyCE (8192 entries, 200 clusters, top-5)."""
    return build_model(
        {**PAPER_ARM, "dyce": True, "batched_augment": False}, steps_per_epoch=1, epochs=PAPER_ARM["epochs"]
    )


MINI_IMAGENET_OFFLINE = "no offline copy of mini-ImageNet ships with the project; the paper preset needs the hub"


def paper_data(cfg: dict[str, Any], load: Callable[[str, str], Any] | None = None) -> tuple[Any, Any]:
    """(pre-training set, novel set): the hub copy's 64 train classes and its 20 test classes.

    The class split is Ravi & Larochelle's (``mini_imagenet_split.csv``), applied to the hub splits
    ``cfg["hub_splits"]`` concatenated; a class missing from the hub copy is an error before training.
    """
    load = load or (lambda name, split: load_hub_split(name, split, MINI_IMAGENET_OFFLINE))
    return load_mini_imagenet(cfg["data"], cfg["hub_splits"], load)


def paper_views(cfg: dict[str, Any], pretrain: Any) -> MaskedHubViews:
    """The official views of the pre-training images, each with its block mask for the student."""
    grid = (cfg["image_size"] // cfg["mask_patch"],) * 2
    return MaskedHubViews(pretrain, view_transform(cfg), grid, cfg["mask_ratio"], cfg["mask_ratio_var"])


def train_paper(run: ArmRun) -> ArmResult:
    """Official mini-ImageNet R18 recipe from the hub (needs GPUs; run under ``accelerate launch``).

    Pre-trains on the 64 train (base) classes of the standard few-shot split, without labels, and
    evaluates 5-way episodes on its 20 test (novel) classes; both sets are built before training.
    """
    cfg = run.config
    pretrain, novel = paper_data(cfg)
    tc = train_config(cfg, run.seed, run.epochs, run.progress)
    source = LoaderBatches(paper_views(cfg, pretrain), tc.batch_size, cfg["workers"])
    model = build_model({**cfg, "batched_augment": False}, source.steps_per_epoch(1), tc.epochs, run.seed)
    images = HubImages(novel, eval_transform(cfg["image_size"], tuple(cfg["mean"]), tuple(cfg["std"])))

    def evaluate(m: torch.nn.Module) -> dict[str, float]:
        feats, labels = loader_features(m.backbone, images, device=next(m.parameters()).device)
        classes = tuple(torch.unique(labels).tolist())
        out = {}
        for k in SHOTS:
            for opta in (False, True):
                res = evaluate_fewshot(
                    feats,
                    labels,
                    classes,
                    cfg["n_way"],
                    k,
                    cfg["n_query"],
                    cfg["episodes"],
                    "logistic",
                    "prototypes",
                    opta_for_shots(k) if opta else None,
                    cfg["feature_norm"],
                )
                key = f"acc_{k}shot{'_opta' if opta else ''}"
                out[key], out[f"{key}_ci95"] = res.accuracy, res.ci95
        return out

    result = fit(model, source, tc, run.run_dir, resume=run.resume, evaluate=evaluate, desc=run.arm)
    final = result.final_metrics()
    metrics = {k: v for k, v in final.items() if not k.endswith("_ci95")}
    extras = {"ci95": {k: v for k, v in final.items() if k.endswith("_ci95")}}
    return ArmResult(metrics, result.history, result.evaluations, result.wall_seconds, extras)


# --- presets ---------------------------------------------------------------------------

COMMON = dict(
    lamb_neg=0.1,
    temperature=2.0,
    n_way=5,
    n_query=15,
    classifier="logistic",
    feature_norm="standardize",
    optimizer="sgd",
    lr=0.3,
    weight_decay=1e-4,
    epsilon=1e-5,
    memory_momentum=0.0,
)

SMOKE_ARM = dict(
    COMMON,
    **SHAPES_RGB,
    eval_sets=("shapes",),
    base_classes=(0, 1, 2, 3, 4, 5),
    novel_classes=(6, 7, 8, 9, 10, 11),
    train_per_class=24,
    test_per_class=20,
    image_size=32,
    crop_scale=(0.3, 1.0),
    jitter_strength=0.5,
    backbone="convnet",
    widths=(16, 32, 64),
    out_dim=32,
    teacher_momentum=0.9,
    epochs=3,
    batch_size=32,
    memory_size=256,
    num_clusters=4,
    topk=2,
    memory_start_epoch=1,
    episodes=40,
    log_every=1,
)

CPU_ARM = dict(
    COMMON,
    **FASHION_MNIST_28,
    eval_sets=("fashion_mnist", "animal_mnist"),
    base_classes=(0, 1, 2, 3, 4),
    novel_classes=(5, 6, 7, 8, 9),
    train_per_class=2400,
    crop_scale=(0.2, 1.0),
    jitter_strength=0.5,
    backbone="convnet",
    out_dim=256,
    teacher_momentum=0.99,
    epochs=6,
    batch_size=128,
    warmup_epochs=1,
    memory_size=2048,
    num_clusters=20,
    topk=3,
    memory_start_epoch=2,
    episodes=600,
    bf16=True,
    channels_last=True,
    log_every=20,
)

PAPER_ARM = dict(
    COMMON,
    # the 100 mini-ImageNet classes (split by images on the hub), re-split by class: Ravi & Larochelle
    data="timm/mini-imagenet",
    hub_splits=("train", "validation"),
    image_size=224,
    channels=3,
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    # official transform/build_transform.py (both views) and masked-image augmentation (mini_r18_train.json)
    crop_scale=(0.2, 1.0),
    jitter=(0.4, 0.4, 0.2, 0.1),
    jitter_p=0.8,
    grayscale_p=0.2,
    blur_p=0.5,
    randaug_ops=2,
    randaug_magnitude=10,
    vflip_p=0.5,
    mask_patch=16,
    mask_ratio=0.15,
    mask_ratio_var=0.1,
    backbone="imagenet_resnet18",
    out_dim=512,
    teacher_momentum=0.995,
    epochs=400,
    batch_size=256,
    num_clusters=200,
    memory_scale=40,
    topk=5,
    memory_start_epoch=60,
    episodes=2000,
    bf16=True,
    workers=16,
)

CLAIM = (
    "BECLR (DyCE batch enhancement) beats the same contrastive pipeline without memory in 5-way 1-shot "
    "accuracy on novel classes; OpTA adds accuracy on top of either."
)


def _arms(base: dict) -> dict[str, dict]:
    return {"baseline": {**base, "dyce": False}, "beclr": {**base, "dyce": True}}


def _arms_with_floor(base: dict) -> dict[str, dict]:
    """The floor arm ``untrained`` (the no-memory baseline at its seed's initialisation, scored on the
    same episodes), then :func:`_arms`."""
    arms = _arms(base)
    return {"untrained": untrained_arm(arms["baseline"]), **arms}


def _comparisons(sets: tuple[str, ...]) -> list[Comparison]:
    """The headline is the claim's: 5-way 1-shot on the first (in-domain) set's novel classes."""
    comps = [
        Comparison("BECLR vs baseline, 5-way 1-shot", "baseline", "beclr", "acc_1shot", headline=True),
        Comparison("BECLR vs baseline, 5-way 5-shot", "baseline", "beclr", "acc_5shot"),
        Comparison("BECLR vs baseline, 1-shot with OpTA", "baseline", "beclr", "acc_1shot_opta"),
        Comparison("BECLR vs baseline, 5-shot with OpTA", "baseline", "beclr", "acc_5shot_opta"),
    ]
    for name in sets[1:]:
        comps += [
            Comparison(f"BECLR vs baseline, 1-shot, {name}", "baseline", "beclr", f"{name}_acc_1shot"),
            Comparison(f"BECLR vs baseline, 5-shot, {name}", "baseline", "beclr", f"{name}_acc_5shot"),
        ]
    return comps


OFFICIAL_SIGN = Comparison(
    "DyCE with the official Sinkhorn sign vs the paper's, 5-way 1-shot", "beclr", "beclr_official_sign", "acc_1shot"
)
"""Secondary: does the official code's ``exp(+D/ε)`` assignment (distant prototypes) change the result?"""


PRESETS = {
    "smoke": Experiment(
        preset="smoke",
        description="seconds: 3 epochs on 144 procedural shapes (6 base classes), 6-way-pool 5-way episodes",
        claim=CLAIM,
        arms=_arms_with_floor(SMOKE_ARM),
        comparisons=_comparisons(SMOKE_ARM["eval_sets"]),
        train_arm=train_small,
        setting={
            "summary": "shapes 32 px, ConvNet (16-32-64), batch 32, memory 256 / 4 clusters / top-2",
            "scale": "smoke",
        },
        default_seeds=1,
        eval_metric="acc_1shot",
        analysis=opta_analysis,
    ),
    "cpu": Experiment(
        preset="cpu",
        description="Fashion-MNIST base classes 0-4 (12k, labels unused) → 5-way episodes on novel classes 5-9 "
        "of Fashion-MNIST and Animal-MNIST; ConvNet, 6 epochs, baseline vs BECLR (and BECLR with the official "
        "Sinkhorn sign), 3 seeds",
        claim=CLAIM,
        arms={**_arms_with_floor(CPU_ARM), "beclr_official_sign": {**CPU_ARM, "dyce": True, "official_sign": True}},
        comparisons=[*_comparisons(CPU_ARM["eval_sets"]), OFFICIAL_SIGN],
        train_arm=train_small,
        setting={
            "summary": "pre-training: Fashion-MNIST train, base classes 0-4, 2400/class (12k, labels unused); "
            "4-layer ConvNet 28 px, projector 3×256, predictor 256→64→256, EMA teacher m0=0.99 (cosine to 1); "
            "SGD lr 0.3·B/256, wd 1e-4, batch 128, 6 epochs (1 warmup), bf16; λ_neg=0.1, T=2; "
            "DyCE: memory 2048, 20 clusters, top-3, ε=1e-5 (paper's sign), enhancement from epoch 2; "
            "arm beclr_official_sign: the same with the official code's exp(+D/ε) Sinkhorn and its ε retry",
            "scale": "small (CPU)",
            "metric": "5-way accuracy on novel classes 5-9 (Fashion-MNIST test split, 1000/class; Animal-MNIST "
            "1000/class), 600 fixed episodes, 15 queries, logistic regression on standardised-feature "
            "prototypes; OpTA: ε=0.05, 5 passes (1-shot) / 1 pass mixed 0.7 (5-shot)",
        },
        eval_metric="acc_1shot",
        analysis=opta_analysis,
    ),
    "paper": Experiment(
        preset="paper",
        description="mini-ImageNet (hub, Ravi–Larochelle class split: 64 base / 20 novel classes), ResNet-18, "
        "400 epochs, batch 256, DyCE 8192/200/top-5 (needs GPUs)",
        claim=CLAIM,
        arms=_arms(PAPER_ARM),
        comparisons=_comparisons(("mini_imagenet",)),
        train_arm=train_paper,
        setting={
            "summary": "mini-ImageNet from timm/mini-imagenet train+validation (600 images a class), split by "
            "class as Ravi & Larochelle: pre-training on the 64 train classes, episodes on the 20 test classes; "
            "official mini_r18_train.json: SGD lr 0.3, wd 1e-4, batch 256, 400 epochs, out_dim 512, "
            "topk 5, memory_start_epoch 60, 200 clusters, memory_scale 40, ε 1e-5, teacher 0.995, λ_neg 0.1; "
            "official views: RRC 224 (0.2-1), jitter (0.4, 0.4, 0.2, 0.1) p 0.8, grey 0.2, blur 0.5, "
            "RandAugment n2 m10, h+v flips; student input block-masked (16 px patches, ratio 0.15±0.1); "
            "eval 2000 episodes, 5-way, 15 queries",
            "scale": "paper",
        },
        default_seeds=1,
        eval_metric="acc_1shot",
        analysis=opta_analysis,
    ),
}
