"""DCL's share of a training step at the cpu preset (ConvNet, Fashion-MNIST 28 px, bf16).

    python benchmarks/dcl_loss_share.py [--batch 32 256] [--repeats 30]

For each batch size: the median time of a full SimCLR step with each loss, the time of the
loss alone (forward + backward on fixed embeddings), and the loss's share of the step.
"""

from __future__ import annotations

import argparse

import torch

from methods.dcl.experiments import CPU_ARM, build_model, make_loss
from shared.benchmark import time_call, training_step_fn
from shared.data import load_fashion_mnist


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, nargs="+", default=[32, 256])
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--data-dir", default=None)
    args = p.parse_args()
    images = load_fashion_mnist("train", args.data_dir).images
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, bf16 autocast, channels_last")
    print(f"{'batch':>5} {'loss':>8} {'step ms':>9} {'loss ms':>9} {'share':>7}")
    for b in args.batch:
        batch = {"images": images[:b]}
        for loss_name in ("infonce", "dcl", "dclw"):
            torch.manual_seed(0)
            model = build_model({**CPU_ARM, "loss": loss_name, "batch_size": b}).to(memory_format=torch.channels_last)
            step = time_call(training_step_fn(model, batch), repeats=args.repeats)["median_ms"]
            loss_fn = make_loss(loss_name, 0.1)
            z1 = torch.randn(b, 128, requires_grad=True)
            z2 = torch.randn(b, 128, requires_grad=True)

            def loss_only(loss_fn=loss_fn, z1=z1, z2=z2) -> None:
                loss_fn(z1, z2).backward()

            loss = time_call(loss_only, repeats=args.repeats * 5)["median_ms"]
            print(f"{b:>5} {loss_name:>8} {step:>9.2f} {loss:>9.3f} {100 * loss / step:>6.2f}%")


if __name__ == "__main__":
    main()
