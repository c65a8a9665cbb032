"""OBoW's own cost as a share of a training step at the cpu preset (ConvNet, Fashion-MNIST, bf16, batch 128).

    PYTHONPATH=. python benchmarks/obow_overhead.py [--batch 128] [--repeats 20] [--threads 1 --clock cpu]

(``PYTHONPATH=.`` makes a worktree's code the one measured, not an installed copy.) For each arm
of the cpu preset: the median time of a full step (views, student, teacher, loss, backward, SGD,
EMA), and of OBoW's own parts on fixed tensors —

* ``bow``: the BoW targets of every level from fixed teacher maps (squared distances to the K
  words, soft codes, max-pool, L1), the d̄ update and the vocabulary update (no gradient);
* ``head``: as the training step does it: the weight generators once on the K words, the κ-scaled
  logits of every crop type, the KL losses, forward + backward; ``gen/type`` is the same with
  the generators run once per crop type (the step before this change; equal for one crop type);
* ``teacher``: the teacher's forward on the full image and the EMA update.

``share`` is (bow + head) / step. Then a count of multiply-accumulates (MACs) per step, at the cpu
preset and at the paper preset's scale (ResNet-50, 224 / 160 / 96 px, K = 8192, batch 256; backward
counted as twice the forward; softmax entries counted apart). It shows where the share comes from:
the BoW distances, the weight generators (a fixed cost per step, K · (C_l · 2C + 2C · C) whatever
the batch) and the logits are a sizeable part of the arithmetic at both scales, and at the cpu
preset they run in float32 (outside autocast, as the package keeps them) and with a softmax over
K words at every position, while the small ConvNet's convolutions run in bf16 — so their share of
the time is larger than their share of the MACs.

``--clock cpu`` times CPU time (``time.process_time``) instead of wall time: with ``--threads 1``
it is steady on a machine whose cores are shared with other work.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
from torch import nn

from methods.obow.experiments import CPU_ARMS, PAPER_ARM, build_model, make_backbone
from methods.obow.loss import obow_loss
from methods.obow.model import OBoW, level_dims, level_maps
from methods.obow.predictor import BoWPredictor
from shared.augment import to_model_input
from shared.benchmark import time_call, training_step_fn
from shared.data import load_fashion_mnist


def forward_macs(module: nn.Module, x: torch.Tensor, call=None) -> int:
    """Multiply-accumulates of the Conv2d and Linear layers in one forward of ``x`` (per batch)."""
    total = 0

    def count(m: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(m, nn.Conv2d):
            total += out.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.Linear):
            total += out.numel() * m.in_features

    hooks = [m.register_forward_hook(count) for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        (call or module)(x)
    for h in hooks:
        h.remove()
    return total


def step_macs(cfg: dict[str, Any], batch: int) -> dict[str, float]:
    """MACs (and softmax entries) of one OBoW step for an arm's config, from a one-image forward per view size."""
    backbone = make_backbone(cfg).eval()
    c, size = cfg["channels"], cfg["image_size"]
    levels = tuple(cfg["levels"])

    def per_image(px: int, teacher: bool = False) -> int:
        x = torch.zeros(1, c, px, px)
        return forward_macs(backbone, x, (lambda t: level_maps(backbone, t, levels)) if teacher else None)

    views = [(n, px) for n, px, _ in cfg["crops"]] + [(cfg.get("num_patches", 0), cfg.get("patch_size", 0))]
    student = 3 * batch * sum(n * per_image(px) for n, px in views if n)  # forward + backward (≈ 2× forward)
    teacher = batch * per_image(size, teacher=True)
    with torch.no_grad():
        maps = level_maps(backbone, torch.zeros(1, c, size, size), levels)
    k, feature = cfg["num_words"], backbone.out_dim
    positions = [(m.shape[-2] - 2) * (m.shape[-1] - 2) for m in maps]  # after the border crop
    dims = level_dims(backbone, levels)
    rows = batch * sum(n for n, _ in views)
    return {
        "student (fwd+bwd)": student,
        "teacher (fwd)": teacher,
        "BoW distances": batch * sum(p * k * d for p, d in zip(positions, dims, strict=True)),
        "generators (fwd+bwd, once)": 3 * k * sum(d * 2 * feature + 2 * feature * feature for d in dims),
        "logits (fwd+bwd)": 3 * rows * feature * k * len(dims),
        "softmax entries": batch * k * sum(positions) + rows * k * len(dims),
    }


def print_macs(name: str, macs: dict[str, float]) -> None:
    print(f"{name}, per step:")
    for part, value in macs.items():
        if part == "softmax entries":
            print(f"  {part:<28} {value / 1e6:>9.1f} M")
        else:
            print(f"  {part:<28} {value / 1e9:>9.3f} GMAC")
    own = macs["BoW distances"] + macs["generators (fwd+bwd, once)"] + macs["logits (fwd+bwd)"]
    total = own + macs["student (fwd+bwd)"] + macs["teacher (fwd)"]
    print(f"  BoW + head: {own / 1e9:.3f} of {total / 1e9:.3f} GMAC = {100 * own / total:.1f}% of the step's MACs")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    p.add_argument("--data-dir", default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    images = load_fashion_mnist("train", args.data_dir).images[: args.batch]
    b = args.batch
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.clock} clock, bf16 autocast, "
        f"channels_last, batch {b}"
    )
    print(f"{'arm':>14} {'step ms':>9} {'bow ms':>8} {'head ms':>8} {'gen/type':>9} {'teacher ms':>11} {'share':>7}")
    for arm, cfg in CPU_ARMS.items():
        torch.manual_seed(0)
        model = build_model(cfg, 1000).to(memory_format=torch.channels_last)
        step = time_call(training_step_fn(model, {"images": images}), repeats=args.repeats, clock=clock)["median_ms"]
        if not isinstance(model, OBoW):
            print(f"{arm:>14} {step:>9.1f} {'-':>8} {'-':>8} {'-':>9} {'-':>11} {'-':>7}")
            continue
        x = to_model_input(images, cfg["image_size"], tuple(cfg["mean"]), tuple(cfg["std"]))
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            maps = level_maps(model.teacher, x, model.levels)
        type_rows = [n * b for n, _, _ in cfg["crops"]] + ([cfg["num_patches"] * b] if cfg.get("num_patches") else [])
        feats = [torch.randn(r, model.backbone.out_dim, requires_grad=True) for r in type_rows]

        def bow(model=model, maps=maps) -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                [e(m) for e, m in zip(model.extractors, maps, strict=True)]

        targets = [e(m) for e, m in zip(model.extractors, maps, strict=True)]

        def head(model=model, feats=feats, targets=targets, once=True) -> None:
            predictor: BoWPredictor = model.predictor
            with torch.autocast("cpu", dtype=torch.bfloat16):
                vocab = [e.vocabulary() for e in model.extractors]
                weights = predictor.weights(vocab) if once else None
                logits = [predictor.logits(f, weights) if once else predictor(f, vocab) for f in feats]
                loss = torch.stack([obow_loss(lg, targets) for lg in logits]).sum()
            loss.backward()

        def teacher(model=model, x=x) -> None:
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                level_maps(model.teacher, x, model.levels)
            model.after_step(0)

        bow_ms = time_call(bow, repeats=args.repeats, clock=clock)["median_ms"]
        head_ms = time_call(head, repeats=args.repeats, clock=clock)["median_ms"]
        per_type_ms = time_call(lambda: head(once=False), repeats=args.repeats, clock=clock)["median_ms"]
        teacher_ms = time_call(teacher, repeats=args.repeats, clock=clock)["median_ms"]
        share = 100 * (bow_ms + head_ms) / step
        print(
            f"{arm:>14} {step:>9.1f} {bow_ms:>8.2f} {head_ms:>8.2f} {per_type_ms:>9.2f} {teacher_ms:>11.2f} "
            f"{share:>6.1f}%"
        )
    print()
    print_macs("cpu preset, obow", step_macs(CPU_ARMS["obow"], b))
    print_macs("paper scale (ResNet-50, K=8192, batch 256)", step_macs(PAPER_ARM, PAPER_ARM["batch_size"]))


if __name__ == "__main__":
    main()
