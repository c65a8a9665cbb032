"""Hydra's own cost at the cpu preset (ConvNet, Fashion-MNIST 28 px, bf16, batch 256).

    python benchmarks/hydra_cl_overhead.py [--batch 256] [--repeats 20]

Prints: the median time of a full training step of MoCo v3 (β = 0) and of Hydra (β = 1); the time of the
gate + the two disparate losses alone (forward + backward on fixed embeddings, as in one step); their share
of the Hydra step; and the gated-key memory of the official B×N×d form against the two B×N matmuls used
here (:func:`methods.hydra_cl.loss.gated_logits`), at this batch and at the paper's per-GPU scale.
"""

from __future__ import annotations

import argparse

import torch

from methods.hydra_cl import DisparateLoss, gated_logits, gated_logits_materialised
from methods.hydra_cl.experiments import CPU_ARM, build_gate, build_model
from shared.benchmark import time_call, training_step_fn
from shared.data import load_fashion_mnist


def mib(n_floats: int) -> float:
    return n_floats * 4 / 2**20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--data-dir", default=None)
    args = p.parse_args()
    data = load_fashion_mnist("train", args.data_dir)
    b, d = args.batch, CPU_ARM["dim"]
    batch = {"images": data.images[:b], "labels": data.labels[:b]}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, bf16 autocast, channels_last, batch {b}")
    steps = {}
    for name, beta in (("moco_v3", 0.0), ("hydra", 1.0)):
        torch.manual_seed(0)
        cfg = {**CPU_ARM, "beta": beta, "num_classes": 10}
        model = build_model(cfg, total_steps=1000, steps_per_epoch=39).to(memory_format=torch.channels_last)
        steps[name] = time_call(training_step_fn(model, batch), repeats=args.repeats)["median_ms"]
        print(f"step {name:>8}: {steps[name]:8.2f} ms")

    torch.manual_seed(0)
    loss_fn = DisparateLoss(build_gate({**CPU_ARM, "beta": 1.0, "num_classes": 10}))
    q1, q2 = (torch.randn(b, d, requires_grad=True) for _ in range(2))
    k1, k2 = torch.randn(b, d), torch.randn(b, d)
    y = data.labels[:b]

    def disparate_only() -> None:
        y2 = y[torch.randperm(b)]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = (loss_fn(q1, k2, y, y2) + loss_fn(q2, k1, y, y2)) / 2
        loss.backward()

    own = time_call(disparate_only, repeats=args.repeats * 3)["median_ms"]
    print(f"gate + 2 disparate losses (fwd+bwd): {own:.2f} ms = {100 * own / steps['hydra']:.1f}% of the Hydra step")
    print(f"Hydra step over MoCo v3 step: {100 * (steps['hydra'] / steps['moco_v3'] - 1):+.1f}%")

    gate = torch.rand(b, d)
    fused = time_call(lambda: gated_logits(q1, k1, gate), repeats=args.repeats)["median_ms"]
    mat = time_call(lambda: gated_logits_materialised(q1, k1, gate), repeats=args.repeats)["median_ms"]
    print(f"gated logits forward: two B×N matmuls {fused:.2f} ms, materialised B×N×d {mat:.2f} ms")
    for label, bl, n, dim in (("this batch", b, b, d), ("paper, per GPU (256 of 4096)", 256, 4096, 256)):
        print(
            f"gated keys, {label}: B×N×d = {bl}×{n}×{dim} -> {mib(bl * n * dim):.0f} MiB per tensor (official) "
            f"vs B×N = {mib(bl * n):.2f} MiB (here)"
        )


if __name__ == "__main__":
    main()
