"""MCL's own cost at the cpu preset: the sampler, the cluster-restricted loss, and the clustering.

    python benchmarks/mcl_overhead.py

Times (2 CPU threads, bf16 autocast + channels_last as the cpu preset):
* a full training step of one stage (batch 256 = 4 single-label groups of 64);
* the loss alone (fwd+bwd), cluster-restricted InfoNCE vs plain InfoNCE on the same embeddings;
* the sampler: building one epoch's batches (per step);
* the clustering between stages: features of the 15k training images + MiniBatchKMeans (K=8),
  spread over the steps of one stage (4 epochs), as a share of that stage's training time.
Run it under the shared CPU lock: ``flock /tmp/repro-cpu.lock .venv/bin/python benchmarks/mcl_overhead.py``.
"""

from __future__ import annotations

import time

import torch

from methods.mcl import ClusterBatchSampler, build_stage_model, cluster_info_nce, kmeans_labels
from methods.mcl.experiments import CPU_ARM
from shared.augment import to_model_input
from shared.benchmark import time_call, training_step_fn
from shared.evaluation import extract_features
from shared.losses import info_nce_loss


def main() -> None:
    torch.set_num_threads(2)
    cfg = CPU_ARM
    n, batch, groups, k = 10 * cfg["train_per_class"], cfg["batch_size"], cfg["groups"], cfg["num_clusters"]
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 255, (n, 3, 28, 28), dtype=torch.uint8, generator=g)
    pseudo = torch.randint(k * k, (n,), generator=g)  # a stage-2 pseudo-label: K² combined ids

    sampler = ClusterBatchSampler(pseudo, batch, groups)
    idx = sampler.epoch_batches(0, 0)[0]
    model = build_stage_model(cfg).to(memory_format=torch.channels_last)
    step = time_call(training_step_fn(model, {"images": images[idx], "pseudo": pseudo[idx]}), repeats=15)["median_ms"]

    z1 = torch.randn(batch, cfg["head_out"], requires_grad=True)
    z2 = torch.randn(batch, cfg["head_out"], requires_grad=True)

    def loss_call(fn):
        def run():
            fn().backward()

        return run

    ours = time_call(loss_call(lambda: cluster_info_nce(z1, z2, pseudo[idx], cfg["temperature"])))["median_ms"]
    plain = time_call(loss_call(lambda: info_nce_loss(z1, z2, cfg["temperature"])))["median_ms"]
    epoch_ms = time_call(lambda: sampler.epoch_batches(1, 0), repeats=5, warmup=1)["median_ms"]
    per_step_sampler = epoch_ms / len(sampler)

    start = time.perf_counter()
    feats = extract_features(model.backbone, images, lambda x: to_model_input(x, 28, cfg["mean"], cfg["std"]))
    extract_s = time.perf_counter() - start
    start = time.perf_counter()
    kmeans_labels(feats, k, seed=0)
    kmeans_s = time.perf_counter() - start
    stage_s = cfg["epochs"] * len(sampler) * step / 1e3

    print(f"training step (batch {batch}, {groups} groups): {step:.1f} ms")
    print(
        f"loss fwd+bwd: cluster-restricted {ours:.2f} ms, plain InfoNCE {plain:.2f} ms "
        f"(share of step {ours / step:.1%}; extra over InfoNCE {(ours - plain) / step:+.1%})"
    )
    print(
        f"sampler: {epoch_ms:.1f} ms per epoch of {len(sampler)} steps = {per_step_sampler:.2f} ms/step "
        f"({per_step_sampler / step:.1%} of a step)"
    )
    print(
        f"clustering after a stage: features {extract_s:.1f} s + K-means {kmeans_s:.1f} s; "
        f"stage of {cfg['epochs']} epochs ≈ {stage_s:.0f} s → {(extract_s + kmeans_s) / stage_s:.1%} of a stage"
    )


if __name__ == "__main__":
    main()
