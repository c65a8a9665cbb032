"""The spec's controlled experiments on synthetic features: the ``cpu-theory`` preset (about a minute on CPU).

1. **Feature-drop sweep** (linear network, spec experiment 1 with the drop probability swept, the synthetic
   stand-in for experiment 3): a balanced two-layer linear net f(x) = W₂W₁x trained by gradient descent
   on the population spectral loss (:func:`~methods.projhead.theory.train_two_layer`); features of
   strengths (1, .8, .6, .4, .3), the *downstream* feature (σ = .6) dropped by the augmentation with
   probability p ∈ {0, .5, .75, .9}. Per readout (h = W₁x "pre", z = W₂W₁x "post"): its weight
   relative to the layer's strongest feature (``relative_weight``; the theory: pre = √post, so
   pre > post whenever the feature is not the strongest, more so as p grows), and a few-label ridge
   probe of the downstream feature's sign on clean inputs (``probe_dropped``; what the weighting does
   to a downstream task).
2. **Diagonal ReLU network** (spec experiment 2): h = [ReLU(u ⊙ x), ReLU(−v ⊙ x)], z = W₂h with one
   output dimension per feature, trained by SGD on the spectral loss of two noisy views of
   x_k = a_k·m_k·σ_k (sign a and magnitude m shared by the views). Per readout: ridge probes of every
   feature's magnitude (``probe_magnitude``, the mean over features; even in x, so a ReLU layer can
   hold it and a linear map of the signs cannot) and sign (``probe_sign``), and the number of features
   whose magnitude the readout has lost (``absent_magnitudes``: probe below 0.65, chance 0.5).

Arms are readouts of one training per (model, p, seed): the pre and post arms of a seed train the same
network (deterministic, single-threaded), so their paired difference is the within-network gap. The two
floors are the networks at their start (``untrained``: the ReLU net; ``untrained_linear``: the linear
net of the p = .9 data), judged on the spectral loss each arm reaches (held-out pairs for the ReLU net,
the exact population loss for the linear one).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from methods.projhead.probes import ridge_probe
from methods.projhead.theory import (
    DiagonalReLUNet,
    SignMagnitudeFeatures,
    SyntheticFeatures,
    TwoLayerLinear,
    feature_weights,
    heldout_spectral_loss,
    population_spectral_loss,
    train_diagonal_relu,
    train_two_layer,
)
from shared.experiment import ArmResult, ArmRun, Comparison, Experiment, is_untrained, untrained_arm

ABSENT_BELOW = 0.65  # a binary probe under this accuracy (chance 0.5) counts the feature as absent
LOSS_SEED = 12345  # held-out pairs of the ReLU loss: the same for every arm and seed


def _probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor) -> float:
    return ridge_probe(train_x.float(), train_y.long(), test_x.float(), test_y.long(), 2)["accuracy"]


def linear_data(cfg: dict[str, Any]) -> SyntheticFeatures:
    drop = [0.0] * len(cfg["strengths"])
    drop[cfg["feature"]] = cfg["drop"]
    return SyntheticFeatures(tuple(cfg["strengths"]), tuple(drop), cfg["dim"], cfg["noise"])


def run_linear(cfg: dict[str, Any], seed: int) -> dict[str, float]:
    """Train (or not) the balanced linear net on the sweep's data; metrics of the arm's readout."""
    data = linear_data(cfg)
    if is_untrained(cfg):
        net = TwoLayerLinear(data.dim, cfg["hidden"], cfg["out"], cfg["init_scale"], seed, balanced=True)
    else:
        net = train_two_layer(
            data, cfg["hidden"], cfg["out"], cfg["steps"], cfg["lr"], cfg["init_scale"], balanced=True, seed=seed
        )
    pos, cov = data.moments()
    with torch.no_grad():
        loss = population_spectral_loss(net.w2 @ net.w1, pos, cov).item()
    weights = feature_weights(net, len(data.strengths))[cfg["readout"]]
    g = torch.Generator().manual_seed(1000 + seed)  # downstream samples: clean inputs (no drop), per seed
    k = cfg["feature"]
    a_tr, a_te = data.latents(cfg["probe_train"], g), data.latents(cfg["probe_test"], g)
    x_tr, x_te = data.inputs(a_tr, g, augment=False), data.inputs(a_te, g, augment=False)
    with torch.no_grad():
        r_tr, r_te = (net(x)[0 if cfg["readout"] == "pre" else 1] for x in (x_tr, x_te))
    return {
        "loss": loss,
        "relative_weight": weights[k] / max(weights),
        "probe_dropped": _probe(r_tr, a_tr[:, k] > 0, r_te, a_te[:, k] > 0),
    }


def relu_data(cfg: dict[str, Any]) -> SignMagnitudeFeatures:
    return SignMagnitudeFeatures(tuple(cfg["strengths"]), tuple(cfg["magnitudes"]), cfg["noise"])


def run_relu(cfg: dict[str, Any], seed: int) -> dict[str, float]:
    """Train (or not) the diagonal ReLU net; magnitude and sign probes of the arm's readout."""
    data = relu_data(cfg)
    if is_untrained(cfg):
        net = DiagonalReLUNet(data.k, cfg["out"], cfg["init_scale"], seed)
    else:
        net = train_diagonal_relu(data, cfg["out"], cfg["steps"], cfg["lr"], cfg["batch"], cfg["init_scale"], seed)
    g = torch.Generator().manual_seed(1000 + seed)
    (a_tr, hi_tr), (a_te, hi_te) = data.latents(cfg["probe_train"], g), data.latents(cfg["probe_test"], g)
    with torch.no_grad():
        index = 0 if cfg["readout"] == "pre" else 1
        r_tr, r_te = net(data.view(a_tr, hi_tr, g))[index], net(data.view(a_te, hi_te, g))[index]
    magnitude = [_probe(r_tr, hi_tr[:, k], r_te, hi_te[:, k]) for k in range(data.k)]
    sign = [_probe(r_tr, a_tr[:, k] > 0, r_te, a_te[:, k] > 0) for k in range(data.k)]
    return {
        "loss": heldout_spectral_loss(net, data, seed=LOSS_SEED),
        "probe_magnitude": sum(magnitude) / len(magnitude),
        "probe_sign": sum(sign) / len(sign),
        "absent_magnitudes": float(sum(m < ABSENT_BELOW for m in magnitude)),
    }


def train_theory(run: ArmRun) -> ArmResult:
    start = time.perf_counter()
    cfg = run.config
    metrics = run_linear(cfg, run.seed) if cfg["model"] == "linear" else run_relu(cfg, run.seed)
    return ArmResult(metrics, wall_seconds=time.perf_counter() - start)


LINEAR = dict(
    model="linear",
    strengths=(1.0, 0.8, 0.6, 0.4, 0.3),
    feature=2,
    dim=20,
    noise=0.3,
    hidden=20,
    out=20,
    steps=3000,
    lr=0.05,
    init_scale=0.3,
    probe_train=40,
    probe_test=4000,
)
RELU = dict(
    model="relu",
    strengths=(1.0, 0.8, 0.6, 0.4),
    magnitudes=(0.5, 1.5),
    noise=0.1,
    out=4,
    steps=2000,
    lr=0.05,
    batch=256,
    init_scale=0.1,
    probe_train=200,
    probe_test=2000,
)
DROPS = {"p00": 0.0, "p50": 0.5, "p75": 0.75, "p90": 0.9}


def theory_arms(linear: dict, relu: dict) -> dict[str, dict]:
    arms = {
        "relu_post": {**relu, "readout": "post"},
        "relu_pre": {**relu, "readout": "pre"},
    }
    for tag, p in DROPS.items():
        for readout in ("post", "pre"):
            arms[f"linear_{tag}_{readout}"] = {**linear, "drop": p, "readout": readout}
    return {
        "untrained": untrained_arm(arms["relu_post"]),
        "untrained_linear": untrained_arm(arms["linear_p90_post"]),
        **arms,
    }


THEORY_COMPARISONS = [
    Comparison(
        "diagonal ReLU net: feature magnitudes kept before the projection, lost after it",
        "relu_post",
        "relu_pre",
        "probe_magnitude",
        headline=True,
    ),
    Comparison(
        "linear net, downstream feature dropped w.p. 0.9: weighted more evenly before the projection",
        "linear_p90_post",
        "linear_p90_pre",
        "relative_weight",
        headline=True,
    ),
    Comparison("diagonal ReLU net: signs, pre vs post", "relu_post", "relu_pre", "probe_sign"),
    *[
        Comparison(
            f"linear net, drop p = {p}: relative weight of the downstream feature, pre vs post",
            f"linear_{tag}_post",
            f"linear_{tag}_pre",
            "relative_weight",
        )
        for tag, p in DROPS.items()
        if tag != "p90"
    ],
    *[
        Comparison(
            f"linear net, drop p = {p}: few-label probe of the downstream feature, pre vs post",
            f"linear_{tag}_post",
            f"linear_{tag}_pre",
            "probe_dropped",
        )
        for tag, p in DROPS.items()
    ],
]

THEORY_CLAIM = (
    "Controlled experiments: a diagonal ReLU network keeps in its pre-projection layer features (magnitudes) that "
    "its output has lost, and a linear network weights a feature disrupted by augmentation more evenly before the "
    "projection than after it."
)


def theory_preset(preset: str, linear: dict, relu: dict, description: str, seeds: int) -> Experiment:
    arms = theory_arms(linear, relu)
    linear_arms = [a for a in arms if a.startswith("linear_")]
    return Experiment(
        preset=preset,
        description=description,
        claim=THEORY_CLAIM,
        arms=arms,
        comparisons=THEORY_COMPARISONS,
        train_arm=train_theory,
        setting={
            "summary": "synthetic features, float64. Linear: d=20, strengths (1, .8, .6, .4, .3), noise .3, the "
            "σ=.6 feature dropped w.p. p ∈ {0, .5, .75, .9}; balanced orthogonal start (scale .3), GD on the "
            "population spectral loss, lr .05, 3000 steps; probe: ridge on 40 clean samples. Diagonal ReLU: 4 "
            "features (1, .8, .6, .4), sign ±1 and magnitude {.5, 1.5} shared by two views with noise .1, "
            "one ± ReLU pair per coordinate, 4 outputs, SGD lr .05, batch 256, 2000 steps; probes: ridge on 200",
            "scale": "small (CPU)",
            "metric": "relative_weight: ‖W e_k‖ of the downstream feature over the layer's largest; probe_*: ridge "
            "probe accuracy (binary); loss: spectral contrastive loss (floor metric)",
        },
        default_seeds=seeds,
        eval_metric="loss",
        floor_metric="loss",
        floor_direction="less",
        min_gain=0.1,
        extra_floors=[
            {"arm": "untrained_linear", "metric": "loss", "direction": "less", "min_gain": 0.1, "arms": linear_arms}
        ],
    )
