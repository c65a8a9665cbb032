"""SepCLR's presets: the smoke run learns and writes the probe analysis, the cpu preset is the stated
comparison, the paper preset builds and steps once."""

import json

import pytest
import torch

from methods.sepclr import PAPER, PRESETS, GroupSimCLR, SepCLR, SplitSimCLR, build_model
from methods.sepclr.experiments import PAPER_ARM, PROBES, load_sets, probe_evaluator, train_config
from shared.engine import fit
from shared.experiment import run_experiment, untrained_arm
from shared.results import read_record


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("smoke")
    run_experiment(PAPER, PRESETS["smoke"], out_dir=tmp / "out", run_root=tmp / "runs", progress=False)
    return tmp


def test_smoke_run_learns_and_writes_the_probe_matrix(smoke):
    rec = read_record(smoke / "out" / "sepclr" / "smoke.json")
    chance = 0.1
    trained = ("sepclr", "sepclr_no_jem", "simclr_split")
    for arm, metrics in rec["arms"].items():
        assert set(PROBES) <= set(metrics), arm
    for arm in trained:
        assert rec["arms"][arm]["c_on_common"][0] > 2 * chance, arm  # the clothing class is learned in any space
        curve = rec["curves"][arm]
        assert len(curve) >= 3 and curve[-1][1] < curve[0][1], f"{arm}: loss did not go down"
    matrix = rec["analysis"]["probe_matrix"]
    assert set(matrix) == {"untrained", *trained, "simclr_bg_tgt"}
    for m in matrix.values():
        grid = m["rows_space_cols_label"]
        assert len(grid) == 2 and all(len(row) == 2 for row in grid)
        assert grid[0][0] == m["mean_std"]["c_on_common"][0] and grid[1][1] == m["mean_std"]["s_on_salient"][0]
    assert rec["arms"]["sepclr"]["bg_salient_norm"][0] >= 0 and "bg_salient_norm" not in rec["arms"]["simclr_split"]
    assert [c["method"] for c in rec["comparisons"] if c["headline"]] == ["sepclr", "sepclr"]
    assert (smoke / "out" / "sepclr" / "smoke_probes.png").stat().st_size > 1000
    assert (smoke / "out" / "sepclr" / "smoke_curves.png").stat().st_size > 1000
    final = json.loads((smoke / "runs" / "sepclr" / "smoke" / "sepclr" / "seed0" / "final.json").read_text())
    assert final["extras"]["train_targets"] > 0


def test_untrained_arm_trains_nothing_and_is_scored_like_the_baseline(smoke):
    """The floor arm: SimCLR split at seed 0's initialisation, probed by the baseline's evaluation."""
    rec = read_record(smoke / "out" / "sepclr" / "smoke.json")
    assert next(iter(rec["arms"])) == "untrained" and rec["curves"]["untrained"] == []
    assert set(rec["arms"]["untrained"]) == set(rec["arms"]["simclr_split"])
    assert rec["floor"] == {"arm": "untrained", "metric": "s_on_salient", "direction": "greater", "min_gain": 0.02}
    run = smoke / "runs" / "sepclr" / "smoke" / "untrained" / "seed0"
    assert json.loads((run / "run_stats.json").read_text())["steps"] == 0
    assert not (run / "checkpoint.pt").exists()  # a 0-epoch run saves nothing to resume
    cfg = PRESETS["smoke"].arms["untrained"]
    torch.manual_seed(0)  # what train_arm does before building the model of seed 0
    fresh = build_model(cfg)
    train, test = load_sets(cfg, None)
    direct = probe_evaluator(cfg, train, test)(fresh)
    assert direct == pytest.approx({k: v[0] for k, v in rec["arms"]["untrained"].items()}, abs=1e-6)


def test_cpu_preset_is_the_stated_comparison():
    exp = PRESETS["cpu"]
    assert list(exp.arms) == ["untrained", "sepclr", "sepclr_no_jem", "simclr_split", "simclr_bg_tgt"]
    assert exp.arms["untrained"] == untrained_arm(exp.arms["simclr_split"])
    assert PRESETS["smoke"].arms["untrained"] == untrained_arm(PRESETS["smoke"].arms["simclr_split"])
    assert exp.floor(list(exp.arms))["metric"] == "s_on_salient"
    assert exp.default_seeds >= 3
    # the claim's two parts, both against the two-encoder SimCLR baseline: salient → digit higher, common → digit lower
    assert [(c.baseline, c.method, c.metric, c.direction) for c in exp.headline] == [
        ("simclr_bg_tgt", "sepclr", "s_on_salient", "greater"),
        ("simclr_bg_tgt", "sepclr", "c_on_salient", "less"),
    ]
    old = [c for c in exp.comparisons if c.baseline == "simclr_split"]
    assert old and not any(c.headline for c in old)  # the split-baseline comparisons stay, secondary
    assert ("simclr_split", "s_on_salient") in {(c.baseline, c.metric) for c in old}
    assert any(c.baseline == "sepclr_no_jem" and c.metric == "c_on_salient" for c in exp.comparisons)
    sep, nojem, simclr = (exp.arms[a] for a in ("sepclr", "sepclr_no_jem", "simclr_split"))
    assert sep["jem_lambda"] == 10.0 and nojem["jem_lambda"] == 0.0
    assert (sep["tau"], sep["beta_salient"], sep["beta_reg"]) == (0.5, 1000.0, 1000.0)
    # the same budget: data, epochs, batch and optimiser are shared; only the method differs
    shared_keys = ("data", "train_per_class", "epochs", "batch_size", "lr", "optimizer", "widths")
    assert all(sep[k] == nojem[k] == simclr[k] for k in shared_keys)
    assert {k for k in sep if sep[k] != nojem.get(k)} == {"jem_lambda"}
    pair = exp.arms["simclr_bg_tgt"]  # the fair baseline: the split baseline's config, another method only
    assert {k for k in pair.keys() | simclr.keys() if pair.get(k) != simclr.get(k)} == {"method"}
    model = build_model(pair)
    assert isinstance(model, GroupSimCLR)
    assert (model.common_dim, model.salient_dim) == (sep["common_dim"], sep["salient_dim"])


def test_paper_preset_builds_and_steps_once(tmp_path):
    """Two CIFAR-stem ResNet-18s, d = 32, Adam 3e-4 at batch 512 for 250 epochs; one step on fake 32 px data."""
    assert PAPER_ARM["batch_size"] == 512 and PAPER_ARM["epochs"] == 250 and PAPER_ARM["lr"] == 3e-4
    cfg = {**PRESETS["paper"].arms["sepclr"], "bf16": False, "channels_last": False}
    model = build_model(cfg)
    assert isinstance(model, SepCLR) and model.common_dim == model.salient_dim == 32
    assert model.common_encoder[0].conv1.kernel_size == (3, 3)

    class FakeData:
        def steps_per_epoch(self, world_size):
            return 1

        def epoch(self, epoch, seed, rank, world_size, skip=0):
            g = torch.Generator().manual_seed(0)
            yield {
                "images": torch.randint(0, 256, (4, 3, 32, 32), generator=g, dtype=torch.uint8),
                "labels": torch.tensor([0, 1, 0, 1]),
            }

    before = model.salient_encoder[0].conv1.weight.detach().clone()
    tc = train_config({**cfg, "batch_size": 4}, seed=0, epochs=1, progress=False)
    assert tc.optimizer == "adam" and tc.final_lr == tc.lr  # constant learning rate, as the official script
    result = fit(model, FakeData(), tc, tmp_path)
    assert result.steps == 1
    assert not torch.equal(before, model.salient_encoder[0].conv1.weight)
    assert isinstance(build_model(PRESETS["paper"].arms["simclr_split"]), SplitSimCLR)


def test_errors():
    with pytest.raises(ValueError, match="unknown method"):
        build_model({**PRESETS["smoke"].arms["sepclr"], "method": "vae"})
    with pytest.raises(ValueError, match="unknown data"):
        load_sets({"data": "cifar100"}, None)


def test_card():
    assert PAPER.number == 27 and PAPER.package == "sepclr"
    assert PAPER.official_code == "neurospin-projects/2024_rlouiset_sep_clr"
