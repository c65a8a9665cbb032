"""MCL's presets: the smoke run learns both features, the cpu preset is the stated comparison, paper steps."""

import pytest
import torch

import methods.mcl.stages
from methods.mcl import PAPER, PRESETS
from methods.mcl.data import coloured_fashion_mnist
from methods.mcl.experiments import CPU_ARM, PAPER_ARM, paper_model, probe_all, train_small, untrained_encoder
from shared.cli import main
from shared.engine import TrainConfig, fit
from shared.experiment import ArmRun, untrained_arm
from shared.results import read_record


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("smoke")
    args = [
        "run",
        "mcl",
        "--preset",
        "smoke",
        "--out",
        str(tmp / "out"),
        "--run-dir",
        str(tmp / "runs"),
        "--no-progress",
    ]
    assert main(args) == 0
    return tmp


def test_smoke_run_learns_and_writes_the_stage_plot(smoke):
    rec = read_record(smoke / "out" / "mcl" / "smoke.json")
    for arm in ("simclr", "mcl"):
        metrics = rec["arms"][arm]
        assert metrics["class_linear"][0] > 2 * 0.1, arm  # chance: 1/10
        assert metrics["colour_linear"][0] > 3 * 0.125, arm  # chance: 1/8
        assert len(rec["curves"][arm]) > 3, arm
    assert set(rec["arms"]["mcl"]) >= {"class_linear_s0", "class_linear_s1", "colour_linear_s1"}
    assert rec["curves"]["simclr"][-1][1] < rec["curves"]["simclr"][0][1]
    assert (smoke / "out" / "mcl" / "smoke_stages.png").stat().st_size > 1000
    nmi = rec["analysis"]["cluster_nmi"]["mcl"]
    assert len(nmi) == 2 and nmi[1]["pseudo_labels"][0] == SMOKE_K


SMOKE_K = PRESETS["smoke"].arms["mcl"]["num_clusters"]


def test_untrained_arm_trains_nothing_and_is_probed_like_simclr(smoke):
    """The floor arm: SimCLR's one-stage encoder at seed 0's initialisation, no stage, no k-means."""
    rec = read_record(smoke / "out" / "mcl" / "smoke.json")
    assert next(iter(rec["arms"])) == "untrained" and rec["curves"]["untrained"] == []
    assert set(rec["arms"]["untrained"]) == set(rec["arms"]["simclr"])
    assert rec["floor"] == {"arm": "untrained", "metric": "class_linear", "direction": "greater", "min_gain": 0.02}
    run = smoke / "runs" / "mcl" / "smoke" / "untrained" / "seed0"
    assert sorted(p.name for p in run.iterdir()) == ["final.json", "run.json"]  # no stage folder, no checkpoint
    cfg = PRESETS["smoke"].arms["untrained"]
    _, bank, test = coloured_fashion_mnist(cfg, None)
    direct = probe_all(untrained_encoder(cfg, 0), bank, test, cfg, 0)
    assert direct == pytest.approx({k: v[0] for k, v in rec["arms"]["untrained"].items()}, abs=1e-6)


class _Stop(Exception):
    pass


def test_untrained_encoder_is_the_stage_initialisation_of_simclr(tmp_path, monkeypatch):
    """Paired seeds: the floor's encoder is exactly the network the simclr arm's stage 0 starts from."""
    cfg = PRESETS["smoke"].arms["simclr"]
    seen = {}

    def first_fit(model, *args, **kwargs):
        seen.update({k: v.clone() for k, v in model.backbone.state_dict().items()})
        raise _Stop

    monkeypatch.setattr(methods.mcl.stages, "fit", first_fit)
    with pytest.raises(_Stop):
        train_small(ArmRun("simclr", cfg, 3, tmp_path / "simclr" / "seed3", False, None, None, progress=False))
    floor = untrained_encoder(untrained_arm(cfg), 3)
    assert floor.num_stages == 1
    assert seen and all(torch.equal(seen[k], v) for k, v in floor.stages[0].state_dict().items())


def test_cpu_preset_is_the_stated_comparison():
    exp = PRESETS["cpu"]
    assert list(exp.arms) == ["untrained", "untrained_grey", "simclr", "simclr_grey", "mcl", "mcl_official"]
    assert exp.default_seeds >= 3
    assert exp.arms["untrained"] == untrained_arm(exp.arms["simclr"])
    assert exp.arms["untrained_grey"] == untrained_arm(exp.arms["simclr_grey"])
    assert PRESETS["smoke"].arms["untrained"] == untrained_arm(PRESETS["smoke"].arms["simclr"])
    assert [(c.baseline, c.method, c.metric) for c in exp.headline] == [("simclr", "mcl", "class_linear")]
    main_floor, grey_floor = exp.floor(list(exp.arms))
    assert main_floor["arm"] == "untrained" and main_floor["metric"] == "class_linear"
    assert grey_floor["arm"] == "untrained_grey" and grey_floor["arms"] == ["simclr_grey"]
    assert exp.arms["simclr_grey"] == {**exp.arms["simclr"], "tinted": False}
    first = exp.comparisons[0]
    assert (first.baseline, first.method, first.metric) == ("simclr", "mcl", "class_linear")
    base, mcl = exp.arms["simclr"], exp.arms["mcl"]
    # the baseline trains one stage for as many epochs as all MCL stages together
    assert base["num_stages"] == 1 and base["epochs"] == mcl["epochs"] * mcl["num_stages"]
    assert exp.arms["mcl_official"]["official_label_bug"] and not mcl.get("official_label_bug")
    assert mcl["num_clusters"] == 8 and CPU_ARM["num_colours"] == 8
    differing = {k for k in base.keys() | mcl.keys() if base.get(k) != mcl.get(k)}
    assert differing == {"num_stages", "epochs"}


def test_paper_preset_builds_and_steps_once(tmp_path):
    """ResNet-18 + 512-512-128 head + LARS, one step on fake 96 px views with pseudo-labels."""
    assert PAPER_ARM["optimizer"] == "lars" and PRESETS["paper"].arms["mcl"]["num_stages"] == 3
    assert PRESETS["paper"].arms["simclr"]["epochs"] == 3 * PAPER_ARM["epochs"]
    model = paper_model(PAPER_ARM)
    assert model.backbone.out_dim == 512 and model.projector[-1].out_features == 128

    class FakeViews:
        def steps_per_epoch(self, world_size):
            return 1

        def epoch(self, epoch, seed, rank, world_size, skip=0):
            g = torch.Generator().manual_seed(0)
            views = (torch.randn(4, 3, 96, 96, generator=g), torch.randn(4, 3, 96, 96, generator=g))
            yield {"views": views, "pseudo": torch.tensor([0, 0, 1, 1])}

    before = model.backbone.conv1.weight.detach().clone()
    cfg = TrainConfig(epochs=1, batch_size=4, lr=0.3 * 4 / 256, optimizer="lars", weight_decay=1e-6, progress=False)
    assert fit(model, FakeViews(), cfg, tmp_path).steps == 1
    assert not torch.equal(before, model.backbone.conv1.weight)


def test_card():
    assert PAPER.number == 17 and PAPER.package == "mcl" and PAPER.arxiv == "2402.11816"
    assert any("verify" in str(r.value) for r in PAPER.reported)
