"""shared/arms.py: the in-memory and hub arm runners, their evaluators, and the hub data sets."""

from dataclasses import replace

import numpy as np
import torch
from torch import nn

import shared.data.hub
from shared.arms import (
    HubArm,
    InMemoryArm,
    Splits,
    eval_images,
    hub_knn_evaluator,
    hub_linear_evaluator,
    knn_evaluation,
    small_splits,
    train_in_memory,
    train_on_hub,
)
from shared.augment import AugmentConfig, BatchedSimCLRAugment
from shared.data.hub import CIFAR10, CIFAR100, IMAGENET_1K, HubDataset
from shared.data.splits import SHAPES_RGB
from shared.engine import TrainConfig
from shared.evaluation import knn_accuracy, loader_features
from shared.experiment import ArmRun, untrained_arm
from shared.heads import mlp_head
from shared.losses import InfoNCELoss
from shared.ssl import TwoViewContrastive
from shared.testing import fake_hub_images, tiny_backbone_model

ARM = dict(
    SHAPES_RGB,
    train_per_class=4,
    test_per_class=2,
    image_size=16,
    crop_scale=(0.3, 1.0),
    jitter_strength=0.5,
    epochs=1,
    batch_size=16,
    lr=0.1,
    knn_k=5,
    log_every=1,
)


class TinySimCLR(TwoViewContrastive):
    def __init__(self, batched: bool = True) -> None:
        backbone = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        backbone.out_dim = 8
        augment = BatchedSimCLRAugment(AugmentConfig.from_arm(ARM)) if batched else None
        super().__init__(backbone, mlp_head(8, 16, 8, num_layers=2), InfoNCELoss(0.1), augment)


def train_config(cfg, seed, epochs, progress) -> TrainConfig:
    return TrainConfig.from_arm(cfg, seed, epochs, progress)


def run(tmp_path, cfg=None, seed=0, arm="a") -> ArmRun:
    return ArmRun(arm, cfg or ARM, seed, tmp_path / arm / f"seed{seed}", False, None, None, False)


def test_in_memory_arm_trains_scores_and_pairs_seeds(tmp_path):
    """The model is built right after ``torch.manual_seed(seed)``: the same initialisation whatever came before."""
    seen: list[InMemoryArm] = []
    weights = []

    def build(arm: InMemoryArm) -> nn.Module:
        seen.append(arm)
        model = TinySimCLR()
        weights.append(model.backbone[0].weight.detach().clone())
        return model

    torch.rand(7)  # other draws before the run must not change the initialisation
    result = train_in_memory(run(tmp_path), build, train_config)
    torch.rand(3)
    train_in_memory(run(tmp_path, arm="b"), build, train_config)
    assert torch.equal(weights[0], weights[1])
    arm = seen[0]
    assert len(arm.train) == 4 * 12 and arm.steps_per_epoch == 3 and arm.total_steps == 3
    assert arm.train_config.batch_size == 16 and arm.config is ARM
    assert set(result.metrics) == {"knn_top1"} and 0 <= result.metrics["knn_top1"] <= 1
    assert len(result.curve) == 3 and result.extras == {}


def test_in_memory_untrained_arm_is_only_scored(tmp_path):
    result = train_in_memory(run(tmp_path, untrained_arm(ARM)), lambda arm: TinySimCLR(), train_config)
    assert result.curve == [] and len(result.evaluations) == 1 and result.evaluations[0]["step"] == 0


def test_in_memory_hooks_splits_batches_extras_and_metrics(tmp_path):
    def splits(r: ArmRun) -> Splits:
        return replace(small_splits(r), extras={"from_data": 1})

    made = {}

    def batches(train, batch_size):
        from shared.engine import InMemoryBatches

        made["source"] = InMemoryBatches(train, batch_size)
        return made["source"]

    def evaluator(arm: InMemoryArm):
        knn = knn_evaluation(linear=True)(arm)
        return lambda m: {**knn(m), "extra": 0.5}

    def extras(arm: InMemoryArm, model: nn.Module, evaluate) -> dict:
        assert arm.source is made["source"] and evaluate(model)["extra"] == 0.5
        return {"from_hook": 2}

    result = train_in_memory(
        run(tmp_path),
        lambda arm: TinySimCLR(),
        train_config,
        evaluator,
        splits=splits,
        batches=batches,
        extras=extras,
        metrics=("linear_top1", "extra"),
    )
    assert result.metrics.keys() == {"linear_top1", "extra"}
    assert result.extras == {"from_data": 1, "from_hook": 2}


def test_knn_evaluation_reads_the_arms_linear_probe_switch(tmp_path):
    model = TinySimCLR()
    for default, cfg, expected in [
        (False, ARM, {"knn_top1"}),
        (True, ARM, {"knn_top1", "linear_top1"}),
        (True, {**ARM, "linear_probe": False}, {"knn_top1"}),
    ]:
        split = small_splits(run(tmp_path, cfg))
        arm = InMemoryArm(run(tmp_path, cfg), split, train_config(cfg, 0, None, False), None)
        assert set(knn_evaluation(linear=default)(arm)(model)) == expected


class FakeSplit(list):
    """A stand-in for a hub split: rows by index, columns by name, ``select``."""

    def __getitem__(self, key):
        if isinstance(key, str):
            return [row[key] for row in self]
        return super().__getitem__(key)

    def select(self, indices):
        return FakeSplit(self[i] for i in indices)


def fake_split(labels, image_key="image", seed=0) -> FakeSplit:
    return FakeSplit(fake_hub_images(labels, image_key=image_key, seed=seed))


def test_hub_dataset_arrays_and_keys(monkeypatch):
    rows = {"train": fake_split([0, 1, 2, 3], image_key="img"), "test": fake_split([1, 0], image_key="img")}
    monkeypatch.setattr(shared.data.hub, "load_hub_split", lambda name, split, hint: rows[split])
    train = CIFAR10.arrays("train")
    assert train.images.dtype == torch.uint8 and train.images.shape == (4, 3, 8, 8)
    assert train.images.is_contiguous() and train.labels.tolist() == [0, 1, 2, 3]
    assert train.name == "cifar10-train" and train.num_classes == 10
    first = np.array(rows["train"][1]["img"])
    assert torch.equal(train.images[1], torch.from_numpy(first).permute(2, 0, 1))
    assert CIFAR100.keys == {"image_key": "img", "label_key": "fine_label"}
    assert IMAGENET_1K.test_split == "validation" and IMAGENET_1K.num_classes == 1000


def test_hub_evaluators():
    data = HubDataset("fake/two", "two", 2, "none")
    cfg = {"image_size": 8, "mean": (0.5,) * 3, "std": (0.5,) * 3, "workers": 0}
    train, test = fake_split([0, 1] * 10), fake_split([0, 1] * 4, seed=1)
    out = hub_linear_evaluator(cfg, data, train, test)(tiny_backbone_model())
    assert set(out) == {"linear_top1", "knn_top1"} and out["linear_top1"] == 1.0
    model = tiny_backbone_model()
    for stride in (1, 2):
        knn_cfg = {**cfg, "knn_bank_stride": stride, "knn_k": 3}
        out = hub_knn_evaluator(knn_cfg, data, train, test)(model)
        ftr, ytr = loader_features(model.backbone, eval_images(knn_cfg, data, train[::stride]), workers=0)
        fte, yte = loader_features(model.backbone, eval_images(knn_cfg, data, test), workers=0)
        assert out == {"knn_top1": knn_accuracy(ftr, ytr, fte, yte, 2, k=3, temperature=0.1)}


def test_train_on_hub_end_to_end(tmp_path, monkeypatch):
    rows = {"train": fake_split([0, 1] * 8), "validation": fake_split([0, 1] * 4, seed=1)}
    monkeypatch.setattr(shared.data.hub, "load_hub_split", lambda name, split, hint: rows[split])
    data = HubDataset("fake/two", "two", 2, "none", test_split="validation")
    cfg = {**ARM, "image_size": 8, "batch_size": 8, "workers": 0}
    seen: list[HubArm] = []

    def build(arm: HubArm) -> nn.Module:
        seen.append(arm)
        return TinySimCLR(batched=False)

    result = train_on_hub(
        run(tmp_path, cfg),
        data,
        build,
        train_config,
        lambda arm: hub_knn_evaluator(arm.config, data, arm.train, arm.test),
    )
    arm = seen[0]
    assert arm.train is rows["train"] and arm.test is rows["validation"]
    assert arm.steps_per_epoch == 2 and arm.total_steps == 2
    assert set(result.metrics) == {"knn_top1"} and len(result.curve) == 2
    image, label = arm.images(arm.test)[0]
    assert image.shape == (3, 8, 8) and label == 0


def test_train_on_hub_keeps_the_named_metrics(tmp_path, monkeypatch):
    rows = {"train": fake_split([0, 1] * 8), "test": fake_split([0, 1] * 4, seed=1)}
    monkeypatch.setattr(shared.data.hub, "load_hub_split", lambda name, split, hint: rows[split])
    data = HubDataset("fake/two", "two", 2, "none")
    cfg = {**ARM, "image_size": 8, "batch_size": 8, "workers": 0, "linear_probe": True}

    def evaluator(arm: HubArm):
        knn = hub_knn_evaluator(arm.config, data, arm.train, arm.test)
        return lambda m: {**knn(m), "other": 0.0}

    result = train_on_hub(
        run(tmp_path, untrained_arm(cfg)),
        data,
        lambda arm: TinySimCLR(batched=False),
        train_config,
        evaluator,
        metrics=("knn_top1",),
    )
    assert set(result.metrics) == {"knn_top1"} and result.curve == []
