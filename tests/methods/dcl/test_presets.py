"""DCL's presets: the smoke run learns, the cpu preset is the stated comparison, the paper preset steps."""

import json
import os
import subprocess
import sys

import pytest
import torch

from methods.dcl import PAPER, PRESETS
from methods.dcl.experiments import PAPER_ARM, build_model, make_loss, paper_evaluator, paper_model
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
    args = [
        "run",
        "dcl",
        "--preset",
        "smoke",
        "--out",
        str(tmp / "out"),
        "--run-dir",
        str(tmp / "runs"),
        "--no-progress",
    ]
    assert main(args) == 0
    return tmp, args


def test_smoke_run_learns_and_writes_a_valid_record(smoke):
    tmp, _ = smoke
    rec = read_record(tmp / "out" / "dcl" / "smoke.json")
    chance = 1 / 12
    trained = [a for a in rec["arms"] if a != "untrained"]
    for arm in trained:
        assert rec["arms"][arm]["knn_top1"][0] > 2 * chance, arm
        curve = rec["curves"][arm]
        assert len(curve) > 3 and curve[-1][1] < curve[0][1], f"{arm}: loss did not go down"
    assert (tmp / "out" / "dcl" / "smoke_curves.png").stat().st_size > 1000


def test_resume_reuses_finished_runs(smoke):
    tmp, args = smoke
    first = read_record(tmp / "out" / "dcl" / "smoke.json")
    final = tmp / "runs" / "dcl" / "smoke" / "dcl_b32" / "seed0" / "final.json"
    stamp = final.stat().st_mtime_ns
    assert main([*args, "--resume"]) == 0
    assert final.stat().st_mtime_ns == stamp  # not retrained
    assert read_record(tmp / "out" / "dcl" / "smoke.json")["arms"] == first["arms"]


def test_cpu_preset_is_the_stated_comparison():
    exp = PRESETS["cpu"]
    assert list(exp.arms) == ["untrained", "infonce_b32", "dcl_b32", "dclw_b32", "infonce_b256", "dcl_b256"]
    assert exp.default_seeds >= 3
    assert exp.comparisons[0].baseline == "infonce_b32" and exp.comparisons[0].method == "dcl_b32"
    trained = {a: cfg for a, cfg in exp.arms.items() if a != "untrained"}
    for cfg in trained.values():
        assert cfg["data"] == "fashion_mnist" and cfg["temperature"] == 0.1
    # arms differ only in loss and batch size
    base = {k: v for k, v in exp.arms["infonce_b32"].items() if k not in ("loss", "batch_size")}
    for cfg in trained.values():
        assert {k: v for k, v in cfg.items() if k not in ("loss", "batch_size")} == base


@pytest.mark.parametrize("preset", ["smoke", "cpu"])
def test_floor_arm_and_headline(preset):
    """The floor arm is the headline baseline (InfoNCE, batch 32) untrained; the claim is DCL vs InfoNCE at 32."""
    exp = PRESETS[preset]
    assert next(iter(exp.arms)) == "untrained"
    assert exp.arms["untrained"] == untrained_arm(exp.arms["infonce_b32"])
    assert [(c.baseline, c.method, c.metric) for c in exp.headline] == [("infonce_b32", "dcl_b32", "knn_top1")]
    assert exp.floor(list(exp.arms)) == {
        "arm": "untrained",
        "metric": "knn_top1",
        "direction": "greater",
        "min_gain": 0.02,
    }


def test_smoke_floor_arm_trains_nothing(smoke):
    """The smoke run's untrained arm: no optimiser step, no training curve, and its kNN top-1 is that of
    the seed-0 initialisation of the baseline's model, evaluated directly; same metric keys as the baseline."""
    tmp, _ = smoke
    rec = read_record(tmp / "out" / "dcl" / "smoke.json")
    runs = tmp / "runs" / "dcl" / "smoke"
    assert_floor_trained_nothing(rec, runs, "infonce_b32")
    cfg = PRESETS["smoke"].arms["untrained"]
    _, bank, test = small_image_splits(cfg)
    torch.manual_seed(0)
    model = build_model(cfg)

    def preprocess(x):
        return to_model_input(x, cfg["image_size"], tuple(cfg["mean"]), tuple(cfg["std"]))

    direct = knn_evaluator(bank, test, preprocess, k=cfg["knn_k"], temperature=0.1)(model)
    assert rec["arms"]["untrained"]["knn_top1"] == [pytest.approx(direct["knn_top1"], abs=1e-9)]


def test_paper_preset_builds_and_steps_once(tmp_path):
    """ResNet-50 + 2048-2048-128 head + LARS, one step on fake 224 px views (no data, no training)."""
    assert PAPER_ARM["batch_size"] == 256 and PAPER_ARM["epochs"] == 200 and PAPER_ARM["optimizer"] == "lars"
    model = paper_model("dcl")
    assert model.backbone.out_dim == 2048 and model.projector[-1].out_features == 128

    class FakeViews:
        def steps_per_epoch(self, world_size):
            return 1

        def epoch(self, epoch, seed, rank, world_size, skip=0):
            g = torch.Generator().manual_seed(0)
            yield {"views": (torch.randn(2, 3, 224, 224, generator=g), torch.randn(2, 3, 224, 224, generator=g))}

    before = model.backbone.conv1.weight.detach().clone()
    cfg = TrainConfig(epochs=1, batch_size=2, lr=0.3 * 2 / 256, optimizer="lars", weight_decay=1e-6, progress=False)
    result = fit(model, FakeViews(), cfg, tmp_path)
    assert result.steps == 1
    assert not torch.equal(before, model.backbone.conv1.weight)


def test_paper_preset_reports_linear_top1():
    """The paper preset is judged on a linear probe (frozen backbone, train split → val top-1), kNN extra."""
    exp = PRESETS["paper"]
    assert exp.eval_metric == "linear_top1" and [c.metric for c in exp.comparisons] == ["linear_top1"]
    train, val = fake_hub_images([0, 1] * 10), fake_hub_images([0, 1] * 4, seed=1)
    out = paper_evaluator({**PAPER_ARM, "workers": 0}, train, val)(tiny_backbone_model())
    assert set(out) == {"linear_top1", "knn_top1"} and out["linear_top1"] == 1.0


def test_make_loss_errors():
    with pytest.raises(ValueError, match="unknown loss"):
        make_loss("triplet", 0.1)


def test_card():
    assert PAPER.number == 11 and PAPER.package == "dcl"
    assert any(r.value == 68.2 and r.source == "abstract" for r in PAPER.reported)


@pytest.mark.distributed
def test_two_process_smoke_run_under_torchrun(tmp_path):
    """The engine end to end under torchrun + Accelerate on 2 CPU processes; only rank 0 writes."""
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "shared.cli",
        "run",
        "dcl",
        "--preset",
        "smoke",
        "--arms",
        "infonce_b32,dcl_b32",
        "--out",
        str(tmp_path / "out"),
        "--run-dir",
        str(tmp_path / "runs"),
        "--no-progress",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rec = read_record(tmp_path / "out" / "dcl" / "smoke.json")
    assert rec["environment"]["world_size"] == 2
    assert sorted(p.name for p in (tmp_path / "out" / "dcl").iterdir()) == ["smoke.json", "smoke_curves.png"]
    assert proc.stdout.count("record written to") == 1
    assert json.loads((tmp_path / "runs" / "dcl" / "smoke" / "dcl_b32" / "seed0" / "final.json").read_text())


def test_sweep_arms_are_the_cpu_arm_with_only_loss_batch_and_tau_changed():
    from methods.dcl.experiments import CPU_ARM, SWEEP_ARM

    exp = PRESETS["cpu-sweep"]
    assert {k for k in SWEEP_ARM if SWEEP_ARM[k] != CPU_ARM.get(k)} == {"train_per_class", "eval_every"}
    trained = {a: c for a, c in exp.arms.items() if a != "untrained" and "derived" not in c}
    batches = {c["batch_size"] for c in trained.values() if c["temperature"] == 0.1}
    assert batches == {16, 32, 64, 256}
    assert {c["temperature"] for c in trained.values() if c["batch_size"] == 32} == {0.1, 0.2, 0.5}
    for arm, cfg in trained.items():
        assert {k for k in cfg if cfg[k] != SWEEP_ARM.get(k)} <= {"loss", "batch_size", "temperature"}, arm
        assert cfg["loss"] in ("infonce", "dcl") and arm.startswith(cfg["loss"])
    assert exp.arms["untrained"] == untrained_arm(exp.arms["infonce_b16"])
    assert exp.floor(list(exp.arms))["arm"] == "untrained" and exp.default_seeds == 3


def test_sweep_headline_is_the_spec_claim():
    exp = PRESETS["cpu-sweep"]
    assert [(c.baseline, c.method, c.metric, c.direction) for c in exp.headline] == [
        ("infonce_b16", "dcl_b16", "knn_top1", "greater"),
        ("gain_b256", "gain_b16", "dcl_gain", "greater"),
        ("tau_infonce", "tau_dcl", "tau_range", "less"),
    ]
    arms = exp.arms
    assert list(arms["gain_b16"]["sources"]) == ["infonce_b16", "dcl_b16"]
    assert arms["gain_b16"]["sources"]["dcl_b16"] == arms["dcl_b16"]
    assert list(arms["tau_dcl"]["sources"]) == ["dcl_b32", "dcl_b32_t02", "dcl_b32_t05"]
    # derived arms come after every arm they read (runs are seed-major in the preset's arm order)
    order = list(arms)
    for name, cfg in arms.items():
        for source in cfg.get("sources", {}):
            assert order.index(source) < order.index(name)


def test_derived_arms_read_their_sources_runs_and_refuse_stale_ones(tmp_path):
    """The sweep's plumbing end to end with a stand-in trainer: run keys, --precision, the derived numbers."""
    import dataclasses

    from methods.dcl import experiments as dcl_exp
    from shared.experiment import ArmResult, ArmRun, run_experiment
    from shared.results import RecordError

    fake = {"infonce": 0.70, "dcl": 0.72}

    def stand_in(run):
        if "derived" in run.config:
            return dcl_exp.derive(run)
        cfg = run.config  # a made-up accuracy: loss, batch, τ and seed each move it; the floor sits at 0.5
        if cfg.get("untrained"):
            return ArmResult({"knn_top1": 0.5 + run.seed})
        acc = fake[cfg["loss"]] + 0.01 * (cfg["batch_size"] == 16) * (cfg["loss"] == "dcl")
        return ArmResult({"knn_top1": acc - 0.1 * (cfg["temperature"] - 0.1) * (cfg["loss"] == "infonce") + run.seed})

    exp = dataclasses.replace(PRESETS["cpu-sweep"], train_arm=stand_in, default_seeds=2)
    rec = run_experiment(
        PAPER, exp, out_dir=tmp_path / "out", run_root=tmp_path / "runs", progress=False, precision="fp32"
    )
    arms = rec["arms"]
    assert arms["gain_b16"]["dcl_gain"] == pytest.approx([0.03, 0.03])
    assert arms["gain_b256"]["dcl_gain"] == pytest.approx([0.02, 0.02])
    assert arms["tau_infonce"]["tau_range"] == pytest.approx([0.04, 0.04])
    assert arms["tau_dcl"]["tau_range"] == pytest.approx([0.0, 0.0])
    assert arms["gain_b16"]["knn_top1"] == pytest.approx([0.715, 1.715])  # the sources' mean, judged by the floor
    assert [c["verdict"] for c in rec["comparisons"][:3]] == ["reproduced"] * 3  # judged, not under-trained
    # a source trained with other settings is refused, a missing one named
    root = tmp_path / "runs" / "dcl" / "cpu-sweep"
    cfg = exp.arms["gain_b16"]
    with pytest.raises(RecordError, match="other settings"):
        dcl_exp.derive(ArmRun("gain_b16", cfg, 0, root / "gain_b16" / "seed0", False, None, None))  # no fp32
    with pytest.raises(RecordError, match="run it first"):
        dcl_exp.derive(ArmRun("gain_b16", cfg, 5, root / "gain_b16" / "seed5", False, None, None))
