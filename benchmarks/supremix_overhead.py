"""SupReMix's own cost as a share of a training step at the cpu preset, and how it grows with the batch.

    python benchmarks/supremix_overhead.py [--repeats 20] [--batches 32,64,128,256]

1. At the cpu preset (rotated Fashion-MNIST, ConvNet, batch 64, bf16): the median time of a full
   training step (augmentation, forward, backward, Adam update) for the SupReMix, SupCon and
   SimCLR arms, and of the loss alone on fixed (B, 128) embeddings (forward + backward) with its
   share of the step.
2. The mixture cost against the batch size B (2B anchors, 2B candidates): the loss's time, the
   number of positive-mixture triples (sparse, inside the label window), the O((2B)³) boolean mask
   that finds them, and the size the official dense mixture tensor would have, (2B)³·d floats.
"""

from __future__ import annotations

import argparse

import torch

from methods.supremix.experiments import CPU, build_model, load_data, make_loss
from methods.supremix.loss import positive_mixtures
from shared.benchmark import time_call


def adam_step_fn(model: torch.nn.Module, batch: dict, bf16: bool = True):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def run() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(batch)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--batches", default="32,64,128,256")
    p.add_argument("--data-dir", default=None)
    args = p.parse_args()
    cfg = CPU["fmnist"]
    train, _ = load_data(cfg, args.data_dir)
    b = cfg["batch_size"]
    batch = {"inputs": train.inputs[:b], "targets": train.targets[:b]}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, bf16 autocast, channels_last, batch {b}")
    print(f"{'arm':>10} {'step ms':>9} {'loss ms':>9} {'share':>7}")
    for method in ("supremix", "supcon", "simclr"):
        arm = {**cfg, "method": method}
        torch.manual_seed(0)
        model = build_model(arm, train).to(memory_format=torch.channels_last)
        step = time_call(adam_step_fn(model, batch), repeats=args.repeats)["median_ms"]
        z1 = torch.randn(b, cfg["head_out"], requires_grad=True)
        z2 = torch.randn(b, cfg["head_out"], requires_grad=True)
        loss_fn, labels = make_loss(arm), model.loss_labels(batch["targets"])

        def loss_step(loss_fn=loss_fn, method=method, z1=z1, z2=z2, labels=labels) -> None:
            out = loss_fn(z1, z2) if method == "simclr" else loss_fn(z1, z2, labels)
            out.backward()

        loss_ms = time_call(loss_step, repeats=args.repeats * 3)["median_ms"]
        print(f"{method:>10} {step:>9.1f} {loss_ms:>9.2f} {100 * loss_ms / step:>6.2f}%")

    print("\nmixture cost against the batch (labels: integer degrees in [-45, 45], window 5)")
    print(f"{'B':>5} {'loss ms':>9} {'triples':>9} {'mask MB':>9} {'dense official MB':>18}")
    loss_fn = make_loss({**cfg, "method": "supremix"})
    for bs in (int(x) for x in args.batches.split(",")):
        g = torch.Generator().manual_seed(0)
        y = torch.randint(-45, 46, (bs,), generator=g).float()
        z1 = torch.randn(bs, 128, generator=g, requires_grad=True)
        z2 = torch.randn(bs, 128, generator=g, requires_grad=True)

        def loss_step(y=y, z1=z1, z2=z2) -> None:
            loss_fn(z1, z2, y).backward()

        ms = time_call(loss_step, repeats=max(3, args.repeats // 2))["median_ms"]
        yy = torch.cat([y, y])
        triples = len(positive_mixtures(yy, yy, 5.0)[0])
        m = 2 * bs
        print(f"{bs:>5} {ms:>9.2f} {triples:>9} {m**3 / 2**20:>9.1f} {m**3 * 128 * 4 / 2**20:>18.0f}")


if __name__ == "__main__":
    main()
