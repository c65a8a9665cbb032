"""BECLR's own cost as a share of a training step at the cpu preset (ConvNet, Fashion-MNIST 28 px, bf16).

    python benchmarks/beclr_overhead.py [--batch 128] [--repeats 20]

Times the median full step (views, student and teacher forwards, DyCE, loss, backward, SGD,
EMA) of the no-memory baseline and of BECLR with its three memories filled, clustered and
enhancing; then DyCE's parts alone on fixed embeddings (one memory's update — Sinkhorn,
enqueue, prototype means — and its enhancement, ×3 for the three memories), the loss on the
enhanced batch, and OpTA per 5-way episode at inference.
"""

from __future__ import annotations

import argparse

import torch

from methods.beclr.experiments import CPU_ARM, build_model
from methods.beclr.opta import opta_for_shots
from shared.benchmark import time_call, training_step_fn
from shared.data import load_fashion_mnist


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=CPU_ARM["batch_size"])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--data-dir", default=None)
    args = p.parse_args()
    b = args.batch
    images = load_fashion_mnist("train", args.data_dir).images[: 32 * b]
    cfg = {**CPU_ARM, "batch_size": b, "memory_start_epoch": 0}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, bf16 autocast, channels_last, batch {b}")
    print(f"DyCE: memory {cfg['memory_size']}, {cfg['num_clusters']} clusters, top-{cfg['topk']}")

    steps = {}
    models = {}
    for arm, dyce in (("baseline", False), ("beclr", True)):
        torch.manual_seed(0)
        model = build_model({**cfg, "dyce": dyce}, steps_per_epoch=100, epochs=10).to(memory_format=torch.channels_last)
        if dyce:  # fill and cluster the memories first (not timed: k-means runs once per run)
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                for i in range(cfg["memory_size"] // (2 * b) + 1):
                    model({"images": images[i * b : (i + 1) * b]})
            assert model.enhancing()
        models[arm] = model
        steps[arm] = time_call(training_step_fn(model, {"images": images[:b]}), repeats=args.repeats)["median_ms"]

    memory = models["beclr"].memories["student"]
    z = torch.randn(2 * b, cfg["out_dim"], requires_grad=True)

    def update_only() -> None:
        memory.update(z.detach())

    def enhance_only() -> None:
        memory.enhance(z)

    zt = torch.randn(2 * b * (1 + cfg["topk"]), cfg["out_dim"])
    pz = zt.clone().requires_grad_(True)

    def loss_only() -> None:
        models["beclr"].loss(zt, pz, pz)["loss"].backward()

    reps = args.repeats * 3
    parts = {
        "DyCE update ×3 (OT, enqueue, means)": 3 * time_call(update_only, repeats=reps)["median_ms"],
        "DyCE enhance ×3 (top-k in cluster)": 3 * time_call(enhance_only, repeats=reps)["median_ms"],
        "loss on B(1+k) rows (fwd+bwd)": time_call(loss_only, repeats=reps)["median_ms"],
    }
    print(f"{'full step, baseline':<38} {steps['baseline']:>9.2f} ms")
    print(f"{'full step, BECLR':<38} {steps['beclr']:>9.2f} ms  (+{steps['beclr'] - steps['baseline']:.2f} ms)")
    for name, ms in parts.items():
        print(f"{name:<38} {ms:>9.3f} ms  {100 * ms / steps['beclr']:>6.2f}% of the BECLR step")
    own = parts["DyCE update ×3 (OT, enqueue, means)"] + parts["DyCE enhance ×3 (top-k in cluster)"]
    print(f"{'DyCE total':<38} {own:>9.3f} ms  {100 * own / steps['beclr']:>6.2f}%")

    protos, queries = torch.randn(200, 5, 256), torch.randn(200, 75, 256)
    for k in (1, 5):
        ms = time_call(lambda k=k: opta_for_shots(k)(protos, queries), repeats=3, warmup=1)["median_ms"]
        print(f"OpTA {k}-shot, per episode (batch of 200): {ms / 200:.3f} ms")


if __name__ == "__main__":
    main()
