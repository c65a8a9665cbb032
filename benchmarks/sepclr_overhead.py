"""SepCLR's own cost as a share of a training step at the cpu preset (two ConvNets, Fashion-MNIST-digits, bf16).

    python benchmarks/sepclr_overhead.py [--batch 256] [--repeats 20]

For SepCLR, SepCLR without L_JEM and the SimCLR-split baseline: the median time of a full training
step (batched augmentation, forward, backward, Adam update), and of the loss alone on fixed
(B, d) heads, forward + backward, and its share of the step. SepCLR's loss is the four kernel
terms (align / uniformity on both spaces, L_reg, k-JEM): a few B×B matrices.
"""

from __future__ import annotations

import argparse

import torch

from methods.sepclr.experiments import CPU_ARM, arms, build_model
from methods.sepclr.loss import SepCLRLoss
from shared.benchmark import time_call
from shared.data import load_fashion_mnist
from shared.losses import InfoNCELoss


def adam_step_fn(model: torch.nn.Module, batch: dict, lr: float):
    """One full step as the engine runs it: bf16 autocast forward, backward, Adam (SGD diverges at β = 1000)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def run() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(batch)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=CPU_ARM["batch_size"])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--data-dir", default=None)
    args = p.parse_args()
    images = load_fashion_mnist("train", args.data_dir).images[: args.batch]
    labels = torch.arange(args.batch) % 2  # half background, half target, as the cpu preset's batches
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, bf16, channels_last, batch {args.batch}")
    print(f"{'arm':>14} {'step ms':>9} {'loss ms':>9} {'share':>7}")
    for arm, cfg in arms(CPU_ARM).items():
        torch.manual_seed(0)
        model = build_model(cfg).to(memory_format=torch.channels_last)
        step = time_call(adam_step_fn(model, {"images": images, "labels": labels}, cfg["lr"]), repeats=args.repeats)
        d = cfg["common_dim"]
        if cfg["method"] == "sepclr":
            loss_fn = SepCLRLoss(cfg["tau"], cfg["beta_salient"], cfg["beta_reg"], cfg["jem_lambda"])
            heads = [torch.randn(args.batch, d, requires_grad=True) for _ in range(4)]

            def loss_step(loss_fn=loss_fn, heads=heads) -> None:
                loss_fn(*heads, labels)["loss"].backward()
        else:
            loss_fn = InfoNCELoss(cfg["tau"])
            heads = [torch.randn(args.batch, 2 * d, requires_grad=True) for _ in range(2)]

            def loss_step(loss_fn=loss_fn, heads=heads) -> None:
                loss_fn(*heads).backward()

        loss_ms = time_call(loss_step, repeats=args.repeats * 5)["median_ms"]
        print(f"{arm:>14} {step['median_ms']:>9.1f} {loss_ms:>9.2f} {100 * loss_ms / step['median_ms']:>6.2f}%")


if __name__ == "__main__":
    main()
