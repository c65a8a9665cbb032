"""OBoW's own cost as a share of a training step at the cpu preset (ConvNet, Fashion-MNIST, bf16, batch 128).

    python benchmarks/obow_overhead.py [--batch 128] [--repeats 20]

For each arm of the cpu preset: the median time of a full step (views, student, teacher, loss,
backward, SGD, EMA), and of OBoW's own parts on fixed tensors —

* ``bow``: the BoW targets of every level from fixed teacher maps (squared distances to the K
  words, soft codes, max-pool, L1), the d̄ update and the vocabulary update (no gradient);
* ``head``: the weight generators on the K words, the κ-scaled logits of every crop, the KL
  loss, forward + backward;
* ``teacher``: the teacher's forward on the full image and the EMA update.

and their share of the step. The SimCLR arm is timed for reference.
"""

from __future__ import annotations

import argparse

import torch

from methods.obow.experiments import CPU_ARMS, build_model
from methods.obow.loss import obow_loss
from methods.obow.model import OBoW, level_maps
from shared.augment import to_model_input
from shared.benchmark import time_call, training_step_fn
from shared.data import load_fashion_mnist


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--data-dir", default=None)
    args = p.parse_args()
    images = load_fashion_mnist("train", args.data_dir).images[: args.batch]
    b = args.batch
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, bf16 autocast, channels_last, batch {b}")
    print(f"{'arm':>14} {'step ms':>9} {'bow ms':>8} {'head ms':>8} {'teacher ms':>11} {'own share':>10}")
    for arm, cfg in CPU_ARMS.items():
        torch.manual_seed(0)
        model = build_model(cfg, 1000).to(memory_format=torch.channels_last)
        step = time_call(training_step_fn(model, {"images": images}), repeats=args.repeats)["median_ms"]
        if not isinstance(model, OBoW):
            print(f"{arm:>14} {step:>9.1f} {'-':>8} {'-':>8} {'-':>11} {'-':>10}")
            continue
        x = to_model_input(images, cfg["image_size"], tuple(cfg["mean"]), tuple(cfg["std"]))
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            maps = level_maps(model.teacher, x, model.levels)
        crops = sum(g[0] for g in cfg["crops"]) + cfg.get("num_patches", 0)
        feats = torch.randn(crops * b, model.backbone.out_dim, requires_grad=True)

        def bow(model=model, maps=maps) -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                [e(m) for e, m in zip(model.extractors, maps, strict=True)]

        targets = [e(m) for e, m in zip(model.extractors, maps, strict=True)]

        def head(model=model, feats=feats, targets=targets) -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                vocab = [e.vocabulary() for e in model.extractors]
                loss = obow_loss(model.predictor(feats, vocab), targets)
            loss.backward()

        def teacher(model=model, x=x) -> None:
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                level_maps(model.teacher, x, model.levels)
            model.after_step(0)

        bow_ms = time_call(bow, repeats=args.repeats)["median_ms"]
        head_ms = time_call(head, repeats=args.repeats)["median_ms"]
        teacher_ms = time_call(teacher, repeats=args.repeats)["median_ms"]
        share = 100 * (bow_ms + head_ms) / step
        print(f"{arm:>14} {step:>9.1f} {bow_ms:>8.2f} {head_ms:>8.2f} {teacher_ms:>11.2f} {share:>9.1f}%")


if __name__ == "__main__":
    main()
