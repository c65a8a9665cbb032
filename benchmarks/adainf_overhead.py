"""AdaInf's own cost at the cpu preset: drawing batches from the inflated set, and the generator.

    python benchmarks/adainf_overhead.py [--repeats 30]

Prints, at the cpu preset's batch: the median time of a full SimCLR step (weak augmentation,
ConvNet, bf16), the time to draw one batch from D (permutation stream + lookup of real/generated
images) for no inflation, vanilla (N = 1) and AdaInf (N = 10), and its share of the step; then the
one-off generator cost (fit + sampling |G| images, done once per preset and cached) as a share of
one arm's training and of the whole preset (18 runs).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from methods.adainf.experiments import CPU_ARM, PRESETS, build_model
from methods.adainf.generator import GeneratorConfig, generated_set
from methods.adainf.inflation import InflatedBatches, InflatedData
from shared.benchmark import time_call, training_step_fn
from shared.data.splits import small_image_splits


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--data-dir", default=None)
    args = p.parse_args()
    cfg = {**CPU_ARM, "inflation": "adainf", "augmentation": "weak"}
    b = cfg["batch_size"]
    real, _, _ = small_image_splits(cfg, args.data_dir)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, bf16 autocast, channels_last, batch {b}")

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        gen = generated_set(real, GeneratorConfig.from_arm(cfg), cfg["n_generated"], directory=tmp)
        fresh = time.perf_counter() - start
        start = time.perf_counter()
        generated_set(real, GeneratorConfig.from_arm(cfg), cfg["n_generated"], directory=tmp)
        cached = time.perf_counter() - start

    torch.manual_seed(0)
    model = build_model(cfg).to(memory_format=torch.channels_last)
    step_ms = time_call(training_step_fn(model, {"images": real.images[:b]}), repeats=args.repeats)["median_ms"]
    print(f"training step: {step_ms:.1f} ms")
    print(f"{'inflation':>10} {'|D|':>8} {'draw ms':>9} {'share':>7}")
    for name, copies, generated in (("none", 1, None), ("vanilla", 1, gen.data), ("adainf", 10, gen.data)):
        source = InflatedBatches(InflatedData(real, generated, copies), b)
        counter = iter(range(10**9))

        def draw(source=source, counter=counter) -> None:
            t = next(counter)
            source.data.lookup(source.indices(t, seed=0))

        draw_ms = time_call(draw, repeats=args.repeats * 5)["median_ms"]
        print(f"{name:>10} {len(source.data):>8} {draw_ms:>9.3f} {100 * draw_ms / step_ms:>6.2f}%")

    steps = cfg["epochs"] * (len(real) // b)
    runs = len(PRESETS["cpu"].arms) * PRESETS["cpu"].default_seeds
    print(f"generator: fit + sample {cfg['n_generated']} images {fresh:.1f} s (cached load {cached:.2f} s)")
    print(f"  share of one arm's training ({steps} steps): {100 * fresh / (fresh + steps * step_ms / 1e3):.1f}%")
    print(
        f"  share of the preset ({runs} runs, fitted once): {100 * fresh / (fresh + runs * steps * step_ms / 1e3):.1f}%"
    )


if __name__ == "__main__":
    main()
