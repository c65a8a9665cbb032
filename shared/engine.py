"""The training loop every paper uses: Accelerate, seeds, checkpoint/resume, NaN guard.

A *method* is an ``nn.Module`` whose ``forward(batch)`` returns a dict with a scalar
``"loss"`` (and any other scalars to log); it may define ``after_step(step)`` for work
after the optimiser step (momentum teachers, queues). Wrapping it in DDP through
Accelerate keeps its forward (and the loss's cross-rank gathers) inside the DDP hooks.

Reproducibility and resume: the batch order of an epoch is a function of (seed, epoch),
and the global RNG is re-seeded from (seed, step, rank) before every step, so a run
resumed from a checkpoint after k steps follows exactly the path of an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import torch
from accelerate import Accelerator
from torch import nn
from tqdm.auto import tqdm

from shared.data.arrays import ImageArrays
from shared.optim import build_optimizer, warmup_cosine


class NonFiniteLossError(RuntimeError):
    """The loss, a gradient or a weight became NaN or infinite; training stopped and the last good
    checkpoint was kept."""


PRECISIONS = ("auto", "bf16", "fp32")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively: CUDA with bf16, or a CPU with AVX512-BF16 or AMX.

    On other CPUs (AVX2-only) autocast emulates bf16 and runs ~8x slower than fp32.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    if "AMX" in torch.backends.cpu.get_cpu_capability():
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, bf16_requested: bool, device: torch.device) -> str:
    """ "bf16" or "fp32" for a run: ``precision`` "bf16"/"fp32" forces it; "auto" uses bf16 when the
    preset asks for it (``bf16=True``) *and* the device has it natively, fp32 otherwise."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    return "bf16" if bf16_requested and native_bf16(device) else "fp32"


@dataclass
class TrainConfig:
    """Hyperparameters of one training run (``batch_size`` is the global batch)."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.0
    optimizer: str = "sgd"
    momentum: float = 0.9
    warmup_epochs: float = 0.0
    final_lr: float = 0.0
    bf16: bool = False  # the preset asks for bf16 autocast; ``precision="auto"`` grants it where native
    precision: str = "auto"
    channels_last: bool = False
    seed: int = 0
    max_steps: int | None = None
    checkpoint_every: int = 0
    eval_every: int = 0
    log_every: int = 20
    progress: bool = True
    sync_batchnorm: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 0:  # 0: evaluate the initialisation only (the ``untrained`` floor arm)
            raise ValueError(f"epochs must be at least 1 (0 for an untrained arm), got {self.epochs}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be at least 2, got {self.batch_size}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")

    @classmethod
    def from_arm(
        cls, cfg: Mapping[str, Any], seed: int, epochs: int | None = None, progress: bool = True, **overrides: Any
    ) -> TrainConfig:
        """The run's config from an arm's config dict: every field of this class that the dict names.

        ``epochs`` (``repro run --epochs``) wins over ``cfg["epochs"]``; ``overrides`` win over both
        (a paper's lr scaling rule, say ``lr=cfg["lr"] * cfg["batch_size"] / 256``). The optimiser's
        ``momentum`` is never read from the dict (papers use that key for an EMA teacher's momentum):
        pass it as an override. An ``untrained`` arm gets zero epochs whatever the rest says.
        """
        names = {f.name for f in fields(cls)} - {"seed", "progress", "momentum"}
        values = {k: cfg[k] for k in names if k in cfg}
        if epochs is not None:
            values["epochs"] = epochs
        merged = {**values, "seed": seed, "progress": progress, **overrides}
        if cfg.get("untrained"):
            merged["epochs"] = 0
        return cls(**merged)


class DataSource(Protocol):
    """Yields the batches of one epoch; ``skip`` batches are passed over (resume)."""

    def steps_per_epoch(self, world_size: int) -> int: ...

    def epoch(self, epoch: int, seed: int, rank: int, world_size: int, skip: int = 0) -> Iterator[dict]: ...


class InMemoryBatches:
    """Batches of an in-memory :class:`ImageArrays`, shuffled per epoch, last partial batch dropped.

    With W processes the global batch is cut into W equal slices, rank r taking slice r,
    so the union over ranks is exactly the single-process batch.
    """

    def __init__(self, data: ImageArrays, batch_size: int) -> None:
        if batch_size > len(data):
            raise ValueError(f"batch_size {batch_size} exceeds the data set size {len(data)}")
        self.data, self.batch_size = data, batch_size

    def steps_per_epoch(self, world_size: int) -> int:
        return len(self.data) // self.batch_size

    def epoch(self, epoch: int, seed: int, rank: int, world_size: int, skip: int = 0) -> Iterator[dict]:
        if self.batch_size % world_size:
            raise ValueError(f"batch_size {self.batch_size} is not divisible by {world_size} processes")
        local = self.batch_size // world_size
        perm = torch.randperm(len(self.data), generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        for step in range(skip, self.steps_per_epoch(world_size)):
            idx = perm[step * self.batch_size + rank * local : step * self.batch_size + (rank + 1) * local]
            yield self.batch(idx)

    def batch(self, idx: torch.Tensor) -> dict:
        """The batch dict of the rows ``idx``; a subclass over other in-memory data overrides it."""
        return {"images": self.data.images[idx], "labels": self.data.labels[idx], "index": idx}


class LoaderBatches:
    """Batches from a map-style dataset through a DataLoader (per-image transforms, workers).

    Each rank reads its own shard of a (seed, epoch)-seeded permutation.
    """

    def __init__(self, dataset: torch.utils.data.Dataset, batch_size: int, num_workers: int = 8) -> None:
        self.dataset, self.batch_size, self.num_workers = dataset, batch_size, num_workers

    def steps_per_epoch(self, world_size: int) -> int:
        return len(self.dataset) // self.batch_size  # type: ignore[arg-type]

    def epoch(self, epoch: int, seed: int, rank: int, world_size: int, skip: int = 0) -> Iterator[dict]:
        local = self.batch_size // world_size
        perm = torch.randperm(len(self.dataset), generator=torch.Generator().manual_seed(seed * 100_003 + epoch))  # type: ignore[arg-type]
        steps = self.steps_per_epoch(world_size)
        index = [
            perm[s * self.batch_size + rank * local : s * self.batch_size + (rank + 1) * local].tolist()
            for s in range(skip, steps)
        ]
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=index, num_workers=self.num_workers, persistent_workers=False
        )
        yield from loader


@dataclass
class FitResult:
    steps: int
    epochs_done: int
    wall_seconds: float
    history: list[dict] = field(default_factory=list)
    evaluations: list[dict] = field(default_factory=list)

    def final_metrics(self) -> dict[str, float]:
        """The last evaluation's numbers, without its ``epoch`` and ``step`` stamps."""
        if not self.evaluations:
            raise ValueError("the run made no evaluation: give fit() an evaluate function")
        return {k: v for k, v in self.evaluations[-1].items() if k not in ("epoch", "step")}


def step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 7_919 + rank * 104_729) % (2**63 - 1)


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _atomic_write_json(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


_NOT_THE_TRAJECTORY = ("progress", "max_steps", "checkpoint_every", "log_every", "eval_every")


def _resume_config(cfg: TrainConfig) -> dict:
    """What a checkpoint must agree on to be resumed: every setting that shapes the trajectory."""
    return {k: v for k, v in asdict(cfg).items() if k not in _NOT_THE_TRAJECTORY}


def load_checkpoint(path: Path, cfg: TrainConfig) -> dict:
    """A checkpoint to resume from; a clear error (naming the file) when it is unreadable or made
    with other settings."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # truncated zip, pickle errors, ...: all mean the same to the user
        raise ValueError(
            f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc}); delete it to train this run "
            f"from the start, or run without --resume"
        ) from exc
    saved = state.get("config")
    if saved is not None:
        saved = {k: v for k, v in saved.items() if k not in _NOT_THE_TRAJECTORY}
        now = json.loads(json.dumps(_resume_config(cfg), default=str))
        saved = json.loads(json.dumps(saved, default=str))
        changed = sorted(k for k in set(now) | set(saved) if now.get(k) != saved.get(k))
        if changed:
            diff = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in changed)
            raise ValueError(
                f"checkpoint {path} was made with other settings ({diff}); delete it to train anew, "
                f"or run without --resume"
            )
    return state


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop the lines a killed run logged after its last checkpoint, so a resume does not repeat steps."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by the kill
        at = entry["eval"]["step"] if "eval" in entry else entry.get("step", 0)
        if at <= step:
            kept.append(line)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{line}\n" for line in kept))
    os.replace(tmp, path)


def _non_finite_tensor(state: Mapping[str, torch.Tensor]) -> str | None:
    """The name of the first floating tensor of ``state`` that holds NaN/Inf, else None."""
    for name, tensor in state.items():
        if torch.is_tensor(tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            return name
    return None


def to_device(obj: Any, device: torch.device) -> Any:
    """Move the tensors of a (nested) batch to ``device``."""
    if torch.is_tensor(obj):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


def _unwrap(accelerator: Accelerator, model: nn.Module) -> nn.Module:
    return accelerator.unwrap_model(model)


def fit(
    method: nn.Module,
    source: DataSource,
    cfg: TrainConfig,
    run_dir: str | os.PathLike,
    resume: bool = False,
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
    accelerator: Accelerator | None = None,
    desc: str = "train",
) -> FitResult:
    """Train ``method`` on ``source`` for ``cfg.epochs`` epochs (or ``cfg.max_steps`` steps).

    Writes ``checkpoint.pt`` (after every epoch and every ``checkpoint_every`` steps),
    ``metrics.jsonl`` and ``run_stats.json`` (precision, images/s) under ``run_dir``.
    ``evaluate(model)`` runs every ``eval_every`` epochs and after the last one; with
    ``cfg.epochs == 0`` it runs once on the initialisation. Raises
    :class:`NonFiniteLossError` naming the step when the loss or a gradient is NaN/Inf
    (before the optimiser applies it) or a weight is (before a checkpoint is saved); the
    checkpoint on disk is then the last good one.
    """
    accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available())
    run_dir = Path(run_dir)
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run_dir / "checkpoint.pt"
    torch.manual_seed(cfg.seed)
    if cfg.sync_batchnorm and accelerator.num_processes > 1:
        method = nn.SyncBatchNorm.convert_sync_batchnorm(method)  # SimCLR's global BN
    if cfg.channels_last:
        method = method.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(method, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum)
    model, optimizer = accelerator.prepare(method, optimizer)
    world, rank = accelerator.num_processes, accelerator.process_index
    steps_per_epoch = source.steps_per_epoch(world)
    if steps_per_epoch < 1:
        raise ValueError("the data set yields no full batch; lower the batch size")
    total_steps = cfg.epochs * steps_per_epoch  # the schedule's length; max_steps only stops early
    stop_at = total_steps if cfg.max_steps is None else min(total_steps, cfg.max_steps)
    warmup_steps = round(cfg.warmup_epochs * steps_per_epoch)

    precision = resolve_precision(cfg.precision, cfg.bf16, accelerator.device)
    step, history, evaluations = 0, [], []
    if resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path, cfg)
        _unwrap(accelerator, model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, history, evaluations = state["step"], state["history"], state["evaluations"]
        if accelerator.is_main_process:
            _truncate_metrics(run_dir / "metrics.jsonl", step)
    elif accelerator.is_main_process:
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    accelerator.wait_for_everyone()

    def save_checkpoint() -> None:
        bad = _non_finite_tensor(_unwrap(accelerator, model).state_dict())
        if bad is not None:
            raise NonFiniteLossError(
                f"{bad} holds NaN/Inf at step {step}; training stopped before saving it. "
                f"The last good checkpoint is {ckpt_path if ckpt_path.exists() else 'none (no step finished)'}."
            )
        if accelerator.is_main_process:
            state = {
                "model": _unwrap(accelerator, model).state_dict(),
                "optimizer": optimizer.state_dict(),
                "step": step,
                "history": history,
                "evaluations": evaluations,
                "config": _resume_config(cfg),
            }
            _atomic_save(state, ckpt_path)
        accelerator.wait_for_everyone()

    def log(record: dict) -> None:
        if accelerator.is_main_process:
            with open(run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    def run_eval(epoch: int) -> None:
        if evaluate is None:
            return
        result = {"epoch": epoch, "step": step, **evaluate(_unwrap(accelerator, model))}
        evaluations.append(result)
        log({"eval": result})

    start = time.perf_counter()
    train_seconds, steps_here = 0.0, 0
    autocast = torch.autocast(device_type=accelerator.device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    while step < stop_at:
        epoch, skip = divmod(step, steps_per_epoch)
        bar = tqdm(
            total=steps_per_epoch,
            initial=skip,
            desc=f"{desc} epoch {epoch + 1}/{cfg.epochs}",
            disable=not (cfg.progress and accelerator.is_main_process),
            leave=False,
            mininterval=1.0,
        )
        for batch in source.epoch(epoch, cfg.seed, rank, world, skip):
            tick = time.perf_counter()
            lr = warmup_cosine(step, total_steps, warmup_steps, cfg.lr, cfg.final_lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            torch.manual_seed(step_seed(cfg.seed, step, rank))
            batch = to_device(batch, accelerator.device)
            with autocast:
                out = model(batch)
            loss = out["loss"]
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            # one check (one sync) per step, before the optimiser applies anything: loss and gradients
            grads = [p.grad for p in params if p.grad is not None]
            grad_norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())
            finite = torch.stack([torch.isfinite(loss.detach().float()), torch.isfinite(grad_norm.float())]).float()
            if world > 1:
                finite = accelerator.reduce(finite, reduction="min")
            if finite.min().item() < 1:
                what = f"loss is {loss.item()}" if finite[0] < 1 else f"a gradient is NaN/Inf (loss {loss.item():.4g})"
                raise NonFiniteLossError(
                    f"{what} at step {step} (epoch {epoch + 1}); training stopped before the update. "
                    f"The last good checkpoint is {ckpt_path if ckpt_path.exists() else 'none (no step finished)'}."
                )
            optimizer.step()
            unwrapped = _unwrap(accelerator, model)
            if hasattr(unwrapped, "after_step"):
                unwrapped.after_step(step)
            step += 1
            steps_here += 1
            train_seconds += time.perf_counter() - tick
            bar.update(1)
            if step % cfg.log_every == 0 or step == stop_at:
                scalars = {
                    k: float(v.detach().float()) for k, v in out.items() if torch.is_tensor(v) and v.numel() == 1
                }
                record = {"step": step, "epoch": epoch + 1, "lr": lr, **scalars}
                history.append(record)
                log(record)
                bar.set_postfix(loss=f"{scalars['loss']:.4f}")
            end_of_epoch = step % steps_per_epoch == 0
            if end_of_epoch and cfg.eval_every and (step // steps_per_epoch) % cfg.eval_every == 0 and step < stop_at:
                run_eval(step // steps_per_epoch)
            if end_of_epoch or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or step == stop_at:
                save_checkpoint()
            if step >= stop_at:
                break
        bar.close()
    if evaluate is not None and (not evaluations or evaluations[-1]["step"] != step):
        run_eval(math.ceil(step / steps_per_epoch))
        if step > 0:  # an untrained (0-epoch) run has nothing to resume: no checkpoint
            save_checkpoint()
    if accelerator.is_main_process:
        samples = steps_here * cfg.batch_size
        stats = {
            "precision": precision,
            "steps": steps_here,
            "samples": samples,
            "train_seconds": round(train_seconds, 3),
            "samples_per_second": samples / train_seconds if train_seconds > 0 else 0.0,
        }
        _atomic_write_json(stats, run_dir / "run_stats.json")
    return FitResult(
        steps=step,
        epochs_done=step // steps_per_epoch,
        wall_seconds=time.perf_counter() - start,
        history=history,
        evaluations=evaluations,
    )
