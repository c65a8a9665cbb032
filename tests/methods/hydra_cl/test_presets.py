"""Hydra's presets: the smoke run learns and writes the gate analysis; cpu is the stated comparison; paper steps."""

import json

import pytest
import torch

from methods.hydra_cl import PAPER, PRESETS
from methods.hydra_cl.experiments import PAPER_ARM, build_gate, paper_model
from shared.cli import main
from shared.engine import TrainConfig, fit
from shared.experiment import untrained_arm
from shared.results import read_record


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("smoke")
    args = ["run", "hydra_cl", "--preset", "smoke", "--out", str(tmp / "out"), "--run-dir", str(tmp / "runs")]
    assert main([*args, "--no-progress"]) == 0
    return tmp


def test_smoke_run_learns_and_writes_the_gate_analysis(smoke):
    rec = read_record(smoke / "out" / "hydra_cl" / "smoke.json")
    chance = 1 / 12
    for arm in ("moco_v3", "hydra"):
        metrics = rec["arms"][arm]
        assert metrics["knn_top1"][0] > 2 * chance, arm
        assert metrics["linear_top1"][0] > 2 * chance, arm
        assert 1 <= metrics["effective_rank"][0] <= 64
    for arm in ("moco_v3", "hydra"):
        curve = rec["curves"][arm]
        assert len(curve) > 3 and curve[-1][1] < curve[0][1], f"{arm}: loss did not go down"
    analysis = rec["analysis"]
    overlap = torch.tensor(analysis["gate_overlap"])
    assert overlap.shape == (12, 12) and torch.allclose(overlap.diagonal(), torch.ones(12), atol=1e-3)
    wanted = {"spearman_overlap_vs_baseline_similarity", "overlap_within_minus_across_groups"}
    assert set(analysis["per_seed"]) >= wanted
    assert (smoke / "out" / "hydra_cl" / "smoke_gate_overlap.png").stat().st_size > 1000


def test_untrained_arm_trains_nothing(smoke):
    """The floor arm: MoCo v3 at its seed's initialisation, no training step, the same evaluation."""
    rec = read_record(smoke / "out" / "hydra_cl" / "smoke.json")
    assert rec["floor"] == {"arm": "untrained", "metric": "linear_top1", "direction": "greater", "min_gain": 0.02}
    assert rec["curves"]["untrained"] == [] and set(rec["arms"]["untrained"]) == set(rec["arms"]["moco_v3"])
    run = smoke / "runs" / "hydra_cl" / "smoke" / "untrained" / "seed0"
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [next(iter(json.loads(line))) for line in lines] == ["eval"]
    assert json.loads(lines[0])["eval"]["step"] == 0
    assert not (run / "checkpoint.pt").exists()  # a 0-epoch run has nothing to resume
    assert json.loads((run / "run_stats.json").read_text())["steps"] == 0


def test_floor_arm_and_headline():
    for name in ("cpu", "smoke"):
        exp = PRESETS[name]
        assert next(iter(exp.arms)) == "untrained"
        assert exp.arms["untrained"] == untrained_arm(exp.arms["moco_v3"])
        assert [(c.baseline, c.method, c.metric) for c in exp.headline] == [
            ("moco_v3", "hydra", "linear_top1"),
            ("moco_v3", "hydra", "effective_rank"),
        ]


def test_cpu_preset_is_the_stated_comparison():
    exp = PRESETS["cpu"]
    assert set(exp.arms) == {"untrained", "moco_v3", "hydra"} and exp.default_seeds >= 3
    assert exp.comparisons[0].metric == "linear_top1" and exp.comparisons[0].baseline == "moco_v3"
    assert {c.metric for c in exp.comparisons} >= {"linear_top1", "effective_rank"}
    base, hydra = exp.arms["moco_v3"], exp.arms["hydra"]
    assert base["beta"] == 0 and hydra["beta"] == 1
    assert {k: v for k, v in base.items() if k != "beta"} == {k: v for k, v in hydra.items() if k != "beta"}
    assert hydra["data"] == "fashion_mnist" and hydra["image_size"] == 28 and hydra["backbone"] == "convnet"
    assert exp.analysis is not None
    assert build_gate({**base, "num_classes": 10}) is None
    with pytest.raises(ValueError, match="unknown gate"):
        build_gate({**hydra, "num_classes": 10, "gate": "gumbel"})


def test_paper_preset_builds_and_steps_once(tmp_path):
    """ResNet-50, 3-layer 4096 projector (LayerNorm) → 256, predictor, gate 512→1024→256 over 100 classes."""
    assert PAPER_ARM["epochs"] == 200 and PAPER_ARM["batch_size"] == 4096 and PAPER_ARM["optimizer"] == "lars"
    assert PAPER_ARM["num_classes"] == 100 and PAPER_ARM["temperature"] == 1.0
    model = paper_model()
    assert model.backbone.out_dim == 2048 and isinstance(model.projector[-1], torch.nn.LayerNorm)
    assert model.disparate.gate.label_embedding.weight.shape == (100, 512)

    class FakeViews:
        def steps_per_epoch(self, world_size):
            return 1

        def epoch(self, epoch, seed, rank, world_size, skip=0):
            g = torch.Generator().manual_seed(0)
            views = (torch.randn(2, 3, 64, 64, generator=g), torch.randn(2, 3, 64, 64, generator=g))
            yield {"views": views, "labels": torch.tensor([3, 97])}

    before = model.backbone.conv1.weight.detach().clone()
    cfg = TrainConfig(epochs=1, batch_size=2, lr=0.3 * 2 / 256, optimizer="lars", weight_decay=1.5e-6, progress=False)
    assert fit(model, FakeViews(), cfg, tmp_path).steps == 1
    assert not torch.equal(before, model.backbone.conv1.weight)


def test_card_says_supervised():
    assert PAPER.number == 3 and PAPER.package == "hydra_cl"
    assert "label" in PAPER.family
    assert any(r.value == 84.02 for r in PAPER.reported)
