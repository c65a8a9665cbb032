"""SupReMix presets: the smoke run learns, the cpu preset is the stated comparison, the paper preset steps."""

import pytest
import torch

from methods.supremix import PAPER, PRESETS
from methods.supremix.data import RegressionSet, TensorBatches, agedb_csv, diabetes, rotate_images
from methods.supremix.evaluation import mean_predictor_mae, ordinality, ridge_probe_mae, spearman
from methods.supremix.experiments import (
    CPU,
    CPU_HEADLINE_BASELINE,
    EXTRA_ARMS,
    METHODS,
    PAPER_ARM,
    build_model,
    load_data,
    make_loss,
    paper_model,
    regression_evaluator,
    train_paper,
    train_small,
)
from methods.supremix.model import ContrastiveRegression, DirectRegression, FeatureNoise, ImageRegressionAugment
from shared.cli import main
from shared.data.errors import DataUnavailableError
from shared.engine import TrainConfig, fit
from shared.experiment import ArmRun, untrained_arm
from shared.results import read_record


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("smoke")
    args = ["run", "supremix", "--preset", "smoke", "--out", str(tmp / "out"), "--run-dir", str(tmp / "runs")]
    assert main([*args, "--no-progress"]) == 0
    return read_record(tmp / "out" / "supremix" / "smoke.json")


FLOOR_ARMS = {"untrained", "untrained_diabetes"}
TRAINED_ARMS = {f"{d}_{m}" for d in ("fmnist", "diabetes") for m in METHODS}


def test_smoke_run_learns_and_writes_a_valid_record(smoke):
    assert set(smoke["arms"]) == TRAINED_ARMS | FLOOR_ARMS
    for data in ("fmnist", "diabetes"):
        chance = smoke["analysis"][data]["mean_predictor_mae"]
        for m in METHODS:
            mae = smoke["arms"][f"{data}_{m}"]["mae"][0]
            assert mae < 0.9 * chance, (data, m, mae, chance)  # beats predicting the training mean
    curves = [c for arm, c in smoke["curves"].items() if arm in TRAINED_ARMS]
    assert all(curve and all(torch.isfinite(torch.tensor(p[1])) for p in curve) for curve in curves)
    assert smoke["analysis"]["fmnist"]["strongest_baseline"] in METHODS[1:]


EXTRA = {"fmnist_supcon_weighted", "fmnist_supremix_pos", "fmnist_supremix_neg"}


def test_cpu_preset_is_the_stated_comparison():
    exp = PRESETS["cpu"]
    assert set(exp.arms) == TRAINED_ARMS | FLOOR_ARMS | EXTRA
    assert exp.default_seeds >= 3
    head = exp.comparisons[0]
    assert exp.headline == [head]  # the claim: SupReMix vs the strongest baseline on the image set
    assert head.method == "fmnist_supremix" and head.metric == "mae" and head.direction == "less"
    assert head.baseline.startswith("fmnist_") and head.baseline != "fmnist_supremix"
    for data in ("fmnist", "diabetes"):
        base = {k: v for k, v in exp.arms[f"{data}_supremix"].items() if k != "method"}
        for m in METHODS:  # same data, encoder, batch, optimiser, epochs: only the method differs
            assert {k: v for k, v in exp.arms[f"{data}_{m}"].items() if k != "method"} == base
        assert base["batch_size"] == 64 and base["temperature"] == 0.3 and base["window"] == 5.0


def test_paper_preset_builds_and_steps_once(tmp_path):
    """ResNet-50 + 2048-2048-128 head + SupReMix, one Adam step on fake views (no data, no training)."""
    assert PAPER_ARM["batch_size"] == 64 and PAPER_ARM["epochs"] == 100 and PAPER_ARM["lr"] == 1e-3
    assert PAPER_ARM["temperature"] == 0.3 and PAPER_ARM["neg_beta"] == (2.0, 8.0)
    model = paper_model("supremix")
    assert model.encoder.out_dim == 2048 and model.head[-1].out_features == 128

    class FakeViews:
        def steps_per_epoch(self, world_size):
            return 1

        def epoch(self, epoch, seed, rank, world_size, skip=0):
            g = torch.Generator().manual_seed(0)
            views = (torch.randn(4, 3, 64, 64, generator=g), torch.randn(4, 3, 64, 64, generator=g))
            yield {"views": views, "targets": torch.tensor([20.0, 23.0, 25.0, 61.0])}

    before = model.encoder.conv1.weight.detach().clone()
    cfg = TrainConfig(epochs=1, batch_size=4, lr=1e-3, optimizer="adam", progress=False)
    assert fit(model, FakeViews(), cfg, tmp_path).steps == 1
    assert not torch.equal(before, model.encoder.conv1.weight)


def test_paper_preset_names_the_missing_data(tmp_path, monkeypatch):
    monkeypatch.delenv("REPRO_DATA_DIR", raising=False)
    run = ArmRun("supremix", PRESETS["paper"].arms["supremix"], 0, tmp_path / "r", False, str(tmp_path), None, False)
    with pytest.raises(DataUnavailableError, match=r"AgeDB-DIR.*agedb\.csv"):
        train_paper(run)
    (tmp_path / "agedb.csv").write_text("path,age,split\n")
    assert agedb_csv(str(tmp_path)) == tmp_path / "agedb.csv"


def test_augmentations_keep_the_target():
    images = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    aug = ImageRegressionAugment((0.5,), (0.5,), shift=0.0, zoom=0.0, jitter=0.0)
    assert torch.allclose(aug(images), (images.float() / 255 - 0.5) / 0.5, atol=1e-5)  # identity at zero strength
    x = torch.randn(6, 10)
    assert torch.equal(FeatureNoise(0.0)(x), x)
    # rotating by 0 degrees is the identity, by 90 a transpose-flip
    sq = torch.randint(0, 256, (2, 1, 8, 8), dtype=torch.uint8)
    assert torch.equal(rotate_images(sq, torch.tensor([0, 0])), sq)
    assert torch.equal(rotate_images(sq, torch.tensor([90, 90])), sq.rot90(1, (2, 3)))


def test_probe_and_ordinality_hand_cases():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0]) + 7
    assert ridge_probe_mae(x[:150], y[:150], x[150:], y[150:], ridge=0.0) < 1e-6  # exact linear target
    assert mean_predictor_mae(torch.tensor([0.0, 2.0]), torch.tensor([1.0, 3.0])) == pytest.approx(1.0)
    assert spearman(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0, 20.0, 35.0])) == pytest.approx(1.0)
    assert spearman(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([3.0, 2.0, 1.0])) == pytest.approx(-1.0)
    angles = torch.linspace(0, 1.5, 30)  # embeddings on an arc: distance grows with the label gap
    feats = torch.stack([angles.cos(), angles.sin()], 1)
    assert ordinality(feats, angles) == pytest.approx(1.0, abs=1e-3)  # ties broken by rounding


def test_models_step_on_tabular_data(tmp_path):
    train, _ = diabetes()
    assert len(train) == 342 and train.inputs.shape == (342, 10)
    cfg = dict(PRESETS["smoke"].arms["diabetes_supremix"])

    for method in METHODS:
        model = build_model({**cfg, "method": method}, train)
        assert isinstance(model, DirectRegression if method == "l1" else ContrastiveRegression)
        tc = TrainConfig(epochs=1, batch_size=64, lr=1e-3, optimizer="adam", max_steps=2, progress=False)
        assert fit(model, TensorBatches(train, 64), tc, tmp_path / method).steps == 2


def test_error_paths():
    with pytest.raises(ValueError, match="unknown contrastive method"):
        make_loss({"method": "triplet", "temperature": 0.3})
    with pytest.raises(ValueError, match="unknown data"):
        load_data({"data": "cifar"})
    with pytest.raises(ValueError, match="targets must have shape"):
        RegressionSet(torch.zeros(3, 2), torch.zeros(4), "x")
    with pytest.raises(ValueError, match="exceeds"):
        TensorBatches(RegressionSet(torch.zeros(3, 2), torch.zeros(3), "x"), 8)
    with pytest.raises(ValueError, match="uint8"):
        ImageRegressionAugment((0.5,), (0.5,))(torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="ridge"):
        ridge_probe_mae(torch.zeros(3, 2), torch.zeros(3), torch.zeros(3, 2), torch.zeros(3), ridge=-1)
    with pytest.raises(ValueError, match="label_unit"):
        ContrastiveRegression(
            torch.nn.Identity(),
            torch.nn.Identity(),
            make_loss({"method": "supcon", "temperature": 0.3}),
            None,
            label_unit=0,
        )
    with pytest.raises(ValueError, match="max_angle"):
        load_data({"data": "rotated_fashion_mnist", "train_size": 10, "test_size": 10, "max_angle": 0})


def test_card():
    assert PAPER.number == 10 and PAPER.package == "supremix" and PAPER.arxiv == "2309.16633"
    assert any("verify" in str(r.value) or "verify" in r.source for r in PAPER.reported)


@pytest.mark.parametrize("preset", ["smoke", "cpu"])
def test_floor_arms_are_the_headline_baselines_untrained(preset):
    """One floor per data set: the headline baseline's config (encoder, probe) at initialisation, judged on MAE."""
    exp = PRESETS[preset]
    base = exp.headline[0].baseline
    assert base == f"fmnist_{CPU_HEADLINE_BASELINE if preset == 'cpu' else 'supcon'}"
    assert list(exp.arms)[:2] == ["untrained", "untrained_diabetes"]
    assert exp.arms["untrained"] == untrained_arm(exp.arms[base])
    assert exp.arms["untrained_diabetes"] == untrained_arm(exp.arms[base.replace("fmnist_", "diabetes_")])
    main, extra = exp.floor(list(exp.arms))
    assert (main["arm"], main["metric"], main["direction"], main["min_gain"]) == ("untrained", "mae", "less", 0.5)
    assert (extra["arm"], extra["metric"], extra["direction"]) == ("untrained_diabetes", "mae", "less")
    assert set(extra["arms"]) == {f"diabetes_{m}" for m in METHODS} and extra["min_gain"] == 1.25


def test_untrained_arm_trains_nothing_and_is_scored_like_the_baseline(smoke, tmp_path):
    """The floor arms' metrics are the evaluation of a fresh model of the same seed; no training step runs."""
    exp = PRESETS["smoke"]
    for floor, base in (("untrained", "fmnist_supcon"), ("untrained_diabetes", "diabetes_supcon")):
        assert set(smoke["arms"][floor]) == set(smoke["arms"][base])
        assert smoke["curves"][floor] == []  # no loss was logged: no step
        cfg = exp.arms[floor]
        train, test = load_data(cfg)
        torch.manual_seed(0)
        fresh = regression_evaluator(cfg, train, test)(build_model(cfg, train))
        assert fresh == pytest.approx({k: v[0] for k, v in smoke["arms"][floor].items()}, rel=1e-5), floor
    # the l1 baseline's floor (cpu's headline baseline) goes through fit with zero epochs: no step, one evaluation
    cfg = untrained_arm({**exp.arms["diabetes_l1"], "epochs": 3})
    run = ArmRun("untrained_diabetes", cfg, 0, tmp_path / "r", False, None, 5, False)
    result = train_small(run)
    assert result.curve == [] and [e["step"] for e in result.evaluations] == [0]
    assert set(result.metrics) == {"mae", "spearman", "mae_head"}


def test_official_baseline_and_ablation_arms():
    """Weighted SupCon (the official script's baseline) and SupReMix with one kind of mixture: each differs from
    its reference arm in the stated keys only, builds the stated loss, and is compared on rotated F-MNIST only."""
    exp = PRESETS["cpu"]
    refs = {"fmnist_supcon_weighted": "fmnist_supcon", "fmnist_supremix_pos": "fmnist_supremix"}
    refs["fmnist_supremix_neg"] = "fmnist_supremix"
    for arm, ref in refs.items():
        cfg, base = exp.arms[arm], exp.arms[ref]
        assert {k for k in cfg.keys() | base.keys() if cfg.get(k) != base.get(k)} == set(EXTRA_ARMS[arm[7:]]) - {
            "method"
        }
        assert cfg == {**CPU["fmnist"], **EXTRA_ARMS[arm[7:]]}
    want = {  # (mix_pos, mix_neg, use_weight, distance) of the loss each arm trains with
        "fmnist_supcon": (False, False, False, "L1_inv"),
        "fmnist_supcon_weighted": (False, False, True, "L1_inv"),
        "fmnist_supremix": (True, True, True, "L1_inv"),
        "fmnist_supremix_pos": (True, False, True, "L1_inv"),
        "fmnist_supremix_neg": (False, True, True, "L1_inv"),
    }
    for arm, flags in want.items():
        c = make_loss(exp.arms[arm]).cfg
        assert (c.mix_pos, c.mix_neg, c.use_weight, c.distance) == flags, arm
        assert (c.temperature, c.base_temperature, c.window, c.official_positive_count) == (0.3, 0.3, 5.0, False)
    new = [c for c in exp.comparisons if {c.baseline, c.method} & EXTRA]
    assert new and not any(c.headline for c in new)
    assert all(c.baseline.startswith("fmnist_") and c.method.startswith("fmnist_") for c in new)
    pairs = {(c.baseline, c.method, c.metric) for c in new}
    assert ("fmnist_supcon_weighted", "fmnist_supremix", "mae") in pairs
    assert {
        ("fmnist_supremix_pos", "fmnist_supremix", "mae"),
        ("fmnist_supremix_neg", "fmnist_supremix", "mae"),
    } <= pairs
    assert "fmnist_supcon_weighted" not in PRESETS["smoke"].arms  # cpu arms only


def test_ablation_arms_step(tmp_path):
    train, _ = diabetes()
    cfg = dict(PRESETS["smoke"].arms["diabetes_supremix"])
    tc = TrainConfig(epochs=1, batch_size=64, lr=1e-3, optimizer="adam", max_steps=2, progress=False)
    for name, delta in EXTRA_ARMS.items():
        model = build_model({**cfg, **delta}, train)
        assert fit(model, TensorBatches(train, 64), tc, tmp_path / name).steps == 2
