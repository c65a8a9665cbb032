"""MoCHi's own cost as a share of a training step at the cpu preset (ConvNet, Fashion-MNIST 28 px, bf16).

    PYTHONPATH=. python benchmarks/mochi_overhead.py [--batch 128] [--repeats 20] [--threads 1 --clock cpu]

(``PYTHONPATH=.`` makes a worktree's code the one measured, not an installed copy.) For MoCo v2
and MoCHi(N, s, s′): the median time of a full step (views, query forward and backward,
momentum update, key forward, loss, queue update, SGD), and the time of the method's own
parts on fixed embeddings: the MoCo loss against the queue (forward + backward), the queue
update, and MoCHi's loss (top-N + synthetic logits + the MoCo terms, forward + backward), the
fused one of the package and, for comparison, the previous way (the (B, s + s′, d) mixtures
built as vectors, then MoCo's logits against them). Shares are of the MoCHi step; MoCHi's
own cost is its loss minus the MoCo loss it contains.

``--clock cpu`` times CPU time (``time.process_time``) instead of wall time: with ``--threads 1``
it is steady on a machine whose cores are shared with other work, where wall times of a
2-thread run swing by several times.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from methods.mochi.experiments import CPU_ARM, build_model
from methods.mochi.loss import mochi_loss
from methods.mochi.mixing import synthetic_negatives
from shared.benchmark import time_call, training_step_fn
from shared.data import load_fashion_mnist
from shared.moco import moco_loss
from shared.momentum import EmbeddingQueue


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=CPU_ARM["batch_size"])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    p.add_argument("--data-dir", default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    b = args.batch
    images = load_fashion_mnist("train", args.data_dir).images[:b]
    cfg = {**CPU_ARM, "batch_size": b}
    n, s, s_prime, k_size, dim = cfg["n_hard"], 64, 64, cfg["queue_size"], cfg["head_out"]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.clock} clock, bf16 autocast, "
        f"channels_last, batch {b}"
    )
    print(f"K={k_size}, MoCHi(N={n}, s={s}, s'={s_prime}), bn_splits={cfg['bn_splits']}")

    steps = {}
    for arm, mix in (("moco_v2", (0, 0)), ("mochi", (s, s_prime))):
        torch.manual_seed(0)
        model = build_model({**cfg, "s": mix[0], "s_prime": mix[1]}).to(memory_format=torch.channels_last)
        step = training_step_fn(model, {"images": images})  # mixing starts after time_call's first warm-up step
        steps[arm] = time_call(step, repeats=args.repeats, clock=clock)["median_ms"]

    g = torch.Generator().manual_seed(0)
    q = torch.randn(b, dim, generator=g, requires_grad=True)
    k = F.normalize(torch.randn(b, dim, generator=g), dim=1)
    queue = EmbeddingQueue(k_size, dim, generator=g)

    def loss_only() -> None:
        moco_loss(q, k, queue.snapshot(), 0.2).backward()

    def enqueue_only() -> None:
        queue.enqueue(k)

    def mochi_fused() -> None:
        mochi_loss(q, k, queue.snapshot(), n, s, s_prime, 0.2).backward()

    def mochi_vectors() -> None:
        snap = queue.snapshot()
        extra = synthetic_negatives(F.normalize(q.detach(), dim=1), snap, n, s, s_prime)
        moco_loss(q, k, snap, 0.2, extra).backward()

    repeats = args.repeats * 5
    parts = {
        "MoCo loss vs queue (fwd+bwd)": time_call(loss_only, repeats=repeats, clock=clock)["median_ms"],
        "queue update": time_call(enqueue_only, repeats=repeats, clock=clock)["median_ms"],
        "MoCHi loss, fused (fwd+bwd)": time_call(mochi_fused, repeats=repeats, clock=clock)["median_ms"],
        "MoCHi loss, as vectors (previous)": time_call(mochi_vectors, repeats=repeats, clock=clock)["median_ms"],
    }
    mochi_step = steps["mochi"]
    print(f"{'full step, MoCo v2':<36} {steps['moco_v2']:>9.2f} ms")
    print(f"{'full step, MoCHi':<36} {mochi_step:>9.2f} ms  (+{mochi_step - steps['moco_v2']:.2f} ms)")
    for name, ms in parts.items():
        print(f"{name:<36} {ms:>9.3f} ms  {100 * ms / mochi_step:>6.2f}% of the MoCHi step")
    moco = parts["MoCo loss vs queue (fwd+bwd)"]
    for name, key in (("fused", "MoCHi loss, fused (fwd+bwd)"), ("previous", "MoCHi loss, as vectors (previous)")):
        own = parts[key] - moco
        print(f"{'MoCHi own cost, ' + name + ' (loss − MoCo)':<36} {own:>9.3f} ms  {100 * own / mochi_step:>6.2f}%")


if __name__ == "__main__":
    main()
