"""The glue of an image SSL arm: one (arm, seed) from its data to an :class:`ArmResult`.

Most image papers train and score one (arm, seed) the same way and differ only in their model,
their run config and what they measure. Two runners hold the common part, so that a paper's
``experiments.py`` states only its own parts:

- :func:`train_in_memory` (``smoke`` / ``cpu`` presets, and paper presets whose data fit in memory):
  the splits (:func:`small_splits` by default) → the run config → the batches
  (:class:`~shared.engine.InMemoryBatches` by default) → the paired seed → the paper's model → the
  evaluator (:func:`knn_evaluation` by default) → :func:`~shared.engine.fit` → the result, with the
  paper's extras.
- :func:`train_on_hub` (paper presets on a hub data set; GPUs): the
  :class:`~shared.data.hub.HubDataset`'s train and test splits → views made by DataLoader workers
  (:func:`simclr_views` by default) → the run config → :class:`~shared.engine.LoaderBatches` → the
  paper's model → the evaluator (:func:`hub_linear_evaluation`, the papers' linear protocol;
  :func:`hub_knn_evaluation`; or the paper's own) → ``fit`` → the result.

A paper's hooks get a context (:class:`InMemoryArm`, :class:`HubArm`): the arm's config, its data,
the run config, the data source, and what follows from them (steps per epoch, total steps, the
evaluation's preprocessing). A SimCLR-style paper::

    def train_small(run: ArmRun) -> ArmResult:
        return train_in_memory(run, lambda arm: build_model(arm.config), train_config)

    def train_paper(run: ArmRun) -> ArmResult:
        return train_on_hub(
            run, IMAGENET_1K, lambda arm: build_model(arm.config), train_config, hub_linear_evaluation,
            metrics=("linear_top1", "knn_top1"),
        )

Papers whose training is not one ``fit`` over one data source (stages, episodes, several
encoders, text) keep their own ``train_arm``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import nn

from shared.augment import AugmentConfig, eval_transform, simclr_transform, to_model_input
from shared.data.arrays import ImageArrays
from shared.data.hub import HubDataset, HubImages, HubViews
from shared.data.splits import small_image_splits
from shared.engine import DataSource, FitResult, InMemoryBatches, LoaderBatches, TrainConfig, fit
from shared.evaluation import knn_accuracy, knn_evaluator, loader_evaluator, loader_features
from shared.experiment import ArmResult, ArmRun

Evaluator = Callable[[nn.Module], dict[str, float]]
"""``evaluate(model)`` → scalar metrics (what :func:`~shared.engine.fit` calls)."""

TrainConfigFn = Callable[[dict[str, Any], int, int | None, bool], TrainConfig]
"""A paper's ``train_config(cfg, seed, epochs, progress)``: the arm's run config (its lr rule, optimiser)."""

M = TypeVar("M", bound=nn.Module)
E = TypeVar("E", bound=Evaluator)


def preprocess_for(cfg: Mapping[str, Any]) -> Callable[[torch.Tensor], torch.Tensor]:
    """Un-augmented uint8 images → the arm's model input (``image_size``, ``mean``, ``std``) for evaluation."""
    size, mean, std = cfg["image_size"], tuple(cfg["mean"]), tuple(cfg["std"])

    def preprocess(x: torch.Tensor) -> torch.Tensor:
        return to_model_input(x, size, mean, std)

    return preprocess


def final_metrics(result: FitResult, keys: tuple[str, ...] | None = None) -> dict[str, float]:
    """The last evaluation's metrics: all of them, or only ``keys``."""
    if keys is None:
        return result.final_metrics()
    last = result.evaluations[-1]
    return {k: last[k] for k in keys}


# --- in memory -----------------------------------------------------------------------------


@dataclass
class Splits:
    """An arm's data: ``train`` (what ``batches`` takes: :class:`ImageArrays` for ``InMemoryBatches``),
    the labelled ``bank`` (kNN bank, probe training set) and ``test`` split, and ``extras``: JSON-able
    facts about the data that the run's extras keep."""

    train: Any
    bank: ImageArrays
    test: ImageArrays
    extras: dict[str, Any] = field(default_factory=dict)


def small_splits(run: ArmRun) -> Splits:
    """The embedded data of the ``smoke`` / ``cpu`` presets (:func:`~shared.data.splits.small_image_splits`)."""
    return Splits(*small_image_splits(run.config, run.data_dir))


@dataclass
class InMemoryArm:
    """What the hooks of :func:`train_in_memory` get: one (arm, seed) with its data and run config."""

    run: ArmRun
    splits: Splits
    train_config: TrainConfig
    source: DataSource

    @property
    def config(self) -> dict[str, Any]:
        return self.run.config

    @property
    def train(self) -> Any:
        return self.splits.train

    @property
    def bank(self) -> ImageArrays:
        return self.splits.bank

    @property
    def test(self) -> ImageArrays:
        return self.splits.test

    @property
    def steps_per_epoch(self) -> int:
        """Optimiser steps per epoch of one process (the schedule's unit)."""
        return self.source.steps_per_epoch(1)

    @property
    def total_steps(self) -> int:
        """Optimiser steps of the whole run (0 for the untrained floor)."""
        return self.train_config.epochs * self.steps_per_epoch

    @property
    def preprocess(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return preprocess_for(self.config)


def knn_evaluation(linear: bool = False) -> Callable[[InMemoryArm], Evaluator]:
    """kNN top-1 of ``model.backbone`` (k = the arm's ``knn_k``, 200 by default; T = 0.1), bank → test, and a
    linear probe's top-1 when the arm's ``linear_probe`` (``linear`` by default) says so."""

    def make(arm: InMemoryArm) -> Evaluator:
        cfg = arm.config
        return knn_evaluator(
            arm.bank,
            arm.test,
            arm.preprocess,
            k=cfg.get("knn_k", 200),
            temperature=0.1,
            linear=cfg.get("linear_probe", linear),
        )

    return make


def train_in_memory(
    run: ArmRun,
    build_model: Callable[[InMemoryArm], M],
    train_config: TrainConfigFn,
    evaluator: Callable[[InMemoryArm], E] | None = None,
    *,
    splits: Callable[[ArmRun], Splits] = small_splits,
    batches: Callable[[Any, int], DataSource] = InMemoryBatches,
    extras: Callable[[InMemoryArm, M, E], dict[str, Any]] | None = None,
    metrics: tuple[str, ...] | None = None,
) -> ArmResult:
    """Train one (arm, seed) on in-memory data and score it.

    ``splits(run)`` gives the data, ``train_config`` the run config, ``batches(train, batch_size)`` the
    data source. Then the paired seed: ``torch.manual_seed(run.seed)`` right before
    ``build_model(arm)``, so every arm of a seed starts from the same initialisation where the
    architectures allow. ``evaluator(arm)`` (default :func:`knn_evaluation`) scores the model during
    and after :func:`~shared.engine.fit` (an untrained arm is only scored). The result keeps the last
    evaluation's ``metrics`` (all by default) and, as extras, the splits' extras and
    ``extras(arm, model, evaluate)``.
    """
    data = splits(run)
    tc = train_config(run.config, run.seed, run.epochs, run.progress)
    arm = InMemoryArm(run, data, tc, batches(data.train, tc.batch_size))
    torch.manual_seed(run.seed)  # paired seeds: the same initialisation for every arm of a seed
    model = build_model(arm)
    evaluate = (evaluator or knn_evaluation())(arm)  # type: ignore[operator]  # E is Evaluator by default
    result = fit(
        model, arm.source, tc, run.run_dir, resume=run.resume, evaluate=evaluate, desc=f"{run.arm} s{run.seed}"
    )
    more = {**data.extras, **(extras(arm, model, evaluate) if extras is not None else {})}
    return ArmResult(final_metrics(result, metrics), result.history, result.evaluations, result.wall_seconds, more)


# --- on the hub ----------------------------------------------------------------------------

ViewsFn = Callable[[dict[str, Any], HubDataset, Any], torch.utils.data.Dataset]
"""``views(cfg, data, train_split)`` → the training data set whose items the model's ``forward`` takes."""


def simclr_views(augment: Callable[[Mapping[str, Any]], AugmentConfig] = AugmentConfig.from_arm) -> ViewsFn:
    """Two views per image made by DataLoader workers (:class:`HubViews`), with the augmentations
    ``augment(cfg)`` (the arm's SimCLR augmentations by default)."""

    def make(cfg: dict[str, Any], data: HubDataset, train: Any) -> torch.utils.data.Dataset:
        return HubViews(train, simclr_transform(augment(cfg)), **data.keys)

    return make


@dataclass
class HubArm:
    """What the hooks of :func:`train_on_hub` get: one arm with its hub splits and run config."""

    run: ArmRun
    data: HubDataset
    train: Any
    test: Any
    train_config: TrainConfig
    source: LoaderBatches

    @property
    def config(self) -> dict[str, Any]:
        return self.run.config

    @property
    def steps_per_epoch(self) -> int:
        """Optimiser steps per epoch of one process (the schedule's unit)."""
        return self.source.steps_per_epoch(1)

    @property
    def total_steps(self) -> int:
        return self.train_config.epochs * self.steps_per_epoch

    def images(self, split: Any) -> HubImages:
        """``split`` as ``(image, label)`` pairs through the evaluation transform (resize, centre crop)."""
        return eval_images(self.config, self.data, split)


def eval_images(cfg: Mapping[str, Any], data: HubDataset, split: Any) -> HubImages:
    """A hub split as ``(image, label)`` pairs, resized and centre-cropped to the arm's ``image_size``."""
    tf = eval_transform(cfg["image_size"], tuple(cfg["mean"]), tuple(cfg["std"]))
    return HubImages(split, tf, **data.keys)


def hub_linear_evaluator(cfg: Mapping[str, Any], data: HubDataset, train: Any, test: Any) -> Evaluator:
    """The papers' linear evaluation: frozen backbone, a linear classifier on every training image (centre
    crops), top-1 on ``test``; kNN top-1 on every ``knn_bank_stride``-th training image as an extra metric."""
    return loader_evaluator(
        eval_images(cfg, data, train),
        eval_images(cfg, data, test),
        data.num_classes,
        knn_bank_stride=cfg.get("knn_bank_stride", 1),
        workers=cfg["workers"],
    )


def hub_linear_evaluation(arm: HubArm) -> Evaluator:
    """:func:`hub_linear_evaluator` on the arm's train and test splits (a :func:`train_on_hub` evaluator)."""
    return hub_linear_evaluator(arm.config, arm.data, arm.train, arm.test)


def hub_knn_evaluator(cfg: Mapping[str, Any], data: HubDataset, train: Any, test: Any) -> Evaluator:
    """Weighted kNN top-1 (k = ``knn_k``, 200 by default; T = 0.1) of ``model.backbone`` on ``test``, with every
    ``knn_bank_stride``-th training image (all by default) as the bank; features through ``workers``
    DataLoader workers (8 by default)."""
    stride = cfg.get("knn_bank_stride", 1)
    bank = train if stride == 1 else train.select(range(0, len(train), stride))
    bank_images, test_images = eval_images(cfg, data, bank), eval_images(cfg, data, test)
    k, workers = cfg.get("knn_k", 200), cfg.get("workers", 8)

    def evaluate(model: nn.Module) -> dict[str, float]:
        device = next(model.parameters()).device
        ftr, ytr = loader_features(model.backbone, bank_images, device=device, workers=workers)
        fte, yte = loader_features(model.backbone, test_images, device=device, workers=workers)
        return {"knn_top1": knn_accuracy(ftr, ytr, fte, yte, data.num_classes, k=k, temperature=0.1)}

    return evaluate


def hub_knn_evaluation(arm: HubArm) -> Evaluator:
    """:func:`hub_knn_evaluator` on the arm's train and test splits (a :func:`train_on_hub` evaluator)."""
    return hub_knn_evaluator(arm.config, arm.data, arm.train, arm.test)


def train_on_hub(
    run: ArmRun,
    data: HubDataset,
    build_model: Callable[[HubArm], nn.Module],
    train_config: TrainConfigFn,
    evaluator: Callable[[HubArm], Evaluator],
    *,
    views: ViewsFn | None = None,
    metrics: tuple[str, ...] | None = None,
) -> ArmResult:
    """Train one arm on a hub data set with DataLoader workers (``cfg["workers"]``); GPUs, ``accelerate launch``.

    Loads ``data``'s train and test splits, makes the training set with ``views`` (default
    :func:`simclr_views`), the run config and the :class:`LoaderBatches`, then ``build_model(arm)``
    (no paired seed: paper presets run one seed; ``fit`` seeds the training) and
    ``fit`` with ``evaluator(arm)``. The result keeps the last evaluation's ``metrics`` (all by default).
    """
    cfg = run.config
    train, test = data.load(data.train_split), data.load(data.test_split)
    dataset = (views or simclr_views())(cfg, data, train)
    tc = train_config(cfg, run.seed, run.epochs, run.progress)
    arm = HubArm(run, data, train, test, tc, LoaderBatches(dataset, tc.batch_size, cfg["workers"]))
    model = build_model(arm)
    result = fit(model, arm.source, tc, run.run_dir, resume=run.resume, evaluate=evaluator(arm), desc=run.arm)
    return ArmResult(final_metrics(result, metrics), result.history, result.evaluations, result.wall_seconds)


__all__ = [
    "Evaluator",
    "HubArm",
    "InMemoryArm",
    "Splits",
    "TrainConfigFn",
    "eval_images",
    "final_metrics",
    "hub_knn_evaluation",
    "hub_knn_evaluator",
    "hub_linear_evaluation",
    "hub_linear_evaluator",
    "knn_evaluation",
    "preprocess_for",
    "simclr_views",
    "small_splits",
    "train_in_memory",
    "train_on_hub",
]
