"""DebCSE's own cost at the cpu preset (all-MiniLM-L6-v2, batch 64 anchors, max 32 tokens, bf16).

    python benchmarks/debcse_overhead.py [--batch 64] [--repeats 5]

Prints the one-off cost of the IPW pair table (teacher encoding of the 6400 training sentences
and the table build), the per-step sampling + tokenisation of the extra blocks, the loss alone,
and a full step of SimCSE (2 encodings per anchor) and DebCSE (3: anchor, positive, negative).
"""

from __future__ import annotations

import argparse
import time

import torch

from methods.debcse.experiments import PRESETS, build_model, ipw_config
from methods.debcse.model import IPWPairBatches
from methods.debcse.sampler import build_pair_table
from shared.benchmark import time_call, training_step_fn
from shared.text.encoders import load_encoder
from shared.text.sentences import TextBatches, load_wiki_sentences
from shared.text.simcse import simcse_loss


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--sentences", type=int, default=None, help="fewer training sentences (quick check)")
    args = p.parse_args()
    arms = PRESETS["cpu"].arms
    cfg = arms["debcse"]
    sentences = load_wiki_sentences(limit=args.sentences or cfg["train_sentences"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, bf16, batch {args.batch}")
    start = time.perf_counter()
    teacher = load_encoder(cfg["teacher"], cfg["teacher_pooling"], cfg["max_length"])
    emb = teacher.encode(sentences, 128, bf16=True, max_length=cfg["max_length"])
    t_teacher = time.perf_counter() - start
    start = time.perf_counter()
    table = build_pair_table(sentences, emb, ipw_config(cfg))
    t_table = time.perf_counter() - start
    torch.manual_seed(0)
    simcse = build_model(arms["simcse"])
    debcse = build_model(cfg, simcse.encoder)
    plain = TextBatches(sentences, simcse.encoder.tokenize, args.batch)
    pairs = IPWPairBatches(sentences, simcse.encoder.tokenize, args.batch, table)
    t_plain = time_call(lambda: next(plain.epoch(0, 0, 0, 1)), repeats=args.repeats * 4)["median_ms"]
    t_pairs = time_call(lambda: next(pairs.epoch(0, 0, 0, 1)), repeats=args.repeats * 4)["median_ms"]
    b_sim, b_deb = next(plain.epoch(0, 0, 0, 1)), next(pairs.epoch(0, 0, 0, 1))
    t_sim = time_call(training_step_fn(simcse, b_sim, lr=1e-6), repeats=args.repeats, warmup=1)["median_ms"]
    t_deb = time_call(training_step_fn(debcse, b_deb, lr=1e-6), repeats=args.repeats, warmup=1)["median_ms"]
    z = [torch.randn(args.batch, 384, requires_grad=True) for _ in range(3)]
    t_loss = time_call(lambda: simcse_loss(*z[:2], 0.05, z[2]).backward(), repeats=args.repeats * 10)["median_ms"]
    steps = len(sentences) // args.batch
    print(f"one-off ({len(sentences)} sentences): teacher encoding {t_teacher:.1f} s + pair table {t_table:.1f} s")
    print(f"  = {100 * (t_teacher + t_table) / (steps * t_deb / 1e3):.1f}% of {steps} DebCSE steps")
    print(f"batch: plain {t_plain:.1f} ms, with sampled pairs {t_pairs:.1f} ms (+{t_pairs - t_plain:.1f} ms)")
    print(f"SimCSE step {t_sim:.1f} ms, DebCSE step {t_deb:.1f} ms ({t_deb / t_sim:.2f}×: the third encoding)")
    print(f"loss with hard negatives {t_loss:.2f} ms ({100 * t_loss / t_deb:.2f}% of the DebCSE step)")
    print(f"sampling + loss: {100 * (t_pairs - t_plain + t_loss) / t_deb:.2f}% of the DebCSE step")


if __name__ == "__main__":
    main()
