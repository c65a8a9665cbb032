"""OpTA diagnostic on the cpu preset's trained encoders: how the number of passes changes accuracy.

    python benchmarks/beclr_opta_passes.py [--run-dir runs] [--out results/beclr/diagnostics/cpu_opta_passes.json]

Reads the final checkpoints of ``repro run beclr --preset cpu`` (``runs/beclr/cpu/<arm>/seed<s>``),
re-extracts the features of the Fashion-MNIST and Animal-MNIST novel classes, and evaluates the
same 600 episodes with OpTA at 0 (none), 1, 2 and 5 passes (1-shot; BECLR uses 5) and, in 5-shot,
1 pass mixed 0.7 (BECLR) or unmixed. It also evaluates a randomly initialised encoder of each seed
(the paper's "intertwined" claim: OpTA helps a trained encoder more than a random one). Writes the
per-seed accuracies and their mean ± std to a JSON file.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from methods.beclr.experiments import PRESETS, build_model, novel_sets
from methods.beclr.opta import OpTA
from shared.augment import to_model_input
from shared.evaluation import extract_features
from shared.fewshot import evaluate_fewshot

SETTINGS = {
    "1shot_none": (1, None),
    "1shot_opta1": (1, OpTA(passes=1)),
    "1shot_opta2": (1, OpTA(passes=2)),
    "1shot_opta5": (1, OpTA(passes=5)),
    "5shot_none": (5, None),
    "5shot_opta1_mix0.7": (5, OpTA(passes=1, ratio=0.7)),
    "5shot_opta1_nomix": (5, OpTA(passes=1)),
}


def evaluate(model: torch.nn.Module, cfg: dict, sets: dict) -> dict[str, float]:
    def pre(x: torch.Tensor) -> torch.Tensor:
        return to_model_input(x, cfg["image_size"], tuple(cfg["mean"]), tuple(cfg["std"]))

    out = {}
    for name, data in sets.items():
        feats = extract_features(model.backbone, data.images, pre)
        for key, (k, adapt) in SETTINGS.items():
            res = evaluate_fewshot(
                feats, data.labels, cfg["novel_classes"], 5, k, 15, cfg["episodes"], "logistic", "prototypes", adapt,
                "standardize",
            )  # fmt: skip
            out[f"{name}/{key}"] = res.accuracy
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", default="runs")
    p.add_argument("--out", default="results/beclr/diagnostics/cpu_opta_passes.json")
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args()
    exp = PRESETS["cpu"]
    sets = novel_sets(exp.arms["baseline"], None)
    per_arm: dict[str, list[dict[str, float]]] = {}
    for seed in range(args.seeds):
        for arm, cfg in exp.arms.items():
            torch.manual_seed(seed)
            model = build_model(cfg, 1, cfg["epochs"], seed)
            if arm == "baseline":  # the paired initialisation of this seed, before any training
                per_arm.setdefault("random_init", []).append(evaluate(model, cfg, sets))
            ckpt = Path(args.run_dir) / "beclr" / "cpu" / arm / f"seed{seed}" / "checkpoint.pt"
            model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=False)["model"])
            per_arm.setdefault(arm, []).append(evaluate(model, cfg, sets))
            print(f"seed {seed} {arm}: " + ", ".join(f"{k} {v:.4f}" for k, v in per_arm[arm][-1].items()), flush=True)
    summary = {
        arm: {
            k: {
                "mean": statistics.fmean(r[k] for r in runs),
                "std": statistics.stdev(r[k] for r in runs) if len(runs) > 1 else 0.0,
            }
            for k in runs[0]
        }
        for arm, runs in per_arm.items()
    }
    record = {
        "what": "OpTA passes diagnostic on the cpu preset's final checkpoints (see benchmarks/beclr_opta_passes.py)",
        "episodes": exp.arms["baseline"]["episodes"],
        "per_seed": per_arm,
        "summary": summary,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1))
    for arm, values in summary.items():
        print(arm)
        for k, v in values.items():
            print(f"  {k:<40} {v['mean']:.4f} ± {v['std']:.4f}")


if __name__ == "__main__":
    main()
