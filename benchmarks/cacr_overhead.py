"""CACR's own cost as a share of a training step at the cpu preset (ConvNet, Fashion-MNIST, bf16).

    python benchmarks/cacr_overhead.py [--batch 256] [--repeats 20]

For each loss of the cpu preset (CACR, multi-view SimCLR, multi-view alignment + uniformity) on
the same 2×28 + 3×14 crops: the median time of a full training step (augmentation, forward,
backward, SGD update), and of the loss alone on fixed (5, B, 128) embeddings, forward + backward,
and its share of the step.
"""

from __future__ import annotations

import argparse

import torch

from methods.cacr.experiments import BALANCED_ARMS, build_model, make_loss
from shared.benchmark import time_call, training_step_fn
from shared.data import load_fashion_mnist
from shared.multicrop import crop_groups


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--data-dir", default=None)
    args = p.parse_args()
    images = load_fashion_mnist("train", args.data_dir).images[: args.batch]
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads, bf16 autocast, channels_last, batch {args.batch}")
    print(f"{'arm':>18} {'step ms':>9} {'loss ms':>9} {'share':>7}")
    for arm in ("cacr_bal", "simclr_bal", "align_uniform_bal"):
        cfg = BALANCED_ARMS[arm]
        torch.manual_seed(0)
        model = build_model(cfg).to(memory_format=torch.channels_last)
        step = time_call(training_step_fn(model, {"images": images}), repeats=args.repeats)["median_ms"]
        views = sum(g.count for g in crop_groups(cfg["crops"]))
        z = torch.randn(views, args.batch, cfg["head_out"], requires_grad=True)
        loss_fn = make_loss(cfg)

        def loss_step(loss_fn=loss_fn, z=z) -> None:
            loss_fn(z)["loss"].backward()

        loss_ms = time_call(loss_step, repeats=args.repeats * 5)["median_ms"]
        print(f"{arm:>18} {step:>9.1f} {loss_ms:>9.2f} {100 * loss_ms / step:>6.2f}%")


if __name__ == "__main__":
    main()
