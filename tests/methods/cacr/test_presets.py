"""CACR's presets: the smoke run learns, the cpu preset is the stated comparison, the paper preset steps."""

import json

import pytest
import torch

from methods.cacr import PAPER, PRESETS, MultiViewContrastive
from methods.cacr.experiments import (
    LT_ARM,
    PAPER_ARM,
    RepeatedView,
    build_model,
    make_loss,
    official_view_transform,
    paper_evaluator,
    paper_model,
    small_evaluator,
    tail_classes,
)
from shared.cli import main
from shared.data.arrays import ImageArrays
from shared.data.splits import small_image_splits
from shared.engine import TrainConfig, fit
from shared.experiment import untrained_arm
from shared.results import read_record
from shared.testing import fake_hub_images, tiny_backbone_model


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("smoke")
    args = ["run", "cacr", "--preset", "smoke", "--out", str(tmp / "out"), "--run-dir", str(tmp / "runs")]
    assert main([*args, "--no-progress"]) == 0
    return tmp


def test_smoke_run_learns_and_writes_a_valid_record(smoke):
    rec = read_record(smoke / "out" / "cacr" / "smoke.json")
    chance = 1 / 12
    trained = [arm for arm in rec["arms"] if arm != "untrained"]
    for arm in trained:
        assert rec["arms"][arm]["knn_top1"][0] > 2 * chance, arm
    for arm in trained:
        curve = rec["curves"][arm]
        assert len(curve) > 3 and curve[-1][1] < curve[0][1], f"{arm}: loss did not go down"
    # CACR logs its two terms
    first = (smoke / "runs" / "cacr" / "smoke" / "cacr_bal" / "seed0" / "metrics.jsonl").read_text().splitlines()[0]
    assert '"ca"' in first and '"cr"' in first


def test_cpu_presets_are_the_stated_comparison():
    """cpu: the long-tailed arms (the headline); cpu-balanced: the same arms on the balanced split."""
    for preset, split in (("cpu", "lt"), ("cpu-balanced", "bal")):
        exp = PRESETS[preset]
        trained = {f"{m}_{split}" for m in ("cacr", "simclr", "align_uniform")}
        assert set(exp.arms) == trained | {"untrained"}
        assert exp.default_seeds >= 3
        head = exp.comparisons[0]
        assert (head.baseline, head.method, head.metric) == (f"simclr_{split}", f"cacr_{split}", "knn_top1")
        for c in exp.comparisons:
            assert c.method.startswith("cacr_")
        for name in trained:
            cfg = exp.arms[name]
            assert cfg["data"] == "fashion_mnist" and cfg["batch_size"] == 128  # the official batch
            assert cfg["tau_neg"] == 0.9 and cfg["tau_pos"] == 1.0 and cfg["alpha"] == cfg["beta"] == 1.0
            assert (cfg.get("imbalance_ratio") == 0.1) == (split == "lt")
        # the arms of a split differ only in the loss: same backbone, crops, epochs, batch
        same = [{k: v for k, v in exp.arms[f"{m}_{split}"].items() if k != "loss"} for m in ("cacr", "simclr")]
        assert same[0] == same[1]
        assert len(same[0]["crops"]) == 2 and same[0]["crops"][1][0] >= 2  # local crops: several positives
    # the two splits differ only in the split: one budget, one floor
    lt, bal = PRESETS["cpu"].arms["cacr_lt"], PRESETS["cpu-balanced"].arms["cacr_bal"]
    assert {k for k in lt if lt[k] != bal.get(k)} == {"train_per_class", "imbalance_ratio"}
    assert PRESETS["cpu"].arms["untrained"] == PRESETS["cpu-balanced"].arms["untrained"]


def test_floor_arm_and_headline():
    """The untrained floor is the headline baseline's config; the claim is the two long-tailed kNN comparisons."""
    cpu, smoke = PRESETS["cpu"], PRESETS["smoke"]
    assert next(iter(cpu.arms)) == "untrained" and next(iter(smoke.arms)) == "untrained"
    assert cpu.arms["untrained"] == untrained_arm(cpu.arms["simclr_lt"])
    assert smoke.arms["untrained"] == untrained_arm(smoke.arms["simclr_bal"])
    assert [(c.baseline, c.method, c.metric) for c in cpu.headline] == [
        ("simclr_lt", "cacr_lt", "knn_top1"),
        ("align_uniform_lt", "cacr_lt", "knn_top1"),
    ]
    assert cpu.floor(list(cpu.arms)) == {
        "arm": "untrained",
        "metric": "knn_top1",
        "direction": "greater",
        "min_gain": 0.02,
    }


def test_untrained_arm_trains_nothing(smoke):
    """The smoke run's floor: no training step, scored like the baseline at its seed's initialisation."""
    rec = read_record(smoke / "out" / "cacr" / "smoke.json")
    assert rec["floor"]["arm"] == "untrained" and rec["curves"]["untrained"] == []
    assert set(rec["arms"]["untrained"]) == set(rec["arms"]["simclr_bal"])
    lines = (smoke / "runs" / "cacr" / "smoke" / "untrained" / "seed0" / "metrics.jsonl").read_text().splitlines()
    assert [next(iter(json.loads(line))) for line in lines] == ["eval"]
    assert json.loads(lines[0])["eval"]["step"] == 0
    cfg = PRESETS["smoke"].arms["untrained"]
    train, bank, test = small_image_splits(cfg)
    torch.manual_seed(0)
    direct = small_evaluator(cfg, train, bank, test)(build_model(cfg))
    for metric, value in direct.items():
        assert rec["arms"]["untrained"][metric][0] == pytest.approx(value, abs=1e-6), metric


def test_long_tailed_split_profile():
    from shared.data.arrays import long_tailed_counts

    counts = long_tailed_counts(10, LT_ARM["train_per_class"], LT_ARM["imbalance_ratio"])
    assert counts[-1] / counts[0] == pytest.approx(0.1, abs=0.01)
    assert 9_500 <= sum(counts) <= 10_500  # the balanced split's size: the same number of steps
    labels = torch.repeat_interleave(torch.arange(10), torch.tensor(counts))
    data = ImageArrays(torch.zeros(len(labels), 1, 2, 2, dtype=torch.uint8), labels, tuple(map(str, range(10))))
    assert tail_classes(data, 10) == [5, 6, 7, 8, 9]


def test_paper_preset_builds_and_steps_once(tmp_path):
    """SmallAlexNet + fc8 + CACR, one step on 5 fake 32 px views (no data, no training)."""
    assert PAPER_ARM["batch_size"] == 128 and PAPER_ARM["epochs"] == 200 and PAPER_ARM["tau_neg"] == 0.9
    model = paper_model()
    assert model.backbone.out_dim == 4096 and model.projector.out_features == 128

    class FakeCrops:
        def steps_per_epoch(self, world_size):
            return 1

        def epoch(self, epoch, seed, rank, world_size, skip=0):
            g = torch.Generator().manual_seed(0)
            yield {"crops": [torch.randn(4, 3, 32, 32, generator=g) for _ in range(5)]}

    before = model.backbone.features[0][0].weight.detach().clone()
    cfg = TrainConfig(epochs=1, batch_size=4, lr=0.12 * 4 / 256, weight_decay=1e-4, progress=False)
    result = fit(model, FakeCrops(), cfg, tmp_path)
    assert result.steps == 1
    assert not torch.equal(before, model.backbone.features[0][0].weight)
    views = RepeatedView(official_view_transform(PAPER_ARM), 5)(torch.zeros(3, 40, 40, dtype=torch.uint8))
    assert len(views) == 5 and views[0].shape == (3, 32, 32)


def test_errors():
    with pytest.raises(ValueError, match="unknown loss"):
        make_loss({"loss": "triplet"})
    model = MultiViewContrastive(torch.nn.Identity(), torch.nn.Identity(), make_loss({**PAPER_ARM, "loss": "cacr"}))
    with pytest.raises(ValueError, match="no 'crops'"):
        model({"images": torch.zeros(2, 1, 4, 4, dtype=torch.uint8)})


def test_paper_preset_reports_linear_top1():
    """The paper preset is judged on a linear probe (frozen backbone, train split → test top-1), kNN extra."""
    exp = PRESETS["paper"]
    assert exp.eval_metric == "linear_top1" and [c.metric for c in exp.comparisons] == ["linear_top1"]
    train, test = fake_hub_images([0, 1] * 10, "img", 32), fake_hub_images([0, 1] * 4, "img", 32, seed=1)
    out = paper_evaluator({**PAPER_ARM, "workers": 0}, train, test)(tiny_backbone_model())
    assert set(out) == {"linear_top1", "knn_top1"} and out["linear_top1"] == 1.0


def test_card():
    assert PAPER.number == 13 and PAPER.package == "cacr"
    assert any(r.value == 74.7 for r in PAPER.reported)
