"""SepCLR's presets: ``smoke`` (seconds), ``cpu`` (the claims at small scale), ``paper`` (CIFAR-10-MNIST).

Claims tested (spec, relative): (i) the salient space predicts the salient factor (digit) and not
the common one, the common space the common factor and not the digit; (ii) removing L_JEM
increases leakage; (iii) SepCLR beats a single-encoder SimCLR whose representation is split in half.
The headline baseline is fairer than (iii)'s: two SimCLR encoders, the common one trained on the
background images, the salient one on the target images (``simclr_bg_tgt``).
Every arm is evaluated by the official protocol: linear probes on the representations of the
*target* images, each space (common, salient) on each label (common class, digit): a 2×2 matrix.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from methods.sepclr.data import ContrastiveSet, GroupBatches, cifar_mnist, fashion_digits
from methods.sepclr.loss import SepCLRLoss
from methods.sepclr.model import GroupSimCLR, SepCLR, SplitSimCLR
from shared.augment import AugmentConfig, BatchedSimCLRAugment, to_model_input
from shared.backbones import build_backbone
from shared.engine import InMemoryBatches, TrainConfig, fit
from shared.experiment import ArmResult, ArmRun, Comparison, Experiment, untrained_arm
from shared.losses import InfoNCELoss
from shared.results import mean_std

METHODS = ("sepclr", "simclr_split", "simclr_bg_tgt")
SPACES = ("c", "s")
PROBES = ("c_on_common", "c_on_salient", "s_on_common", "s_on_salient")


def build_model(cfg: dict[str, Any]) -> SepCLR | SplitSimCLR | GroupSimCLR:
    """The arm's model: ``method`` = ``sepclr`` (two encoders), ``simclr_split`` (one encoder) or
    ``simclr_bg_tgt`` (two SimCLR encoders, one per group)."""
    method = cfg["method"]

    def backbone() -> torch.nn.Module:
        return build_backbone(cfg["backbone"], cfg["channels"], cfg.get("widths"))

    # the official kornia pipeline: crop (0.2, 1), flip, jitter (0.4, 0.4, 0.4, 0.1) p 0.8, grey p 0.2
    augment = BatchedSimCLRAugment(AugmentConfig.from_arm(cfg))
    dims = dict(common_dim=cfg["common_dim"], salient_dim=cfg["salient_dim"], head_hidden=cfg["head_hidden"])
    if method == "sepclr":
        loss = SepCLRLoss(cfg["tau"], cfg["beta_salient"], cfg["beta_reg"], cfg["jem_lambda"])
        return SepCLR(
            backbone(), backbone(), loss, **dims, augment=augment, channels_last=cfg.get("channels_last", False)
        )
    if method == "simclr_split":
        return SplitSimCLR(
            backbone(), InfoNCELoss(cfg["tau"]), **dims, augment=augment, channels_last=cfg.get("channels_last", False)
        )
    if method == "simclr_bg_tgt":
        return GroupSimCLR(
            backbone(),
            backbone(),
            InfoNCELoss(cfg["tau"]),
            **dims,
            augment=augment,
            channels_last=cfg.get("channels_last", False),
        )
    raise ValueError(f"unknown method {method!r}; choose from {METHODS}")


def load_sets(cfg: dict[str, Any], data_dir: str | None) -> tuple[ContrastiveSet, ContrastiveSet]:
    """(train, test) contrastive-analysis sets of an arm's ``data``."""
    if cfg["data"] == "fashion_digits":
        return fashion_digits(cfg["train_per_class"], cfg["test_size"], data_dir)
    if cfg["data"] == "cifar_mnist":
        return cifar_mnist()
    raise ValueError(f"unknown data {cfg['data']!r}; choose 'fashion_digits' or 'cifar_mnist'")


@torch.no_grad()
def space_features(
    model: SepCLR | SplitSimCLR | GroupSimCLR, images: torch.Tensor, cfg: dict[str, Any], batch_size: int = 1024
) -> dict[str, torch.Tensor]:
    """``{"c", "s"}`` representations (float32, CPU) of uint8 images, model in eval mode; plus the
    salient-head norms ``"s_head_norm"`` for SepCLR."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out: dict[str, list[torch.Tensor]] = {"c": [], "s": [], "s_head_norm": []}
    size = cfg.get("eval_size", cfg["image_size"])
    for i in range(0, len(images), batch_size):
        x = to_model_input(images[i : i + batch_size].to(device), size, tuple(cfg["mean"]), tuple(cfg["std"]))
        c, s = model.representations(x)
        out["c"].append(c.float().cpu())
        out["s"].append(s.float().cpu())
        if isinstance(model, SepCLR):
            out["s_head_norm"].append(model.salient_projector(s).float().norm(dim=1).cpu())
    model.train(was_training)
    return {k: torch.cat(v) for k, v in out.items() if v}


def logistic_probe(
    train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, max_iter: int = 1000
) -> float:
    """Top-1 of a multinomial logistic regression (scikit-learn, L-BFGS, C = 1), the official probe,
    on features standardised by the training mean and std."""
    from sklearn.linear_model import LogisticRegression

    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    xtr, xte = ((train_x - mean) / std).double().numpy(), ((test_x - mean) / std).double().numpy()
    clf = LogisticRegression(max_iter=max_iter).fit(xtr, train_y.numpy())
    return float(clf.score(xte, test_y.numpy()))


def probe_matrix(
    train_feats: dict[str, torch.Tensor],
    train: ContrastiveSet,
    test_feats: dict[str, torch.Tensor],
    test: ContrastiveSet,
) -> dict[str, float]:
    """Linear-probe top-1 of each space on each label: ``{c,s}_on_{common,salient}``."""
    out = {}
    for space in SPACES:
        for label in ("common", "salient"):
            ytr, yte = getattr(train, label), getattr(test, label)
            out[f"{space}_on_{label}"] = logistic_probe(train_feats[space], ytr, test_feats[space], yte)
    return out


def probe_evaluator(cfg: dict[str, Any], train: ContrastiveSet, test: ContrastiveSet):
    """``evaluate(model)``: the 2×2 probe matrix on target images (probe trained on ``probe_train``
    training targets, tested on the test targets), and for SepCLR the mean salient-head norm of
    test background and target images (L_reg pulls the former to 0)."""
    probe_train = train.targets().head(cfg.get("probe_train", len(train)))
    test_targets, test_backgrounds = test.targets(), test.backgrounds()

    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        ftr = space_features(model, probe_train.images, cfg)
        fte = space_features(model, test_targets.images, cfg)
        metrics = probe_matrix(ftr, probe_train, fte, test_targets)
        if "s_head_norm" in fte:
            metrics["tgt_salient_norm"] = fte["s_head_norm"].mean().item()
            metrics["bg_salient_norm"] = (
                space_features(model, test_backgrounds.images, cfg)["s_head_norm"].mean().item()
            )
        return metrics

    return evaluate


def train_config(cfg: dict[str, Any], seed: int, epochs: int | None, progress: bool) -> TrainConfig:
    """Adam at a constant learning rate (the official script has no schedule)."""
    return TrainConfig.from_arm(cfg, seed, epochs, progress, final_lr=cfg["lr"])


def train_arm(run: ArmRun) -> ArmResult:
    """Train one (arm, seed) on the in-memory background + target set; probe both spaces.

    The ``untrained`` arm gets zero epochs (``TrainConfig.from_arm``): ``fit`` only probes the initialisation.
    """
    cfg = run.config
    train, test = load_sets(cfg, run.data_dir)
    torch.manual_seed(run.seed)  # paired seeds: the same initialisation for the arms of a seed
    model = build_model(cfg)
    tc = train_config(cfg, run.seed, run.epochs, run.progress)
    if cfg["method"] == "simclr_bg_tgt":  # each encoder sees its own group: half a batch of each per step
        source = GroupBatches(train, tc.batch_size)
    else:
        source = InMemoryBatches(train.training_arrays(), tc.batch_size)
    result = fit(
        model,
        source,
        tc,
        run.run_dir,
        resume=run.resume,
        evaluate=probe_evaluator(cfg, train, test),
        desc=f"{run.arm} s{run.seed}",
    )
    extras = {"train_size": len(train), "train_targets": int(train.group.sum()), "test_targets": int(test.group.sum())}
    return ArmResult(result.final_metrics(), result.history, result.evaluations, result.wall_seconds, extras)


# --- analysis: the 2×2 probe matrix per arm, and its figure ----------------------------------------


def probe_analysis(record: dict, results: dict[str, list[ArmResult]], out_prefix: Path) -> dict[str, Any]:
    """Per arm: the 2×2 matrix (space × label, mean and std over seeds) and the leakage numbers."""
    matrices: dict[str, Any] = {}
    for arm, metrics in record["arms"].items():
        cells = {p: [round(v, 4) for v in mean_std(metrics[p])] for p in PROBES if p in metrics}
        matrices[arm] = {
            "rows_space_cols_label": [
                [cells["c_on_common"][0], cells["c_on_salient"][0]],
                [cells["s_on_common"][0], cells["s_on_salient"][0]],
            ],
            "mean_std": cells,
            "leakage": {
                "common_space_to_salient_label": cells["c_on_salient"][0],
                "salient_space_to_common_label": cells["s_on_common"][0],
            },
        }
    _plot_matrices(matrices, Path(f"{out_prefix}_probes.png"))
    return {
        "probe_matrix": matrices,
        "chance": 0.1,
        "reading": "rows: common space, salient space; columns: common label, salient label "
        "(linear-probe top-1 on test target images). Separation: high diagonal, low off-diagonal.",
    }


def _plot_matrices(matrices: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(matrices), figsize=(3.4 * len(matrices), 3.2), squeeze=False)
    for ax, (arm, m) in zip(axes[0], matrices.items(), strict=True):
        grid = m["rows_space_cols_label"]
        ax.imshow(grid, vmin=0, vmax=1, cmap="viridis")
        for i, space in enumerate(SPACES):
            for j, label in enumerate(("common", "salient")):
                mu, sd = m["mean_std"][f"{space}_on_{label}"]
                ax.text(j, i, f"{mu:.3f}\n±{sd:.3f}", ha="center", va="center", color="w" if mu < 0.6 else "k")
        ax.set_xticks([0, 1], ["common\nlabel", "salient\nlabel"])
        ax.set_yticks([0, 1], ["common\nspace", "salient\nspace"])
        ax.set_title(arm, fontsize=9)
    fig.suptitle("linear-probe top-1 on target images (mean ± std over seeds)", fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)


# --- presets ---------------------------------------------------------------------------------------

SEPCLR_LOSS = dict(tau=0.5, beta_salient=1000.0, beta_reg=1000.0, jem_lambda=10.0)

SMOKE_ARM = dict(
    data="fashion_digits",
    train_per_class=24,
    test_size=200,
    image_size=28,
    channels=1,
    mean=(0.0,),
    std=(1.0,),
    crop_scale=(0.2, 1.0),
    jitter_strength=0.5,
    backbone="convnet",
    widths=(8, 16, 32),
    common_dim=8,
    salient_dim=8,
    head_hidden=32,
    **SEPCLR_LOSS,
    epochs=2,
    batch_size=32,
    lr=1e-3,
    optimizer="adam",
    log_every=2,
)

CPU_ARM = dict(
    data="fashion_digits",
    train_per_class=1000,
    test_size=4000,
    probe_train=5000,
    image_size=28,
    channels=1,
    mean=(0.0,),
    std=(1.0,),
    crop_scale=(0.2, 1.0),
    jitter_strength=0.5,
    backbone="convnet",
    widths=(16, 32, 64, 128),
    common_dim=16,
    salient_dim=16,
    head_hidden=128,
    **SEPCLR_LOSS,
    epochs=10,
    batch_size=256,
    lr=1e-3,
    optimizer="adam",
    eval_every=5,
    bf16=True,
    channels_last=True,
    log_every=10,
)

PAPER_ARM = dict(
    data="cifar_mnist",
    image_size=24,
    eval_size=32,
    channels=3,
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
    crop_scale=(0.2, 1.0),
    jitter_strength=0.5,
    backbone="resnet18",
    common_dim=32,
    salient_dim=32,
    head_hidden=128,
    **SEPCLR_LOSS,
    epochs=250,
    batch_size=512,
    lr=3e-4,
    optimizer="adam",
    eval_every=50,
    bf16=True,
    channels_last=True,
)


def arms(base: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """SepCLR, SepCLR without L_JEM (λ = 0), the single-encoder SimCLR split in half, and two SimCLR encoders
    trained on one group each (background → common, target → salient)."""
    return {
        "sepclr": {**base, "method": "sepclr"},
        "sepclr_no_jem": {**base, "method": "sepclr", "jem_lambda": 0.0},
        "simclr_split": {**base, "method": "simclr_split"},
        "simclr_bg_tgt": {**base, "method": "simclr_bg_tgt"},
    }


def arms_with_floor(base: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """:func:`arms` after the floor arm ``untrained``: the baseline (SimCLR split) at its initialisation."""
    trained = arms(base)
    return {"untrained": untrained_arm(trained["simclr_split"]), **trained}


# The claim's two parts against the fair baseline (a salient encoder of its own, trained on the targets; a common
# encoder trained on the background): the salient space predicts the digit better, and the common space leaks less
# of it. The comparisons with the SimCLR split in half (spec claim iii) and without L_JEM (claim ii) are secondary.
COMPARISONS = [
    Comparison(
        "salient space → digit: SepCLR vs SimCLR background/target encoders",
        "simclr_bg_tgt",
        "sepclr",
        "s_on_salient",
        headline=True,
    ),
    Comparison(
        "common space → digit (leakage): SepCLR vs SimCLR background/target encoders",
        "simclr_bg_tgt",
        "sepclr",
        "c_on_salient",
        "less",
        headline=True,
    ),
    Comparison(
        "salient space → clothing (leakage): SepCLR vs SimCLR background/target encoders",
        "simclr_bg_tgt",
        "sepclr",
        "s_on_common",
        "less",
    ),
    Comparison(
        "common space → clothing: SepCLR vs SimCLR background/target encoders", "simclr_bg_tgt", "sepclr", "c_on_common"
    ),
    Comparison("salient space → digit: SepCLR vs SimCLR split", "simclr_split", "sepclr", "s_on_salient"),
    Comparison(
        "salient space → clothing (leakage): SepCLR vs SimCLR split", "simclr_split", "sepclr", "s_on_common", "less"
    ),
    Comparison(
        "common space → digit (leakage): SepCLR vs SimCLR split", "simclr_split", "sepclr", "c_on_salient", "less"
    ),
    Comparison("common space → digit (leakage): SepCLR vs no L_JEM", "sepclr_no_jem", "sepclr", "c_on_salient", "less"),
    Comparison(
        "salient space → clothing (leakage): SepCLR vs no L_JEM", "sepclr_no_jem", "sepclr", "s_on_common", "less"
    ),
    Comparison("common space → clothing: SepCLR vs SimCLR split", "simclr_split", "sepclr", "c_on_common"),
]

CLAIM = (
    "SepCLR separates the salient factor (digit, target-only) from the common one (clothing): its salient "
    "space predicts the digit better than a SimCLR encoder trained on the target images, and its common space "
    "leaks less of the digit than a SimCLR encoder trained on the background images."
)

PRESETS = {
    "smoke": Experiment(
        preset="smoke",
        description="seconds: 240 Fashion-MNIST-digits images, tiny ConvNets, 2 epochs, batch 32, 1 seed",
        claim=CLAIM,
        arms=arms_with_floor(SMOKE_ARM),
        comparisons=COMPARISONS,
        train_arm=train_arm,
        setting={
            "summary": "Fashion-MNIST-digits, 240 train / 200 test, ConvNet (8-16-32), 2 epochs",
            "scale": "smoke",
        },
        default_seeds=1,
        eval_metric="s_on_salient",
        analysis=probe_analysis,
    ),
    "cpu": Experiment(
        preset="cpu",
        description="Fashion-MNIST-digits 10k (5k background + 5k target), ConvNets, 10 epochs, batch 256, 3 seeds",
        claim=CLAIM,
        arms=arms_with_floor(CPU_ARM),
        comparisons=COMPARISONS,
        train_arm=train_arm,
        setting={
            "summary": "Fashion-MNIST-digits: 10k Fashion-MNIST train images (1000/class), first half background "
            "(0.5·image), second half target (0.5·image + 0.5·sklearn digit, 20 px on 28 px); test 4000 "
            "(2000 targets, held-out digit hand-writing). Two ConvNets (16-32-64-128) → 16-d representations "
            "→ 128-hidden projectors; Adam lr 1e-3 constant, batch 256, 10 epochs; τ=0.5, β_S=β_reg=1000, λ=10; "
            "baselines: one SimCLR encoder split in half, and two SimCLR encoders (τ=0.5), common on background, "
            "salient on target images, 128 of each per step; "
            "official augmentation (crop 0.2-1, flip, jitter 0.5 p 0.8); bf16 CPU",
            "scale": "small (CPU)",
            "metric": "linear-probe top-1 (multinomial logistic regression, scikit-learn L-BFGS, C=1, on "
            "standardised features) of each space's representation on "
            "each label, trained on 5000 training targets, tested on the 2000 test targets; chance 0.1",
        },
        eval_metric="s_on_salient",
        analysis=probe_analysis,
    ),
    "paper": Experiment(
        preset="paper",
        description="CIFAR-10-MNIST (hub), two ResNet-18s, d=32, batch 512, 250 epochs, Adam 3e-4 (needs a GPU)",
        claim=CLAIM,
        arms=arms(PAPER_ARM),
        comparisons=COMPARISONS,
        train_arm=train_arm,
        setting={
            "summary": "official cifar_mnist/sep_clr_k-jem.py: CIFAR-10 train 25k background (0.5·CIFAR) + 25k "
            "target (0.5·CIFAR + 0.5·MNIST), test 500 + 500; two CIFAR-stem ResNet-18s → 32-d; "
            "crops 24 px, eval at 32 px; Adam 3e-4, batch 512, 250 epochs; τ=0.5, β_S=β_reg=1000, λ=10",
            "scale": "paper",
        },
        default_seeds=1,
        eval_metric="s_on_salient",
        analysis=probe_analysis,
    ),
}
