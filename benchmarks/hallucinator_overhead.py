"""The Hallucinator's own cost as a share of a training step at the cpu preset (ConvNet, Fashion-MNIST 28 px, bf16).

    python benchmarks/hallucinator_overhead.py [--batch 256] [--repeats 20]

For each host (SimCLR, MoCo v2), the median time of a full step without and with the
Hallucinator (views, forward, backward, SGD; MoCo: momentum update, keys, queue), and the
method's own parts on fixed 128-d embeddings under bf16 autocast: the generator (forward +
backward) and the extra cost of the doubled loss (2B queries instead of B; forward + backward).
Shares are of the host's Hallucinator step.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from methods.hallucinator.experiments import CPU_BASE, HOST_SETTINGS, build_model
from methods.hallucinator.generator import Hallucinator, duplicate_pairs
from methods.hallucinator.models import same_image_mask
from shared.benchmark import time_call, training_step_fn
from shared.data import load_fashion_mnist
from shared.losses import info_nce_loss, two_view_logits
from shared.moco import moco_loss
from shared.momentum import EmbeddingQueue


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=CPU_BASE["batch_size"])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--data-dir", default=None)
    args = p.parse_args()
    b, dim = args.batch, CPU_BASE["head_out"]
    images = load_fashion_mnist("train", args.data_dir).images[:b]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, bf16 autocast, channels_last, batch {b}")

    steps = {}
    for host in ("simclr", "moco_v2"):
        for hallucinate in (False, True):
            cfg = {**CPU_BASE, **HOST_SETTINGS["cpu"][host], "host": host, "hallucinate": hallucinate, "batch_size": b}
            torch.manual_seed(0)
            model = build_model(cfg).to(memory_format=torch.channels_last)
            fn = training_step_fn(model, {"images": images})
            steps[host, hallucinate] = time_call(fn, repeats=args.repeats)["median_ms"]

    g = torch.Generator().manual_seed(0)
    q = torch.randn(b, dim, generator=g, requires_grad=True)
    k = torch.randn(b, dim, generator=g, requires_grad=True)
    gen = Hallucinator(dim)
    queue = EmbeddingQueue(HOST_SETTINGS["cpu"]["moco_v2"]["queue_size"], dim, generator=g)
    k_unit = F.normalize(k.detach(), dim=1)
    q_h = torch.randn(b, dim, generator=g, requires_grad=True)

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16)

    def generator_only() -> None:
        with autocast():
            out = gen(q, k)
        out.float().sum().backward()

    def simclr_extra() -> None:  # the 4B-anchor loss (same-image copies masked) minus the 2B-anchor one
        with autocast():
            tv = two_view_logits(*duplicate_pairs(q, q_h, k), 0.2)
            logits = tv.logits.masked_fill(same_image_mask(tv, b, 0), float("-inf"))
            F.cross_entropy(logits, tv.positive).backward()

    def simclr_base() -> None:
        with autocast():
            info_nce_loss(q, k, 0.2).backward()

    def moco_extra() -> None:
        with autocast():
            moco_loss(*duplicate_pairs(q, q_h, k_unit), queue.snapshot(), 0.2).backward()

    def moco_base() -> None:
        with autocast():
            moco_loss(q, k_unit, queue.snapshot(), 0.2).backward()

    reps = args.repeats * 5
    gen_ms = time_call(generator_only, repeats=reps)["median_ms"]
    med = {fn.__name__: time_call(fn, repeats=reps)["median_ms"] for fn in (simclr_extra, simclr_base, moco_extra)}
    med["moco_base"] = time_call(moco_base, repeats=reps)["median_ms"]
    extra = {"simclr": med["simclr_extra"] - med["simclr_base"], "moco_v2": med["moco_extra"] - med["moco_base"]}
    for host in ("simclr", "moco_v2"):
        base, method = steps[host, False], steps[host, True]
        print(f"\n{host}: full step {base:.2f} ms, + Hallucinator {method:.2f} ms ({100 * (method / base - 1):+.1f}%)")
        print(f"  generator fwd+bwd        {gen_ms:>8.3f} ms  {100 * gen_ms / method:>6.2f}% of the step")
        print(f"  doubled loss, extra      {extra[host]:>8.3f} ms  {100 * extra[host] / method:>6.2f}% of the step")
        own = gen_ms + extra[host]
        print(f"  Hallucinator own parts   {own:>8.3f} ms  {100 * own / method:>6.2f}% of the step")


if __name__ == "__main__":
    main()
