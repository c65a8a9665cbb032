"""Timing helpers for ``benchmarks/``: how much of a training step a method's own parts cost.

Timings never go into test assertions; benchmark scripts print them (and the notes quote them).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def time_call(
    fn: Callable[[], object], repeats: int = 20, warmup: int = 3, clock: Callable[[], float] = time.perf_counter
) -> dict[str, float]:
    """Median and spread of ``fn()``'s time in milliseconds: wall time, or ``clock`` (e.g. ``time.process_time``).

    On a machine shared with other work, the CPU time of a one-thread run (``torch.set_num_threads(1)``,
    ``clock=time.process_time``) is far steadier than wall time, which counts the waits for a core.
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append((clock() - start) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times)}


def training_step_fn(
    model: torch.nn.Module, batch: dict, lr: float = 0.01, bf16: bool = True
) -> Callable[[], torch.Tensor]:
    """A closure doing one full step (forward under autocast, backward, SGD update, after_step)."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    step = [0]

    def run() -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(batch)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if hasattr(model, "after_step"):
            model.after_step(step[0])
        step[0] += 1
        return loss.detach()

    return run
