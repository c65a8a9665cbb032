"""SogCLR / iSogCLR presets: smoke learns and writes the τ analysis, states survive resume, paper steps once."""

import json

import pytest
import torch

from methods.isogclr import PAPER, PRESETS, IndexedTwoViewContrastive, build_model, correlations, make_loss
from methods.isogclr.analysis import tau_statistics
from methods.isogclr.experiments import PAPER_ARM, SMOKE_ARM, knn_report, paper_model, reversed_long_tail
from shared.cli import main
from shared.data.shapes import make_shapes
from shared.data.splits import small_image_splits
from shared.engine import InMemoryBatches, TrainConfig, fit
from shared.experiment import untrained_arm
from shared.results import read_record


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("smoke")
    args = ["run", "isogclr", "--preset", "smoke", "--arms", "simclr_t0.1,isogclr"]
    args += ["--out", str(tmp / "out"), "--run-dir", str(tmp / "runs"), "--no-progress"]
    assert main(args) == 0
    return tmp


def test_smoke_run_learns_and_writes_the_tau_analysis(smoke):
    rec = read_record(smoke / "out" / "isogclr" / "smoke.json")
    assert set(rec["arms"]) == {"untrained", "simclr_t0.1", "isogclr"}  # the floor arm always runs
    for arm in ("simclr_t0.1", "isogclr"):
        assert rec["arms"][arm]["knn_top1"][0] > 2 / 12, arm  # 12 shape classes
    tau = rec["analysis"]["tau"]["isogclr"]
    assert len(tau["tau_class_mean"]) == 12 and all(0.05 <= t <= 1.0 for t in tau["tau_class_mean"])
    assert tau["spearman"] is None  # balanced classes: no frequency to correlate with
    assert set(rec["analysis"]["knn_per_class"]) == {"untrained", "simclr_t0.1", "isogclr"}
    assert set(rec["analysis"]["tau"]) == {"isogclr"}
    assert (smoke / "out" / "isogclr" / "smoke_tau_vs_frequency.png").stat().st_size > 1000
    assert (smoke / "out" / "isogclr" / "smoke_curves.png").stat().st_size > 1000


def test_untrained_arm_trains_nothing(smoke):
    """The floor arm: no training step, scored like SimCLR τ = 0.1 at its seed's initialisation."""
    rec = read_record(smoke / "out" / "isogclr" / "smoke.json")
    assert rec["floor"]["arm"] == "untrained" and rec["curves"]["untrained"] == []
    assert set(rec["arms"]["untrained"]) == set(rec["arms"]["simclr_t0.1"])
    lines = (smoke / "runs" / "isogclr" / "smoke" / "untrained" / "seed0" / "metrics.jsonl").read_text().splitlines()
    assert [next(iter(json.loads(line))) for line in lines] == ["eval"]
    assert json.loads(lines[0])["eval"]["step"] == 0
    cfg = PRESETS["smoke"].arms["untrained"]
    train, bank, test = small_image_splits(cfg)
    torch.manual_seed(0)
    model = build_model(cfg, len(train))
    evaluate, _ = knn_report(cfg, bank, test, torch.bincount(train.labels, minlength=train.num_classes))
    for metric, value in evaluate(model).items():
        assert rec["arms"]["untrained"][metric][0] == pytest.approx(value, abs=1e-6), metric


def test_floor_arm_and_headline():
    for name in ("cpu", "smoke"):
        exp = PRESETS[name]
        assert next(iter(exp.arms)) == "untrained"
        assert exp.arms["untrained"] == untrained_arm(exp.arms["simclr_t0.1"])
        assert [(c.baseline, c.method, c.metric) for c in exp.headline] == [("simclr_t0.1", "isogclr", "knn_top1")]
        assert exp.floor(list(exp.arms)) == {
            "arm": "untrained",
            "metric": "knn_top1",
            "direction": "greater",
            "min_gain": 0.02,
        }


def _tiny_run(run_dir, max_steps=None, resume=False):
    train = make_shapes(8, 16, seed=0)
    torch.manual_seed(0)
    tiny = {"image_size": 16, "widths": (8, 16), "head_hidden": 16, "head_out": 8}
    model = build_model({**SMOKE_ARM, **tiny, "loss": "sogclr"}, len(train))
    cfg = TrainConfig(epochs=2, batch_size=32, lr=0.1, seed=3, progress=False, max_steps=max_steps)
    fit(model, InMemoryBatches(train, 32), cfg, run_dir, resume=resume)
    return model


def test_resume_restores_the_per_sample_state(tmp_path):
    """Interrupted after one epoch and resumed == uninterrupted: weights and SogCLR's u (log_s) buffer."""
    whole = _tiny_run(tmp_path / "whole")
    _tiny_run(tmp_path / "cut", max_steps=3)
    resumed = _tiny_run(tmp_path / "cut", resume=True)
    assert whole.loss.visited.sum() == 96  # 3 full batches an epoch cover all 96 images
    assert torch.allclose(resumed.loss.log_s, whole.loss.log_s, atol=1e-6)
    assert torch.equal(resumed.loss.visited, whole.loss.visited)
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name
    fresh = _tiny_run(tmp_path / "fresh", max_steps=3)  # the check can fail: a cut run differs
    assert not torch.allclose(fresh.loss.log_s, whole.loss.log_s)


def test_batches_carry_dataset_indices():
    train = make_shapes(4, 16, seed=0)
    batch = next(InMemoryBatches(train, 8).epoch(0, 0, 0, 1))
    assert torch.equal(train.images[batch["index"]], batch["images"])
    model = build_model({**SMOKE_ARM, "loss": "isogclr", "image_size": 16}, len(train))
    assert isinstance(model, IndexedTwoViewContrastive)
    out = model(batch)
    assert set(out) == {"loss", "tau_mean"}
    with pytest.raises(ValueError, match="no 'index'"):
        model({"images": batch["images"]})


def test_cpu_preset_is_the_stated_comparison():
    exp = PRESETS["cpu"]
    main_arms = {"simclr_t0.1", "simclr_t0.3", "simclr_t0.5", "sogclr_t0.1", "isogclr"}
    assert set(exp.arms) == main_arms | {"isogclr_reversed", "untrained"}
    assert exp.default_seeds >= 3 and exp.analysis is not None
    head = exp.comparisons[0]
    assert (head.baseline, head.method, head.metric) == ("simclr_t0.1", "isogclr", "knn_top1")
    for cfg in exp.arms.values():
        assert cfg["data"] == "fashion_mnist" and cfg["imbalance_ratio"] == 0.1
    assert exp.arms["isogclr"]["temperature"] == 0.1  # τ_init
    base = {k: v for k, v in exp.arms["simclr_t0.1"].items() if k not in ("loss", "temperature")}
    for arm in main_arms:  # arms differ only in loss and τ
        assert {k: v for k, v in exp.arms[arm].items() if k not in ("loss", "temperature")} == base
    control = exp.arms["isogclr_reversed"]
    assert control == {**exp.arms["isogclr"], "reverse_long_tail": True}
    assert all("isogclr_reversed" not in (c.baseline, c.method) for c in exp.comparisons)


def test_reversed_long_tail_swaps_head_and_tail():
    cfg = PRESETS["cpu"].arms["isogclr_reversed"]
    counts = torch.bincount(reversed_long_tail(cfg).labels, minlength=10)
    assert counts.tolist() == [250, 322, 417, 538, 695, 898, 1160, 1498, 1935, 2500]


def test_paper_preset_builds_and_steps_once(tmp_path):
    """ResNet-18 + 512-512-128 head + LARS + iSogCLR, one step on fake 32 px images (no data, no training)."""
    assert PAPER_ARM["batch_size"] == 128 and PAPER_ARM["epochs"] == 400 and PAPER_ARM["optimizer"] == "lars"
    assert (PAPER_ARM["rho"], PAPER_ARM["eta"], PAPER_ARM["beta_u"]) == (0.4, 0.03, 0.5)
    model = paper_model("isogclr", num_samples=10)
    assert model.backbone.out_dim == 512 and model.loss.num_samples == 10
    # the official views: ColorJitter(0.4, 0.4, 0.4, 0.1) with p 0.8, grey 0.2, Gaussian blur with p 0.5
    aug = model.augment.cfg
    assert (aug.jitter, aug.jitter_p, aug.grayscale_p, aug.blur_p) == ((0.4, 0.4, 0.4, 0.1), 0.8, 0.2, 0.5)
    assert aug.crop_scale == (0.2, 1.0) and aug.flip_p == 0.5

    class Fake:
        def steps_per_epoch(self, world_size):
            return 1

        def epoch(self, epoch, seed, rank, world_size, skip=0):
            g = torch.Generator().manual_seed(0)
            yield {"images": torch.randint(0, 256, (2, 3, 32, 32), generator=g, dtype=torch.uint8), "index": [3, 7]}

    class FakeIndexed(Fake):
        def epoch(self, epoch, seed, rank, world_size, skip=0):
            for b in super().epoch(epoch, seed, rank, world_size, skip):
                yield {**b, "index": torch.tensor(b["index"])}

    before = model.loss.tau.clone()
    cfg = TrainConfig(epochs=1, batch_size=2, lr=0.8 * 2 / 256, optimizer="lars", weight_decay=5e-4, progress=False)
    assert fit(model, FakeIndexed(), cfg, tmp_path).steps == 1
    changed = (model.loss.tau != before).nonzero().squeeze(1).tolist()
    assert set(changed) <= {3, 7} and model.loss.visited.nonzero().squeeze(1).tolist() == [3, 7]


def test_make_loss_and_model_errors():
    with pytest.raises(ValueError, match="unknown loss"):
        make_loss({"loss": "triplet", "temperature": 0.1}, 10)
    with pytest.raises(TypeError, match="SogCLRLoss"):
        IndexedTwoViewContrastive(torch.nn.Identity(), torch.nn.Identity(), torch.nn.MSELoss())


def test_tau_statistics_and_correlations():
    tau = torch.tensor([0.1, 0.2, 0.3, 0.5, 0.7, 0.9])
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    s = tau_statistics(tau, labels)
    assert s["tau_class_mean"] == pytest.approx([0.15, 0.4, 0.8])
    assert correlations([10, 20, 40], s["tau_class_mean"]) == {
        "spearman": 1.0,
        "pearson": pytest.approx(0.9983, abs=1e-3),
    }
    assert correlations([10, 10, 10], [0.1, 0.2, 0.3]) == {"spearman": None, "pearson": None}
    with pytest.raises(ValueError, match="same shape"):
        tau_statistics(tau, labels[:3])


def test_card():
    assert PAPER.number == 32 and PAPER.package == "isogclr"
