"""AdaInf's presets: the smoke run learns (generator cached), the cpu grid, the paper preset steps once."""

import json

import pytest
import torch

from methods.adainf import PAPER, PRESETS, InflatedBatches, InflatedData, inflation_copies
from methods.adainf.experiments import (
    CPU_ARM,
    PAPER_ARM,
    build_model,
    paper_model,
    real_only_evaluator,
    train_paper,
    train_small,
)
from shared.cli import main
from shared.data.arrays import ImageArrays
from shared.data.splits import small_image_splits
from shared.engine import TrainConfig, fit
from shared.experiment import ArmRun, untrained_arm
from shared.results import read_record


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("smoke")
    args = ["run", "adainf", "--preset", "smoke", "--out", str(tmp / "out"), "--run-dir", str(tmp / "runs")]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REPRO_CACHE_DIR", str(tmp / "cache"))
        assert main([*args, "--no-progress"]) == 0
    return tmp


def test_smoke_run_learns_and_writes_a_valid_record(smoke):
    rec = read_record(smoke / "out" / "adainf" / "smoke.json")
    chance = 1 / 12
    for arm in ("none_strong", "adainf_weak"):
        assert rec["arms"][arm]["knn_top1"][0] > 2 * chance, arm
    # 27 steps: the weakly augmented AdaInf arm's loss goes down (the strong arm's barely moves this soon)
    curve = [p[1] for p in rec["curves"]["adainf_weak"]]
    assert len(curve) > 6 and sum(curve[-4:]) < sum(curve[:4])
    shares = rec["analysis"]["real_share_of_draws"]
    assert shares["none_strong"]["expected"] == 1.0 and shares["none_strong"]["observed"] == 1.0
    # AdaInf: N=10, |R| = 288, |G| = 576 → 2880 / 3456 of the draws are real
    assert shares["adainf_weak"]["expected"] == pytest.approx(2880 / 3456)
    assert abs(shares["adainf_weak"]["observed"] - 2880 / 3456) < 0.08
    assert (smoke / "out" / "adainf" / "smoke_samples.png").stat().st_size > 1000
    assert set(shares) == {"none_strong", "adainf_weak"}  # the floor is no cell of the grid
    assert set(rec["analysis"]["mean_by_inflation_and_augmentation"]) == {"none", "adainf"}


def test_untrained_arm_trains_nothing(smoke):
    """The floor arm: none_strong's network at seed 0's initialisation, no generator, no step, same evaluation."""
    rec = read_record(smoke / "out" / "adainf" / "smoke.json")
    assert rec["floor"] == {"arm": "untrained", "metric": "knn_top1", "direction": "greater", "min_gain": 0.02}
    assert rec["curves"]["untrained"] == [] and set(rec["arms"]["untrained"]) == set(rec["arms"]["none_strong"])
    run = smoke / "runs" / "adainf" / "smoke" / "untrained" / "seed0"
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [next(iter(json.loads(line))) for line in lines] == ["eval"]
    assert json.loads(lines[0])["eval"]["step"] == 0
    cfg = PRESETS["smoke"].arms["untrained"]
    _, bank, test = small_image_splits(cfg)
    torch.manual_seed(0)
    direct = real_only_evaluator(bank, test, cfg)(build_model(cfg))
    for metric, value in direct.items():
        assert rec["arms"]["untrained"][metric][0] == pytest.approx(value, abs=1e-6), metric


def test_untrained_arm_fits_no_generator(tmp_path, monkeypatch):
    """Even an inflating arm marked untrained fits no generator and draws no batch."""
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path / "cache"))
    cfg = untrained_arm(PRESETS["smoke"].arms["adainf_weak"])
    result = train_small(ArmRun("untrained", cfg, 0, tmp_path / "run", False, None, 5, False))
    assert not (tmp_path / "cache").exists()
    assert result.extras["generator"] is None and result.extras["num_generated"] == 0
    assert result.extras["drawn"] == 0 and result.curve == [] and len(result.evaluations) == 1


def test_floor_arm_and_headline():
    for name in ("cpu", "smoke"):
        exp = PRESETS[name]
        assert next(iter(exp.arms)) == "untrained"
        assert exp.arms["untrained"] == untrained_arm(exp.arms["none_strong"])
    assert "untrained" not in PRESETS["paper"].arms
    head = [(c.baseline, c.method, c.metric, c.direction) for c in PRESETS["cpu"].headline]
    assert head == [
        ("none_strong", "adainf_weak", "linear_top1", "greater"),
        ("none_strong", "vanilla_strong", "linear_top1", "less"),
    ]
    assert PRESETS["cpu"].floor(list(PRESETS["cpu"].arms))["metric"] == "linear_top1"


def test_generator_is_cached_once(smoke):
    files = list((smoke / "cache" / "adainf").iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"


def test_cpu_preset_is_the_stated_grid():
    exp = PRESETS["cpu"]
    grid = {f"{i}_{a}" for i in ("none", "vanilla", "adainf") for a in ("strong", "weak")}
    assert set(exp.arms) == grid | {"untrained"}
    assert exp.default_seeds >= 3
    head = exp.comparisons[0]
    assert (head.baseline, head.method, head.metric) == ("none_strong", "adainf_weak", "linear_top1")
    assert exp.comparisons[1].direction == "less"  # vanilla inflation with strong augmentation: no better
    # arms differ only in inflation and augmentation; |G| = 20 |R| as CIFAR-10's 1M vs 50k
    assert CPU_ARM["n_generated"] == 20 * 10 * CPU_ARM["train_per_class"] and CPU_ARM["bank_per_class"] >= 1000
    base = {k: v for k, v in exp.arms["none_strong"].items() if k not in ("inflation", "augmentation")}
    for arm in grid:
        assert {k: v for k, v in exp.arms[arm].items() if k not in ("inflation", "augmentation")} == base
    assert [inflation_copies(n) for n in ("none", "vanilla", "adainf")] == [0, 1, 10]
    with pytest.raises(ValueError, match="unknown inflation"):
        inflation_copies("double")


def test_paper_preset_builds_and_steps_once(tmp_path):
    """ResNet-18 (CIFAR stem) + 2048→256 projector + LARS, one step on a fake inflated CIFAR-like set."""
    assert PAPER_ARM["batch_size"] == 256 and PAPER_ARM["temperature"] == 0.2 and PAPER_ARM["optimizer"] == "lars"
    assert 99_000 <= PAPER_ARM["epochs"] * (50_000 // 256) <= 101_000  # ≈ the official 100k steps
    model = paper_model("weak")
    assert model.backbone.out_dim == 512 and model.projector[-1].out_features == 256
    g = torch.Generator().manual_seed(0)
    real = ImageArrays(
        torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(8) % 2, ("a", "b")
    )
    gen = ImageArrays(
        torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=g), torch.full((16,), -1), ("a", "b")
    )
    before = model.backbone.conv1.weight.detach().clone()
    cfg = TrainConfig(epochs=1, batch_size=4, lr=0.2, optimizer="lars", weight_decay=1e-4, progress=False, max_steps=1)
    result = fit(model, InflatedBatches(InflatedData(real, gen, 10), 4), cfg, tmp_path)
    assert result.steps == 1
    assert not torch.equal(before, model.backbone.conv1.weight)


def test_paper_preset_names_the_missing_generated_file(tmp_path, monkeypatch):
    monkeypatch.delenv("ADAINF_GENERATED_NPZ", raising=False)
    exp = PRESETS["paper"]
    cfg = {**exp.arms["adainf_weak"], "generated_npz": str(tmp_path / "stf_1m.npz")}
    run = ArmRun("adainf_weak", cfg, 0, tmp_path, False, None, None, False)
    with pytest.raises(FileNotFoundError, match=r"stf_1m\.npz"):
        train_paper(run)
    run = ArmRun("adainf_weak", exp.arms["adainf_weak"], 0, tmp_path, False, None, None, False)
    with pytest.raises(FileNotFoundError, match="ADAINF_GENERATED_NPZ"):
        train_paper(run)


def test_paper_preset_checks_the_generated_file_before_any_arm_trains(tmp_path, monkeypatch):
    """The baseline (no inflation) is the first arm: it refuses to start when a later arm's file is bad."""
    import numpy as np

    import shared.data.hub

    def no_download(*args, **kwargs):
        raise AssertionError("the data were loaded before the generated file was checked")

    monkeypatch.setattr(shared.data.hub, "load_hub_split", no_download)
    exp = PRESETS["paper"]
    assert next(iter(exp.arms)) == "none_strong" and inflation_copies(exp.arms["none_strong"]["inflation"]) == 0
    baseline = ArmRun("none_strong", exp.arms["none_strong"], 0, tmp_path, False, None, None, False)
    monkeypatch.delenv("ADAINF_GENERATED_NPZ", raising=False)
    with pytest.raises(FileNotFoundError, match=r"'vanilla_strong'.*ADAINF_GENERATED_NPZ"):
        train_paper(baseline)
    monkeypatch.setenv("ADAINF_GENERATED_NPZ", str(tmp_path / "absent.npz"))
    with pytest.raises(FileNotFoundError, match=r"absent\.npz"):
        train_paper(baseline)
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    monkeypatch.setenv("ADAINF_GENERATED_NPZ", str(tmp_path / "broken.npz"))
    with pytest.raises(ValueError, match=r"not a readable \.npz"):
        train_paper(baseline)
    np.savez(tmp_path / "float.npz", image=np.zeros((2, 32, 32, 3), dtype=np.float32))
    monkeypatch.setenv("ADAINF_GENERATED_NPZ", str(tmp_path / "float.npz"))
    with pytest.raises(ValueError, match="must be uint8"):
        train_paper(baseline)
    np.savez(tmp_path / "good.npz", image=np.zeros((2, 32, 32, 3), dtype=np.uint8))
    monkeypatch.setenv("ADAINF_GENERATED_NPZ", str(tmp_path / "good.npz"))
    with pytest.raises(AssertionError, match="loaded before"):  # the check passed: it goes on to load CIFAR-10
        train_paper(baseline)


def test_card():
    assert PAPER.number == 37 and PAPER.package == "adainf"
    assert any(r.value == 94.70 for r in PAPER.reported)
    assert any(r.value == "91.56 / 91.38 / 93.42" for r in PAPER.reported)


def test_evaluation_refuses_generated_images():
    from methods.adainf.experiments import SMOKE_ARM, real_only_evaluator

    real = ImageArrays(torch.zeros(4, 3, 32, 32, dtype=torch.uint8), torch.arange(4) % 2, ("a", "b"))
    fake = ImageArrays(torch.zeros(4, 3, 32, 32, dtype=torch.uint8), torch.full((4,), -1), ("a", "b"), "gen")
    with pytest.raises(ValueError, match="generated images"):
        real_only_evaluator(fake, real, SMOKE_ARM)
    assert callable(real_only_evaluator(real, real, SMOKE_ARM))
