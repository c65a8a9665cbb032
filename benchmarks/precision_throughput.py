"""Training images/s of DCL's cpu arm (ConvNet 28 px, batch 256) under each precision, through ``fit``.

    python benchmarks/precision_throughput.py [--steps 40]

Prints the CPU capability, whether bf16 is native here, and the images/s that ``fit`` records
in ``run_stats.json`` for fp32 and bf16 autocast (both channels_last, as the preset), plus plain
fp32 without channels_last. On a CPU with AVX512-BF16/AMX bf16 is the fast one; on an AVX2-only
CPU autocast emulates bf16 and is several times slower than fp32, which is why ``precision="auto"``
grants a preset's bf16 only where it is native.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from methods.dcl.experiments import CPU_ARM, build_model
from shared.data.splits import small_image_splits
from shared.engine import InMemoryBatches, TrainConfig, fit, native_bf16


def measure(precision: str, channels_last: bool, steps: int, train) -> float:
    cfg = {**CPU_ARM, "loss": "infonce", "batch_size": 256, "channels_last": channels_last}
    torch.manual_seed(0)
    model = build_model(cfg)
    tc = TrainConfig.from_arm(cfg, 0, None, False, precision=precision, max_steps=steps, lr=0.3)
    with tempfile.TemporaryDirectory() as run_dir:
        fit(model, InMemoryBatches(train, 256), tc, run_dir)
        return json.loads((Path(run_dir) / "run_stats.json").read_text())["samples_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40, help="training steps per setting")
    args = parser.parse_args()
    train, _, _ = small_image_splits({**CPU_ARM, "train_per_class": 2000, "bank_per_class": None})
    print(f"CPU capability: {torch.backends.cpu.get_cpu_capability()}; native bf16: {native_bf16(torch.device('cpu'))}")
    print(f"threads: {torch.get_num_threads()}; DCL cpu arm, ConvNet 28 px, batch 256, {args.steps} steps each")
    for precision, channels_last in (("fp32", False), ("fp32", True), ("bf16", True)):
        speed = measure(precision, channels_last, args.steps, train)
        print(f"  {precision:<5} channels_last={channels_last!s:<5}  {speed:7.0f} img/s")


if __name__ == "__main__":
    main()
