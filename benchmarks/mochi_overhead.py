"""MoCHi's own cost as a share of a training step at the cpu preset (ConvNet, Fashion-MNIST 28 px, bf16).

    python benchmarks/mochi_overhead.py [--batch 128] [--repeats 20]

For MoCo v2 and MoCHi(N, s, s′): the median time of a full step (views, query forward and
backward, momentum update, key forward, loss, queue update, SGD), and the time of the
method's own parts on fixed embeddings: the MoCo loss against the queue (forward +
backward), the queue update, and MoCHi's hard-negative mixing (top-N + mixtures) with its
extra logits. Shares are of the MoCHi step.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from methods.mochi.experiments import CPU_ARM, build_model
from methods.mochi.mixing import synthetic_negatives
from shared.benchmark import time_call, training_step_fn
from shared.data import load_fashion_mnist
from shared.moco import moco_loss
from shared.momentum import EmbeddingQueue


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=CPU_ARM["batch_size"])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--data-dir", default=None)
    args = p.parse_args()
    b = args.batch
    images = load_fashion_mnist("train", args.data_dir).images[:b]
    cfg = {**CPU_ARM, "batch_size": b}
    n, s, s_prime, k_size, dim = cfg["n_hard"], 64, 64, cfg["queue_size"], cfg["head_out"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, bf16 autocast, channels_last, batch {b}")
    print(f"K={k_size}, MoCHi(N={n}, s={s}, s'={s_prime}), bn_splits={cfg['bn_splits']}")

    steps = {}
    for arm, mix in (("moco_v2", (0, 0)), ("mochi", (s, s_prime))):
        torch.manual_seed(0)
        model = build_model({**cfg, "s": mix[0], "s_prime": mix[1]}).to(memory_format=torch.channels_last)
        steps[arm] = time_call(training_step_fn(model, {"images": images}), repeats=args.repeats)["median_ms"]

    g = torch.Generator().manual_seed(0)
    q = torch.randn(b, dim, generator=g, requires_grad=True)
    k = F.normalize(torch.randn(b, dim, generator=g), dim=1)
    queue = EmbeddingQueue(k_size, dim, generator=g)

    def loss_only() -> None:
        moco_loss(q, k, queue.snapshot(), 0.2).backward()

    def enqueue_only() -> None:
        queue.enqueue(k)

    def mixing_and_loss() -> None:
        snap = queue.snapshot()
        extra = synthetic_negatives(F.normalize(q.detach(), dim=1), snap, n, s, s_prime)
        moco_loss(q, k, snap, 0.2, extra).backward()

    parts = {
        "MoCo loss vs queue (fwd+bwd)": time_call(loss_only, repeats=args.repeats * 5)["median_ms"],
        "queue update": time_call(enqueue_only, repeats=args.repeats * 5)["median_ms"],
        "MoCHi mixing + loss (fwd+bwd)": time_call(mixing_and_loss, repeats=args.repeats * 5)["median_ms"],
    }
    print(f"{'full step, MoCo v2':<32} {steps['moco_v2']:>9.2f} ms")
    print(f"{'full step, MoCHi':<32} {steps['mochi']:>9.2f} ms  (+{steps['mochi'] - steps['moco_v2']:.2f} ms)")
    for name, ms in parts.items():
        print(f"{name:<32} {ms:>9.3f} ms  {100 * ms / steps['mochi']:>6.2f}% of the MoCHi step")
    own = parts["MoCHi mixing + loss (fwd+bwd)"] + parts["queue update"]
    print(f"{'MoCHi own parts (mixing+loss+queue)':<32} {own:>9.3f} ms  {100 * own / steps['mochi']:>6.2f}%")


if __name__ == "__main__":
    main()
