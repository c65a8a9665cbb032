"""Hallucinator's presets: the smoke run learns, the arms are like for like, the paper preset steps once."""

import pytest
import torch

from methods.hallucinator import PAPER, PRESETS, HallucinatedInfoNCE, HallucinatedMoCo, build_model
from methods.hallucinator.experiments import PAPER_BASE, paper_model
from shared.augment import to_model_input
from shared.cli import main
from shared.data.splits import small_image_splits
from shared.engine import TrainConfig, fit
from shared.evaluation import knn_evaluator
from shared.experiment import untrained_arm
from shared.moco import MoCo
from shared.results import read_record
from shared.ssl import TwoViewContrastive
from shared.testing import assert_floor_trained_nothing

ARMS = {"moco_v2", "moco_v2_hallucinator", "simclr", "simclr_hallucinator"}
OFFICIAL = {"moco_v2_hallucinator_official", "simclr_hallucinator_official", "simclr_hallucinator_stopgrad"}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Both method arms and the SimCLR baseline (one comparison), plus the floor arm run always added."""
    tmp = tmp_path_factory.mktemp("smoke")
    args = ["run", "hallucinator", "--preset", "smoke", "--out", str(tmp / "out")]
    arms = ["--arms", "simclr,simclr_hallucinator,moco_v2_hallucinator"]
    assert main([*args, *arms, "--run-dir", str(tmp / "runs"), "--no-progress"]) == 0
    return tmp


def test_smoke_run_learns_and_writes_a_valid_record(smoke):
    """Both method arms and the SimCLR baseline learn in seconds; MoCo v2 is tested in shared."""
    rec = read_record(smoke / "out" / "hallucinator" / "smoke.json")
    assert set(rec["arms"]) == {"untrained", "simclr", "simclr_hallucinator", "moco_v2_hallucinator"}
    chance = 1 / 12
    for arm in ("simclr", "simclr_hallucinator", "moco_v2_hallucinator"):
        assert rec["arms"][arm]["knn_top1"][0] > 2 * chance, arm
        curve = rec["curves"][arm]
        # MoCo's loss first rises while real keys replace the random initial queue: compare with its peak
        ref = curve[0][1] if arm.startswith("simclr") else max(v for _, v in curve)
        assert len(curve) > 3 and curve[-1][1] < ref, f"{arm}: loss did not go down"


@pytest.mark.parametrize("preset", ["smoke", "cpu", "cpu-ablation"])
def test_floor_arm_and_headline(preset):
    """The floor arm is MoCo v2 untrained; the claim is both hosts' like-for-like comparisons together."""
    exp = PRESETS[preset]
    assert next(iter(exp.arms)) == "untrained" and exp.arms["untrained"] == untrained_arm(exp.arms["moco_v2"])
    assert [(c.baseline, c.method, c.metric) for c in exp.headline] == [
        ("moco_v2", "moco_v2_hallucinator", "knn_top1"),
        ("simclr", "simclr_hallucinator", "knn_top1"),
    ]
    assert exp.floor(list(exp.arms)) == {
        "arm": "untrained",
        "metric": "knn_top1",
        "direction": "greater",
        "min_gain": 0.02,
    }


def test_one_floor_serves_both_hosts():
    """Every cpu arm, of either host, builds the same backbone first from the seed (the kNN reads the backbone)."""
    states = []
    for cfg in PRESETS["cpu-ablation"].arms.values():
        torch.manual_seed(3)
        states.append(build_model(cfg).backbone.state_dict())
    assert all(all(torch.equal(states[0][k], st[k]) for k in states[0]) for st in states[1:])


def test_smoke_floor_arm_trains_nothing(smoke):
    """No optimiser step, no curve; its kNN top-1 is that of the seed-0 initialisation evaluated directly."""
    rec = read_record(smoke / "out" / "hallucinator" / "smoke.json")
    runs = smoke / "runs" / "hallucinator" / "smoke"
    assert_floor_trained_nothing(rec, runs, "simclr")
    cfg = PRESETS["smoke"].arms["untrained"]
    _, bank, test = small_image_splits(cfg)
    torch.manual_seed(0)
    model = build_model(cfg)

    def preprocess(x):
        return to_model_input(x, cfg["image_size"], tuple(cfg["mean"]), tuple(cfg["std"]))

    direct = knn_evaluator(bank, test, preprocess, k=cfg["knn_k"], temperature=0.1)(model)
    assert rec["arms"]["untrained"]["knn_top1"] == [pytest.approx(direct["knn_top1"], abs=1e-9)]


@pytest.mark.parametrize("preset", ["smoke", "cpu", "cpu-ablation", "paper"])
def test_arms_differ_only_in_the_method(preset):
    exp = PRESETS[preset]
    floor = set() if preset == "paper" else {"untrained"}
    with_official = preset in ("cpu-ablation", "paper")
    assert set(exp.arms) == (ARMS | OFFICIAL if with_official else ARMS) | floor
    assert exp.comparisons[0].baseline == "moco_v2" and exp.comparisons[0].method == "moco_v2_hallucinator"
    assert exp.comparisons[1].baseline == "simclr" and exp.comparisons[1].method == "simclr_hallucinator"
    assert all(c.method in exp.arms and c.baseline in exp.arms for c in exp.comparisons)
    method_keys = {"hallucinate", "lambda_range", "enqueue_duplicates", "same_image_negatives", "detach_key"}
    for host in ("moco_v2", "simclr"):
        base, method = exp.arms[host], exp.arms[f"{host}_hallucinator"]
        assert not base["hallucinate"] and method["hallucinate"]
        assert {k: v for k, v in base.items() if k not in method_keys} == {
            k: v for k, v in method.items() if k not in method_keys
        }
        # like for like: each key enqueued once, no same-image negatives
        assert not method.get("enqueue_duplicates", False) and not method.get("same_image_negatives", False)
        if with_official:
            official = exp.arms[f"{host}_hallucinator_official"]
            diff = {k for k in official if official[k] != method.get(k)}
            assert diff == ({"enqueue_duplicates"} if host == "moco_v2" else {"same_image_negatives"})
    if with_official:
        ablation = exp.arms["simclr_hallucinator_stopgrad"]
        assert {k for k in ablation if ablation[k] != exp.arms["simclr_hallucinator"].get(k)} == {"detach_key"}
    shared_keys = {k for k in exp.arms["simclr"] if k not in {"host", "temperature", "hallucinate"}}
    assert {k: exp.arms["simclr"][k] for k in shared_keys} == {k: exp.arms["moco_v2"][k] for k in shared_keys}
    if preset.startswith("cpu"):
        assert exp.default_seeds >= 3 and exp.arms["moco_v2"]["data"] == "fashion_mnist"
        assert exp.arms["moco_v2"] == PRESETS["cpu"].arms["moco_v2"]  # the ablation shares the cpu budget


def test_cpu_headline_budget():
    """The claim is a 0.3–3 point gain: the cpu preset spends its budget on the headline arms, 5 seeds,
    and also reports the paper's metric (linear top-1) for both hosts."""
    exp = PRESETS["cpu"]
    assert exp.default_seeds == 5
    assert all(cfg["linear_probe"] for cfg in exp.arms.values())
    linear = [(c.baseline, c.method) for c in exp.comparisons if c.metric == "linear_top1"]
    assert linear == [("moco_v2", "moco_v2_hallucinator"), ("simclr", "simclr_hallucinator")]


def test_models_of_the_arms():
    arms = PRESETS["smoke"].arms
    models = {name: build_model(cfg) for name, cfg in arms.items()}
    assert type(models["moco_v2"]) is MoCo and isinstance(models["moco_v2_hallucinator"], HallucinatedMoCo)
    assert isinstance(models["simclr"], TwoViewContrastive)
    assert isinstance(models["simclr_hallucinator"].loss, HallucinatedInfoNCE)
    # same seed → same backbone and head in both arms of a host (the generator is built last)
    for host in ("moco_v2", "simclr"):
        torch.manual_seed(0)
        a = build_model(arms[host])
        torch.manual_seed(0)
        b = build_model(arms[f"{host}_hallucinator"])
        for part in ("backbone", "projector"):
            sa, sb = getattr(a, part).state_dict(), getattr(b, part).state_dict()
            assert all(torch.equal(sa[key], sb[key]) for key in sa), (host, part)
        if host == "moco_v2":
            assert torch.equal(a.queue.queue, b.queue.queue)
    gen = models["simclr_hallucinator"].loss.generator
    assert gen.dim == arms["simclr"]["head_out"] and gen.lambda_range == (0.0, 0.1)
    official = {name: build_model(PRESETS["cpu-ablation"].arms[name]) for name in OFFICIAL}
    assert official["moco_v2_hallucinator_official"].enqueue_duplicates
    assert official["simclr_hallucinator_official"].loss.same_image_negatives
    assert official["simclr_hallucinator_stopgrad"].loss.detach_key
    assert not models["moco_v2_hallucinator"].enqueue_duplicates
    assert not models["simclr_hallucinator"].loss.same_image_negatives


def test_build_errors():
    cfg = dict(PRESETS["smoke"].arms["moco_v2_hallucinator"])
    with pytest.raises(ValueError, match="unknown host"):
        build_model({**cfg, "host": "byol"})
    with pytest.raises(ValueError, match="multiple of the keys"):
        build_model({**cfg, "queue_size": 96, "enqueue_duplicates": True})  # 96 % 32 == 0, 96 % 64 != 0
    build_model({**cfg, "queue_size": 96})


class FakeViews:
    def steps_per_epoch(self, world_size):
        return 1

    def epoch(self, epoch, seed, rank, world_size, skip=0):
        g = torch.Generator().manual_seed(0)
        yield {"views": (torch.randn(4, 3, 32, 32, generator=g), torch.randn(4, 3, 32, 32, generator=g))}


@pytest.mark.parametrize("arm", ["moco_v2_hallucinator", "simclr_hallucinator"])
def test_paper_preset_builds_and_steps_once(tmp_path, arm):
    """CIFAR ResNet-18 + 512→512→128 head (+ K = 65536 queue), one SGD step on fake 32 px views."""
    assert PAPER_BASE["batch_size"] == 512 and PAPER_BASE["epochs"] == 500 and PAPER_BASE["backbone"] == "resnet18"
    cfg = PRESETS["paper"].arms[arm]
    model = paper_model(cfg)
    assert model.backbone.out_dim == 512 and model.projector[-1].out_features == 128
    if arm.startswith("moco"):
        assert model.queue.size == 65536 and model.temperature == 0.2 and model.momentum == 0.999
    before = model.backbone.conv1.weight.detach().clone()
    tc = TrainConfig(epochs=1, batch_size=4, lr=0.5 * 4 / 512, weight_decay=1e-4, progress=False)
    assert fit(model, FakeViews(), tc, tmp_path).steps == 1
    assert not torch.equal(before, model.backbone.conv1.weight)


def test_card():
    assert PAPER.number == 22 and PAPER.package == "hallucinator"
    assert any(r.value == "+0.3 to +3.0" and "abstract" in r.source for r in PAPER.reported)
