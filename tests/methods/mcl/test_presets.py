"""MCL's presets: the smoke run learns both features, the cpu preset is the stated comparison, paper steps."""

import pytest
import torch

import methods.mcl.stages
from methods.mcl import PAPER, PRESETS
from methods.mcl.data import coloured_fashion_mnist
from methods.mcl.experiments import (
    CPU_ARM,
    PAPER_ARM,
    paper_model,
    probe_all,
    stage_plan,
    train_config,
    train_small,
    untrained_encoder,
)
from methods.mcl.model import IntegratedEncoder
from methods.mcl.stages import stage_seed
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
    # the SimCLR ensemble: member 0 is MCL's stage 0 (same seed, copied), every member trains on one pseudo-label
    ens, mcl = rec["arms"]["simclr_ensemble"], rec["arms"]["mcl"]
    assert ens["class_linear_s0"] == mcl["class_linear_s0"] and ens["colour_linear_s0"] == mcl["colour_linear_s0"]
    assert [st["pseudo_labels"][0] for st in rec["analysis"]["cluster_nmi"]["simclr_ensemble"]] == [1, 1]
    assert [c["label"] for c in rec["comparisons"] if c["headline"]] == [
        "class (suppressed feature): MCL integrated vs SimCLR ensemble"
    ]


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
    assert list(exp.arms) == [
        "untrained",
        "untrained_grey",
        "simclr",
        "simclr_grey",
        "mcl",
        "mcl_official",
        "simclr_ensemble",
    ]
    assert exp.default_seeds >= 3
    assert exp.arms["untrained"] == untrained_arm(exp.arms["simclr"])
    assert exp.arms["untrained_grey"] == untrained_arm(exp.arms["simclr_grey"])
    assert PRESETS["smoke"].arms["untrained"] == untrained_arm(PRESETS["smoke"].arms["simclr"])
    main_floor, grey_floor = exp.floor(list(exp.arms))
    assert main_floor["arm"] == "untrained" and main_floor["metric"] == "class_linear"
    assert grey_floor["arm"] == "untrained_grey" and grey_floor["arms"] == ["simclr_grey"]
    assert exp.arms["simclr_grey"] == {**exp.arms["simclr"], "tinted": False}
    # the headline: MCL's concatenated stages against as many concatenated SimCLR encoders
    assert [(c.baseline, c.method, c.metric) for c in exp.headline] == [("simclr_ensemble", "mcl", "class_linear")]
    secondary = {(c.baseline, c.method, c.metric) for c in exp.comparisons if not c.headline}
    assert ("simclr", "mcl", "class_linear") in secondary
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


def test_ensemble_arm_is_simclr_members_at_the_stage_budget():
    """Each member is the SimCLR arm's config at one MCL stage's epochs; only the seed tells members apart."""
    for name in ("cpu", "smoke"):
        arms = PRESETS[name].arms
        simclr, mcl, ens = arms["simclr"], arms["mcl"], arms["simclr_ensemble"]
        assert ens["num_stages"] == mcl["num_stages"] > 1 and ens["epochs"] == mcl["epochs"]
        assert ens["epochs"] * ens["num_stages"] == simclr["epochs"]  # same total budget as one long SimCLR
        assert {k for k in ens.keys() | mcl.keys() if ens.get(k) != mcl.get(k)} == {"ensemble", "reuse_stages_from"}
        member = {**simclr, "epochs": ens["epochs"]}  # one SimCLR encoder at the per-stage budget
        plan = stage_plan(ens)
        clusters: list = []
        for m in range(ens["num_stages"]):
            # plain SimCLR negatives in every member: one pseudo-label, whatever earlier members clustered
            assert torch.equal(plan.pseudo_labels(clusters, 50), torch.zeros(50, dtype=torch.long))
            clusters.append(torch.arange(50) % ens["num_clusters"])
            for seed in range(3):
                got = train_config(ens, seed, None, False, m)
                want = train_config(member, stage_seed(seed, m), None, False, 0)
                assert got == want, (name, m, seed)
        # and MCL's later stages do not: the control differs from MCL in the negatives only
        assert stage_plan(mcl).pseudo_labels([torch.arange(50) % mcl["num_clusters"]], 50).unique().numel() > 1
    seeds = {stage_seed(s, m) for s in range(3) for m in range(3)}
    assert len(seeds) == 9  # every (paired seed, member) its own seed


def test_ensemble_members_are_simclr_runs_and_their_features_are_concatenated(tmp_path, monkeypatch):
    """A tiny ensemble of 2 members: member 1's weights are those of the SimCLR arm trained at the per-stage
    budget with seed stage_seed(s, 1), member 0 differs from it, and the probes see [f_0(x); f_1(x)]."""
    import methods.mcl.experiments as ex
    import methods.mcl.stages as st
    from shared.experiment import ArmRun

    seen = {}

    def capture(encoder, bank, test, cfg, seed):
        seen["encoder"] = encoder
        return {"class_linear": 0.0}

    monkeypatch.setattr(ex, "probe_all", capture)
    # an ensemble never reads its members' clusters: any labels do (and K-means would only cost time)
    monkeypatch.setattr(st, "kmeans_labels", lambda feats, k, seed: torch.arange(len(feats)) % k)
    tiny = dict(train_per_class=12, bank_per_class=4, test_per_class=4, epochs=1, widths=(8, 16), batch_size=32)
    ens = {**PRESETS["smoke"].arms["simclr_ensemble"], **tiny}
    simclr = {**PRESETS["smoke"].arms["simclr"], **tiny}
    seed = 1

    def run(arm, cfg, s):
        ex.train_small(ArmRun(arm, cfg, s, tmp_path / arm / f"seed{s}", False, None, None, progress=False))
        return seen.pop("encoder")

    encoder = run("simclr_ensemble", ens, seed)
    assert isinstance(encoder, IntegratedEncoder) and encoder.num_stages == 2
    member = run("simclr", simclr, stage_seed(seed, 1)).stages[0]
    got, want = encoder.stages[1].state_dict(), member.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want), "member 1 is not SimCLR at seed stage_seed(s, 1)"
    first = encoder.stages[0].state_dict()["features.0.weight"]
    assert not torch.equal(first, want["features.0.weight"])  # members differ (their seeds do)
    x = torch.randn(5, 3, 28, 28)
    with torch.no_grad():
        encoder.eval()
        h = encoder(x)
        assert h.shape == (5, 2 * member.out_dim)
        assert torch.equal(h, torch.cat([encoder.stages[0](x), member.eval()(x)], dim=1))
