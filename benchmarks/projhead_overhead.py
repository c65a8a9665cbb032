"""ProjHead's own costs at the cpu preset (ConvNet, Fashion-MNIST 28 px, batch 128, bf16).

    python benchmarks/projhead_overhead.py [--batch 128] [--repeats 20]

1. Per head (MLP / fixed re-weighting / none): the median time of a full SimCLR training step,
   the head alone (forward + backward on fixed backbone features of both views), and its share.
2. The layer-wise evaluation of one trained network: extracting every layer's features for both
   downstream sets and fitting all ridge probes, against the time of the training it evaluates.
"""

from __future__ import annotations

import argparse
import time

import torch

from methods.projhead.experiments import CPU_ARM, arm_head, build_model, layer_table, small_splits
from shared.augment import to_model_input
from shared.benchmark import time_call, training_step_fn


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=CPU_ARM["batch_size"])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--data-dir", default=None)
    args = p.parse_args()
    cfg = {**CPU_ARM, "batch_size": args.batch}
    train, downstream = small_splits(cfg, args.data_dir)
    batch = {"images": train.images[: args.batch]}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, bf16 autocast, channels_last")
    print(f"{'head':>9} {'step ms':>9} {'head ms':>9} {'share':>7}")
    steps = {}
    for head_name in ("mlp", "reweight", "none"):
        torch.manual_seed(0)
        model = build_model({**cfg, "head": head_name}).to(memory_format=torch.channels_last)
        step = time_call(training_step_fn(model, batch), repeats=args.repeats)["median_ms"]
        steps[head_name] = step
        head = arm_head({**cfg, "head": head_name}, 256)
        h = torch.randn(2 * args.batch, 256, requires_grad=True)

        def head_only(head=head, h=h) -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = head(h)
            out.float().sum().backward()

        head_ms = time_call(head_only, repeats=args.repeats * 5)["median_ms"]
        print(f"{head_name:>9} {step:>9.2f} {head_ms:>9.3f} {100 * head_ms / step:>6.2f}%")

    torch.manual_seed(0)
    model = build_model({**cfg, "head": "mlp"})

    def preprocess(x: torch.Tensor) -> torch.Tensor:
        return to_model_input(x, cfg["image_size"], tuple(cfg["mean"]), tuple(cfg["std"]))

    start = time.perf_counter()
    table = layer_table(model.backbone, model.projector, downstream, preprocess, channels_last=True)
    probe_s = time.perf_counter() - start
    train_s = steps["mlp"] / 1e3 * (len(train) // args.batch) * cfg["epochs"]
    n_eval = sum(len(a) + len(b) for a, b in downstream.values())
    print(f"layer-wise evaluation ({len(table)} layers, {n_eval} images, 2 sets): {probe_s:.1f} s")
    print(f"training it evaluates ({cfg['epochs']} epochs of {len(train)}): ~{train_s:.0f} s")
    print(f"evaluation share of a run: {100 * probe_s / (probe_s + train_s):.1f}%")


if __name__ == "__main__":
    main()
