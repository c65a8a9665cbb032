"""CL-Behaviour's own costs at the cpu preset (ConvNet, Fashion-MNIST 28 px, bf16, batch 128).

    python benchmarks/clbehaviour_overhead.py [--batch 128] [--repeats 30]

For the plain and the hard (top-K) contrastive loss: the median time of a full SimCLR step, of
the loss alone (forward + backward on fixed 128-d embeddings) and its share of the step; then
the time of the analysis metrics (L_uniformity and tolerance on the 5k test projections), which
run once per training run, not per step.
"""

from __future__ import annotations

import argparse

import torch

from methods.clbehaviour.experiments import CPU_ARM, build_model, make_loss
from methods.clbehaviour.metrics import tolerance, uniformity_loss
from shared.benchmark import time_call, training_step_fn
from shared.data import load_fashion_mnist


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, nargs="+", default=[CPU_ARM["batch_size"]])
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--data-dir", default=None)
    args = p.parse_args()
    images = load_fashion_mnist("train", args.data_dir).images
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, bf16 autocast, channels_last")
    print(f"{'batch':>5} {'loss':>14} {'step ms':>9} {'loss ms':>9} {'share':>7}")
    for b in args.batch:
        batch = {"images": images[:b]}
        for name, cfg in (("plain", {"loss": "plain"}), (f"hard K={CPU_ARM['hard_k']}", {"loss": "hard"})):
            arm = {**CPU_ARM, **cfg, "temperature": 0.5, "batch_size": b}
            torch.manual_seed(0)
            model = build_model(arm).to(memory_format=torch.channels_last)
            step = time_call(training_step_fn(model, batch), repeats=args.repeats)["median_ms"]
            loss_fn = make_loss(arm)
            z1 = torch.randn(b, CPU_ARM["head_out"], requires_grad=True)
            z2 = torch.randn(b, CPU_ARM["head_out"], requires_grad=True)

            def loss_only(loss_fn=loss_fn, z1=z1, z2=z2) -> None:
                loss_fn(z1, z2).backward()

            loss = time_call(loss_only, repeats=args.repeats * 5)["median_ms"]
            print(f"{b:>5} {name:>14} {step:>9.2f} {loss:>9.3f} {100 * loss / step:>6.2f}%")
    n = 10 * CPU_ARM["test_per_class"]
    z = torch.randn(n, CPU_ARM["head_out"])
    labels = torch.arange(n) % 10
    unif = time_call(lambda: uniformity_loss(z), repeats=3, warmup=1)["median_ms"]
    tol = time_call(lambda: tolerance(z, labels), repeats=10, warmup=1)["median_ms"]
    print(f"per run, on {n} test projections: L_uniformity {unif:.0f} ms, tolerance {tol:.1f} ms")


if __name__ == "__main__":
    main()
