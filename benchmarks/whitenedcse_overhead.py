"""WhitenedCSE's own cost at the cpu preset (all-MiniLM-L6-v2, batch 64, max 32 tokens, bf16).

    python benchmarks/whitenedcse_overhead.py [--batch 64] [--repeats 5]

Prints the median time of a full training step of SimCSE (2 views) and WhitenedCSE (3 views),
the time of shuffled group whitening + the multi-positive loss alone (forward + backward on
fixed (3, B, 384) encodings), and its share of the WhitenedCSE step. The third view's extra
encoder pass is the method's larger cost and is reported separately (step ratio).
"""

from __future__ import annotations

import argparse

import torch

from methods.whitenedcse.experiments import PRESETS, build_model
from methods.whitenedcse.model import multi_positive_loss
from methods.whitenedcse.whitening import ShuffledGroupWhitening
from shared.benchmark import time_call, training_step_fn
from shared.text.sentences import load_wiki_sentences


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    arms = PRESETS["cpu"].arms
    torch.manual_seed(0)
    simcse = build_model(arms["simcse"])
    whitened = build_model(arms["whitenedcse"], simcse.encoder)
    batch = simcse.encoder.tokenize(load_wiki_sentences(limit=args.batch))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, bf16, batch {args.batch}")
    t_sim = time_call(training_step_fn(simcse, batch, lr=1e-6), repeats=args.repeats, warmup=1)["median_ms"]
    t_whi = time_call(training_step_fn(whitened, batch, lr=1e-6), repeats=args.repeats, warmup=1)["median_ms"]
    sgw = ShuffledGroupWhitening(384, arms["whitenedcse"]["groups"])
    head = whitened.head
    h = torch.randn(3, args.batch, 384, requires_grad=True)

    def own() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            z = head(sgw(h).flatten(0, 1)).view(h.shape)
            loss = multi_positive_loss(z, 0.05)
        loss.backward()

    t_own = time_call(own, repeats=args.repeats * 10)["median_ms"]
    print(f"SimCSE step       {t_sim:9.1f} ms")
    print(f"WhitenedCSE step  {t_whi:9.1f} ms  ({t_whi / t_sim:.2f}× SimCSE: the third view's encoder pass)")
    print(f"SGW + head + loss {t_own:9.2f} ms  ({100 * t_own / t_whi:.2f}% of the WhitenedCSE step)")


if __name__ == "__main__":
    main()
