"""WhitenedCSE's presets: a shrunken smoke run learns and writes a record, cpu is the stated comparison,
the paper preset (BERT-base recipe) builds and steps once on a random BERT-base-width config."""

import dataclasses
import json

import pytest
import torch

from methods.whitenedcse import PAPER, PRESETS, WhitenedCSE, build_model
from methods.whitenedcse.experiments import train_arm
from shared.engine import TrainConfig, fit
from shared.experiment import ArmRun, run_experiment, untrained_arm
from shared.results import read_record
from shared.text.experiment import _shared_file, sts_evaluator, text_train_config


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("smoke")
    exp = PRESETS["smoke"]
    small = {arm: {**cfg, "train_sentences": 128, "sts_pairs": 60} for arm, cfg in exp.arms.items()}
    rec = run_experiment(
        PAPER, dataclasses.replace(exp, arms=small), out_dir=tmp / "out", run_root=tmp / "runs", progress=False
    )
    return tmp, rec


def test_smoke_run_learns_and_writes_a_valid_record(smoke):
    tmp, rec = smoke
    assert read_record(tmp / "out" / "whitenedcse" / "smoke.json")["arms"] == rec["arms"]
    for arm, metrics in rec["arms"].items():
        assert set(metrics) >= {"sts12", "sts13", "sts14", "sts15", "sts16", "stsb", "sts_avg"}
        assert all(-100 <= v[0] <= 100 for k, v in metrics.items() if k.startswith("sts")), arm
    curves = rec["curves"]
    assert len(curves["simcse"]) == 4 and curves["simcse"][-1][1] < curves["simcse"][0][1]
    # WhitenedCSE on a random 32-d BERT whose [CLS] vectors nearly coincide: whitening blows up their tiny
    # differences and the 4-step loss need not fall; it must stay finite.
    assert len(curves["whitenedcse"]) == 4 and all(abs(p[1]) < 1e3 for p in curves["whitenedcse"])


def test_cpu_preset_is_the_stated_comparison():
    exp = PRESETS["cpu"]
    assert set(exp.arms) == {"untrained", "simcse", "whitenedcse", "whitenedcse_noshuffle", "whitenedcse_nowhiten"}
    assert exp.default_seeds >= 3
    c = exp.comparisons[0]
    assert (c.baseline, c.method, c.metric) == ("simcse", "whitenedcse", "sts_avg")
    w = exp.arms["whitenedcse"]
    assert w["encoder"] == "minilm" and w["groups"] == 64 and w["num_pos"] == 3 and w["temperature"] == 0.05
    method_keys = {"method", "num_pos", "shuffle", "whiten_eps", "whitening_grad", "groups", "share_baseline"}
    strip = lambda cfg: {k: v for k, v in cfg.items() if k not in method_keys}  # noqa: E731
    assert strip(exp.arms["simcse"]) == strip(w)  # same budget, same data
    assert w["batch_size"] * 100 == w["train_sentences"]  # 100 steps


ABLATIONS = {"whitenedcse_noshuffle": {"shuffle": False}, "whitenedcse_nowhiten": {"whiten": False}}


def test_each_ablation_arm_is_whitenedcse_with_one_part_switched_off():
    arms, missing = PRESETS["cpu"].arms, object()
    full = arms["whitenedcse"]
    for name, change in ABLATIONS.items():
        keys = full.keys() | arms[name].keys()
        assert {k for k in keys if full.get(k, missing) != arms[name].get(k, missing)} == set(change), name
        assert all(arms[name][k] == v for k, v in change.items())


def test_ablation_comparisons_chain_from_simcse_to_whitenedcse():
    """Secondary, paired on sts_avg: SimCSE → +positive → +whitening → +shuffle; the headline stays the claim."""
    exp = PRESETS["cpu"]
    chain = [(c.baseline, c.method) for c in exp.comparisons if not c.headline]
    assert chain == [
        ("simcse", "whitenedcse_nowhiten"),
        ("whitenedcse_nowhiten", "whitenedcse_noshuffle"),
        ("whitenedcse_noshuffle", "whitenedcse"),
    ]
    assert all(c.metric == "sts_avg" and c.direction == "greater" for c in exp.comparisons)
    assert [(c.baseline, c.method) for c in exp.headline] == [("simcse", "whitenedcse")]


def test_ablation_models_differ_from_whitenedcse_only_in_the_named_part():
    """Same seed → the same weights; the head path differs only by the permutation (no shuffle) or the SGW
    step (no whitening): checked against group_whiten and the plain head on the same views."""
    from methods.whitenedcse import group_whiten

    base = PRESETS["smoke"].arms["whitenedcse"]
    models = {}
    for name, change in {"whitenedcse": {}, **ABLATIONS}.items():
        torch.manual_seed(0)
        models[name] = build_model({**base, **change}).eval()
    full, noshuffle, nowhiten = models.values()
    reference = full.state_dict()
    for m in (noshuffle, nowhiten):
        state = m.state_dict()
        assert state.keys() == reference.keys() and all(torch.equal(state[k], reference[k]) for k in state)
        assert m.num_pos == full.num_pos == 3 and m.temperature == full.temperature
    assert full.sgw.shuffle and not noshuffle.sgw.shuffle and nowhiten.sgw is None
    assert repr(noshuffle.sgw).replace("shuffle=False", "shuffle=True") == repr(full.sgw)

    h = torch.randn(3, 12, full.encoder.dim, generator=torch.Generator().manual_seed(1))
    groups, eps = base["groups"], base["whiten_eps"]
    with torch.no_grad():
        plain = torch.stack([group_whiten(v, groups, None, eps) for v in h])
        assert torch.allclose(noshuffle.head_views(h), full.head(plain), atol=1e-5)
        torch.manual_seed(2)
        perms = [torch.randperm(full.encoder.dim) for _ in range(3)]
        torch.manual_seed(2)
        shuffled = full.head_views(h)
        expected = torch.stack([group_whiten(v, groups, p, eps) for v, p in zip(h, perms, strict=True)])
        assert torch.allclose(shuffled, full.head(expected), atol=1e-5)
        assert not torch.allclose(shuffled, noshuffle.head_views(h), atol=1e-3)
        assert torch.allclose(nowhiten.head_views(h), full.head(h), atol=1e-6)


def test_paper_preset_builds_and_steps_once(tmp_path):
    """BERT-base recipe (batch 128 → 4 here, lr 1e-5, G = 128 of 6 channels, m = 3) on a 1-layer 768-d random BERT."""
    from transformers import AutoTokenizer, BertConfig

    from shared.text.encoders import bert_config_encoder, minilm_path

    cfg = PRESETS["paper"].arms["whitenedcse"]
    assert (cfg["encoder"], cfg["sentences"], cfg["batch_size"], cfg["lr"]) == (
        "bert-base-uncased",
        "wiki1m",
        128,
        1e-5,
    )
    assert cfg["groups"] == 128 and cfg["num_pos"] == 3 and cfg["sts_source"] == "hub"
    tok = AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)
    config = BertConfig(hidden_size=768, num_hidden_layers=1, num_attention_heads=12, intermediate_size=256)
    torch.manual_seed(0)
    model = build_model(cfg, bert_config_encoder(config, tok))
    assert isinstance(model, WhitenedCSE) and model.sgw.groups == 128 and model.encoder.dim == 768

    class FakeSentences:
        def steps_per_epoch(self, world_size):
            return 1

        def epoch(self, epoch, seed, rank, world_size, skip=0):
            yield tok(["a first sentence.", "the second one.", "three.", "and four"], padding=True, return_tensors="pt")

    before = model.encoder.model.embeddings.word_embeddings.weight.detach().clone()
    tc = TrainConfig(epochs=1, batch_size=4, lr=cfg["lr"], optimizer="adamw", progress=False)
    assert fit(model, FakeSentences(), tc, tmp_path).steps == 1
    assert not torch.equal(before, model.encoder.model.embeddings.word_embeddings.weight)


def test_build_errors_and_card():
    with pytest.raises(ValueError, match="unknown method"):
        build_model({**PRESETS["smoke"].arms["simcse"], "method": "bert-flow"})
    assert PAPER.number == 20 and any(r.value == 78.78 for r in PAPER.reported)


@pytest.mark.parametrize("preset", ["smoke", "cpu"])
def test_floor_arm_is_the_simcse_start_and_the_headline_is_the_claim(preset):
    exp = PRESETS[preset]
    assert next(iter(exp.arms)) == "untrained" and exp.arms["untrained"] == untrained_arm(exp.arms["simcse"])
    assert [(c.baseline, c.method, c.metric) for c in exp.headline] == [("simcse", "whitenedcse", "sts_avg")]
    floor = {"arm": "untrained", "metric": "sts_avg", "direction": "greater", "min_gain": 0.5}
    assert exp.floor(list(exp.arms)) == floor


def test_untrained_arm_is_the_start_encoder_scored_like_simcse(smoke):
    """No step runs: the floor's metrics are the STS evaluation of a fresh model of the same seed."""
    tmp, rec = smoke
    assert set(rec["arms"]["untrained"]) == set(rec["arms"]["simcse"]) and rec["curves"]["untrained"] == []
    lines = (tmp / "runs" / "whitenedcse" / "smoke" / "untrained" / "seed0" / "metrics.jsonl").read_text().splitlines()
    assert [list(json.loads(line)) for line in lines] == [["eval"]]  # one evaluation, no training line
    cfg = {**PRESETS["smoke"].arms["untrained"], "train_sentences": 128, "sts_pairs": 60}
    torch.manual_seed(0)
    fresh = sts_evaluator(cfg, None)(build_model(cfg))
    assert fresh == pytest.approx({k: v[0] for k, v in rec["arms"]["untrained"].items()}, abs=1e-4)


def test_untrained_arm_neither_reads_nor_writes_the_shared_baseline_file(tmp_path):
    """The cpu SimCSE arm shares its result across papers; its untrained copy must stay out of that cache."""
    cfg = untrained_arm({**PRESETS["smoke"].arms["simcse"], "share_baseline": True, "train_sentences": 64})
    cfg["sts_pairs"] = 30
    run_dir = tmp_path / "runs" / "whitenedcse" / "cpu" / "untrained" / "seed0"
    run = ArmRun("untrained", cfg, 0, run_dir, False, None, None, False)
    planted = _shared_file(run)
    planted.parent.mkdir(parents=True)
    planted.write_text(json.dumps({"metrics": {"sts_avg": 99.0}, "curve": [], "evaluations": [], "wall_seconds": 0}))
    result = train_arm(run)
    assert result.metrics["sts_avg"] != 99.0 and result.curve == [] and len(result.evaluations) == 1
    assert list(planted.parent.iterdir()) == [planted]  # nothing written next to it
    # the same config without the flag would have trained: the flag alone makes it evaluation only
    assert text_train_config(cfg, 0, 5, False).epochs == 0
