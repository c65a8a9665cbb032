"""ProjHead's presets: the smoke run learns and reuses the shared run, the cpu preset is the stated
comparison, the paper preset builds and steps once, the shifted set and the readouts are right."""

import json
import os

import pytest
import torch

from methods.projhead import PAPER, PRESETS, grey_shapes
from methods.projhead.experiments import (
    COMPARISONS,
    PAPER_ARM,
    _shared_result,
    build_model,
    layer_table,
    paper_model,
    readout_metrics,
    small_splits,
    theory_check,
)
from shared.augment import to_model_input
from shared.cli import main
from shared.engine import TrainConfig, fit
from shared.experiment import ArmRun, untrained_arm
from shared.results import read_record


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("smoke")
    args = ["run", "projhead", "--preset", "smoke", "--out", str(tmp / "out"), "--run-dir", str(tmp / "runs")]
    assert main([*args, "--no-progress"]) == 0
    return tmp, [*args, "--no-progress"]


def test_smoke_run_learns_and_records_every_layer(smoke):
    tmp, _ = smoke
    rec = read_record(tmp / "out" / "projhead" / "smoke.json")
    for arm in TRAINED:
        metrics = rec["arms"][arm]
        assert metrics["probe_id"][0] > 2 * 0.1, arm  # 10 Fashion-MNIST classes
        assert metrics["probe_ood"][0] > 0.25, arm  # 4 shape classes
        curve = rec["curves"][arm]
        assert len(curve) > 3 and curve[-1][1] < curve[0][1], f"{arm}: loss did not go down"
    layers = rec["analysis"]["layers"]
    assert set(layers) == {"mlp", "reweight", "none", "untrained"}
    assert list(layers["mlp"]) == ["stage1", "stage2", "stage3", "head1", "head_out"]
    assert list(layers["reweight"]) == ["stage1", "stage2", "stage3", "head_out"]
    assert set(layers["mlp"]["stage1"]) == {"probe_id", "probe_ood", "erank"}
    # the fixed head is a diagonal rescaling: a probe on standardised features cannot tell them apart
    assert layers["reweight"]["head_out"]["probe_id"] == pytest.approx(layers["reweight"]["stage3"]["probe_id"])
    assert rec["analysis"]["linear_network"]["max_rel_err_pre_vs_sqrt_post"] < 1e-3
    assert (tmp / "out" / "projhead" / "smoke_layers.png").stat().st_size > 1000


TRAINED = ("mlp_post", "mlp_pre", "reweight", "no_head")


def test_untrained_arms_train_nothing_and_are_read_like_the_trained_ones(smoke):
    """``untrained``: mlp_post's network at seed 0's initialisation, post-head; ``untrained_pre`` reuses it
    before the head. Both score like the arm they floor and train no step."""
    tmp, _ = smoke
    rec = read_record(tmp / "out" / "projhead" / "smoke.json")
    assert list(rec["arms"])[:2] == ["untrained", "untrained_pre"]
    assert set(rec["arms"]["untrained"]) == set(rec["arms"]["mlp_post"]) == set(rec["arms"]["untrained_pre"])
    assert rec["curves"]["untrained"] == [] and rec["curves"]["untrained_pre"] == []
    main_floor, pre_floor = rec["floor"]
    assert main_floor == {"arm": "untrained", "metric": "probe_ood", "direction": "greater", "min_gain": 0.02}
    assert pre_floor["arm"] == "untrained_pre" and set(pre_floor["arms"]) == {"mlp_pre", "reweight", "no_head"}
    runs = tmp / "runs" / "projhead" / "smoke"
    assert json.loads((runs / "untrained" / "seed0" / "run_stats.json").read_text())["steps"] == 0
    assert not (runs / "untrained" / "seed0" / "checkpoint.pt").exists()
    post = json.loads((runs / "untrained" / "seed0" / "final.json").read_text())
    pre = json.loads((runs / "untrained_pre" / "seed0" / "final.json").read_text())
    assert pre["extras"]["reused_from"] == "untrained" and pre["extras"]["layers"] == post["extras"]["layers"]
    trained = json.loads((runs / "mlp_post" / "seed0" / "final.json").read_text())
    assert post["extras"]["training_key"] != trained["extras"]["training_key"]  # never shares a trained run
    # the table is the fresh network's, seeded as train_small seeds it
    cfg = PRESETS["smoke"].arms["untrained"]
    _, downstream = small_splits(cfg, None)
    torch.manual_seed(0)
    fresh = build_model(cfg)

    def preprocess(x):
        return to_model_input(x, cfg["image_size"], tuple(cfg["mean"]), tuple(cfg["std"]))

    table = layer_table(fresh.backbone, fresh.projector, downstream, preprocess)
    for layer, row in table.items():
        assert post["extras"]["layers"][layer] == pytest.approx(row, abs=1e-6), layer
    assert rec["arms"]["untrained_pre"]["probe_ood"][0] == pytest.approx(table["stage3"]["probe_ood"], abs=1e-6)


def test_pre_and_post_readouts_share_one_training(smoke):
    tmp, _ = smoke
    rec = read_record(tmp / "out" / "projhead" / "smoke.json")
    assert rec["environment"]["train_seconds_per_run"]["mlp_pre"] == [0.0]
    runs = tmp / "runs" / "projhead" / "smoke"
    post = json.loads((runs / "mlp_post" / "seed0" / "final.json").read_text())
    pre = json.loads((runs / "mlp_pre" / "seed0" / "final.json").read_text())
    assert pre["extras"]["reused_from"] == "mlp_post" and pre["extras"]["layers"] == post["extras"]["layers"]
    table = post["extras"]["layers"]
    assert pre["metrics"]["probe_ood"] == table["stage3"]["probe_ood"]
    assert post["metrics"]["probe_ood"] == table["head_out"]["probe_ood"]


def test_resume_reuses_finished_runs(smoke):
    tmp, args = smoke
    first = read_record(tmp / "out" / "projhead" / "smoke.json")
    final = tmp / "runs" / "projhead" / "smoke" / "reweight" / "seed0" / "final.json"
    stamp = final.stat().st_mtime_ns
    assert main([*args, "--resume"]) == 0
    assert final.stat().st_mtime_ns == stamp
    again = read_record(tmp / "out" / "projhead" / "smoke.json")
    assert again["arms"] == first["arms"] and again["analysis"]["layers"] == first["analysis"]["layers"]


def test_a_stale_or_foreign_shared_run_is_not_reused(tmp_path):
    cfg = PRESETS["smoke"].arms["mlp_pre"]
    run = ArmRun("mlp_pre", cfg, 0, tmp_path / "mlp_pre" / "seed0", False, None, None)
    assert _shared_result(run) is None  # nothing to share
    owner = tmp_path / "mlp_post" / "seed0"
    owner.mkdir(parents=True)
    extras = {"training_key": "someone-else", "epochs_override": None}
    (owner / "final.json").write_text(json.dumps({"extras": extras, "curve": [], "evaluations": []}))
    assert _shared_result(run) is None  # other training config
    os.utime(owner / "final.json", (0, 0))
    assert _shared_result(run) is None  # written before this process started


def test_cpu_preset_is_the_stated_comparison():
    exp = PRESETS["cpu"]
    assert list(exp.arms) == ["untrained", "untrained_pre", *TRAINED]
    assert exp.default_seeds >= 3
    assert [(c.baseline, c.method, c.metric) for c in exp.headline] == [("mlp_post", "mlp_pre", "probe_ood")]
    assert exp.comparisons == COMPARISONS
    for preset in ("cpu", "smoke"):
        arms = PRESETS[preset].arms
        assert arms["untrained"] == untrained_arm(arms["mlp_post"])
        assert arms["untrained_pre"] == untrained_arm({**arms["mlp_pre"], "share_with": "untrained"})
    base = {k: v for k, v in exp.arms["mlp_post"].items() if k not in ("head", "readout", "share_with")}
    for arm in TRAINED:
        cfg = exp.arms[arm]
        assert {k: v for k, v in cfg.items() if k not in ("head", "readout", "share_with")} == base
    assert base["data"] == "fashion_mnist" and base["kappa"] == 1.05 and base["backbone"] == "convnet"
    assert exp.arms["mlp_pre"]["share_with"] == "mlp_post"


def test_grey_shapes_is_a_4_class_single_channel_set():
    s = grey_shapes(3, 28, 1, seed=0)
    assert s.images.shape == (36, 1, 28, 28) and s.images.dtype == torch.uint8
    assert s.num_classes == 4 and sorted(s.labels.unique().tolist()) == [0, 1, 2, 3]
    assert grey_shapes(3, 32, 3, seed=0).images.shape == (36, 3, 32, 32)


def test_readout_metrics():
    table = {
        "stage1": {"probe_id": 0.1, "dim": 8},
        "stage2": {"probe_id": 0.2, "dim": 16},
        "head_out": {"probe_id": 0.3},
    }
    assert readout_metrics(table, "pre") == {"probe_id": 0.2}
    assert readout_metrics(table, "post") == {"probe_id": 0.3}
    with pytest.raises(ValueError, match="needs a layer"):
        readout_metrics({"stage1": {}}, "post")


def test_theory_check_recovers_square_root_weighting():
    out = theory_check()
    assert out["max_rel_err_pre_vs_sqrt_post"] < 1e-3
    assert out["max_over_min_weight"]["pre"] < out["max_over_min_weight"]["post"]


def test_paper_preset_builds_and_steps_once(tmp_path):
    """ResNet-18 + 512→2048→128 head + LARS, one step on fake 32 px views (no data, no training)."""
    assert PAPER_ARM["batch_size"] == 512 and PAPER_ARM["backbone"] == "resnet18"
    model = paper_model("mlp")
    assert model.backbone.out_dim == 512 and model.projector[-1].out_features == 128

    class FakeViews:
        def steps_per_epoch(self, world_size):
            return 1

        def epoch(self, epoch, seed, rank, world_size, skip=0):
            g = torch.Generator().manual_seed(0)
            yield {"views": (torch.randn(2, 3, 32, 32, generator=g), torch.randn(2, 3, 32, 32, generator=g))}

    before = model.backbone.conv1.weight.detach().clone()
    cfg = TrainConfig(epochs=1, batch_size=2, lr=0.3 * 2 / 256, optimizer="lars", weight_decay=1e-6, progress=False)
    assert fit(model, FakeViews(), cfg, tmp_path).steps == 1
    assert not torch.equal(before, model.backbone.conv1.weight)
    assert paper_model("reweight").projector.weights.shape == (512,)


def test_card():
    assert PAPER.number == 29 and PAPER.package == "projhead"
    assert any(r.value == 1.05 for r in PAPER.reported)
