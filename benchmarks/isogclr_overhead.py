"""SogCLR / iSogCLR's share of a training step at the cpu preset (ConvNet, Fashion-MNIST 28 px, bf16).

    python benchmarks/isogclr_overhead.py [--batch 128] [--repeats 30]

For each loss (InfoNCE for SimCLR, SogCLR, iSogCLR): the median time of a full training step, the
time of the loss alone (forward with its per-sample state update + backward, on fixed embeddings)
and the loss's share of the step.
"""

from __future__ import annotations

import argparse

import torch

from methods.isogclr.experiments import CPU_ARM, build_model, make_loss
from shared.benchmark import time_call, training_step_fn
from shared.data import load_fashion_mnist


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, nargs="+", default=[CPU_ARM["batch_size"]])
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--data-dir", default=None)
    args = p.parse_args()
    images = load_fashion_mnist("train", args.data_dir).images
    n = 10_000  # about the cpu preset's long-tailed training set
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, bf16 autocast, channels_last")
    print(f"{'batch':>5} {'loss':>8} {'step ms':>9} {'loss ms':>9} {'share':>7}")
    for b in args.batch:
        g = torch.Generator().manual_seed(0)
        batch = {"images": images[:b], "index": torch.randperm(n, generator=g)[:b]}
        for name in ("simclr", "sogclr", "isogclr"):
            cfg = {**CPU_ARM, "loss": name, "batch_size": b}
            torch.manual_seed(0)
            model = build_model(cfg, n).to(memory_format=torch.channels_last)
            step = time_call(training_step_fn(model, batch), repeats=args.repeats)["median_ms"]
            loss_fn = make_loss(cfg, n)
            z1 = torch.randn(b, CPU_ARM["head_out"], requires_grad=True)
            z2 = torch.randn(b, CPU_ARM["head_out"], requires_grad=True)
            index = batch["index"]

            def loss_only(loss_fn=loss_fn, z1=z1, z2=z2, index=index, name=name) -> None:
                out = loss_fn(z1, z2) if name == "simclr" else loss_fn(z1, z2, index)
                out.backward()

            loss = time_call(loss_only, repeats=args.repeats * 5)["median_ms"]
            print(f"{b:>5} {name:>8} {step:>9.2f} {loss:>9.3f} {100 * loss / step:>6.2f}%")


if __name__ == "__main__":
    main()
