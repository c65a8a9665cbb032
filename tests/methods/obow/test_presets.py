"""OBoW's presets: the smoke run learns, the cpu preset is the stated comparison, the paper preset steps."""

import json
import math

import pytest
import torch

from methods.obow import PAPER, PRESETS
from methods.obow.experiments import CPU_ARMS, PAPER_ARM, build_model, paper_evaluator, paper_model
from shared.augment import to_model_input
from shared.cli import main
from shared.data.splits import small_image_splits
from shared.engine import TrainConfig, fit
from shared.evaluation import knn_evaluator
from shared.experiment import untrained_arm
from shared.results import read_record
from shared.testing import assert_floor_trained_nothing, fake_hub_images, tiny_backbone_model


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("smoke")
    args = ["run", "obow", "--preset", "smoke", "--out", str(tmp / "out"), "--run-dir", str(tmp / "runs")]
    assert main([*args, "--no-progress"]) == 0
    return tmp


def test_smoke_run_learns_and_writes_a_valid_record(smoke):
    rec = read_record(smoke / "out" / "obow" / "smoke.json")
    chance = 1 / 12
    for arm in ("simclr", "obow"):
        assert rec["arms"][arm]["knn_top1"][0] > 2 * chance, arm
        curve = rec["curves"][arm]
        assert len(curve) > 3 and curve[-1][1] < curve[0][1], f"{arm}: loss did not go down"
    log = (smoke / "runs" / "obow" / "smoke" / "obow" / "seed0" / "metrics.jsonl").read_text().splitlines()
    steps = [r for r in map(json.loads, log) if "perp_b_l1" in r]  # the BoW perplexities are logged
    assert steps and all(1 <= r["perp_i_l1"] <= r["perp_b_l1"] + 1e-6 <= 64 + 1e-6 for r in steps)


@pytest.mark.parametrize("preset", ["smoke", "cpu"])
def test_floor_arm_and_headline(preset):
    """The floor arm is SimCLR (the headline baseline) untrained; the claim is OBoW vs SimCLR in kNN top-1."""
    exp = PRESETS[preset]
    assert next(iter(exp.arms)) == "untrained" and exp.arms["untrained"] == untrained_arm(exp.arms["simclr"])
    assert [(c.baseline, c.method, c.metric) for c in exp.headline] == [("simclr", "obow", "knn_top1")]
    assert exp.floor(list(exp.arms)) == {
        "arm": "untrained",
        "metric": "knn_top1",
        "direction": "greater",
        "min_gain": 0.02,
    }


def test_one_floor_serves_every_arm():
    """Every cpu arm builds the same backbone first from the seed: the untrained arm is the start of all."""
    states = []
    for cfg in PRESETS["cpu"].arms.values():
        torch.manual_seed(3)
        states.append(build_model(cfg, total_steps=10).backbone.state_dict())
    assert all(all(torch.equal(states[0][k], st[k]) for k in states[0]) for st in states[1:])


def test_smoke_floor_arm_trains_nothing(smoke):
    """No optimiser step, no curve; its kNN top-1 is that of the seed-0 initialisation evaluated directly."""
    rec = read_record(smoke / "out" / "obow" / "smoke.json")
    runs = smoke / "runs" / "obow" / "smoke"
    assert_floor_trained_nothing(rec, runs, "simclr")
    cfg = PRESETS["smoke"].arms["untrained"]
    _, bank, test = small_image_splits(cfg)
    torch.manual_seed(0)
    model = build_model(cfg)

    def preprocess(x):
        return to_model_input(x, cfg["image_size"], tuple(cfg["mean"]), tuple(cfg["std"]))

    direct = knn_evaluator(bank, test, preprocess, k=cfg["knn_k"], temperature=0.1, linear=False)(model)
    assert rec["arms"]["untrained"]["knn_top1"] == [pytest.approx(direct["knn_top1"], abs=1e-9)]


def test_cpu_preset_is_the_stated_comparison():
    exp = PRESETS["cpu"]
    assert list(exp.arms) == ["untrained", "simclr", "obow", "obow_vanilla"] and exp.default_seeds >= 3
    assert [(c.baseline, c.method, c.metric) for c in exp.comparisons] == [
        ("simclr", "obow", "knn_top1"),
        ("simclr", "obow", "linear_top1"),
        ("obow_vanilla", "obow", "knn_top1"),
    ]
    shared_keys = ("data", "train_per_class", "backbone", "widths", "num_pools", "epochs", "batch_size", "bf16")
    for key in shared_keys:  # same backbone, data, epochs and batch for every arm
        assert len({str(cfg[key]) for cfg in CPU_ARMS.values()}) == 1, key
    obow, vanilla = CPU_ARMS["obow"], CPU_ARMS["obow_vanilla"]
    assert obow["levels"] == (-2, -1) and obow["num_patches"] == 5 and obow["crops"][0][0] == 2
    assert vanilla["levels"] == (-1,) and vanilla["num_patches"] == 0 and vanilla["crops"][0][0] == 1
    assert obow["num_words"] % obow["batch_size"] == 0
    assert (obow["inv_delta"], obow["kappa"], obow["base_momentum"]) == (10.0, 5.0, 0.99)  # the R18 config


def test_paper_preset_builds_and_steps_once(tmp_path):
    """ResNet-50 at conv4/conv5, κ=8, δ⁻¹=15: one step on fake 224 + 2×160 + 5×96 px views.

    The model is built with the paper's K = 8192; the step runs with K = 64, as generating 8192
    classifier weights of 2048-d through a 4096-d hidden layer alone costs ~0.5 TFLOP per step on CPU.
    """
    assert PAPER_ARM["batch_size"] == 256 and PAPER_ARM["epochs"] == 200 and PAPER_ARM["lr"] == 0.03
    assert (PAPER_ARM["num_words"], PAPER_ARM["inv_delta"], PAPER_ARM["kappa"]) == (8192, 15.0, 8.0)
    torch.manual_seed(0)
    model = paper_model({**PAPER_ARM, "num_words": 64}, total_steps=10)
    assert [e.dim for e in model.extractors] == [1024, 2048] and model.backbone.out_dim == 2048
    assert [g[1].weight.shape for g in model.predictor.generators] == [(4096, 1024), (4096, 2048)]

    class FakeViews:
        def steps_per_epoch(self, world_size):
            return 1

        def epoch(self, epoch, seed, rank, world_size, skip=0):
            g = torch.Generator().manual_seed(0)
            yield {
                "teacher": torch.randn(2, 3, 224, 224, generator=g),
                "crops": [torch.randn(2, 3, 160, 160, generator=g) for _ in range(2)],
                "patches": [torch.randn(2, 3, 96, 96, generator=g) for _ in range(5)],
            }

    before = model.backbone.conv1.weight.detach().clone()
    cfg = TrainConfig(epochs=1, batch_size=2, lr=0.03, weight_decay=1e-4, progress=False)
    result = fit(model, FakeViews(), cfg, tmp_path)
    assert result.steps == 1 and math.isfinite(result.history[-1]["loss"])
    assert not torch.equal(before, model.backbone.conv1.weight)
    assert [int(e.queue.ptr) for e in model.extractors] == [2, 2]


def test_paper_preset_reports_linear_top1():
    """The paper preset is judged on a linear probe (frozen backbone, train split → val top-1), kNN extra."""
    exp = PRESETS["paper"]
    assert exp.eval_metric == "linear_top1" and [c.metric for c in exp.comparisons] == ["linear_top1"]
    train, val = fake_hub_images([0, 1] * 10), fake_hub_images([0, 1] * 4, seed=1)
    out = paper_evaluator({**PAPER_ARM, "workers": 0}, train, val)(tiny_backbone_model())
    assert set(out) == {"linear_top1", "knn_top1"} and out["linear_top1"] == 1.0


def test_card():
    assert PAPER.number == 24 and PAPER.package == "obow" and PAPER.arxiv == "2012.11552"
    assert any(r.value == 73.8 for r in PAPER.reported)
