"""CL-Behaviour's presets: the smoke sweep learns and draws its curves, the cpu preset is the stated
sweep, the paper preset builds and steps once."""

import json

import pytest
import torch

from methods.clbehaviour import PAPER, PRESETS, ContrastiveLoss, make_loss
from methods.clbehaviour.experiments import CPU_HARD, CPU_PLAIN, PAPER_ARM, SmallEvaluator, build_model, paper_model
from shared.cli import main
from shared.data.splits import small_image_splits
from shared.engine import TrainConfig, fit
from shared.experiment import untrained_arm
from shared.results import read_record


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("smoke")
    args = ["run", "clbehaviour", "--preset", "smoke", "--out", str(tmp / "out"), "--run-dir", str(tmp / "runs")]
    assert main([*args, "--no-progress"]) == 0
    return tmp


def test_smoke_sweep_learns_and_records_the_curves(smoke):
    out = smoke / "out" / "clbehaviour"
    rec = read_record(out / "smoke.json")
    chance = 1 / 12
    trained = [arm for arm in rec["arms"] if arm != "untrained"]
    for arm in trained:
        metrics = rec["arms"][arm]
        assert metrics["knn_top1"][0] > 2 * chance, arm
        assert -8 <= metrics["l_unif"][0] <= 0 and -1 <= metrics["tolerance"][0] <= 1, arm
    for arm in trained:
        curve = rec["curves"][arm]
        assert curve[-1][1] < curve[0][1], f"{arm}: loss did not go down"
    curves = rec["analysis"]["curves"]
    assert set(curves) == {"plain", "hard"} and set(curves["plain"]) == {"0.1", "1"}
    assert set(curves["plain"]["1"]) >= {"knn_top1", "l_unif", "tolerance"}
    for name in ("smoke_curves.png", "smoke_tau_sweep.png", "smoke_similarity.png"):
        assert (out / name).stat().st_size > 1000, name


def test_untrained_arm_trains_nothing(smoke):
    """The floor arm: no training step, scored like plain τ = 0.1 at its seed's initialisation."""
    rec = read_record(smoke / "out" / "clbehaviour" / "smoke.json")
    assert rec["floor"] == {"arm": "untrained", "metric": "knn_top1", "direction": "greater", "min_gain": 0.02}
    assert rec["curves"]["untrained"] == []
    assert set(rec["arms"]["untrained"]) == set(rec["arms"]["plain_tau0.1"])
    run = smoke / "runs" / "clbehaviour" / "smoke" / "untrained" / "seed0"
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [next(iter(json.loads(line))) for line in lines] == ["eval"]
    assert json.loads(lines[0])["eval"]["step"] == 0
    cfg = PRESETS["smoke"].arms["untrained"]
    _, bank, test = small_image_splits(cfg)
    torch.manual_seed(0)
    direct = SmallEvaluator(cfg, bank, test)(build_model(cfg))
    for metric, value in direct.items():
        assert rec["arms"]["untrained"][metric][0] == pytest.approx(value, abs=1e-5), metric
    # the floor is no point of the τ sweep
    assert set(rec["analysis"]["curves"]["plain"]) == {"0.1", "1"}


def test_floor_arm_and_headline():
    cpu = PRESETS["cpu"]
    assert next(iter(cpu.arms)) == "untrained" and next(iter(PRESETS["smoke"].arms)) == "untrained"
    assert cpu.arms["untrained"] == untrained_arm(cpu.arms["plain_tau0.05"])
    assert PRESETS["smoke"].arms["untrained"] == untrained_arm(PRESETS["smoke"].arms["plain_tau0.1"])
    assert cpu.floor(list(cpu.arms))["metric"] == "knn_top1"
    head = [(c.baseline, c.method, c.metric, c.direction) for c in cpu.headline]
    assert head[:2] == [
        ("plain_tau0.05", "plain_tau0.2", "knn_top1", "greater"),
        ("plain_tau1", "plain_tau0.2", "knn_top1", "greater"),
    ]
    steps = [c for c in cpu.comparisons if c.label.startswith("step")]
    assert all(c.headline for c in steps) and len(head) == 2 + len(steps) + 1
    assert head[-1] == ("plain_tau1", "hard_tau1", "l_unif", "less")
    secondary = {c.label for c in cpu.comparisons if not c.headline}
    assert secondary == {
        "L_unif rises from τ=0.05 to τ=1 (less uniform)",
        "tolerance rises from τ=0.05 to τ=1",
        "hard vs plain at τ=1: kNN",
        "hard vs plain at τ=0.5: lower L_unif (regains uniformity)",
        "hard vs plain at τ=0.5: kNN",
    }


def test_cpu_preset_is_the_stated_sweep():
    exp = PRESETS["cpu"]
    assert exp.default_seeds >= 3 and len(CPU_PLAIN) >= 5 and len(CPU_HARD) >= 2
    trained = [cfg for arm, cfg in exp.arms.items() if arm != "untrained"]
    plain = {cfg["temperature"] for cfg in trained if cfg["loss"] == "plain"}
    hard = {cfg["temperature"] for cfg in trained if cfg["loss"] == "hard"}
    assert plain == set(CPU_PLAIN) and min(plain) <= 0.05 and max(plain) >= 1.0 and 0.2 in plain
    assert hard == set(CPU_HARD) and hard <= plain  # each hard arm has its plain twin
    headline = exp.comparisons[0]
    assert (headline.baseline, headline.method, headline.metric) == ("plain_tau0.05", "plain_tau0.2", "knn_top1")
    assert any(c.baseline == "plain_tau1" and c.method == "plain_tau0.2" for c in exp.comparisons)
    steps = [c for c in exp.comparisons if c.label.startswith("step")]
    assert len(steps) == 2 * (len(CPU_PLAIN) - 1)
    # arms differ only in the loss and τ; the hard loss keeps fewer negatives than the batch offers
    base = {k: v for k, v in exp.arms["plain_tau0.2"].items() if k not in ("loss", "temperature")}
    for cfg in trained:
        assert {k: v for k, v in cfg.items() if k not in ("loss", "temperature")} == base
    assert base["hard_k"] < 2 * base["batch_size"] - 2


def test_make_loss():
    assert make_loss({"loss": "plain", "temperature": 0.3}).hard_negatives is None
    assert make_loss({"loss": "hard", "temperature": 1.0, "hard_k": 32}).hard_negatives == 32
    with pytest.raises(ValueError, match="unknown loss"):
        make_loss({"loss": "triplet", "temperature": 0.1})


def test_paper_preset_builds_and_steps_once(tmp_path):
    """CIFAR ResNet-18 + 512-512-128 head with the hard loss, one step on fake 32 px views (no data)."""
    assert PAPER_ARM["batch_size"] == 256 and PAPER_ARM["epochs"] == 200 and PAPER_ARM["hard_k"] == 128
    assert {c["temperature"] for c in PRESETS["paper"].arms.values()} == {0.07, 0.2, 0.3, 0.7, 1.0}
    model = paper_model("hard", 1.0)
    assert isinstance(model.loss, ContrastiveLoss) and model.loss.hard_negatives == 128
    assert model.projector[-1].out_features == 128

    class FakeViews:
        def steps_per_epoch(self, world_size):
            return 1

        def epoch(self, epoch, seed, rank, world_size, skip=0):
            g = torch.Generator().manual_seed(0)
            yield {"views": (torch.randn(4, 3, 32, 32, generator=g), torch.randn(4, 3, 32, 32, generator=g))}

    before = model.backbone.conv1.weight.detach().clone()
    cfg = TrainConfig(epochs=1, batch_size=4, lr=0.3 * 4 / 256, weight_decay=5e-4, progress=False)
    assert fit(model, FakeViews(), cfg, tmp_path).steps == 1
    assert not torch.equal(before, model.backbone.conv1.weight)


def test_card():
    assert PAPER.number == 33 and PAPER.package == "clbehaviour" and PAPER.arxiv == "2012.09740"
