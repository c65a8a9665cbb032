"""MoCHi's presets: the smoke run learns, the cpu preset is the stated comparison, the paper preset steps."""

import json

import pytest
import torch

from methods.mochi import PAPER, PRESETS, MoCHi, build_model, mixing_options
from methods.mochi.experiments import CPU_ARM, PAPER_ARM, paper_model, small_evaluator
from shared.cli import main
from shared.data.splits import small_image_splits
from shared.engine import InMemoryBatches, TrainConfig, fit
from shared.experiment import untrained_arm
from shared.moco import MoCo
from shared.results import read_record


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("smoke")
    args = ["run", "mochi", "--preset", "smoke", "--out", str(tmp / "out"), "--run-dir", str(tmp / "runs")]
    assert main([*args, "--no-progress"]) == 0
    return tmp


def test_smoke_run_learns_and_writes_a_valid_record(smoke):
    rec = read_record(smoke / "out" / "mochi" / "smoke.json")
    chance = 1 / 12
    for arm, metrics in rec["arms"].items():
        assert -4.0 < metrics["uniformity"][0] < 0.0, arm  # log E e^{-2‖x−y‖²} of unit vectors lies in [-4, 0]
    for arm in ("moco_v2", "mochi"):
        assert rec["arms"][arm]["knn_top1"][0] > 2 * chance, arm
        # MoCo's loss first rises while real keys replace the random initial queue, then falls
        losses = [p[1] for p in rec["curves"][arm]]
        assert len(losses) > 3 and losses[-1] < max(losses), f"{arm}: loss did not go down"
    assert [c["direction"] for c in rec["comparisons"]] == ["greater", "less"]


@pytest.mark.parametrize("preset", ["smoke", "cpu"])
def test_floor_arm_and_headline(preset):
    """The floor arm is MoCo v2 (the headline baseline) untrained; the claim is both comparisons together."""
    exp = PRESETS[preset]
    assert next(iter(exp.arms)) == "untrained" and exp.arms["untrained"] == untrained_arm(exp.arms["moco_v2"])
    assert [(c.baseline, c.method, c.metric, c.direction) for c in exp.headline] == [
        ("moco_v2", "mochi", "knn_top1", "greater"),
        ("moco_v2", "mochi", "uniformity", "less"),
    ]
    assert exp.floor(list(exp.arms)) == {
        "arm": "untrained",
        "metric": "knn_top1",
        "direction": "greater",
        "min_gain": 0.02,
    }


def test_smoke_floor_arm_trains_nothing(smoke):
    """No optimiser step, no curve; its metrics are those of the seed-0 MoCo v2 initialisation evaluated directly."""
    rec = read_record(smoke / "out" / "mochi" / "smoke.json")
    assert set(rec["arms"]["untrained"]) == set(rec["arms"]["moco_v2"]) == {"knn_top1", "uniformity"}
    assert rec["curves"]["untrained"] == []
    runs = smoke / "runs" / "mochi" / "smoke"
    assert json.loads((runs / "untrained" / "seed0" / "run_stats.json").read_text())["steps"] == 0
    assert json.loads((runs / "moco_v2" / "seed0" / "run_stats.json").read_text())["steps"] > 0
    cfg = PRESETS["smoke"].arms["untrained"]
    train, bank, test = small_image_splits(cfg)
    torch.manual_seed(0)
    model = build_model(cfg, InMemoryBatches(train, cfg["batch_size"]).steps_per_epoch(1))
    direct = small_evaluator(cfg, bank, test)(model)
    for metric, value in direct.items():
        assert rec["arms"]["untrained"][metric] == [pytest.approx(value, abs=1e-6)], metric


def test_cpu_preset_is_the_stated_comparison():
    exp = PRESETS["cpu"]
    assert list(exp.arms) == ["untrained", "moco_v2", "mochi"] and exp.default_seeds >= 3
    assert [(c.baseline, c.method, c.metric, c.direction) for c in exp.comparisons] == [
        ("moco_v2", "mochi", "knn_top1", "greater"),
        ("moco_v2", "mochi", "uniformity", "less"),
    ]
    moco, mochi = exp.arms["moco_v2"], exp.arms["mochi"]
    assert (moco["s"], moco["s_prime"]) == (0, 0) and (mochi["n_hard"], mochi["s"], mochi["s_prime"]) == (256, 64, 64)
    assert {k: v for k, v in moco.items() if k not in ("s", "s_prime")} == {
        k: v for k, v in mochi.items() if k not in ("s", "s_prime")
    }
    assert moco["temperature"] == 0.2 and moco["lr"] == 0.03 and moco["weight_decay"] == 1e-4
    assert moco["queue_size"] % moco["batch_size"] == 0 and moco["data"] == "fashion_mnist"


def test_builders():
    assert mixing_options({**CPU_ARM, "s": 0, "s_prime": 0}) is None
    assert type(build_model({**CPU_ARM, "s": 0, "s_prime": 0})) is MoCo  # the MoCo v2 arm is plain MoCo
    model = build_model({**CPU_ARM, "s": 64, "s_prime": 64}, steps_per_epoch=156)
    assert isinstance(model, MoCHi) and (model.n_hard, model.s, model.s_prime, model.warmup_steps) == (256, 64, 64, 156)
    assert model.queue.queue.shape == (4096, 128) and model.momentum == 0.99
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in model.projector.modules())  # MoCo v2's head
    with pytest.raises(ValueError, match="cannot exceed the queue size"):
        mixing_options({**CPU_ARM, "n_hard": 5000, "s": 1, "s_prime": 1})
    with pytest.raises(ValueError, match="multiple of batch_size"):
        build_model({**CPU_ARM, "batch_size": 96, "s": 0, "s_prime": 0})


def test_paper_preset_builds_and_steps_once(tmp_path):
    """ResNet-50 + 2048-2048-128 head, K=65536, MoCHi(1024, 512, 256): one step on fake 224 px views."""
    arm = PRESETS["paper"].arms["mochi"]
    assert (arm["n_hard"], arm["s"], arm["s_prime"]) == (1024, 512, 256)
    assert PAPER_ARM["batch_size"] == 256 and PAPER_ARM["epochs"] == 200 and PAPER_ARM["momentum"] == 0.999
    torch.manual_seed(0)
    model = paper_model({**arm, "mix_warmup_epochs": 0})
    assert model.backbone.out_dim == 2048 and model.projector[-1].out_features == 128
    assert model.queue.queue.shape == (65536, 128)

    class FakeViews:
        def steps_per_epoch(self, world_size):
            return 1

        def epoch(self, epoch, seed, rank, world_size, skip=0):
            g = torch.Generator().manual_seed(0)
            yield {"views": (torch.randn(2, 3, 224, 224, generator=g), torch.randn(2, 3, 224, 224, generator=g))}

    before = model.backbone.conv1.weight.detach().clone()
    cfg = TrainConfig(epochs=1, batch_size=2, lr=0.03 * 2 / 256, weight_decay=1e-4, progress=False)
    result = fit(model, FakeViews(), cfg, tmp_path)
    assert result.steps == 1 and int(model.queue.ptr) == 2
    assert not torch.equal(before, model.backbone.conv1.weight)
    assert result.history[-1]["pos_rank"] >= 0


def test_card():
    assert PAPER.number == 8 and PAPER.package == "mochi" and PAPER.arxiv == "2010.01028"
    assert any("(verify)" in str(r.value) for r in PAPER.reported)
