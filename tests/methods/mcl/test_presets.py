"""MCL's presets: the smoke run learns both features, the cpu preset is the stated comparison, paper steps."""

import pytest
import torch

from methods.mcl import PAPER, PRESETS
from methods.mcl.experiments import CPU_ARM, PAPER_ARM, paper_model
from shared.cli import main
from shared.engine import TrainConfig, fit
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
    for arm, metrics in rec["arms"].items():
        assert metrics["class_linear"][0] > 2 * 0.1, arm  # chance: 1/10
        assert metrics["colour_linear"][0] > 3 * 0.125, arm  # chance: 1/8
    assert set(rec["arms"]["mcl"]) >= {"class_linear_s0", "class_linear_s1", "colour_linear_s1"}
    for arm, curve in rec["curves"].items():
        assert len(curve) > 3, arm
    assert rec["curves"]["simclr"][-1][1] < rec["curves"]["simclr"][0][1]
    assert (smoke / "out" / "mcl" / "smoke_stages.png").stat().st_size > 1000
    nmi = rec["analysis"]["cluster_nmi"]["mcl"]
    assert len(nmi) == 2 and nmi[1]["pseudo_labels"][0] == SMOKE_K


SMOKE_K = PRESETS["smoke"].arms["mcl"]["num_clusters"]


def test_cpu_preset_is_the_stated_comparison():
    exp = PRESETS["cpu"]
    assert set(exp.arms) == {"simclr", "simclr_grey", "mcl", "mcl_official"} and exp.default_seeds >= 3
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
