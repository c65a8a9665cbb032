"""SwAV's own cost as a share of a training step at the cpu preset (ConvNet, Fashion-MNIST, bf16).

    python benchmarks/swav_overhead.py [--batch 256] [--repeats 20]

For the 2-crop and the multi-crop arm (and the SimCLR arm for reference): the median time of a
full step, and of SwAV's own parts on fixed embeddings — prototype re-normalisation, the
prototype scores, Sinkhorn (no grad) and the swapped-prediction loss, forward + backward —
and their share of the step. Sinkhorn alone is timed too.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from methods.swav import SwAVLoss, sinkhorn
from methods.swav.experiments import CPU_ARMS, build_model
from shared.benchmark import time_call, training_step_fn
from shared.data import load_fashion_mnist
from shared.multicrop import crop_groups
from shared.prototypes import Prototypes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--data-dir", default=None)
    args = p.parse_args()
    images = load_fashion_mnist("train", args.data_dir).images[: args.batch]
    b = args.batch
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, bf16 autocast, channels_last, batch {b}")
    print(f"{'arm':>16} {'step ms':>9} {'swav ms':>9} {'sinkhorn ms':>12} {'share':>7}")
    for arm, cfg in CPU_ARMS.items():
        torch.manual_seed(0)
        model = build_model(cfg, 78).to(memory_format=torch.channels_last)
        step = time_call(training_step_fn(model, {"images": images}), repeats=args.repeats)["median_ms"]
        if cfg["method"] != "swav":
            print(f"{arm:>16} {step:>9.1f} {'-':>9} {'-':>12} {'-':>7}")
            continue
        crops = sum(g.count for g in crop_groups(cfg["crops"]))
        protos = Prototypes(cfg["head_out"], cfg["num_prototypes"])
        loss_fn = SwAVLoss(cfg["temperature"], cfg["epsilon"], cfg["sinkhorn_iterations"])
        z = F.normalize(torch.randn(crops * b, cfg["head_out"]), dim=1).requires_grad_(True)

        def own(protos=protos, loss_fn=loss_fn, z=z, crops=crops) -> None:
            protos.normalize_()
            loss_fn(protos(z).view(crops, b, -1)).backward()

        own_ms = time_call(own, repeats=args.repeats * 5)["median_ms"]
        scores = protos(z.detach())[:b]
        sk_ms = time_call(lambda scores=scores: sinkhorn(scores, 0.05, 3), repeats=args.repeats * 5)["median_ms"]
        print(f"{arm:>16} {step:>9.1f} {own_ms:>9.2f} {sk_ms:>12.3f} {100 * own_ms / step:>6.2f}%")


if __name__ == "__main__":
    main()
