"""SwAV's presets: the smoke run learns, the cpu preset is the stated ablation, the paper preset steps."""

import pytest
import torch

from methods.swav import PAPER, PRESETS
from methods.swav.experiments import CPU_ARM, PAPER_ARM, build_model, paper_evaluator, paper_model
from shared.augment import to_model_input
from shared.cli import main
from shared.data.splits import small_image_splits
from shared.engine import InMemoryBatches, TrainConfig, fit
from shared.evaluation import knn_evaluator
from shared.experiment import untrained_arm
from shared.results import read_record
from shared.testing import assert_floor_trained_nothing, fake_hub_images, tiny_backbone_model


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("smoke")
    args = ["run", "swav", "--preset", "smoke", "--out", str(tmp / "out"), "--run-dir", str(tmp / "runs")]
    assert main([*args, "--no-progress"]) == 0
    return tmp


def test_smoke_run_learns_and_writes_a_valid_record(smoke):
    rec = read_record(smoke / "out" / "swav" / "smoke.json")
    chance = 1 / 12
    for arm in ("swav_2crop", "swav_multicrop", "swav_queue"):
        assert rec["arms"][arm]["knn_top1"][0] > 2 * chance, arm
        # the loss leaves its starting value and ends below ln K (no collapse)
        curve = rec["curves"][arm]
        assert len(curve) > 3 and curve[-1][1] < curve[0][1], f"{arm}: loss did not go down"
        assert curve[-1][1] < torch.log(torch.tensor(30.0)).item(), arm


@pytest.mark.parametrize(
    ("preset", "baseline", "method"),
    [("smoke", "swav_2crop", "swav_multicrop"), ("cpu", "swav_2x28", "swav_2x28_4x14")],
)
def test_floor_arm_and_headline(preset, baseline, method):
    """The floor arm is the headline baseline (SwAV, 2 crops) untrained; the claim is multi-crop vs 2 crops."""
    exp = PRESETS[preset]
    assert next(iter(exp.arms)) == "untrained" and exp.arms["untrained"] == untrained_arm(exp.arms[baseline])
    assert [(c.baseline, c.method, c.metric) for c in exp.headline] == [(baseline, method, "knn_top1")]
    assert exp.floor(list(exp.arms)) == {
        "arm": "untrained",
        "metric": "knn_top1",
        "direction": "greater",
        "min_gain": 0.02,
    }


def test_smoke_floor_arm_trains_nothing(smoke):
    """No optimiser step, no curve; its kNN top-1 is that of the seed-0 initialisation evaluated directly."""
    rec = read_record(smoke / "out" / "swav" / "smoke.json")
    runs = smoke / "runs" / "swav" / "smoke"
    assert_floor_trained_nothing(rec, runs, "swav_2crop")
    cfg = PRESETS["smoke"].arms["untrained"]
    train, bank, test = small_image_splits(cfg)
    torch.manual_seed(0)
    model = build_model(cfg, InMemoryBatches(train, cfg["batch_size"]).steps_per_epoch(1))

    def preprocess(x):
        return to_model_input(x, cfg["image_size"], tuple(cfg["mean"]), tuple(cfg["std"]))

    direct = knn_evaluator(bank, test, preprocess, k=cfg["knn_k"], temperature=0.1)(model)
    assert rec["arms"]["untrained"]["knn_top1"] == [pytest.approx(direct["knn_top1"], abs=1e-9)]


def test_cpu_preset_is_the_stated_comparison():
    exp = PRESETS["cpu"]
    assert list(exp.arms) == ["untrained", "simclr_2x28", "swav_2x28", "swav_2x28_4x14", "swav_2x28_4x14_wide"]
    assert exp.default_seeds >= 3
    first = exp.comparisons[0]
    assert (first.baseline, first.method) == ("swav_2x28", "swav_2x28_4x14")
    mc = exp.arms["swav_2x28_4x14"]
    assert mc["crops"][0] == exp.arms["swav_2x28"]["crops"][0] and mc["crops"][1] == (4, 14, (0.05, 0.14))
    # the arms differ only in crops (and the SimCLR arm in its method)
    base = {k: v for k, v in CPU_ARM.items() if k not in ("crops", "method")}
    for cfg in (cfg for arm, cfg in exp.arms.items() if arm != "untrained"):
        assert {k: v for k, v in cfg.items() if k not in ("crops", "method")} == base
        assert cfg["data"] == "fashion_mnist" and cfg["temperature"] == 0.1


def test_paper_preset_builds_and_steps_once(tmp_path):
    """ResNet-50 + 2048-2048-128 head + 3000 prototypes + LARS, one step on fake 2×224 + 6×96 crops."""
    assert PAPER_ARM["batch_size"] == 4096 and PAPER_ARM["lr"] == 4.8 and PAPER_ARM["optimizer"] == "lars"
    assert PAPER_ARM["crops"] == ((2, 224, (0.14, 1.0)), (6, 96, (0.05, 0.14)))
    # the arms of the official 400-epoch scripts, whose README numbers (74.6 vs 70.1) the preset is set against
    arms = PRESETS["paper"].arms
    assert all(cfg["epochs"] == 400 for cfg in arms.values())
    assert arms["swav_2x224_6x96"]["crops"] == PAPER_ARM["crops"]
    assert arms["swav_2x224"]["crops"] == ((2, 224, (0.08, 1.0)),)  # swav_400ep_2x224_pretrain.sh: min scale 0.08
    assert {k: v for k, v in arms["swav_2x224"].items() if k != "crops"} == {
        k: v for k, v in PAPER_ARM.items() if k != "crops"
    }
    assert PAPER_ARM["num_prototypes"] == 3000 and PAPER_ARM["freeze_prototypes_iters"] == 313
    model = paper_model()
    assert model.backbone.out_dim == 2048 and model.projector[-1].out_features == 128
    assert model.prototypes.weight.shape == (3000, 128) and model.queue is None

    class FakeCrops:
        def steps_per_epoch(self, world_size):
            return 1

        def epoch(self, epoch, seed, rank, world_size, skip=0):
            g = torch.Generator().manual_seed(0)
            sizes = [224] * 2 + [96] * 6
            yield {"crops": [torch.randn(2, 3, s, s, generator=g) for s in sizes]}

    before = model.backbone.conv1.weight.detach().clone()
    cfg = TrainConfig(epochs=1, batch_size=2, lr=4.8, optimizer="lars", weight_decay=1e-6, progress=False)
    result = fit(model, FakeCrops(), cfg, tmp_path)
    assert result.steps == 1 and torch.isfinite(torch.tensor(result.history[-1]["loss"]))
    assert not torch.equal(before, model.backbone.conv1.weight)
    assert int(model.prototypes.iteration) == 1


def test_paper_preset_reports_linear_top1():
    """The paper preset is judged on a linear probe (frozen backbone, train split → val top-1), kNN extra."""
    exp = PRESETS["paper"]
    assert exp.eval_metric == "linear_top1" and [c.metric for c in exp.comparisons] == ["linear_top1"]
    train, val = fake_hub_images([0, 1] * 10), fake_hub_images([0, 1] * 4, seed=1)
    out = paper_evaluator({**PAPER_ARM, "workers": 0}, train, val)(tiny_backbone_model())
    assert set(out) == {"linear_top1", "knn_top1"} and out["linear_top1"] == 1.0


def test_card():
    assert PAPER.number == 7 and PAPER.package == "swav"
    assert any(r.value == 75.3 and r.source == "abstract" for r in PAPER.reported)
