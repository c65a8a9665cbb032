"""BECLR's presets: the smoke run learns, the cpu preset is the stated comparison, the paper model steps."""

import json

import pytest
import torch

from methods.beclr import BECLR, PAPER, PRESETS, DyCEConfig
from methods.beclr.experiments import (
    CPU_ARM,
    PAPER_ARM,
    build_model,
    dyce_config,
    fewshot_evaluator,
    novel_sets,
    paper_model,
)
from methods.beclr.model import teacher_momentum
from shared.backbones import SmallConvNet
from shared.cli import main
from shared.engine import TrainConfig, fit
from shared.experiment import untrained_arm
from shared.results import read_record


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("smoke")
    args = ["run", "beclr", "--preset", "smoke", "--out", str(tmp / "out"), "--run-dir", str(tmp / "runs")]
    assert main([*args, "--no-progress"]) == 0
    return tmp


def test_smoke_run_learns_and_enhances(smoke):
    rec = read_record(smoke / "out" / "beclr" / "smoke.json")
    for arm in ("baseline", "beclr"):
        metrics = rec["arms"][arm]
        assert metrics["acc_1shot"][0] > 0.26, arm  # 5-way chance is 0.2
        assert metrics["acc_5shot"][0] > metrics["acc_1shot"][0] - 0.02, arm
    assert set(rec["analysis"]) >= {"beclr: OpTA vs none, acc_1shot", "baseline: OpTA vs none, acc_5shot"}
    runs = smoke / "runs" / "beclr" / "smoke"
    assert json.loads((runs / "beclr" / "seed0" / "final.json").read_text())["extras"]["enhanced_steps"] > 0
    assert json.loads((runs / "baseline" / "seed0" / "final.json").read_text())["extras"]["enhanced_steps"] == 0


def test_untrained_arm_trains_nothing_and_is_scored_like_the_baseline(smoke):
    """The floor arm: the no-memory baseline at seed 0's initialisation, on the same episodes."""
    rec = read_record(smoke / "out" / "beclr" / "smoke.json")
    assert next(iter(rec["arms"])) == "untrained" and rec["curves"]["untrained"] == []
    assert set(rec["arms"]["untrained"]) == set(rec["arms"]["baseline"])
    assert rec["floor"] == {"arm": "untrained", "metric": "acc_1shot", "direction": "greater", "min_gain": 0.02}
    run = smoke / "runs" / "beclr" / "smoke" / "untrained" / "seed0"
    assert json.loads((run / "run_stats.json").read_text())["steps"] == 0
    final = json.loads((run / "final.json").read_text())
    assert [e["step"] for e in final["evaluations"]] == [0] and final["extras"]["enhanced_steps"] == 0
    cfg = PRESETS["smoke"].arms["untrained"]
    torch.manual_seed(0)  # what train_small does before building the model of seed 0
    fresh = build_model(cfg, steps_per_epoch=1, epochs=0, seed=0)
    assert not (run / "checkpoint.pt").exists()  # a 0-epoch run saves nothing to resume
    # the floor metric, recomputed on the fresh network (1-shot without OpTA only: the rest costs seconds)
    cfg1 = {**cfg, "eval_sets": cfg["eval_sets"][:1]}
    sets = novel_sets(cfg1, None)
    one_shot = fewshot_evaluator(cfg1, sets, shots=(1,), opta_modes=(False,))(fresh)
    assert rec["arms"]["untrained"]["acc_1shot"][0] == pytest.approx(one_shot["acc_1shot"], abs=1e-6)


def test_cpu_preset_is_the_stated_comparison():
    exp = PRESETS["cpu"]
    assert list(exp.arms) == ["untrained", "baseline", "beclr", "beclr_official_sign"] and exp.default_seeds >= 3
    assert exp.arms["untrained"] == untrained_arm(exp.arms["baseline"])
    assert PRESETS["smoke"].arms["untrained"] == untrained_arm(PRESETS["smoke"].arms["baseline"])
    assert [(c.baseline, c.method, c.metric) for c in exp.headline] == [("baseline", "beclr", "acc_1shot")]
    head = exp.comparisons[0]
    assert (head.baseline, head.method, head.metric) == ("baseline", "beclr", "acc_1shot")
    base = {k: v for k, v in exp.arms["baseline"].items() if k != "dyce"}
    assert base == {k: v for k, v in exp.arms["beclr"].items() if k != "dyce"}  # same budget, only DyCE differs
    assert CPU_ARM["base_classes"] == (0, 1, 2, 3, 4) and CPU_ARM["novel_classes"] == (5, 6, 7, 8, 9)
    assert CPU_ARM["episodes"] == 600 and CPU_ARM["n_query"] == 15 and CPU_ARM["n_way"] == 5
    assert dyce_config(exp.arms["baseline"]) is None and dyce_config(exp.arms["beclr"]).official_sign is False
    # the official-sign arm: the beclr arm plus the flag, judged by a secondary comparison
    assert exp.arms["beclr_official_sign"] == {**exp.arms["beclr"], "official_sign": True}
    assert dyce_config(exp.arms["beclr_official_sign"]).official_sign is True
    sign = [c for c in exp.comparisons if c.method == "beclr_official_sign"]
    assert [(c.baseline, c.metric, c.headline) for c in sign] == [("beclr", "acc_1shot", False)]


def test_paper_preset_builds_and_steps_once(tmp_path):
    """ResNet-18 + 512-d heads + DyCE (8192 / 200 / top-5): one step on fake 224 px views with block masks."""
    assert PAPER_ARM["epochs"] == 400 and PAPER_ARM["batch_size"] == 256 and PAPER_ARM["teacher_momentum"] == 0.995
    model = paper_model()
    assert model.projector[-2].out_features == 512 and model.predictor[0].out_features == 128
    assert model.memories["student"].config.size == 8192 and model.memories["student"].config.topk == 5

    class FakeViews:
        def steps_per_epoch(self, world_size):
            return 1

        def epoch(self, epoch, seed, rank, world_size, skip=0):
            g = torch.Generator().manual_seed(0)
            views = (torch.randn(4, 3, 224, 224, generator=g), torch.randn(4, 3, 224, 224, generator=g))
            masks = tuple(torch.rand(4, 14, 14, generator=g) < 0.15 for _ in range(2))
            yield {"views": views, "masks": masks}

    before = model.backbone.conv1.weight.detach().clone()
    cfg = TrainConfig(epochs=1, batch_size=4, lr=0.3 * 4 / 256, weight_decay=1e-4, progress=False)
    assert fit(model, FakeViews(), cfg, tmp_path).steps == 1
    assert not torch.equal(before, model.backbone.conv1.weight)
    assert int(model.memories["teacher"].count) == 8  # 2 views × 4 images enqueued


def test_model_enhances_after_the_memory_fills():
    torch.manual_seed(0)
    cfg = DyCEConfig(size=32, num_clusters=2, topk=2)
    model = BECLR(SmallConvNet(1, (8, 8)), out_dim=8, dyce=cfg, enhance_from_step=0, total_steps=10)
    batch = {"views": (torch.randn(8, 1, 12, 12), torch.randn(8, 1, 12, 12))}
    outs = [model(batch) for _ in range(4)]  # 16 rows per step: full after 2, clustered on the 3rd
    assert [float(o["enhanced"]) for o in outs] == [0.0, 0.0, 1.0, 1.0]
    outs[-1]["loss"].backward()
    model.after_step(0)
    assert int(model.steps) == 1


def test_teacher_momentum_schedule():
    assert teacher_momentum(0, 100, 0.99) == pytest.approx(0.99)
    assert teacher_momentum(100, 100, 0.99) == pytest.approx(1.0)
    assert 0.99 < teacher_momentum(50, 100, 0.99) < 1.0


def test_model_errors():
    with pytest.raises(ValueError, match="views"):
        BECLR(SmallConvNet(1, (8, 8)), out_dim=8)({"images": torch.zeros(2, 1, 8, 8, dtype=torch.uint8)})
    with pytest.raises(ValueError, match="at least 4"):
        BECLR(SmallConvNet(1, (8, 8)), out_dim=2)
    with pytest.raises(ValueError, match="momentum"):
        BECLR(SmallConvNet(1, (8, 8)), out_dim=8, momentum=1.5)


def test_card():
    assert PAPER.number == 28 and PAPER.package == "beclr"
    assert any(r.value == 80.57 for r in PAPER.reported)
