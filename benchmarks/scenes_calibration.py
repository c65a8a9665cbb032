"""Calibration of the scenes' classification view: untrained floor, SimCLR, supervised ceiling.

    python benchmarks/scenes_calibration.py [--measure floor simclr supervised] [--epochs 20] [--threads 1] ...

All three score the same 4-layer ConvNet (``build_backbone("convnet", 3)``) by weighted kNN top-1
(k=200, T=0.1; ``shared.evaluation.knn_evaluator``) on the view's test split (seed 1), with the
training split (seed 0) as the bank:

* ``floor``: the network at its initialisation (``torch.manual_seed(seed)``), no training;
* ``simclr``: SimCLR as the project wires it (``TwoViewContrastive`` + 2-layer MLP head +
  ``InfoNCELoss(τ)`` + ``BatchedSimCLRAugment``, trained by ``shared.engine.fit``, SGD lr 0.3·B/256,
  1 warm-up epoch, cosine), the DCL cpu arm's recipe on this data;
* ``supervised``: the same ConvNet + a linear layer trained with cross-entropy on crop+flip views
  (same optimiser and schedule); also reports the classifier's own test top-1.

Each measurement prints one JSON line with its number, the wall and CPU seconds of its training and
evaluation (data generation excluded), and the settings; ``--out`` appends the lines to a file.
``--view`` overrides fields of the view (``ClassificationView``) as JSON, to try other nuisance strengths.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from shared.augment import AugmentConfig, BatchedSimCLRAugment, to_model_input
from shared.backbones import build_backbone
from shared.data.scenes import ClassificationView, make_scene_classification
from shared.data.splits import SCENES_32
from shared.engine import InMemoryBatches, TrainConfig, fit
from shared.evaluation import knn_evaluator
from shared.heads import mlp_head
from shared.losses import InfoNCELoss
from shared.ssl import TwoViewContrastive


class Supervised(nn.Module):
    """Backbone + linear classifier, cross-entropy on one augmented view per image."""

    def __init__(self, backbone: nn.Module, num_classes: int, augment: BatchedSimCLRAugment) -> None:
        super().__init__()
        self.backbone, self.augment = backbone, augment
        self.classifier = nn.Linear(backbone.out_dim, num_classes)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        with torch.autocast(batch["images"].device.type, enabled=False):
            x = self.augment(batch["images"])
        logits = self.classifier(self.backbone(x.contiguous(memory_format=torch.channels_last)))
        return {"loss": F.cross_entropy(logits.float(), batch["labels"])}


def _train_config(args: argparse.Namespace, epochs: int) -> TrainConfig:
    return TrainConfig(
        epochs=epochs,
        batch_size=args.batch_size,
        lr=0.3 * args.batch_size / 256,
        weight_decay=5e-4,
        optimizer="sgd",
        warmup_epochs=1,
        bf16=True,
        channels_last=True,
        seed=args.seed,
        progress=False,
    )


def measure(kind: str, args: argparse.Namespace, view: ClassificationView) -> dict[str, Any]:
    """One measurement (``floor``, ``simclr`` or ``supervised``) as a JSON-able dict."""
    size, mean, std = SCENES_32["image_size"], SCENES_32["mean"], SCENES_32["std"]
    train = make_scene_classification(args.train_per_class, size, seed=0, view=view)
    test = make_scene_classification(args.test_per_class, size, seed=1, view=view)

    def preprocess(x: torch.Tensor) -> torch.Tensor:
        return to_model_input(x, size, mean, std)

    evaluate = knn_evaluator(train, test, preprocess, k=200, temperature=0.1)
    torch.manual_seed(args.seed)
    backbone = build_backbone("convnet", 3)
    wall, cpu = time.perf_counter(), time.process_time()
    out: dict[str, Any] = {"measure": kind}
    if kind == "floor":
        holder = nn.Module()
        holder.backbone = backbone
        out.update(evaluate(holder))
        epochs = 0
    else:
        if kind == "simclr":
            aug = AugmentConfig(image_size=size, crop_scale=(0.2, 1.0), jitter_strength=0.5, mean=mean, std=std)
            head = mlp_head(backbone.out_dim, 256, 128, num_layers=2)
            model: nn.Module = TwoViewContrastive(
                backbone, head, InfoNCELoss(args.temperature), BatchedSimCLRAugment(aug), channels_last=True
            )
            epochs = args.epochs
        else:
            aug = AugmentConfig(
                image_size=size,
                crop_scale=(0.3, 1.0),
                jitter_strength=0.0,
                jitter_p=0.0,
                grayscale_p=0.0,
                mean=mean,
                std=std,
            )
            model = Supervised(backbone, train.num_classes, BatchedSimCLRAugment(aug))
            epochs = args.epochs_supervised
        with tempfile.TemporaryDirectory() as run_dir:
            result = fit(
                model,
                InMemoryBatches(train, args.batch_size),
                _train_config(args, epochs),
                run_dir,
                evaluate=evaluate,
                desc=kind,
            )
            out["precision"] = json.loads((Path(run_dir) / "run_stats.json").read_text())["precision"]
        out.update(result.final_metrics())
        out["final_loss"] = result.history[-1]["loss"] if result.history else None
        if kind == "supervised":
            with torch.no_grad():
                model.eval()
                logits = model.classifier(model.backbone(preprocess(test.images)))
                out["classifier_top1"] = (logits.argmax(1) == test.labels).float().mean().item()
    out.update(
        wall_seconds=round(time.perf_counter() - wall, 1),
        cpu_seconds=round(time.process_time() - cpu, 1),
        epochs=epochs,
        train=len(train),
        test=len(test),
        seed=args.seed,
        view=asdict(view),
        threads=torch.get_num_threads(),
        cpu=platform.processor() or platform.machine(),
        torch=torch.__version__,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--measure",
        nargs="+",
        default=["floor", "simclr", "supervised"],
        choices=("floor", "simclr", "supervised"),
        help="what to measure, in order",
    )
    parser.add_argument("--train-per-class", type=int, default=1000, help="training images (and kNN bank) per class")
    parser.add_argument("--test-per-class", type=int, default=250, help="test images per class")
    parser.add_argument("--epochs", type=int, default=20, help="SimCLR epochs")
    parser.add_argument("--epochs-supervised", type=int, default=20, help="supervised epochs")
    parser.add_argument("--batch-size", type=int, default=256, help="batch size of both trainings")
    parser.add_argument("--temperature", type=float, default=0.1, help="InfoNCE temperature")
    parser.add_argument("--seed", type=int, default=0, help="initialisation and batch-order seed")
    parser.add_argument("--view", default="{}", help="ClassificationView fields as JSON, e.g. '{\"clutter\": [0, 2]}'")
    parser.add_argument("--out", default=None, help="append the JSON lines to this file")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's; 1 on a shared, busy machine)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    view = ClassificationView.from_dict(json.loads(args.view))
    for kind in args.measure:
        line = json.dumps(measure(kind, args, view))
        print(line, flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(line + "\n")


if __name__ == "__main__":
    main()
