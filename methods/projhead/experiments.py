"""ProjHead's presets: ``smoke`` (seconds), ``cpu`` (the claims at small scale), ``paper`` (CIFAR-100).

The claims (Xue et al., ICLR 2024): the representation *before* the projection head transfers
better than the one after it, most of all when the downstream features differ from the
pre-training ones; features are weighted more unequally with depth (lower layers are "more
normalised"); and a fixed re-weighting head w_i = κ^{-i} is an alternative to the MLP head.

One SimCLR training (ConvNet backbone, InfoNCE) per head — ``mlp``, ``reweight``, ``none`` — and
seed; after training every layer (backbone stages, head layers) is probed once with a ridge
classifier on two downstream sets: Fashion-MNIST itself (in distribution) and procedural grey
shapes (shifted: other images, other features, 4 shape classes). The arms are *readouts*:
``mlp_post`` and ``mlp_pre`` are the same trained network (the same run, reused), read after and
before the head, so their paired difference is exactly the within-run pre − post gap.
"""

from __future__ import annotations

import functools
import itertools
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from methods.projhead.controlled import LINEAR, RELU, theory_preset
from methods.projhead.heads import build_head
from methods.projhead.layers import extract_layers, image_batches, layer_names
from methods.projhead.probes import effective_rank, ridge_probe
from methods.projhead.theory import SyntheticFeatures, feature_weights, train_two_layer
from shared.augment import AugmentConfig, BatchedSimCLRAugment, simclr_transform, to_model_input
from shared.backbones import build_backbone
from shared.data.arrays import ImageArrays, subset_per_class
from shared.data.fashion_mnist import load_fashion_mnist
from shared.data.hub import HubImages, HubViews, load_hub_split
from shared.data.shapes import SHAPE_COLOURS, SHAPE_KINDS, make_shapes
from shared.data.splits import FASHION_MNIST_28
from shared.engine import InMemoryBatches, LoaderBatches, TrainConfig, fit
from shared.experiment import ArmResult, ArmRun, Comparison, Experiment, config_hash, is_untrained, untrained_arm
from shared.losses import InfoNCELoss
from shared.ssl import TwoViewContrastive

ERANK_K = 32  # effective rank over the top-32 singular values: every layer has at least 32 dimensions
_PROCESS_START = time.time()
READOUT_KEYS = ("readout", "share_with")  # arm keys that do not change training


def arm_head(cfg: dict[str, Any], in_dim: int) -> nn.Module:
    """The arm's head: ``head_hidden`` / ``head_out`` size the MLP head; ``kappa`` the re-weighting head."""
    if cfg["head"] == "mlp":
        return build_head("mlp", in_dim, cfg["head_hidden"], cfg["head_out"])
    return build_head(cfg["head"], in_dim, kappa=cfg.get("kappa", 1.05))


def build_model(cfg: dict[str, Any]) -> TwoViewContrastive:
    """SimCLR: backbone → the arm's head (mlp / reweight / none) → InfoNCE(τ) on two views."""
    backbone = build_backbone(cfg["backbone"], cfg["channels"], cfg.get("widths"))
    head = arm_head(cfg, backbone.out_dim)
    augment = BatchedSimCLRAugment(AugmentConfig.from_arm(cfg)) if cfg.get("batched_augment", True) else None
    loss = InfoNCELoss(cfg["temperature"])
    return TwoViewContrastive(backbone, head, loss, augment, channels_last=cfg.get("channels_last", False))


def train_config(cfg: dict[str, Any], seed: int, epochs: int | None, progress: bool) -> TrainConfig:
    """lr follows SimCLR's linear scaling rule, lr · B / 256."""
    return TrainConfig.from_arm(cfg, seed, epochs, progress, lr=cfg["lr"] * cfg["batch_size"] / 256)


# --- data ------------------------------------------------------------------------------


def grey_shapes(n_per_class: int, image_size: int, channels: int, seed: int) -> ImageArrays:
    """Procedural shapes as the shifted downstream set, labelled by shape only (4 classes).

    Colour is dropped from the label (red and blue have nearly the same grey level); with one
    input channel the images are converted to grey (ITU-R 601 luma).
    """
    shapes = make_shapes(n_per_class, image_size, seed=seed)
    images = shapes.images
    if channels == 1:
        luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        images = (images.float() * luma).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    labels = shapes.labels // len(SHAPE_COLOURS)
    return ImageArrays(images, labels, SHAPE_KINDS, f"grey_shapes{image_size}")


@functools.lru_cache(maxsize=4)
def _fashion_mnist(split: str, data_dir: str | None) -> ImageArrays:
    return load_fashion_mnist(split, data_dir)  # decoded once per process, not once per arm


def small_splits(cfg: dict[str, Any], data_dir: str | None) -> tuple[ImageArrays, dict[str, tuple]]:
    """Pre-training set and the downstream (probe-train, probe-test) pairs ``{"id": …, "ood": …}``."""
    full = _fashion_mnist("train", data_dir)
    train = subset_per_class(full, cfg["train_per_class"]) if cfg.get("train_per_class") else full
    bank = subset_per_class(full, cfg["bank_per_class"], seed=1)
    test = _fashion_mnist("test", data_dir)
    if cfg.get("test_per_class"):
        test = subset_per_class(test, cfg["test_per_class"])
    size, ch = cfg["image_size"], cfg["channels"]
    ood = (
        grey_shapes(cfg["ood_train_per_class"], size, ch, 100),
        grey_shapes(cfg["ood_test_per_class"], size, ch, 101),
    )
    return train, {"id": (bank, test), "ood": ood}


# --- per-layer evaluation ----------------------------------------------------------------


def layer_table(
    backbone: nn.Module, head: nn.Module, downstream: dict[str, tuple], preprocess, channels_last: bool = False
) -> dict[str, dict[str, float]]:
    """``{layer: {probe_<set>, erank, dim}}``: a ridge probe per layer and downstream set, and the
    effective rank (top-32) of the layer's features on the in-distribution probe-training set."""
    table: dict[str, dict[str, float]] = {name: {} for name in layer_names(backbone, head)}
    device = next(backbone.parameters()).device
    for name, (tr, te) in downstream.items():
        ftr = extract_layers(
            backbone, head, image_batches(tr.images, preprocess, device=device, channels_last=channels_last)
        )
        fte = extract_layers(
            backbone, head, image_batches(te.images, preprocess, device=device, channels_last=channels_last)
        )
        for layer in table:
            res = ridge_probe(ftr[layer], tr.labels, fte[layer], te.labels, tr.num_classes)
            table[layer][f"probe_{name}"] = res["accuracy"]
            if name == "id":
                table[layer]["erank"] = effective_rank(ftr[layer], ERANK_K)
                table[layer]["dim"] = ftr[layer].shape[1]
    return table


def readout_metrics(table: dict[str, dict[str, float]], readout: str) -> dict[str, float]:
    """The arm's scalar metrics: the probes and erank of its readout layer (``pre`` = last stage)."""
    stages = [k for k in table if k.startswith("stage")]
    layer = stages[-1] if readout == "pre" else "head_out"
    if layer not in table:
        raise ValueError(f"readout {readout!r} needs a layer {layer!r}; this network has {list(table)}")
    return {k: v for k, v in table[layer].items() if k != "dim"}


def _training_key(cfg: dict[str, Any]) -> str:
    return config_hash({k: v for k, v in cfg.items() if k not in READOUT_KEYS})


def _shared_result(run: ArmRun) -> dict | None:
    """The layer table of the arm this one shares its training with, when it is fresh and matches."""
    owner = run.config.get("share_with")
    if not owner:
        return None
    final = run.run_dir.parent.parent / owner / f"seed{run.seed}" / "final.json"
    if not final.exists() or not (run.resume or final.stat().st_mtime >= _PROCESS_START):
        return None
    saved = json.loads(final.read_text())
    extras = saved.get("extras", {})
    if extras.get("training_key") != _training_key(run.config) or run.epochs != extras.get("epochs_override"):
        return None
    return saved


def train_small(run: ArmRun) -> ArmResult:
    """Train one (head, seed) on Fashion-MNIST (or reuse the shared run) and probe every layer.

    The floor arms train nothing: ``untrained`` gets zero epochs (``TrainConfig.from_arm``), so ``fit``
    only builds the network; ``untrained_pre`` reads ``untrained``'s layer table like ``mlp_pre`` reads
    ``mlp_post``'s (the training key keeps the ``untrained`` flag, so a trained run is never reused).
    """
    cfg = run.config
    shared = _shared_result(run)
    if shared is not None:
        table = shared["extras"]["layers"]
        extras = {**shared["extras"], "reused_from": cfg["share_with"]}
        metrics = readout_metrics(table, cfg["readout"])
        return ArmResult(metrics, shared["curve"], shared["evaluations"], 0.0, extras)
    train, downstream = small_splits(cfg, run.data_dir)
    torch.manual_seed(run.seed)  # paired seeds: the same backbone initialisation for every head
    model = build_model(cfg)
    tc = train_config(cfg, run.seed, run.epochs, run.progress)
    result = fit(
        model, InMemoryBatches(train, tc.batch_size), tc, run.run_dir, resume=run.resume, desc=f"{run.arm} s{run.seed}"
    )

    def preprocess(x: torch.Tensor) -> torch.Tensor:
        return to_model_input(x, cfg["image_size"], tuple(cfg["mean"]), tuple(cfg["std"]))

    start = time.perf_counter()
    table = layer_table(model.backbone, model.projector, downstream, preprocess, cfg.get("channels_last", False))
    extras = {
        "layers": table,
        "head": cfg["head"],
        "untrained": is_untrained(cfg),
        "training_key": _training_key(cfg),
        "epochs_override": run.epochs,
        "probe_seconds": round(time.perf_counter() - start, 2),
    }
    return ArmResult(
        readout_metrics(table, cfg["readout"]), result.history, result.evaluations, result.wall_seconds, extras
    )


# --- analysis: per-layer numbers, the figure, the linear-network check -----------------------


def _mean_std(values: list[float]) -> list[float]:
    return [statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0]


def theory_check(seed: int = 0) -> dict[str, Any]:
    """The spec's CPU experiment 1 in brief: a balanced two-layer linear net on synthetic features
    (strengths 1 … 0.3, the second one dropped by augmentation half the time); per-feature
    weights of the pre-projection layer vs √ of the output's."""
    data = SyntheticFeatures(strengths=(1.0, 0.8, 0.6, 0.4, 0.3), drop_p=(0.0, 0.5, 0.0, 0.0, 0.0))
    weights = feature_weights(train_two_layer(data, seed=seed), len(data.strengths))
    sqrt_post = [w**0.5 for w in weights["post"]]
    spread = {k: max(v) / min(v) for k, v in weights.items()}
    return {
        "setting": "d=20, features σ=(1, .8, .6, .4, .3), drop p=(0, .5, 0, 0, 0), noise .1; balanced orthogonal "
        "start (scale .3), population spectral loss, GD lr .05, 3000 steps",
        "pre": weights["pre"],
        "post": weights["post"],
        "max_rel_err_pre_vs_sqrt_post": max(abs(p - s) / s for p, s in zip(weights["pre"], sqrt_post, strict=True)),
        "max_over_min_weight": spread,
    }


def analysis(record: dict, results: dict[str, list[ArmResult]], out_prefix: Path) -> dict[str, Any]:
    """Per-layer probe accuracy and effective rank (mean ± std over seeds) for each trained head (and,
    as ``untrained``, the MLP-head network at initialisation), the depth trend of the effective rank,
    the linear-network check, and ``<preset>_layers.png``."""
    by_head: dict[str, list[dict]] = {}
    for rs in results.values():
        for r in rs:
            if "reused_from" not in r.extras:
                head = "untrained" if r.extras.get("untrained") else r.extras["head"]
                by_head.setdefault(head, []).append(r.extras["layers"])
    layers: dict[str, dict[str, dict[str, list[float]]]] = {}
    trend: dict[str, dict[str, Any]] = {}
    for head, tables in by_head.items():
        names = list(tables[0])
        metrics = [m for m in tables[0][names[0]] if m != "dim"]
        layers[head] = {n: {m: _mean_std([t[n][m] for t in tables]) for m in metrics} for n in names}
        eranks = [[t[n]["erank"] for n in names] for t in tables]
        steps = [(a, b) for e in eranks for a, b in itertools.pairwise(e)]
        trend[head] = {
            "layers": names,
            "erank_drops_per_layer_fraction": sum(b < a for a, b in steps) / max(1, len(steps)),
            "best_layer_id": max(names, key=lambda n: layers[head][n]["probe_id"][0]),
            "best_layer_ood": max(names, key=lambda n: layers[head][n]["probe_ood"][0]),
        }
    _plot_layers(layers, Path(f"{out_prefix}_layers.png"), record.get("preset", ""))
    return {"layers": layers, "depth_trend": trend, "erank_k": ERANK_K, "linear_network": theory_check()}


HEAD_LABELS = {
    "mlp": "MLP head",
    "reweight": "fixed re-weighting head",
    "none": "no head",
    "untrained": "MLP head, untrained (initialisation)",
}


def _plot_layers(layers: dict, path: Path, preset: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = sorted(
        {n for t in layers.values() for n in t}, key=lambda n: (not n.startswith("stage"), n == "head_out", n)
    )
    panels = (
        ("probe_id", "probe top-1, Fashion-MNIST (in distribution)"),
        ("probe_ood", "probe top-1, grey shapes (shifted)"),
        ("erank", f"effective rank (top {ERANK_K})"),
    )
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, (metric, title) in zip(axes, panels, strict=True):
        for head, table in layers.items():
            xs = [order.index(n) for n in table]
            mean = [table[n][metric][0] for n in table]
            std = [table[n][metric][1] for n in table]
            ax.errorbar(xs, mean, yerr=std, marker="o", capsize=3, label=HEAD_LABELS.get(head, head))
        ax.set_xticks(range(len(order)), order, rotation=30)
        ax.set(title=title, xlabel="layer (depth →)")
        ax.legend(fontsize=8)
    fig.suptitle(f"projhead ({preset}): per-layer linear probes, mean ± std over seeds")
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)


# --- paper scale ---------------------------------------------------------------------------

CIFAR100, CIFAR10 = "uoft-cs/cifar100", "uoft-cs/cifar10"
CIFAR_OFFLINE = "no offline copy of CIFAR ships with the project; the paper preset needs the hub"


def paper_model(head: str) -> TwoViewContrastive:
    """ResNet-18 (CIFAR stem) + the arm's head (MLP 512 → 2048 → 128), views made by DataLoader workers."""
    return build_model({**PAPER_ARM, "head": head, "batched_augment": False})


def train_paper(run: ArmRun) -> ArmResult:
    """SimCLR on CIFAR-100 from the hub, then layer-wise probes on CIFAR-100 (in) and CIFAR-10 (shift)."""
    cfg = run.config
    shared = _shared_result(run)
    if shared is not None:
        metrics = readout_metrics(shared["extras"]["layers"], cfg["readout"])
        return ArmResult(
            metrics, shared["curve"], shared["evaluations"], 0.0, {**shared["extras"], "reused_from": cfg["share_with"]}
        )
    c100 = {s: load_hub_split(CIFAR100, s, CIFAR_OFFLINE) for s in ("train", "test")}
    c10 = {s: load_hub_split(CIFAR10, s, CIFAR_OFFLINE) for s in ("train", "test")}
    views = HubViews(
        c100["train"], simclr_transform(AugmentConfig.from_arm(cfg)), image_key="img", label_key="fine_label"
    )
    torch.manual_seed(run.seed)
    model = paper_model(cfg["head"])
    tc = train_config(cfg, run.seed, run.epochs, run.progress)
    result = fit(
        model, LoaderBatches(views, tc.batch_size, cfg["workers"]), tc, run.run_dir, resume=run.resume, desc=run.arm
    )
    norm = tuple(cfg["mean"]), tuple(cfg["std"])
    device = next(model.parameters()).device

    def features(ds, label_key: str) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        images = HubImages(ds, lambda im: to_model_input(_pil_to_uint8(im)[None], 32, *norm)[0], "img", label_key)
        loader = torch.utils.data.DataLoader(images, batch_size=512, num_workers=cfg["workers"])
        labels: list[torch.Tensor] = []

        def inputs():
            for x, y in loader:
                labels.append(torch.as_tensor(y))
                yield x.to(device)

        feats = extract_layers(model.backbone, model.projector, inputs())
        return feats, torch.cat(labels)

    table: dict[str, dict[str, float]] = {}
    for name, ds, key in (("id", c100, "fine_label"), ("ood", c10, "label")):
        (ftr, ytr), (fte, yte) = features(ds["train"], key), features(ds["test"], key)
        for layer in ftr:
            row = table.setdefault(layer, {})
            row[f"probe_{name}"] = ridge_probe(ftr[layer], ytr, fte[layer], yte)["accuracy"]
            if name == "id":
                row["erank"], row["dim"] = effective_rank(ftr[layer][:10000], ERANK_K), ftr[layer].shape[1]
    extras = {"layers": table, "head": cfg["head"], "training_key": _training_key(cfg), "epochs_override": run.epochs}
    return ArmResult(
        readout_metrics(table, cfg["readout"]), result.history, result.evaluations, result.wall_seconds, extras
    )


def _pil_to_uint8(image) -> torch.Tensor:
    from torchvision.transforms.v2.functional import pil_to_tensor

    return pil_to_tensor(image.convert("RGB"))


# --- presets ---------------------------------------------------------------------------------

SMOKE_ARM = dict(
    FASHION_MNIST_28,
    train_per_class=24,
    bank_per_class=20,
    test_per_class=20,
    ood_train_per_class=10,
    ood_test_per_class=10,
    crop_scale=(0.2, 1.0),
    jitter_strength=0.5,
    backbone="convnet",
    widths=(16, 32, 64),
    head_hidden=64,
    head_out=32,
    kappa=1.05,
    temperature=0.5,
    epochs=3,
    batch_size=48,
    lr=0.3,
    optimizer="sgd",
    weight_decay=5e-4,
    log_every=2,
)

CPU_ARM = dict(
    FASHION_MNIST_28,
    train_per_class=1000,
    bank_per_class=500,
    test_per_class=500,
    ood_train_per_class=100,
    ood_test_per_class=100,
    crop_scale=(0.2, 1.0),
    jitter_strength=0.5,
    backbone="convnet",
    head_hidden=256,
    head_out=128,
    kappa=1.05,
    temperature=0.5,
    epochs=5,
    batch_size=128,
    lr=0.3,
    optimizer="sgd",
    weight_decay=5e-4,
    warmup_epochs=1,
    bf16=True,
    channels_last=True,
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
    head_hidden=2048,
    head_out=128,
    kappa=1.05,
    temperature=0.5,
    epochs=200,
    batch_size=512,
    lr=0.3,
    optimizer="lars",
    weight_decay=1e-6,
    warmup_epochs=10,
    bf16=True,
    workers=16,
)

CLAIM = (
    "The pre-projection representation beats the post-projection one in linear-probe accuracy "
    "on a shifted downstream task."
)


def _arms(base: dict) -> dict[str, dict]:
    """Readout arms: ``mlp_post`` trains, ``mlp_pre`` reuses its run; ``reweight`` and ``no_head`` train."""
    return {
        "mlp_post": {**base, "head": "mlp", "readout": "post"},
        "mlp_pre": {**base, "head": "mlp", "readout": "pre", "share_with": "mlp_post"},
        "reweight": {**base, "head": "reweight", "readout": "pre"},
        "no_head": {**base, "head": "none", "readout": "pre"},
    }


def _arms_with_floor(base: dict) -> dict[str, dict]:
    """The floor arms, then :func:`_arms`: ``untrained`` is ``mlp_post`` at its seed's initialisation
    (read after the head); ``untrained_pre`` reads the same untrained network before the head (it reuses
    ``untrained``'s run) and is the floor of the pre-projection readouts, whose backbone starts from the
    same initialisation whatever the head."""
    arms = _arms(base)
    return {
        "untrained": untrained_arm(arms["mlp_post"]),
        "untrained_pre": untrained_arm({**arms["mlp_pre"], "share_with": "untrained"}),
        **arms,
    }


PRE_READOUT_FLOOR = {
    "arm": "untrained_pre",
    "metric": "probe_ood",
    "direction": "greater",
    "min_gain": 0.02,
    "arms": ["mlp_pre", "reweight", "no_head"],
}

COMPARISONS = [
    Comparison(
        "pre- vs post-projection, shifted downstream (grey shapes)", "mlp_post", "mlp_pre", "probe_ood", headline=True
    ),
    Comparison("pre- vs post-projection, in distribution (Fashion-MNIST)", "mlp_post", "mlp_pre", "probe_id"),
    Comparison("pre-projection features are more evenly weighted (effective rank)", "mlp_post", "mlp_pre", "erank"),
    Comparison("fixed re-weighting head vs MLP head (pre-projection), shifted", "mlp_pre", "reweight", "probe_ood"),
    Comparison(
        "fixed re-weighting head vs MLP head (pre-projection), in distribution", "mlp_pre", "reweight", "probe_id"
    ),
    Comparison("MLP head vs no head (pre-projection), shifted", "no_head", "mlp_pre", "probe_ood"),
    Comparison("MLP head vs no head (pre-projection), in distribution", "no_head", "mlp_pre", "probe_id"),
]

PRESETS = {
    "smoke": Experiment(
        preset="smoke",
        description="seconds: 3 epochs on 240 Fashion-MNIST images, tiny ConvNet, 1 seed",
        claim=CLAIM,
        arms=_arms_with_floor(SMOKE_ARM),
        extra_floors=[PRE_READOUT_FLOOR],
        comparisons=COMPARISONS,
        train_arm=train_small,
        setting={"summary": "Fashion-MNIST 240 train, ConvNet (16, 32, 64), 3 epochs, batch 48", "scale": "smoke"},
        default_seeds=1,
        analysis=analysis,
    ),
    "cpu": Experiment(
        preset="cpu",
        description="Fashion-MNIST 10k, ConvNet, 5 epochs, MLP / re-weighting / no head, layer-wise probes, 3 seeds",
        claim=CLAIM,
        arms=_arms_with_floor(CPU_ARM),
        extra_floors=[PRE_READOUT_FLOOR],
        comparisons=COMPARISONS,
        train_arm=train_small,
        setting={
            "summary": "SimCLR on Fashion-MNIST 10k (1000/class), 4-layer ConvNet 28 px, batch 128, SGD lr 0.3·B/256, "
            "1 warmup epoch, cosine, 5 epochs, InfoNCE τ=0.5; heads: MLP 256→256→128, fixed re-weighting "
            "κ=1.05 (d=256), none; bf16 CPU",
            "scale": "small (CPU)",
            "metric": "ridge linear-probe top-1 (λ picked on a 20% validation split) of the readout layer; "
            "in distribution: Fashion-MNIST (probe-train 500/class from the train split, test 500/class of "
            "the test split); shifted: grey procedural shapes, "
            "4 shape classes (1200 probe-train, 1200 test); erank: effective rank of the top-32 singular values",
        },
        analysis=analysis,
    ),
    "paper": Experiment(
        preset="paper",
        description="CIFAR-100 (hub), ResNet-18, SimCLR, 200 epochs, layer-wise probes on CIFAR-100 / CIFAR-10 (GPUs)",
        claim="Pre-projection features of SimCLR on CIFAR-100 transfer better to CIFAR-10 than post-projection ones.",
        arms=_arms(PAPER_ARM),
        comparisons=COMPARISONS,
        train_arm=train_paper,
        setting={
            "summary": "CIFAR-100 train (hub), ResNet-18 CIFAR stem, SimCLR augmentations, LARS lr 0.3·B/256, "
            "batch 512, 200 epochs, τ=0.5; ridge probes per layer on CIFAR-100 and CIFAR-10",
            "scale": "paper",
        },
        default_seeds=1,
        analysis=analysis,
    ),
    "cpu-theory": theory_preset(
        "cpu-theory",
        LINEAR,
        RELU,
        "synthetic features, about a minute: diagonal ReLU net (features kept before the head, lost after it) and "
        "the linear net's feature-drop sweep (p = 0, .5, .75, .9), pre vs post readouts, 3 seeds",
        seeds=3,
    ),
}
